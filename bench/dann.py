"""Benchmark of DANN (nnaudit.adaptation) over seeds; not a timed test.

Tasks (see nnaudit.adaptation.data):
- moons: the paper's inter-twinning moons, target rotated by 35 degrees;
  DANN target accuracy (goal >= 95%) vs the source-only baseline;
- digits-m: 8x8 digits -> textured, coloured digits-M; target accuracy of
  source-only, DANN and train-on-target (the upper bound: the same network
  trained on the labelled target half), mean +- std.
Also the CPU wall time per epoch (DANN and its baseline trained together,
including the per-epoch scoring).  GPU timings come from
bench/dann_gpu_check.py on a machine with a GPU.

Rows are appended to bench/results/dann.csv as they finish; ``--resume``
skips (task, seed) pairs already there.  The table goes to
bench/results/dann.md.

    python bench/dann.py                # 5 seeds, both tasks (a few minutes on 2 cores)
    python bench/dann.py --seeds 2 --tasks moons
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from results_file import write_results

RESULTS = Path(__file__).resolve().parent / "results"
CSV_FILE = RESULTS / "dann.csv"
MD_FILE = RESULTS / "dann.md"
FIELDS = ["task", "seed", "method", "source_accuracy", "target_accuracy", "a_distance", "epochs",
          "time_per_epoch_s", "device"]
GPU_COLUMN = "not measured (no GPU lent)"
GPU_CSV = Path(__file__).resolve().parent / "results" / "dann_gpu.csv"


def gpu_column(task: str) -> str:
    """Mean cuda fp32 s/epoch of ``task`` from bench/dann_gpu_check.py's results, when present."""
    if not GPU_CSV.exists():
        return GPU_COLUMN
    with GPU_CSV.open() as fh:
        times = [float(r["time_per_epoch_s"]) for r in csv.DictReader(fh)
                 if r["task"] == task and r["device"] == "cuda" and r["amp"] == "False"]
    return f"{statistics.fmean(times):.3f} (cuda, `dann_gpu.md`)" if times else GPU_COLUMN


def run_seed(task: str, seed: int) -> list[dict]:
    """All rows of one (task, seed): source-only, DANN, and for digits-m train-on-target."""
    from nnaudit.adaptation import DomainData, bundled_task, for_task, train_dann

    data = bundled_task(task, seed=seed)
    cfg = for_task(task, seed=seed, device="cpu", a_distance_every=0)
    run = train_dann(data, cfg)
    rows = []
    for method in ("source_only", "dann"):
        f = run.final[method]
        rows.append({"task": task, "seed": seed, "method": method, **f, "epochs": cfg.epochs,
                     "time_per_epoch_s": run.time_per_epoch_s if method == "dann" else "", "device": run.device})
    if task == "digits-m":
        on_target = DomainData("train-on-target", data.target, data.target, data.num_classes,
                               data.target_test, data.target_test)
        plain = dataclasses.replace(cfg, source_only=False, fixed_lambda=0.0, domain_weight=0.0)
        tot = train_dann(on_target, plain).final["dann"]
        rows.append({"task": task, "seed": seed, "method": "train_on_target", "source_accuracy": "",
                     "target_accuracy": tot["target_accuracy"], "a_distance": "", "epochs": cfg.epochs,
                     "time_per_epoch_s": "", "device": run.device})
    return rows


def _done() -> set[tuple[str, int]]:
    if not CSV_FILE.is_file():
        return set()
    with CSV_FILE.open() as fh:
        return {(r["task"], int(r["seed"])) for r in csv.DictReader(fh)}


def _append(rows: list[dict]) -> None:
    new = not CSV_FILE.is_file()
    with CSV_FILE.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _stat(values: list[float], pct: bool = True) -> str:
    if not values:
        return "-"
    scale = 100.0 if pct else 1.0
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}" if pct else f"{mean:.3f} ± {std:.3f}"


