"""Benchmark of region safety on the bundled digits networks.

For digits-ffn and digits-cnn and the first ``--limit`` test digits it checks
every region with the exact routes and with DLV, and prints per setting and
method the regions safe / unsafe / unknown and the median time per region.
Then, as in the DLV paper, it compares the adversarial examples DLV found
(confirmed by onnxruntime) with FGSM and JSMA from :mod:`nnaudit.attacks` on
the same images: success count, median L0 (values changed) and L2 distance.

    python bench/regions_digits.py --limit 100 --limit-second 20

Writes ``bench/results/regions_digits.csv`` and ``regions_digits.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from nnaudit.networks import zoo
from nnaudit.networks.datasets import digits
from nnaudit.networks.runtime import OnnxRuntimeModel
from nnaudit.verify.regions.dlv import DLVConfig
from nnaudit.verify.regions.api import RegionConfig, check_image
from nnaudit.verify.regions.spec import Manipulation
from results_file import write_results

RESULTS = Path(__file__).parent / "results"
#: (name, grid, manipulation) of the two settings
SETTINGS = [("A: 4x4 grid, step 0.1, 2 steps", "4x4", Manipulation(step=0.1, steps=2)),
            ("B: 2x2 grid, step 0.2, 1 step", "2x2", Manipulation(step=0.2, steps=1))]


NOTES = """Notes:
- `exact` is complete for the family (bounds over the hull, discrete attack, enumeration, bound splitting,
  Z3): an `unknown` only means the per-region time ran out. `dlv` is the paper's search at hidden layer 1: it
  says `unsafe` only for a confirmed member of the step grid and otherwise `unknown` (its guarantee is
  relative to its ladders and selected features), never `safe` at a hidden layer.
- DLV's adversarial examples include pre-images off the step grid (inside the region's box); every one is
  confirmed by onnxruntime. FGSM uses L-inf eps = step x steps on the whole image; JSMA is unbounded L0.
- Every `unsafe` region carries a counterexample re-checked by onnxruntime on the original ONNX file."""


def machine() -> str:
    return f"{os.cpu_count()} cores, no GPU, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def run_setting(net_name: str, grid: str, manip: Manipulation, limit: int, timeout: float,
                dlv: DLVConfig) -> tuple[dict, dict]:
    """Verdict counts and times per method, and DLV's adversarial examples per image."""
    net = zoo.load(net_name)
    ort = OnnxRuntimeModel(net.source)
    x, y = digits("test")
    stats: dict[str, dict] = {}
    adversarial: dict[int, list[np.ndarray]] = {}
    for method in ("exact", "dlv"):
        config = RegionConfig(timeout_per_region=timeout, dlv=dlv)
        counts = {"safe": 0, "unsafe": 0, "unknown": 0}
        times, routes, skipped = [], {}, 0
        for i in range(limit):
            res = check_image(net, x[i], int(y[i]), grid, manip, method=method, config=config, ort=ort, index=i)
            skipped += res.skipped is not None
            for r in res.regions:
                counts[r.verdict.value] += 1
                times.append(r.time_s)
                routes[r.route] = routes.get(r.route, 0) + 1
                if method == "dlv" and r.adversarial:
                    adversarial.setdefault(i, []).extend(r.adversarial)
        stats[method] = dict(counts, median_s=statistics.median(times) if times else float("nan"),
                             total_s=sum(times), routes=routes, skipped=skipped)
    return stats, adversarial


