"""Campaigns on the executor: per-job overhead and the speed-up of 1 vs 2 workers, embedded and on Dask.

    python bench/campaign.py --noop 300 --images 40 --grid 4x4 --instances 40 --timeout 30

For each back end (embedded: local forked processes; distributed: a real
``dask scheduler`` and ``dask worker --nthreads 1`` processes on 127.0.0.1,
started here) and 1 and 2 workers it times, from the first submit to the
last row committed in a fresh SQLite store:

- ``noop``: trivial jobs (one item each): the executor + store cost per job;
- ``regions``: one job per digit image (digits-ffn, ``--grid`` regions each);
- ``verify-suite``: ``--instances`` ACAS Xu instances, evenly spaced over the
  186 of ../shared/benchmarks/vnncomp/acasxu, ``--timeout`` s each.

Workers are warmed up first (imports, one model load) so that the times are
the campaign's, not Python start-up; the best of ``--repeats`` runs is kept
(one run for verify-suite).  It also times the store alone (rows
committed one transaction each).  Writes ``bench/results/campaign.csv`` and
``campaign.md`` (the table; hand-written notes below the marker are kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
ACAS = ROOT.parent / "shared" / "benchmarks" / "vnncomp" / "acasxu"
RESULTS = Path(__file__).parent / "results"
MNIST_NET = ROOT.parent / "shared" / "benchmarks" / "vnncomp" / "mnist_fc" / "onnx" / "mnist-net_256x4.onnx"
MNIST_DATA = ROOT.parent / "shared" / "data" / "images" / "mnist_test_100.npz"
FIELDS = ["campaign", "backend", "workers", "jobs", "items", "wall_s", "per_job_ms", "speedup", "load_1min"]


def local_cluster(workers: int, folder: Path) -> tuple[str, list[subprocess.Popen]]:
    """A dask scheduler and ``workers`` single-thread workers on 127.0.0.1; (address, processes)."""
    dask = str(Path(sys.executable).parent / "dask")
    info = folder / "scheduler.json"
    opts = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], **opts)]
    while not info.exists():
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                "--host", "127.0.0.1"], env={**os.environ, "OMP_NUM_THREADS": "1"}, **opts)
              for _ in range(workers)]
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def warm(refs: tuple = ()) -> None:
    """Imports a worker needs and the models it will load (its per-worker cache), once before the clock starts."""
    import torch  # noqa: F401

    import nnaudit.campaign.regions  # noqa: F401
    import nnaudit.runs.verify  # noqa: F401
    import nnaudit.verify.engine  # noqa: F401
    import nnaudit.verify.regions.api  # noqa: F401
    from nnaudit.campaign.jobs import load_model

    for ref in refs:
        load_model(ref)


def campaigns(args: argparse.Namespace) -> dict[str, list]:
    """name -> jobs (built once: every back end runs the same jobs)."""
    from nnaudit.campaign.jobs import Item, Job, JobKind
    from nnaudit.campaign.regions import RegionsCampaign, image_jobs
    from nnaudit.campaign.verify_suite import SuiteParams, read_instances, suite_jobs
    from nnaudit.networks import load, zoo
    from nnaudit.networks.datasets import digits
    from nnaudit.runs.regions import RegionsRun

    out: dict[str, list] = {}
    if args.noop:
        out["noop"] = [Job(JobKind.NOOP, None, "noop", (Item(f"n{i}"),)) for i in range(args.noop)]
    if args.images:
        if args.regions_model == "mnist":   # real MNIST: 256x4 VNN-COMP net, the 100 test images of ../shared
            net = load(MNIST_NET)
            data = np.load(MNIST_DATA)
            x, y = data["x"], data["y"]
        else:
            net = load(zoo.path("digits-ffn"))
            x, y = digits(split="test")
        rows, cols = (int(v) for v in args.grid.split("x"))
        run = RegionsRun(grid=(rows, cols), step=0.05, steps=2, timeout=10.0)
        plan = run.plan(net, args.images)
        out["regions"] = image_jobs(RegionsCampaign(net, x, y, plan, run.settings(args.images)), "regions")
    if args.instances:
        instances = read_instances(ACAS / "instances.csv")
        step = len(instances) / args.instances
        chosen = [instances[int(i * step)] for i in range(args.instances)]
        out["verify-suite"] = suite_jobs(chosen, SuiteParams(timeout=args.timeout), "verify")
    return out


def timed(config, jobs: list, warmup: list, repeats: int = 1) -> float:
    """Seconds from the first submit to the last row committed, in a fresh store (the best of ``repeats``)."""
    from nnaudit.campaign.executor import Executor
    from nnaudit.campaign.runner import run_campaign
    from nnaudit.reports.store import ResultStore

    refs = tuple({j.model for j in jobs if j.model is not None})
    if config.scheduler is None:
        warm(refs)              # the embedded pool forks from here: its workers start with the models loaded
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.db") as store, Executor(config) as ex:
            if ex._client is not None:
                ex._client.run(warm, refs)
            run_campaign(ex, store, warmup)
            start = time.perf_counter()
            stats = run_campaign(ex, store, jobs)
            best = min(best, time.perf_counter() - start)
        assert stats.stored == sum(len(j.items) for j in jobs), stats
    return best


def store_rate(n: int = 2000) -> float:
    """Rows per second the store commits, one transaction per row (the client's worst case)."""
    from nnaudit.reports.store import JobStatus, ResultStore, StoredJob

    with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.db") as store:
        result = {"verdict": "holds", "time_s": 1.0, "subdomains": 12, "message": ""}
        start = time.perf_counter()
        for i in range(n):
            store.put(StoredJob("a" * 64, "s", f"k{i}", "verify", JobStatus.OK, result))
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noop", type=int, default=300)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--grid", default="4x4")
    parser.add_argument("--regions-model", choices=("digits", "mnist"), default="digits",
                        help="digits: digits-ffn on 8x8 digits; mnist: mnist-net_256x4 on real MNIST (bigger jobs).")
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--backends", default="embedded,distributed")
    parser.add_argument("--repeats", type=int, default=3, help="Best of this many runs (not for verify-suite).")
    parser.add_argument("--tag", default="", help="Write campaign_TAG.csv/.md instead (a second configuration).")
    args = parser.parse_args()
    from nnaudit.campaign.executor import ExecutorConfig
    from nnaudit.campaign.jobs import JobKind

    warm()
    jobs = campaigns(args)
    rows = []
    for name, todo in jobs.items():
        warmup = [] if name == "noop" else [_warmup(todo[0])]
        for backend in args.backends.split(","):
            base = None
            for workers in (1, 2):
                with tempfile.TemporaryDirectory() as tmp:
                    procs: list[subprocess.Popen] = []
                    if backend == "distributed":
                        address, procs = local_cluster(workers, Path(tmp))
                        config = ExecutorConfig(scheduler=address)
                    else:
                        config = ExecutorConfig(workers=workers)
                    try:
                        wall = timed(config, todo, warmup, 1 if name == "verify-suite" else args.repeats)
                    finally:
                        for p in procs:
                            os.killpg(p.pid, signal.SIGKILL)
                            p.wait()
                base = base or wall
                row = {"campaign": name, "backend": backend, "workers": workers, "jobs": len(todo),
                       "items": sum(len(j.items) * (len(j.params.regions) if j.kind is JobKind.REGIONS else 1)
                                    for j in todo),
                       "wall_s": round(wall, 2), "per_job_ms": round(1000 * wall / len(todo), 2),
                       "speedup": round(base / wall, 2), "load_1min": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(row, flush=True)
    write(rows, args, store_rate(), RESULTS / (f"campaign_{args.tag}" if args.tag else "campaign"))


def _warmup(job):
    """A copy of ``job`` under another settings hash: run first, so workers load the model and imports."""
    from dataclasses import replace

    return replace(job, settings_hash="warmup")


def write(rows: list[dict], args: argparse.Namespace, rate: float, stem: Path) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        out = csv.DictWriter(fh, FIELDS)
        out.writeheader()
        out.writerows(rows)
    lines = ["# Campaigns: executor overhead and speed-up (bench/campaign.py)", "",
             f"Machine: {os.cpu_count()} cores, no GPU, {platform.platform()}, Python {platform.python_version()}; "
             f"shared with other engineers' work (1-minute load average per row). Run: `python bench/campaign.py "
             f"--noop {args.noop} --images {args.images} --grid {args.grid} --regions-model {args.regions_model} --instances {args.instances} "
             f"--timeout {args.timeout:g} --repeats {args.repeats}{f' --tag {args.tag}' if args.tag else ''}`; "
             f"store alone: {rate:,.0f} rows/s committed one transaction each.", "",
             "| campaign | back end | workers | jobs | items | wall s | per job ms | speed-up | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['campaign']} | {r['backend']} | {r['workers']} | {r['jobs']} | {r['items']} | "
                     f"{r['wall_s']} | {r['per_job_ms']} | {r['speedup']} | {r['load_1min']} |")
    write_results(stem.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