def write_table(total_s: float | None) -> str:
    """Markdown table from the CSV (mean ± std over the seeds present)."""
    with CSV_FILE.open() as fh:
        rows = list(csv.DictReader(fh))
    col = lambda task, method, key: [float(r[key]) for r in rows if r["task"] == task and r["method"] == method and r[key] != ""]  # noqa: E731
    lines = [
        "# DANN benchmark (`bench/dann.py`)",
        "",
        f"Machine: {os.cpu_count()} cores, no GPU, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {_torch_version()} (CPU, 1 thread per run); "
        "shared with other jobs, so times are upper bounds.",
        "",
        "Target accuracy on the held-out target test set (labels used for scoring only), in %, mean ± std over seeds.",
        "",
        "| task | seeds | source-only | DANN | train-on-target | A-distance source-only → DANN | CPU s/epoch | GPU s/epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in ("moons", "digits-m"):
        seeds = sorted({int(r["seed"]) for r in rows if r["task"] == task})
        if not seeds:
            continue
        tot = _stat(col(task, "train_on_target", "target_accuracy")) if task == "digits-m" else "n/a"
        a_d = f"{_stat(col(task, 'source_only', 'a_distance'), False)} → {_stat(col(task, 'dann', 'a_distance'), False)}"
        lines.append(f"| {task} | {len(seeds)} | {_stat(col(task, 'source_only', 'target_accuracy'))} | "
                     f"{_stat(col(task, 'dann', 'target_accuracy'))} | {tot} | {a_d} | "
                     f"{_stat(col(task, 'dann', 'time_per_epoch_s'), False)} | {gpu_column(task)} |")
    lines += [""]
    for task in ("moons", "digits-m"):
        so, da = col(task, "source_only", "target_accuracy"), col(task, "dann", "target_accuracy")
        if so and da:
            wins = sum(d > s for s, d in zip(so, da))
            lines.append(f"- {task}: DANN - source-only target accuracy {100 * (statistics.fmean(da) - statistics.fmean(so)):+.1f} "
                         f"points; DANN better on {wins} of {len(da)} seeds"
                         + (f"; DANN >= 95% on {sum(d >= 0.95 for d in da)} of {len(da)} seeds" if task == "moons" else ""))
    lines += ["", "Per seed, DANN target accuracy (%):", ""]
    for task in ("moons", "digits-m"):
        per = [f"seed {r['seed']}: {100 * float(r['target_accuracy']):.1f}" for r in rows if r["task"] == task and r["method"] == "dann"]
        if per:
            lines.append(f"- {task}: " + ", ".join(per))
    lines += ["", "Source accuracy (%, source test set): " + "; ".join(
        f"{task} source-only {_stat(col(task, 'source_only', 'source_accuracy'))}, DANN {_stat(col(task, 'dann', 'source_accuracy'))}"
        for task in ("moons", "digits-m") if col(task, "dann", "source_accuracy"))]
    lines += ["", "Settings: `nnaudit.adaptation.config.TASK_PRESETS` (moons: MLP 2-32-32, 300 epochs, batch 16+16, "
              "mu0 0.05; digits-m: conv 32-64, 40 epochs, batch 32+32, mu0 0.01); paper schedules for lambda and lr, "
              "SGD momentum 0.9. s/epoch covers DANN and its source-only baseline trained together plus per-epoch scoring."]
    if total_s is not None:
        lines.append(f"Total wall time of this run: {total_s:.0f} s.")
    text = "\n".join(lines) + "\n"
    write_results(MD_FILE, text)
    return text


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    ap.add_argument("--tasks", nargs="+", default=["moons", "digits-m"], choices=["moons", "digits-m"])
    ap.add_argument("--resume", action="store_true", help="keep bench/results/dann.csv and skip what it has")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.resume and CSV_FILE.exists():
        CSV_FILE.unlink()
    done = _done()
    start = time.perf_counter()
    for task in args.tasks:
        for seed in range(args.seeds):
            if (task, seed) in done:
                continue
            t0 = time.perf_counter()
            rows = run_seed(task, seed)
            _append(rows)
            acc = {r["method"]: r["target_accuracy"] for r in rows}
            print(f"{task} seed {seed}: target accuracy {acc} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(write_table(time.perf_counter() - start))


if __name__ == "__main__":
    main()
