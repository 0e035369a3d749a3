"""Campaign jobs: what travels to a worker, how it runs there, and the rows it sends back.

A :class:`Job` is coarse -- one image's regions, a chunk of VNN-LIB
instances of one model -- and small to ship: the model travels as a
:class:`ModelRef` (path + sha256), which each worker process loads once and
caches (:func:`load_model`), checking the sha256 so that a worker whose
shared file system holds another file refuses it instead of answering for it.
:func:`run_job` never raises: an item that raises becomes an error row with
its message, and the campaign goes on.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nnaudit.errors import ModelLoadError
from nnaudit.reports.store import JobStatus, StoredJob

log = logging.getLogger(__name__)


class JobKind(Enum):
    """What a job does; each kind has one item runner (:data:`RUNNERS`)."""

    VERIFY = "verify"    # items: VNN-LIB instances (nnaudit.campaign.verify_suite)
    REGIONS = "regions"  # items: images (nnaudit.campaign.regions)
    ATTACK = "attack"    # items: batches of samples (nnaudit.campaign.attack)
    NOOP = "noop"        # items: nothing to do (the executor's own overhead, for bench/campaign.py)


#: kind -> "module:function" of its item runner ``f(network, item, job) -> dict`` (imported on the worker)
RUNNERS = {
    JobKind.VERIFY: "nnaudit.campaign.verify_suite:run_instance",
    JobKind.REGIONS: "nnaudit.campaign.regions:run_image",
    JobKind.ATTACK: "nnaudit.campaign.attack:run_batch",
    JobKind.NOOP: "nnaudit.campaign.jobs:run_noop",
}


@dataclass(frozen=True)
class ModelRef:
    """A model as a worker loads it: its file, the sha256 it must have, and the input normalisation."""

    path: str
    sha256: str
    mean: tuple[float, ...] | None = None   # --mean/--std (None: none)
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Item:
    """One stored result's worth of work: its key in the store and what the runner needs."""

    key: str
    spec: Any = None


@dataclass(frozen=True)
class Job:
    """Items of one kind on one model, run together on one worker."""

    kind: JobKind
    model: ModelRef | None
    settings_hash: str
    items: tuple[Item, ...]
    params: Any = None              # the kind's settings (a frozen dataclass), the same for every item
    meta: dict[str, Any] = field(default_factory=dict)


def worker_init() -> None:
    """Run once in each embedded worker process: one thread per process (the processes are the parallelism),
    and on Linux die with the client, so that a ``kill -9`` of the client leaves no worker behind."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_job(job: Job) -> list[StoredJob]:
    """Run every item of ``job``; one row per item, an error row for an item (or a model) that raised."""
    here = f"{socket.gethostname()}:{os.getpid()}"
    runner = _runner(job.kind)
    try:
        network = load_model(job.model) if job.model is not None else None
    except Exception as exc:  # noqa: BLE001 - recorded as the job's error, the campaign goes on
        return error_rows(job, _message(exc), worker=here)
    rows = []
    for item in job.items:
        start = time.perf_counter()
        try:
            result, status, error = runner(network, item, job), JobStatus.OK, ""
        except Exception as exc:  # noqa: BLE001 - as above, per item
            log.debug("item %s raised", item.key, exc_info=True)
            result, status, error = None, JobStatus.ERROR, _message(exc)
        rows.append(StoredJob(_sha(job), job.settings_hash, item.key, job.kind.value, status, result, error,
                              time.perf_counter() - start, here))
    return rows


def error_rows(job: Job, message: str, *, worker: str = "") -> list[StoredJob]:
    """An error row with ``message`` for every item of ``job``."""
    return [StoredJob(_sha(job), job.settings_hash, item.key, job.kind.value, JobStatus.ERROR, None, message,
                      None, worker) for item in job.items]


@functools.lru_cache(maxsize=4)
def load_model(ref: ModelRef) -> Any:
    """``ref``'s network, loaded once per worker process (a cache, not state: the same ref gives the same
    network); ModelLoadError when the file on this worker has another sha256."""
    from nnaudit.networks import load
    from nnaudit.networks.normalise import Normalisation

    _one_thread()
    norm = None if ref.mean is None else Normalisation(ref.mean, ref.std)
    net = load(ref.path, normalisation=norm)
    if net.sha256 != ref.sha256:
        raise ModelLoadError(f"{ref.path}: on worker {socket.gethostname()} this file has sha256 {net.sha256[:12]}…, "
                             f"the campaign's model has {ref.sha256[:12]}… (a different file at the same path)")
    return net


def run_noop(network: Any, item: Item, job: Job) -> dict[str, Any]:
    """The trivial item: measures what the executor and the store cost per job."""
    return {"key": item.key}


def _runner(kind: JobKind) -> Any:
    module, name = RUNNERS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def _sha(job: Job) -> str:
    return job.model.sha256 if job.model is not None else ""


def _message(exc: BaseException) -> str:
    """The one line an error row keeps: the exception's type and message, and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ is not None else []
    where = f" (at {os.path.basename(frame[0].filename)}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


@functools.lru_cache(maxsize=1)
def _one_thread() -> None:
    """Torch on one thread in this worker: the campaign's parallelism is its worker processes."""
    import torch

    torch.set_num_threads(1)
