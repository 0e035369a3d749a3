"""Benchmark the complete verifier on VNN-COMP 2021's oval21 (three CIFAR-10 conv nets, 30 instances),
beside Marabou in the same run (issue #27's development set).

    python bench/verify_oval21.py --timeout 60 [--limit N] [--tools nnaudit,marabou]
    python bench/verify_oval21.py --timeout 300 --tools nnaudit --out bench/results/oval21_300s \
        --decided-from bench/results/verify_oval21.csv   # only what 60 s left open runs again
    python bench/verify_oval21.py --tools nnaudit --device cuda --out bench/results/oval21_cuda  # a GPU

Each instance runs in its own process (``nnaudit verify`` with its default workers: all cores)
under a hard limit of timeout + 10 s; answers are checked against ``expected.csv`` (every
oval21 instance is ``unsat``: a ``sat`` is WRONG).  The machine's load average is recorded
with the table, since this 2-core machine is shared.  Rows go to
``bench/results/verify_oval21.csv`` (a rerun resumes), the table to ``verify_oval21.md``.
VNN-COMP 2022 (720 s per instance, GPUs): alpha-beta-CROWN 26/30, MN-BaB 20, VeriNet 18, nnenum 4.

Every oval21 answer is ``unsat``, so a tool that answered ``unsat`` to everything would look perfect.
Each run therefore adds one *control* per network: the input box of its first instance with the
property "the label's logit is at most another class's" (``Y_j <= Y_label``), which the box centre
violates (checked by onnxruntime before use): a control's answer must be ``sat``.  A tool that
answers ``unsat`` to a control is unsound on this family; the table says so next to its counts.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import re
import tempfile

import numpy as np

from results_file import write_results
from verify_vnncomp import BENCH, FIELDS, ROOT, TOOLS, instances, result_row, run_one, summarise

CONTROL = "control/"  # prefix of a control's vnnlib column in the CSV

FAMILY = "oval21"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", default="nnaudit,marabou", help="comma-separated: nnaudit, marabou")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per instance")
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of this many instances")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder of the CSV and markdown table")
    ap.add_argument("--decided-from", default=None,
                    help="CSV of a run at a shorter timeout: the instances it decided are taken from it, not rerun")
    ap.add_argument("--device", default="cpu", help="nnaudit's --device (cpu, cuda): its bounds on a GPU")
    args = ap.parse_args()
    if args.decided_from and not Path(args.decided_from).is_file():
        ap.error(f"--decided-from {args.decided_from}: no such file")
    tools = [t for t in args.tools.split(",") if t]
    if any(t not in TOOLS for t in tools):
        ap.error(f"expected tools among {sorted(TOOLS)}, got {tools}")
    folder, out_csv = BENCH / FAMILY, Path(args.out) / f"verify_{FAMILY}.csv"
    done = list(csv.DictReader(open(out_csv))) if out_csv.exists() else []
    seen = {(r["tool"], r["onnx"], r["vnnlib"]) for r in done}
    loads = [os.getloadavg()[0]]
    scratch = Path(tempfile.mkdtemp(prefix="oval21-controls-"))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if not done:
            writer.writeheader()
        carried = carry_decided(args.decided_from, tools, seen, writer, done) if args.decided_from else 0
        for onnx, vnnlib, expected in instances(FAMILY, args.limit) + controls(folder, args.limit, scratch):
            for tool in [t for t in tools if (t, onnx, vnnlib) not in seen]:
                path = scratch / vnnlib[len(CONTROL):] if vnnlib.startswith(CONTROL) else folder / vnnlib
                result, secs = run_one(tool, folder, onnx, str(path), args.timeout, args.device)
                loads.append(os.getloadavg()[0])
                row = result_row(tool, onnx, vnnlib, expected, result, secs)
                wrong = int(row["wrong"])
                writer.writerow(row)
                fh.flush()
                done.append(row)
                print(f"{tool:8s} {vnnlib} expected={expected} got={result} {secs:.1f}s"
                      f"{'  WRONG' if wrong else ''}", flush=True)
    total = len(instances(FAMILY, None))
    real = [r for r in done if not r["vnnlib"].startswith(CONTROL)]
    ran = len({(r["onnx"], r["vnnlib"]) for r in real})
    subset = f"subset of {ran} of {total} instances" if ran < total else "all instances"
    subset += f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} during this run (shared machine)"
    if args.decided_from:
        subset += (f"; {carried} answers decided by the shorter run `{Path(args.decided_from).name}` are taken "
                   "from it (time as measured there), only the rest ran at this timeout")
    text = summarise(real, tools, FAMILY, args.timeout, subset, gpu_name(args.device)) + control_table(done, tools)
    write_results(Path(args.out) / f"verify_{FAMILY}.md", text)
    print(text)


def gpu_name(device: str) -> str:
    """The machine line's GPU: the CUDA device nnaudit ran on, or "no GPU" (its bounds on the CPU)."""
    if device == "cpu":
        return "no GPU"
    import torch

    return f"nnaudit on {device} ({torch.cuda.get_device_name(torch.device(device))})"


def carry_decided(path: str, tools: list[str], seen: set, writer: csv.DictWriter, done: list[dict]) -> int:
    """Copy the rows of ``path`` (a run at a shorter timeout) that decided an instance (``unsat`` or
    ``sat``, controls included) for one of ``tools`` into this run: a search decided within the shorter
    timeout is decided within the longer one, so only the others need the longer runs."""
    carried = 0
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        key = (row["tool"], row["onnx"], row["vnnlib"])
        if row["tool"] in tools and row["result"] in ("unsat", "sat") and key not in seen:
            writer.writerow(row)
            done.append(row)
            seen.add(key)
            carried += 1
    return carried


def controls(folder: Path, limit: int | None, scratch: Path) -> list[tuple[str, str, str]]:
    """One violated control property per network of the run (see the module docstring), written to
    ``scratch``: ``(onnx, CONTROL + file name, "sat")``."""
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.verify.vnnlib import parse

    out, nets = [], {}
    for onnx, vnnlib, _ in instances(FAMILY, limit):
        nets.setdefault(onnx, vnnlib)
    for onnx, vnnlib in nets.items():
        text = (folder / vnnlib).read_text()
        label = int(re.search(r"\(<=\s*Y_(\d+)\s+Y_\d+\)", text).group(1))
        box = parse(folder / vnnlib).cases[0][0]
        centre = ((box.lower + box.upper) / 2).astype(np.float32)
        y = OnnxRuntimeModel(folder / onnx).run(centre[None])[0]
        other = int(np.argsort(y)[-2])  # the runner-up: Y_other <= Y_label holds at the centre
        assert int(np.argmax(y)) == label, f"{vnnlib}: the centre is not classified as {label}"
        inputs = text[:text.index("(assert (or")]
        name = Path(vnnlib).stem + "-control.vnnlib"
        (scratch / name).write_text(inputs + f"(assert (or (and (<= Y_{other} Y_{label}))))\n")
        out.append((onnx, CONTROL + name, "sat"))
    return out


def control_table(rows: list[dict], tools: list[str]) -> str:
    """The controls' answers per tool: every one must be ``sat``."""
    lines = ["", "Controls (one per network, violated at the box centre: the answer must be `sat`):", "",
             "| tool | controls | sat (right) | unsat (**unsound**) | other |", "|---|---|---|---|---|"]
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool and r["vnnlib"].startswith(CONTROL)]
        if mine:
            sat, unsat = (sum(r["result"] == w for r in mine) for w in ("sat", "unsat"))
            lines.append(f"| {tool} | {len(mine)} | {sat} | {unsat} | {len(mine) - sat - unsat} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