def compare_attacks(net_name: str, adversarial: dict[int, list[np.ndarray]], eps: float) -> list[dict]:
    """DLV vs FGSM (L-inf eps) and JSMA on the images where DLV found an adversarial example."""
    from nnaudit import attacks

    net = zoo.load(net_name)
    x, y = digits("test")
    idx = sorted(adversarial)
    rows = []
    if not idx:
        return rows
    l0 = [min(int(np.count_nonzero(a - x[i].astype(np.float64))) for a in adversarial[i]) for i in idx]
    l2 = [min(float(np.linalg.norm(a - x[i].astype(np.float64))) for a in adversarial[i]) for i in idx]
    rows.append(dict(net=net_name, attack="dlv", images=len(idx), successes=len(idx),
                     median_l0=statistics.median(l0), median_l2=statistics.median(l2)))
    xs = x[idx].reshape((len(idx),) + tuple(net.input_shape))
    for name, fn, kwargs in (("fgsm", attacks.fgsm, dict(eps=eps)), ("jsma", attacks.jsma, dict(eps=float("inf")))):
        res = fn(net, xs, y[idx], **kwargs)
        ok = np.asarray(res.success)
        rows.append(dict(net=net_name, attack=f"{name}" + (f" (eps {eps})" if name == "fgsm" else ""),
                         images=len(idx), successes=int(ok.sum()),
                         median_l0=statistics.median(res.norms["l0"][ok]) if ok.any() else float("nan"),
                         median_l2=statistics.median(res.norms["l2"][ok]) if ok.any() else float("nan")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=100, help="images for setting A")
    ap.add_argument("--limit-second", type=int, default=20, help="images for setting B")
    ap.add_argument("--timeout-per-region", type=float, default=5.0)
    ap.add_argument("--nets", default="digits-ffn,digits-cnn")
    args = ap.parse_args()
    start_all = time.perf_counter()
    dlv = DLVConfig(layer=1, num_features=4, feature_dims=3, mode="corners", exit_when="all")
    table, attack_rows = [], []
    for net_name in args.nets.split(","):
        for (label, grid, manip), limit in zip(SETTINGS, (args.limit, args.limit_second)):
            start = time.perf_counter()
            stats, adversarial = run_setting(net_name, grid, manip, limit, args.timeout_per_region, dlv)
            print(f"{net_name} {label}: {stats}  ({time.perf_counter() - start:.0f}s)", flush=True)
            for method, s in stats.items():
                table.append(dict(net=net_name, setting=label, images=limit, method=method, safe=s["safe"],
                                  unsafe=s["unsafe"], unknown=s["unknown"], median_s=round(s["median_s"], 4),
                                  total_s=round(s["total_s"], 1), skipped=s["skipped"],
                                  routes=" ".join(f"{k}:{v}" for k, v in sorted(s["routes"].items()))))
            rows = compare_attacks(net_name, adversarial, manip.step * manip.steps)
            attack_rows += [dict(r, setting=label) for r in rows]
    args.wall_s = time.perf_counter() - start_all
    write(table, attack_rows, args)


def write(table: list[dict], attack_rows: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "regions_digits.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    lines = [f"# Region safety on the digits zoo networks\n",
             f"Command: `python bench/regions_digits.py --limit {args.limit} --limit-second {args.limit_second} "
             f"--timeout-per-region {args.timeout_per_region}`; wall time {args.wall_s:.0f} s.\n", f"Machine: {machine()}; "
             f"timeout {args.timeout_per_region}s per region and method; DLV at layer 1, 4 features x 3 dims, "
             f"corners mode. Images that onnxruntime misclassifies are skipped (column `skipped`).\n",
             "| network | setting | images | method | safe | unsafe | unknown | median s/region | total s | skipped | routes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append("| " + " | ".join(str(r[k]) for k in ("net", "setting", "images", "method", "safe", "unsafe",
                                                              "unknown", "median_s", "total_s", "skipped", "routes")) + " |")
    lines += ["", "## Adversarial examples: DLV vs FGSM and JSMA (same images, confirmed by onnxruntime)\n",
              "Images: those where DLV found an adversarial example in some region (the closest one per image).\n",
              "| network | setting | attack | images | successes | median L0 | median L2 |", "|---|---|---|---|---|---|---|"]
    for r in attack_rows:
        lines.append(f"| {r['net']} | {r['setting']} | {r['attack']} | {r['images']} | {r['successes']} | "
                     f"{float(r['median_l0']):.1f} | {float(r['median_l2']):.3f} |")
    if not attack_rows:
        lines.append("| – | – | DLV found no adversarial example in these settings | | | | |")
    lines += ["", NOTES]
    write_results(RESULTS / "regions_digits.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
