"""Start-up: end-to-end wall time of ``nnaudit verify`` on quick ACAS Xu instances (issue #23).

    python bench/startup.py                      # defaults: under 2 minutes on an idle 2-core machine
    python bench/startup.py --runs 7 --agreement # and every ACAS Xu instance through both routes

Goal: the trivial instance (ACAS Xu 1_1, prop 1) end to end in at most 1.5 s on an idle machine.
Each instance is run as a subprocess of the console script (interpreter start-up, imports, loading,
search and exit, as a user sees it), ``--runs`` times per route, alternating the routes:

- ``torch``: ``nnaudit verify --route torch`` -- the route before the dense route existed (torch
  imported, branch and bound in torch); ``--route`` is a hidden option for benchmarks and tests;
- ``auto``: plain ``nnaudit verify`` -- small ReLU networks go to the dense route first
  (``verify/dense_bab.py``: NumPy only, torch never imported), then to the torch route if undecided.

It also records the ``python -X importtime`` breakdown of one run of each route (the largest
top-level imports), and with ``--agreement`` runs every instance of the ACAS Xu folder through the
dense route alone and the torch route alone (in this process) and counts where they agree with
each other and with VNN-COMP's expected.csv.  Writes ``bench/results/startup.csv`` and
``startup.md`` (the table; hand-written notes below the marker are kept).  The machine line and
the 1-minute load average before and after are part of the table: on a shared machine the times
are inflated.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
ACAS = ROOT / "tests" / "data" / "vnncomp" / "acasxu"
RESULTS = ROOT / "bench" / "results"
#: (network, property): the trivial instance first, then quick ones (two of them violated)
INSTANCES = [("1_1", "prop_1"), ("3_3", "prop_1"), ("4_5", "prop_10"), ("1_2", "prop_2"), ("1_9", "prop_4")]
ROUTES = ("torch", "auto")


def _command() -> list[str]:
    """The console script next to this interpreter, else ``python -m nnaudit.cli``."""
    script = Path(sys.executable).parent / "nnaudit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nnaudit.cli"]


def _paths(root: Path, net: str, prop: str) -> tuple[str, str]:
    return str(root / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"), str(root / "vnnlib" / f"{prop}.vnnlib")


def time_runs(root: Path, net: str, prop: str, runs: int) -> dict[str, dict]:
    """Per route: wall seconds of ``runs`` runs (routes alternating) and the verdict word."""
    out: dict[str, dict] = {r: {"times": [], "verdict": ""} for r in ROUTES}
    for _ in range(runs):
        for route in ROUTES:
            start = time.perf_counter()
            done = subprocess.run([*_command(), "verify", *_paths(root, net, prop), "--route", route,
                                   "--workers", "1", "--timeout", "60"], capture_output=True, text=True)
            out[route]["times"].append(time.perf_counter() - start)
            out[route]["verdict"] = (done.stdout.split() or ["error"])[0]
    return out


def import_breakdown(root: Path, route: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` largest top-level imports (cumulative seconds) of one run of ``route``."""
    net, prop = INSTANCES[0]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnaudit.cli", "verify", *_paths(root, net, prop),
                           "--route", route, "--workers", "1"], capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith("  ") or not cumulative.strip().isdigit():
            continue  # nested imports are inside their parents' cumulative time
        rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def agreement(root: Path, dense_timeout: float, torch_timeout: float) -> dict[str, int]:
    """Every instance of ``root``'s expected.csv through the dense route alone and the torch route
    alone: how many each decides, and agreements and disagreements (with each other, with the file)."""
    from nnaudit.verify.dense_bab import Route
    from nnaudit.verify.engine import VerifyConfig, verify_property

    counts = {"instances": 0, "dense decided": 0, "torch decided": 0, "both decided": 0, "routes agree": 0,
              "routes disagree": 0, "dense wrong vs expected": 0, "torch wrong vs expected": 0}
    rows = [line.split(",") for line in (root / "expected.csv").read_text().split()[1:]]
    for onnx, vnnlib, expected in rows:
        verdicts = {}
        for route, timeout in ((Route.DENSE, dense_timeout), (Route.TORCH, torch_timeout)):
            res = verify_property(root / onnx, root / vnnlib, config=VerifyConfig(timeout_s=timeout, route=route))
            verdicts[route] = res.verdict.vnncomp if res.verdict.value in ("holds", "violated") else None
        dense, torch_ = verdicts[Route.DENSE], verdicts[Route.TORCH]
        counts["instances"] += 1
        counts["dense decided"] += dense is not None
        counts["torch decided"] += torch_ is not None
        counts["both decided"] += dense is not None and torch_ is not None
        counts["routes agree"] += dense is not None and dense == torch_
        counts["routes disagree"] += dense is not None and torch_ is not None and dense != torch_
        counts["dense wrong vs expected"] += dense is not None and dense != expected
        counts["torch wrong vs expected"] += torch_ is not None and torch_ != expected
    return counts


