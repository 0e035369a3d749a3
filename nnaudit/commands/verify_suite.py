"""``nnaudit verify-suite INSTANCES.csv``: a VNN-COMP-style suite as one campaign."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from nnaudit.commands.types import COUNT, OUTPUT_FILE, SECONDS, WORKERS
from nnaudit.errors import Terminated

EPILOG = ("Exit codes: 0 every instance holds, 1 some instance violated, 2 bad input or an unreachable "
          "scheduler, 3 some instance unknown/timeout/error (none violated), 130 interrupted (stored results "
          "are kept: run the same command again to go on).")


@click.command("verify-suite", epilog=EPILOG)
@click.argument("instances", type=click.Path(dir_okay=False))
@click.option("--results", "-o", "results", type=OUTPUT_FILE, default="results.csv", show_default=True,
              help="Results CSV in VNN-COMP's format: benchmark,onnx,vnnlib,prepare_s,result,run_s.")
@click.option("--store", type=OUTPUT_FILE, default=None,
              help="SQLite results store: every result is kept as it arrives; a re-run skips stored instances.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run on this Dask scheduler (default: $NNAUDIT_SCHEDULER, else local processes).")
@click.option("--workers", type=WORKERS, default=None, help="Local worker processes (default: all cores).")
@click.option("--timeout", type=SECONDS, default=None, help="Seconds per instance (default: the CSV's).")
@click.option("--chunk", type=COUNT, default=1, show_default=True,
              help="Instances of one model per job (more for many tiny instances).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the falsifier.")
@click.option("--benchmark", default=None, help="Benchmark name in the results CSV (default: the CSV's folder).")
@click.option("--device", default="cpu", show_default=True,
              help="Where each worker runs the bound computations: cpu, cuda, cuda:N or auto (cuda where the "
                   "worker has one). Local workers: a GPU asked for and missing is exit 2 before any work.")
def command(instances: str, results: str, store: str | None, scheduler: str | None, workers: int | None,
            timeout: float | None, chunk: int, seed: int, benchmark: str | None, device: str) -> None:
    """Decide every instance of INSTANCES (rows onnx,vnnlib,timeout, paths relative to the CSV) with the
    complete verifier, on local processes or a Dask cluster, and write the results CSV and a summary.
    With a Dask cluster the files must be at the same paths on every worker (a shared file system)."""
    from nnaudit.campaign.executor import Executor, ExecutorConfig
    from nnaudit.campaign.runner import run_campaign
    from nnaudit.campaign.verify_suite import SuiteParams, read_instances, suite_jobs, write_results
    from nnaudit.reports.store import ResultStore

    rows = read_instances(instances)
    config = ExecutorConfig.from_options(scheduler, workers)
    params = SuiteParams(timeout=timeout, seed=seed, device=_device(device, config.scheduler))
    with tempfile.TemporaryDirectory() as tmp, ResultStore(store or Path(tmp) / "results.db") as db:
        digest = db.add_settings("verify", params.settings())
        jobs = suite_jobs(rows, params, digest, chunk=chunk)
        shas = {job.items[0].key.split(",")[0]: job.model.sha256 for job in jobs}
        try:
            with Executor(config) as ex, click.progressbar(length=len(rows), label="instances",
                                                           file=sys.stderr) as bar:
                stats = run_campaign(ex, db, jobs, on_rows=lambda r: bar.update(len(r)))
                where = ex.where
        except KeyboardInterrupt as stop:
            term = isinstance(stop, Terminated)
            click.echo(f"\n{'terminated (SIGTERM)' if term else 'interrupted'}; {db.count(settings=digest)} results "
                       "stored" + (f" in {store} (run the same command again to go on)" if store else ""), err=True)
            raise SystemExit(Terminated.exit_code if term else 130) from None
        counts = write_results(results, benchmark or Path(instances).resolve().parent.name, rows, db, shas, digest)
    _summary(counts, stats.line(), where, results)


def _device(device: str, scheduler: str | None) -> str:
    """The device as the workers get it: with local processes (no ``scheduler``) checked on this
    machine (a GPU asked for and missing is exit 2) and ``auto`` resolved; to a Dask cluster only its
    spelling is checked here, and each worker resolves it (an error row where a worker lacks the GPU)."""
    from nnaudit.networks.devices import device_name, parse_device

    return parse_device(device) if scheduler else device_name(device)


def _summary(counts: dict[str, int], line: str, where: str, results: str) -> None:
    """The summary line, and the exit code of the worst result."""
    words = ("unsat", "sat", "timeout", "unknown", "error")
    click.echo("  ".join(f"{w} {counts.get(w, 0)}" for w in words) + f"  ({line}; on {where}; results in {results})")
    if counts.get("sat"):
        raise SystemExit(1)
    if any(counts.get(w) for w in ("timeout", "unknown", "error", "missing")):
        raise SystemExit(3)
