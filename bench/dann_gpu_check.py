"""GPU check of DANN: wall time per epoch and target accuracy on cuda (fp32 and
AMP) against cpu, over several seeds, at each task's preset epochs.

Run on a machine with a CUDA GPU, from the repository root:

    python bench/dann_gpu_check.py                       # moons and digits-m, 3 seeds each
    python bench/dann_gpu_check.py --tasks moons --seeds 5 --epochs 50

Each (task, device, AMP, seed) trains the same DANN + source-only pair (same
seed, same data) and records the mean wall time per epoch (first epoch
excluded as warm-up when there are more than two) and the final target
accuracies.  Writes bench/results/dann_gpu.csv (one row per run) and
bench/results/dann_gpu.md (mean ± std per task, device and AMP, with the
per-seed DANN accuracies).  Without a GPU it measures the CPU only and says so.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

from results_file import write_results

RESULTS = Path(__file__).resolve().parent / "results"


def measure(task: str, device: str, epochs: int | None, amp: bool, seed: int) -> dict:
    """One DANN + source-only run; its timing and accuracies."""
    from nnaudit.adaptation import bundled_task, for_task, train_dann

    data = bundled_task(task, seed=seed)
    extra = {} if epochs is None else {"epochs": epochs}
    cfg = for_task(task, seed=seed, device=device, amp=amp, a_distance_every=0, **extra)
    t0 = time.perf_counter()
    run = train_dann(data, cfg)
    wall = time.perf_counter() - t0
    times = [e["time_s"] for e in run.epochs]
    steady = times[1:] if len(times) > 2 else times
    return {"task": task, "device": device, "amp": amp, "seed": seed, "epochs": cfg.epochs,
            "time_per_epoch_s": round(sum(steady) / len(steady), 4), "total_s": round(wall, 2),
            "dann_target_accuracy": run.final["dann"]["target_accuracy"],
            "source_only_target_accuracy": run.final["source_only"]["target_accuracy"]}


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(rows: list[dict], machine: str, gpu: str | None) -> str:
    """The markdown summary: one line per task, device and AMP."""
    lines = ["# DANN on GPU vs CPU (`bench/dann_gpu_check.py`)", "", f"Machine: {machine}", "",
             "Target accuracy in %, mean ± std over seeds; s/epoch excludes the first epoch.", "",
             "| task | epochs | device | AMP | seeds | s/epoch | source-only target acc | DANN target acc | DANN per seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["epochs"], r["device"], r["amp"]), []).append(r)
    for (task, epochs, device, amp), rs in groups.items():
        per_seed = ", ".join(f"{100 * r['dann_target_accuracy']:.1f}" for r in rs)
        lines.append(f"| {task} | {epochs} | {device} | {amp} | {len(rs)} | "
                     f"{_mean_std([r['time_per_epoch_s'] for r in rs], digits=3)} | "
                     f"{_mean_std([r['source_only_target_accuracy'] for r in rs], 100)} | "
                     f"{_mean_std([r['dann_target_accuracy'] for r in rs], 100)} | {per_seed} |")
    if not gpu:
        lines += ["", "No CUDA device: GPU not measured."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    from nnaudit.adaptation import for_task

    ap = argparse.ArgumentParser(description="DANN time per epoch and accuracy, cuda vs cpu")
    ap.add_argument("--tasks", default="moons,digits-m", help="comma-separated bundled tasks")
    ap.add_argument("--epochs", type=int, default=None, help="default: each task's preset")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    runs = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if gpu else [])
    rows = []
    for task in args.tasks.split(","):
        for device, amp in runs:
            for seed in range(args.seeds):
                rows.append(measure(task, device, args.epochs, amp, seed))
                print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "dann_gpu.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    machine = (f"{os.cpu_count()} cores, {gpu or 'no GPU'}, torch {torch.__version__}, "
               f"Python {platform.python_version()}; CPU runs on the preset's torch threads (DannConfig.cpu_threads = "
               f"{for_task(args.tasks.split(',')[0]).cpu_threads})")
    text = table(rows, machine, gpu)
    write_results(RESULTS / "dann_gpu.md", text)
    print(text)


if __name__ == "__main__":
    main()
