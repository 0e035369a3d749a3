"""Benchmark of DANN (nnaudit.adaptation) over seeds; not a timed test.

Every bundled shift (nnaudit.adaptation.tasks: moons, moons-hard,
digits-mnist, mnist-digits, digits-m) x {source-only, DANN,
train-on-target} x seeds: target accuracy (labels used for scoring only),
mean +- std, and the fraction of the source-only -> train-on-target gap
DANN closes.  Source-only and DANN come from one run (same initial weights,
batches and budget); train-on-target trains the same label path on the
labelled target with as many SGD steps (k-fold for the transductive
digits-mnist; nnaudit.adaptation.gap).  Also the proxy A-distance of the
features and of the class scores, and the wall time per epoch.

Rows are appended to bench/results/dann.csv as they finish; ``--resume``
skips (task, seed) pairs already there.  The table goes to
bench/results/dann.md.  One torch thread per run (the CPU is shared).

    python bench/dann.py                          # 5 seeds, all tasks
    python bench/dann.py --seeds 2 --tasks moons --device cuda
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
TASKS = ["moons", "moons-hard", "digits-mnist", "mnist-digits", "digits-m"]
FIELDS = ["task", "seed", "method", "source_accuracy", "target_accuracy", "a_distance", "a_distance_logits",
          "selected_epoch", "epochs", "time_per_epoch_s", "device"]
GPU_COLUMN = "not measured (no GPU lent)"
GPU_CSV = RESULTS / "dann_gpu.csv"


def gpu_column(task: str) -> str:
    """Mean cuda fp32 s/epoch of ``task`` from bench/dann_gpu_check.py's results, when present."""
    if not GPU_CSV.exists():
        return GPU_COLUMN
    with GPU_CSV.open() as fh:
        times = [float(r["time_per_epoch_s"]) for r in csv.DictReader(fh)
                 if r["task"] == task and r["device"] == "cuda" and r["amp"] == "False"]
    return f"{statistics.fmean(times):.3f} (cuda, `dann_gpu.md`; old preset)" if times else GPU_COLUMN


def run_seed(task: str, seed: int, device: str) -> list[dict]:
    """The rows of one (task, seed): source-only, DANN and train-on-target."""
    from nnaudit.adaptation import bundled_task, for_task, train_dann
    from nnaudit.adaptation.gap import train_on_target

    data = bundled_task(task, seed=seed)
    cfg = for_task(task, seed=seed, device=device, a_distance_every=0)
    run = train_dann(data, cfg)
    rows = []
    for method in ("source_only", "dann"):
        f = run.final[method]
        rows.append({"task": task, "seed": seed, "method": method, **f, "epochs": cfg.epochs,
                     "time_per_epoch_s": run.time_per_epoch_s if method == "dann" else "", "device": run.device})
    rows.append({"task": task, "seed": seed, "method": "train_on_target", "target_accuracy": train_on_target(data, cfg),
                 "epochs": cfg.epochs, "device": run.device})
    if cfg.domain_bn:  # ablation: the per-domain BatchNorm statistics without the domain loss
        bn = train_dann(data, dataclasses.replace(cfg, domain_weight=0.0, source_only=False)).final["dann"]
        rows.append({"task": task, "seed": seed, "method": "bn_only", **bn, "epochs": cfg.epochs, "device": run.device})
    return rows


def _done() -> set[tuple[str, int]]:
    if not CSV_FILE.is_file():
        return set()
    with CSV_FILE.open() as fh:
        return {(r["task"], int(r["seed"])) for r in csv.DictReader(fh)}


def _append(rows: list[dict]) -> None:
    new = not CSV_FILE.is_file()
    with CSV_FILE.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _stat(values: list[float], pct: bool = True) -> str:
    if not values:
        return "-"
    scale = 100.0 if pct else 1.0
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}" if pct else f"{mean:.2f} ± {std:.2f}"


def _closed(so: list[float], da: list[float], tot: list[float]) -> str:
    from nnaudit.adaptation.gap import gap_closed

    if not (so and da and tot):
        return "-"
    f = gap_closed(statistics.fmean(so), statistics.fmean(da), statistics.fmean(tot))
    return "no gap" if f is None else f"{100 * f:.0f} %"


