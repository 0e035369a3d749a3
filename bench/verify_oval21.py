"""Benchmark the complete verifier on VNN-COMP 2021's oval21 (three CIFAR-10 conv nets, 30 instances),
beside Marabou in the same run (issue #27's development set).

    python bench/verify_oval21.py --timeout 60 [--limit N] [--tools nnaudit,marabou]

Each instance runs in its own process (``nnaudit verify`` with its default workers: all cores)
under a hard limit of timeout + 10 s; answers are checked against ``expected.csv`` (every
oval21 instance is ``unsat``: a ``sat`` is WRONG).  The machine's load average is recorded
with the table, since this 2-core machine is shared.  Rows go to
``bench/results/verify_oval21.csv`` (a rerun resumes), the table to ``verify_oval21.md``.
VNN-COMP 2022 (720 s per instance, GPUs): alpha-beta-CROWN 26/30, MN-BaB 20, VeriNet 18, nnenum 4.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from results_file import write_results
from verify_vnncomp import BENCH, FIELDS, ROOT, TOOLS, instances, result_row, run_one, summarise

FAMILY = "oval21"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", default="nnaudit,marabou", help="comma-separated: nnaudit, marabou")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per instance")
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of this many instances")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder of the CSV and markdown table")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if any(t not in TOOLS for t in tools):
        ap.error(f"expected tools among {sorted(TOOLS)}, got {tools}")
    folder, out_csv = BENCH / FAMILY, Path(args.out) / f"verify_{FAMILY}.csv"
    done = list(csv.DictReader(open(out_csv))) if out_csv.exists() else []
    seen = {(r["tool"], r["onnx"], r["vnnlib"]) for r in done}
    loads = [os.getloadavg()[0]]
    with open(out_csv, "a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if not done:
            writer.writeheader()
        for onnx, vnnlib, expected in instances(FAMILY, args.limit):
            for tool in [t for t in tools if (t, onnx, vnnlib) not in seen]:
                result, secs = run_one(tool, folder, onnx, vnnlib, args.timeout)
                loads.append(os.getloadavg()[0])
                row = result_row(tool, onnx, vnnlib, expected, result, secs)
                wrong = int(row["wrong"])
                writer.writerow(row)
                fh.flush()
                done.append(row)
                print(f"{tool:8s} {vnnlib} expected={expected} got={result} {secs:.1f}s"
                      f"{'  WRONG' if wrong else ''}", flush=True)
    total = len(instances(FAMILY, None))
    ran = len({(r["onnx"], r["vnnlib"]) for r in done})
    subset = f"subset of {ran} of {total} instances" if ran < total else "all instances"
    subset += f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} during this run (shared machine)"
    write_results(Path(args.out) / f"verify_{FAMILY}.md", summarise(done, tools, FAMILY, args.timeout, subset))
    print(summarise(done, tools, FAMILY, args.timeout, subset))


if __name__ == "__main__":
    main()
