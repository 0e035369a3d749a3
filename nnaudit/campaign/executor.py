"""The executor: coarse jobs run on local processes or on a Dask cluster, results streamed back.

One interface, two back ends (:class:`Backend`):

- EMBEDDED (the default): a ``concurrent.futures`` process pool on this
  machine (forked, so start-up costs milliseconds, and nothing more to
  install; spawned instead once this process has seen a CUDA GPU, which a
  forked child could not use: :func:`start_method`).  A worker process that dies (killed, out of memory) breaks the
  pool; the pool is restarted and the unfinished jobs are submitted again,
  a job at most :data:`ALLOWED_FAILURES` times, as Dask does (a broken pool
  fails every unfinished job at once, so each of them counts the death).
- DISTRIBUTED (``--scheduler tcp://HOST:PORT`` or ``NNAUDIT_SCHEDULER``): a
  ``dask.distributed`` client; the scheduler redoes the jobs of a worker
  that dies.

:meth:`Executor.run` yields each job's rows as soon as it finishes, in
completion order; the caller stores them (one writer), so an interrupt loses
only the jobs still running.  A job returns error rows rather than raising
(:func:`nnaudit.campaign.jobs.run_job`); a job that kills its workers
:data:`ALLOWED_FAILURES` times becomes error rows here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any

from nnaudit.campaign.jobs import Job, error_rows, run_job, worker_init
from nnaudit.errors import NnauditError

log = logging.getLogger(__name__)

#: environment variable naming the Dask scheduler when --scheduler is not given
SCHEDULER_ENV = "NNAUDIT_SCHEDULER"
#: a job whose worker dies this many times is recorded as an error (Dask's default, too)
ALLOWED_FAILURES = 3


class CampaignError(NnauditError):
    """The campaign cannot go on: the scheduler is unreachable or was lost (stored results are kept)."""


class Backend(Enum):
    """Where the jobs run."""

    EMBEDDED = "embedded"        # local worker processes
    DISTRIBUTED = "distributed"  # a dask.distributed cluster


@dataclass(frozen=True)
class ExecutorConfig:
    """How to run a campaign's jobs."""

    scheduler: str | None = None     # tcp://HOST:PORT of a Dask scheduler (None: embedded)
    workers: int | None = None       # embedded worker processes (None: all cores)
    connect_timeout_s: float = 10.0  # how long to wait for the scheduler before giving up

    @property
    def backend(self) -> Backend:
        return Backend.EMBEDDED if self.scheduler is None else Backend.DISTRIBUTED

    @classmethod
    def from_options(cls, scheduler: str | None, workers: int | None) -> ExecutorConfig:
        """The config of ``--scheduler``/``--workers``; without --scheduler, ``$NNAUDIT_SCHEDULER`` if set."""
        scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        return cls(scheduler=scheduler, workers=workers)


