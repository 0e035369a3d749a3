"""Benchmark the complete verifier on VNN-COMP instances, side by side with Marabou.

    python bench/verify_vnncomp.py --family acasxu --tools nnaudit,marabou --timeout 60 [--limit N]

Each instance runs in its own process under a hard wall-clock limit (timeout
+ 10 s grace).  Answers are compared with expected.csv: a ``sat``/``unsat``
that contradicts it is WRONG.  Rows are appended to
``bench/results/verify_<family>.csv`` as they finish (a rerun resumes, skipping
done rows); the summary table goes to ``bench/results/verify_<family>.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "vnncomp"
FIELDS = ["tool", "onnx", "vnnlib", "expected", "result", "time_s", "wrong"]

MARABOU_RUNNER = r"""
import sys
from maraboupy import Marabou, MarabouCore
net = Marabou.read_onnx(sys.argv[1])
opts = Marabou.createOptions(timeoutInSeconds=int(float(sys.argv[3])), verbosity=0)
exit_code, vals, _ = net.solve(propertyFilename=sys.argv[2], options=opts, verbose=False)
print("RESULT", exit_code)
"""


def instances(family: str, limit: int | None, select: str | None = None) -> list[tuple[str, str, str]]:
    folder = BENCH / family
    expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(open(folder / "expected.csv"))}
    rows = [(o, v, expected.get((o, v), "unknown")) for o, v, _ in csv.reader(open(folder / "instances.csv"))]
    if select:
        rows = [r for r in rows if re.search(select, f"{r[0]},{r[1]}")]
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def run_nnaudit(folder: Path, onnx: str, vnnlib: str, timeout: float, device: str = "cpu") -> str:
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "nnaudit.cli", "verify", str(folder / onnx), str(folder / vnnlib),
               "--timeout", str(timeout), "--result-file", str(res), "--no-progress"]
        cmd += [] if device == "cpu" else ["--device", device]
        subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
        return res.read_text().split("\n")[0].strip() if res.exists() else "error"


def run_marabou(folder: Path, onnx: str, vnnlib: str, timeout: float, device: str = "cpu") -> str:
    """Marabou on the CPU (``device`` is nnaudit's alone)."""
    cmd = [sys.executable, "-c", MARABOU_RUNNER, str(folder / onnx), str(folder / vnnlib), str(timeout)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            word = line.split()[1].lower()
            return {"sat": "sat", "unsat": "unsat", "timeout": "timeout"}.get(word, "unknown")
    return "error"


TOOLS = {"nnaudit": run_nnaudit, "marabou": run_marabou}


def run_one(tool: str, folder: Path, onnx: str, vnnlib: str, timeout: float,
            device: str = "cpu") -> tuple[str, float]:
    start = time.monotonic()
    try:
        result = TOOLS[tool](folder, onnx, vnnlib, timeout, device)
    except subprocess.TimeoutExpired:
        result = "timeout"
    return result, time.monotonic() - start


def result_row(tool: str, onnx: str, vnnlib: str, expected: str, result: str, secs: float) -> dict:
    """One CSV row; ``wrong`` when both answers are sat/unsat and they differ."""
    wrong = int(result in ("sat", "unsat") and expected in ("sat", "unsat") and result != expected)
    return {"tool": tool, "onnx": onnx, "vnnlib": vnnlib, "expected": expected, "result": result,
            "time_s": f"{secs:.2f}", "wrong": str(wrong)}


def summarise(rows: list[dict], tools: list[str], family: str, timeout: float, subset: str,
              gpu: str = "no GPU") -> str:
    lines = [f"# VNN-COMP {family}: nnaudit vs peers", "",
             f"Machine: {os.cpu_count()} cores, {gpu}, {platform.platform()}, Python {platform.python_version()}; "
             f"timeout {timeout:g} s per instance, each in its own process; {subset}.", "",
             "| tool | instances | holds (unsat) | violated (sat) | **wrong** | timeout | unknown | error | median s | total s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool]
        if not mine:
            continue
        count = lambda word: sum(r["result"] == word for r in mine)  # noqa: E731
        times = [float(r["time_s"]) for r in mine]
        lines.append(f"| {tool} | {len(mine)} | {count('unsat')} | {count('sat')} | "
                     f"{sum(r['wrong'] == '1' for r in mine)} | {count('timeout')} | {count('unknown')} | "
                     f"{count('error')} | {statistics.median(times):.2f} | {sum(times):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", required=True, choices=["acasxu", "mnist_fc"])
    ap.add_argument("--tools", default="nnaudit,marabou", help="comma-separated: nnaudit, marabou")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per instance")
    ap.add_argument("--limit", type=int, default=None, help="run an evenly spaced subset of this many instances")
    ap.add_argument("--select", default=None, help="only instances whose 'onnx,vnnlib' matches this regex")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder of the CSV and markdown table")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; expected one of {sorted(TOOLS)}")
    folder = BENCH / args.family
    out_csv = Path(args.out) / f"verify_{args.family}.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    done = list(csv.DictReader(open(out_csv))) if out_csv.exists() else []
    seen = {(r["tool"], r["onnx"], r["vnnlib"]) for r in done}
    todo = instances(args.family, args.limit, args.select)
    with open(out_csv, "a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if not done:
            writer.writeheader()
        for onnx, vnnlib, expected in todo:
            for tool in tools:
                if (tool, onnx, vnnlib) in seen:
                    continue
                result, secs = run_one(tool, folder, onnx, vnnlib, args.timeout)
                row = result_row(tool, onnx, vnnlib, expected, result, secs)
                wrong = int(row["wrong"])
                writer.writerow(row)
                fh.flush()
                done.append(row)
                print(f"{tool:8s} {onnx} {vnnlib} expected={expected} got={result} {secs:.1f}s{'  WRONG' if wrong else ''}", flush=True)
    # the table covers every row of the CSV (runs with different --select/--limit accumulate)
    total = len(instances(args.family, None))
    ran = len({(r["onnx"], r["vnnlib"]) for r in done})
    subset = f"subset of {ran} of {total} instances" if ran < total else "all instances"
    table = summarise(done, tools, args.family, args.timeout, subset)
    write_results(Path(args.out) / f"verify_{args.family}.md", table)
    print(table)


if __name__ == "__main__":
    main()