def _table(timings: dict, imports: dict, agree: dict | None, args: argparse.Namespace, loads: tuple) -> str:
    lines = ["# Start-up: `nnaudit verify` end to end on quick ACAS Xu instances (bench/startup.py)", "",
             f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
             f"1-minute load average {loads[0]:.2f} before, {loads[1]:.2f} after (a shared machine inflates the "
             f"times). Run: `python bench/startup.py --runs {args.runs}`{' --agreement' if args.agreement else ''}. "
             "Goal (issue #23): 1_1 prop_1 at most 1.5 s on an idle machine. `torch`: `--route torch` (the "
             "route before the dense one); `auto`: the default (dense route first).", "",
             "| instance | route | verdict | runs | best s | median s |", "|---|---|---|---|---|---|"]
    for (net, prop), per in timings.items():
        for route in ROUTES:
            t = per[route]["times"]
            lines.append(f"| {net} {prop} | {route} | {per[route]['verdict']} | {len(t)} | {min(t):.2f} | "
                         f"{statistics.median(t):.2f} |")
    for route, rows in imports.items():
        lines += ["", f"Largest top-level imports of one `{route}` run of 1_1 prop_1 (`python -X importtime`):", "",
                  "| module | cumulative s |", "|---|---|"] + [f"| {name} | {sec:.3f} |" for name, sec in rows]
    if agree is not None:
        lines += ["", f"Every instance of {args.root.name}/expected.csv through each route alone (dense "
                      f"{args.dense_timeout:g} s, torch {args.torch_timeout:g} s):", "",
                  "| count | instances |", "|---|---|"] + [f"| {k} | {v} |" for k, v in agree.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per route of the trivial instance (others: half)")
    parser.add_argument("--root", type=Path, default=ACAS, help="the ACAS Xu folder (onnx/, vnnlib/, expected.csv)")
    parser.add_argument("--agreement", action="store_true", help="also every instance through both routes (slow)")
    parser.add_argument("--dense-timeout", type=float, default=2.0, help="--agreement: seconds per dense run")
    parser.add_argument("--torch-timeout", type=float, default=30.0, help="--agreement: seconds per torch run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of startup.csv and startup.md")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    timings = {(net, prop): time_runs(args.root, net, prop, args.runs if i == 0 else max(1, (args.runs + 1) // 2))
               for i, (net, prop) in enumerate(INSTANCES)}
    imports = {route: import_breakdown(args.root, route, 8) for route in ROUTES}
    agree = agreement(args.root, args.dense_timeout, args.torch_timeout) if args.agreement else None
    loads = (before, os.getloadavg()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "startup.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["instance", "route", "verdict", "runs", "best_s", "median_s", "load_1min"])
        for (net, prop), per in timings.items():
            for route in ROUTES:
                t = per[route]["times"]
                out.writerow([f"{net} {prop}", route, per[route]["verdict"], len(t), round(min(t), 3),
                              round(statistics.median(t), 3), round(loads[1], 2)])
    table = _table(timings, imports, agree, args, loads)
    write_results(args.out / "startup.md", table)
    print(table)


if __name__ == "__main__":
    main()
