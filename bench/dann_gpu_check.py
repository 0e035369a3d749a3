"""One-shot GPU timing of DANN: wall time per epoch on cuda (fp32 and AMP) vs cpu.

Run on a machine with a CUDA GPU, from the repository root:

    python bench/dann_gpu_check.py            # digits-m, 5 epochs per device (about a minute)
    python bench/dann_gpu_check.py --epochs 3 --task moons

It trains the same DANN + source-only run (same seed, same data) on each
device, reports the mean wall time per epoch (first epoch excluded as
warm-up when there are more than two), the final target accuracies, and writes
bench/results/dann_gpu.csv and bench/results/dann_gpu.md.  Without a GPU
it measures the CPU only and says so.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(task: str, device: str, epochs: int, amp: bool, seed: int) -> dict:
    from nnaudit.adaptation import bundled_task, for_task, train_dann

    data = bundled_task(task, seed=seed)
    cfg = for_task(task, epochs=epochs, seed=seed, device=device, amp=amp, a_distance_every=0)
    t0 = time.perf_counter()
    run = train_dann(data, cfg)
    wall = time.perf_counter() - t0
    times = [e["time_s"] for e in run.epochs]
    steady = times[1:] if len(times) > 2 else times
    return {"task": task, "device": device, "amp": amp, "epochs": epochs,
            "time_per_epoch_s": round(sum(steady) / len(steady), 4), "total_s": round(wall, 2),
            "dann_target_accuracy": run.final["dann"]["target_accuracy"],
            "source_only_target_accuracy": run.final["source_only"]["target_accuracy"]}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description="DANN time per epoch, cuda vs cpu")
    ap.add_argument("--task", default="digits-m", choices=["digits-m", "moons"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = [("cpu", False)]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if gpu:
        runs += [("cuda", False), ("cuda", True)]
    rows = []
    for device, amp in runs:
        row = measure(args.task, device, args.epochs, amp, args.seed)
        print(row, flush=True)
        rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "dann_gpu.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    machine = (f"{os.cpu_count()} cores, {gpu or 'no GPU'}, torch {torch.__version__}, "
               f"Python {platform.python_version()}")
    lines = [f"# DANN time per epoch, {args.task}, {args.epochs} epochs (`bench/dann_gpu_check.py`)", "",
             f"Machine: {machine}", "",
             "| device | AMP | s/epoch | total s | DANN target acc | source-only target acc |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['amp']} | {r['time_per_epoch_s']} | {r['total_s']} | "
              f"{r['dann_target_accuracy']:.3f} | {r['source_only_target_accuracy']:.3f} |" for r in rows]
    if not gpu:
        lines += ["", "No CUDA device: GPU not measured."]
    (RESULTS / "dann_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
