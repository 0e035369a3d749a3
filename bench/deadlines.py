"""How late ``nnaudit verify --timeout T`` ends: the process's wall time against T (issues #23, #27).

    python bench/deadlines.py [--timeout 10] [--repeats 2]

Runs, each in its own console-script process (start-up, falsification, search, worker processes
and exit included), instances that cannot finish in T: mnist_fc 256x6 prop 7 eps 0.05 (the
reliability issue's case), the wide MNIST conv net of issue #27 (MaxPool and AveragePool twins,
eps 0.05) and two oval21 CIFAR conv nets, each with ``--workers 1`` and ``2``.  The overshoot is
wall time minus T; the 1-min load average is recorded beside each run (the machine is shared).
Table: ``bench/results/deadlines.md`` (and ``.csv``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "vnncomp"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "verify")]


def instances(tmp: Path) -> list[tuple[str, Path, Path]]:
    """(name, onnx, vnnlib) of the instances that cannot finish within the timeout."""
    import onnxruntime as ort

    import conv_nets

    out = [("mnist_fc 256x6 prop 7 eps 0.05", BENCH / "mnist_fc/onnx/mnist-net_256x6.onnx",
            BENCH / "mnist_fc/vnnlib/prop_7_0.05.vnnlib")]
    x = np.random.default_rng(1).random((1, 1, 28, 28)).astype(np.float32)
    for pool in ("MaxPool", "AveragePool"):
        net = conv_nets.mnist_conv(tmp, 0, pool)
        label = int(ort.InferenceSession(str(net)).run(None, {"x": x})[0].argmax())
        out.append((f"wide MNIST conv ({pool}) eps 0.05", net,
                    conv_nets.robustness_vnnlib(tmp / f"{pool}.vnnlib", x, 0.05, label)))
    for net, prop in (("cifar_base_kw", "cifar_base_kw-img9410-eps0.043137254901960784"),
                      ("cifar_deep_kw", "cifar_deep_kw-img4168-eps0.03150326797385621")):
        out.append((f"oval21 {net}", BENCH / f"oval21/onnx/{net}.onnx", BENCH / f"oval21/vnnlib/{prop}.vnnlib"))
    return [(n, o, v) for n, o, v in out if o.exists() and v.exists()]


def run(onnx: Path, vnnlib: Path, timeout: float, workers: int, tmp: Path) -> dict[str, str]:
    """One run: its answer, process wall seconds and their parts: start-up (imports and loading, until
    the verifier starts: ``timeout`` minus the budget it was left), the verifier's own time past the
    budget, and the rest (printing the answer, writing the result, process exit)."""
    out = tmp / "run.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", "from nnaudit.cli import main; main()", "verify", str(onnx), str(vnnlib),
           "--timeout", str(timeout), "--workers", str(workers), "--no-progress", "-o", str(out)]
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    wall = time.monotonic() - start
    words = res.stdout.split()
    doc = json.loads(out.read_text()) if out.exists() else {}
    left = float(doc.get("settings", {}).get("timeout_s", "nan"))
    spent = float((doc.get("instances") or [{}])[0].get("time_s", "nan"))
    startup = timeout - left
    return {"answer": words[0] if words else f"exit {res.returncode}", "wall_s": f"{wall:.2f}",
            "overshoot_s": f"{wall - timeout:.2f}", "startup_s": f"{startup:.2f}",
            "verifier_over_s": f"{spent - left:.2f}", "exit_s": f"{wall - startup - spent:.2f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, onnx, vnnlib in instances(Path(tmp)):
                for workers in (1, 2):
                    parts = run(onnx, vnnlib, args.timeout, workers, Path(tmp))
                    rows.append({"instance": name, "workers": workers, "timeout_s": args.timeout, **parts,
                                 "load1": f"{os.getloadavg()[0]:.1f}"})
                    print(rows[-1], flush=True)
    out = Path(args.out)
    with open(out / "deadlines.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_results(out / "deadlines.md", table(rows, args.timeout))


def table(rows: list[dict], timeout: float) -> str:
    over = [float(r["overshoot_s"]) for r in rows]
    mine = [float(r["verifier_over_s"]) + float(r["exit_s"]) for r in rows if float(r["startup_s"]) < timeout]
    loads = [float(r["load1"]) for r in rows]
    lines = ["# Deadlines: process wall time against `nnaudit verify --timeout`", "",
             f"Machine: {os.cpu_count()} cores, no GPU, {platform.platform()}, Python {platform.python_version()}; "
             f"--timeout {timeout:g} s; {len(rows)} runs, each its own process; 1-min load average "
             f"{min(loads):.1f}-{max(loads):.1f} (shared machine).", "",
             f"**Overshoot (wall - timeout): median {statistics.median(over):.2f} s, max {max(over):.2f} s; "
             f"{sum(o <= 1.0 for o in over)}/{len(over)} runs within 1 s.**  Of the runs whose start-up "
             f"(imports, loading) ended before the deadline ({len(mine)}), the verifier's own overshoot plus the "
             f"exit: median {statistics.median(mine) if mine else float('nan'):.2f} s, "
             f"max {max(mine) if mine else float('nan'):.2f} s.", "",
             "| instance | workers | answer | wall s | overshoot s | start-up s | verifier past budget s | "
             "answer to exit s | load |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['instance']} | {r['workers']} | {r['answer']} | {r['wall_s']} | {r['overshoot_s']} | "
              f"{r['startup_s']} | {r['verifier_over_s']} | {r['exit_s']} | {r['load1']} |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