class Executor:
    """Runs :class:`~nnaudit.campaign.jobs.Job` objects; a context manager that starts and stops the back end.

    Connecting happens in ``__enter__``: an unreachable scheduler is a
    :class:`CampaignError` before any job is submitted.
    """

    def __init__(self, config: ExecutorConfig = ExecutorConfig()) -> None:
        self.config = config
        self._client: Any = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Executor:
        if self.config.backend is Backend.DISTRIBUTED:
            self._client = _connect(self.config)
        else:
            self._pool = self._new_pool()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            self._client.close(timeout=5)
        if self._pool is not None:
            if kind is not None:    # interrupted: stop the running jobs too, their results would not be stored
                for proc in list((self._pool._processes or {}).values()):
                    proc.terminate()
            self._pool.shutdown(wait=kind is None, cancel_futures=True)

    @property
    def where(self) -> str:
        """The back end in words, for the summary line."""
        if self._client is not None:
            return f"dask scheduler {self.config.scheduler} ({len(self._client.scheduler_info()['workers'])} workers)"
        return f"{self._workers()} local processes"

    def run(self, jobs: Iterable[Job]) -> Iterator[list[Any]]:
        """Each job's rows (:class:`~nnaudit.reports.store.StoredJob`), as the jobs finish."""
        jobs = list(jobs)
        if not jobs:
            return iter(())
        if self._client is not None:
            return self._run_distributed(jobs)
        return self._run_embedded(jobs)

    def _workers(self) -> int:
        return self.config.workers or os.cpu_count() or 1

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing as mp

        return ProcessPoolExecutor(self._workers(), mp_context=mp.get_context(start_method()), initializer=worker_init)

    def _run_embedded(self, jobs: list[Job]) -> Iterator[list[Any]]:
        failures = dict.fromkeys(range(len(jobs)), 0)
        pending: dict[Future, int] = {self._pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = []
            for fut in done:
                i = pending.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken.append(i)
            if broken:
                yield from self._restart(jobs, failures, broken + list(pending.values()), pending)

    def _restart(self, jobs: list[Job], failures: dict[int, int], lost: list[int],
                 pending: dict[Future, int]) -> Iterator[list[Any]]:
        """A worker died: a new pool, the lost jobs submitted again (or, after too many deaths, error rows)."""
        log.warning("a worker process died; restarting the pool and redoing %d unfinished jobs", len(lost))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        pending.clear()
        for i in sorted(set(lost)):
            failures[i] += 1
            if failures[i] >= ALLOWED_FAILURES:
                yield error_rows(jobs[i], f"its worker process died {failures[i]} times running this job")
            else:
                pending[self._pool.submit(run_job, jobs[i])] = i

    def _run_distributed(self, jobs: list[Job]) -> Iterator[list[Any]]:
        from distributed import as_completed

        futures = {self._client.submit(run_job, job, pure=False): job for job in jobs}
        try:
            for fut in as_completed(futures, loop=self._client.loop):
                try:
                    rows = fut.result()
                except Exception as exc:  # noqa: BLE001 - sorted below: the cluster's fault or the job's
                    if self._lost(exc):
                        raise CampaignError(f"lost the Dask scheduler {self.config.scheduler} ({type(exc).__name__}: "
                                            f"{exc}); the results stored so far are kept: run the same command "
                                            "again to go on") from None
                    rows = error_rows(futures[fut], f"{type(exc).__name__}: {exc}")   # e.g. KilledWorker
                yield rows
        finally:
            for fut in futures:
                fut.cancel()

    def _lost(self, exc: Exception) -> bool:
        """Whether ``exc`` means the scheduler is gone (not the job's fault: nothing is stored for it)."""
        from concurrent.futures import CancelledError

        return isinstance(exc, (OSError, TimeoutError, CancelledError)) or self._client.status != "running"


def start_method() -> str:
    """``"fork"`` (workers start in milliseconds, sharing what this process loaded), or ``"spawn"``
    when this process has imported torch and torch sees a CUDA GPU: asking that (as resolving a
    ``--device`` does) initialises the CUDA driver, and a child forked after that cannot use the GPU.
    A process that never imported torch (a CPU run of ``verify-suite``) forks without asking."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "spawn"
    return "fork"


def _connect(config: ExecutorConfig) -> Any:
    """A dask.distributed Client of the scheduler, or CampaignError when it cannot be reached."""
    from distributed import Client

    if not log.isEnabledFor(logging.DEBUG):   # a lost scheduler is our one-line CampaignError, not their traceback
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    address = config.scheduler
    if "://" not in address:
        address = f"tcp://{address}"
    try:
        return Client(address, timeout=config.connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        where = "--scheduler" if os.environ.get(SCHEDULER_ENV) != config.scheduler else f"${SCHEDULER_ENV}"
        raise CampaignError(f"{where} {config.scheduler}: cannot reach the Dask scheduler "
                            f"within {config.connect_timeout_s:g}s ({type(exc).__name__}: {exc})") from None