def write_table(total_s: float | None, load: str) -> str:
    """Markdown table from the CSV (mean ± std over the seeds present)."""
    with CSV_FILE.open() as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: (r["task"], int(r["seed"])))  # parallel runs append out of order
    col = lambda task, method, key: [float(r[key]) for r in rows if r["task"] == task and r["method"] == method and r[key] != ""]  # noqa: E731
    lines = [
        "# DANN benchmark (`bench/dann.py`)", "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"torch {_torch_version()} (1 thread per run); shared with other jobs ({load}), so times are upper bounds.", "",
        "Target accuracy (%; target labels used for scoring only), mean ± std over seeds. Gap closed = "
        "(DANN − source-only) / (train-on-target − source-only) of the means. Per-domain BN only: the DANN "
        "network and batches with per-domain BatchNorm statistics but no domain loss (ablation).", "",
        "| task | seeds | source-only | DANN | train-on-target | gap (points) | gap closed | DANN better | "
        "per-domain BN only | A-dist. features SO → DANN | A-dist. class scores SO → DANN | s/epoch CPU | s/epoch GPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        so, da, tot = (col(task, m, "target_accuracy") for m in ("source_only", "dann", "train_on_target"))
        if not da:
            continue
        gap = f"{100 * (statistics.fmean(tot) - statistics.fmean(so)):.1f}" if tot else "-"
        wins = f"{sum(d > s for s, d in zip(so, da))}/{len(da)}"
        a_f = f"{_stat(col(task, 'source_only', 'a_distance'), False)} → {_stat(col(task, 'dann', 'a_distance'), False)}"
        a_l = f"{_stat(col(task, 'source_only', 'a_distance_logits'), False)} → {_stat(col(task, 'dann', 'a_distance_logits'), False)}"
        lines.append(f"| {task} | {len(da)} | {_stat(so)} | {_stat(da)} | {_stat(tot)} | {gap} | {_closed(so, da, tot)} | {wins} | "
                     f"{_stat(col(task, 'bn_only', 'target_accuracy'))} | "
                     f"{a_f} | {a_l} | {_stat(col(task, 'dann', 'time_per_epoch_s'), False)} | {gpu_column(task)} |")
    lines += ["", "Per seed, target accuracy source-only / DANN / train-on-target (%):", ""]
    for task in TASKS:
        so, da, tot = (col(task, m, "target_accuracy") for m in ("source_only", "dann", "train_on_target"))
        if da:
            lines.append(f"- {task}: " + ", ".join(f"{100 * s:.1f} / {100 * d:.1f} / {100 * t:.1f}" for s, d, t in zip(so, da, tot))
                         + (f"; DANN >= 95 % on {sum(d >= 0.95 for d in da)} of {len(da)} seeds" if task == "moons" else ""))
    lines += ["", "Source accuracy (%): " + "; ".join(
        f"{task} source-only {_stat(col(task, 'source_only', 'source_accuracy'))}, DANN {_stat(col(task, 'dann', 'source_accuracy'))}"
        for task in TASKS if col(task, "dann", "source_accuracy"))]
    lines += ["", "Settings: `nnaudit.adaptation.config.TASK_PRESETS` (see docs/adaptation.md). "
              "s/epoch covers DANN and its source-only baseline trained together plus per-epoch scoring."]
    if total_s is not None:
        lines.append(f"Wall time of this invocation: {total_s:.0f} s.")
    text = "\n".join(lines) + "\n"
    write_results(MD_FILE, text)
    return text


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    ap.add_argument("--first-seed", type=int, default=0, help="start at this seed (to split a run over processes)")
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (cuda: needs a GPU)")
    ap.add_argument("--resume", action="store_true", help="keep bench/results/dann.csv and skip what it has")
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table from the CSV")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.table_only:
        print(write_table(None, "the load of the runs is in the notes below"))
        return
    load = "load average %.1f at the start" % os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.resume and CSV_FILE.exists():
        CSV_FILE.unlink()
    done = _done()
    start = time.perf_counter()
    for task in args.tasks:
        for seed in range(args.first_seed, args.seeds):
            if (task, seed) in done:
                continue
            t0 = time.perf_counter()
            rows = run_seed(task, seed, args.device)
            _append(rows)
            acc = {r["method"]: r["target_accuracy"] for r in rows}
            print(f"{task} seed {seed}: target accuracy {acc} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(write_table(time.perf_counter() - start, load))


if __name__ == "__main__":
    main()
