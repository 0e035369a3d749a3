"""Benchmark of region safety on real VNN-COMP networks: how fast the bounds route decides.

Settings (``--settings`` picks some by key):

- ``mnist``: mnist-net_256x4 (VNN-COMP mnist_fc, input (1, 784, 1)), 7x7 grid, step 0.05, 2 steps;
- ``cifar-2/255-1``, ``cifar-2/255-2``, ``cifar-0.05-1``, ``cifar-0.05-2``: oval21 cifar_base_kw with the
  input normalisation ``--mean 0.485,0.456,0.406 --std 0.225``, 4x4 grid, step 2/255 or 0.05, 1 or 2 steps.

For the first ``--images`` test images of each setting it runs
:func:`nnaudit.verify.regions.api.check_image` (the exact routes; every region's hull is bounded on its
cone of influence, :mod:`nnaudit.verify.regions.batch`) and reports the regions decided, regions per
second over the whole setting (network loading included), the median and p95 time per region (all
regions, and those the bounds decide), and the peak RSS.  As the "before" figure it times today's
one-at-a-time bound (``spec_bounds`` over the full network and the hull) on the first
``--reference`` hulls and checks that the two bounds agree.  auto_LiRPA, the speed anchor, is tried on
the same hulls with CROWN; it does not import with this environment's numpy 2 and torch 2.13 (the
markdown records the error; no numbers are given for it).

``--bank`` (default 1) lets a region spend, on top of its ``--timeout-per-region``, what the image's
earlier regions left unused, up to that many timeouts more (an image never takes more than its
regions' timeouts together); ``--bank 0`` is the fixed budget per region.  A run of some settings keeps
the other settings' rows of the existing CSV and table (the command line names them).

    python bench/regions_real.py --images 100
    python bench/regions_real.py --images 5 --settings mnist,cifar-0.05-2

Writes ``bench/results/regions_real.csv`` and ``regions_real.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results_file import write_results

RESULTS = Path(__file__).parent / "results"
SHARED = Path(os.environ.get("NNAUDIT_SHARED", "/work/shared"))
MNIST_NET = SHARED / "benchmarks/vnncomp/mnist_fc/onnx/mnist-net_256x4.onnx"
CIFAR_NET = SHARED / "benchmarks/vnncomp/oval21/onnx/cifar_base_kw.onnx"
MNIST_DATA = SHARED / "data/images/mnist_test_100.npz"
CIFAR_DATA = SHARED / "data/images/cifar10_test_100.npz"
CIFAR_NORM = ((0.485, 0.456, 0.406), (0.225,))


@dataclass(frozen=True)
class Setting:
    key: str
    model: Path
    data: Path
    grid: str
    step: float
    steps: int
    normalised: bool = False


SETTINGS = [Setting("mnist", MNIST_NET, MNIST_DATA, "7x7", 0.05, 2)] + [
    Setting(f"cifar-{name}-{n}", CIFAR_NET, CIFAR_DATA, "4x4", step, n, True)
    for name, step in (("2/255", 2 / 255), ("0.05", 0.05)) for n in (1, 2)]


def machine() -> str:
    import torch

    return (f"{os.cpu_count()} cores, no GPU, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_setting(s: Setting):  # noqa: ANN201
    """The network (normalised for CIFAR), its onnxruntime session and the images."""
    from nnaudit.networks import load
    from nnaudit.networks.normalise import Normalisation
    from nnaudit.networks.runtime import reference

    net = load(s.model, normalisation=Normalisation(*CIFAR_NORM)) if s.normalised else load(s.model)
    d = np.load(s.data)
    return net, reference(net), d["x"], d["y"]


def run_setting(s: Setting, images: int, timeout: float, bank: float = 0.0) -> tuple[dict, list]:
    """One setting: counts and times, and the ``(context, family)`` of the bounds-decided regions."""
    from nnaudit.verify.regions.api import RegionConfig, check_image
    from nnaudit.verify.regions.check import make_context
    from nnaudit.verify.regions.spec import Manipulation, make_family

    start = time.perf_counter()
    net, ort, x, y = load_setting(s)
    manip = Manipulation(step=s.step, steps=s.steps)
    config = RegionConfig(timeout_per_region=timeout, bank=bank)
    times, bound_times, verdicts, hulls, skipped, relu = [], [], {}, [], 0, 0
    for i in range(images):
        if i and i % 10 == 0:   # progress on stderr, so that a long run can be read before it ends
            print(f"{s.key}: {i} images, {time.perf_counter() - start:.0f} s, {verdicts}", file=sys.stderr, flush=True)
        res = check_image(net, x[i], int(y[i]), s.grid, manip, config=config, ort=ort, index=i)
        skipped += res.skipped is not None
        for r in res.regions:
            times.append(r.time_s)
            verdicts[r.verdict.value] = verdicts.get(r.verdict.value, 0) + 1
            relu += r.stats.get("decided_by", "").startswith("relu split")
            if r.route == "bounds" and r.verdict.value == "safe" and "decided_by" not in r.stats:
                bound_times.append(r.time_s)
                if len(hulls) < 64:
                    ctx = make_context(net, x[i], ort=ort)
                    hulls.append((ctx, make_family(ctx.x0, np.asarray(r.pixels), manip)))
    wall = time.perf_counter() - start
    n = len(times)
    decided = verdicts.get("safe", 0) + verdicts.get("unsafe", 0)
    row = dict(setting=s.key, images=images, skipped=skipped, regions=n, safe=verdicts.get("safe", 0),
               unsafe=verdicts.get("unsafe", 0), unknown=verdicts.get("unknown", 0), bounds=len(bound_times), relu=relu,
               decided_pct=round(100 * decided / n, 1) if n else 0.0, regions_per_s=round(n / wall, 2),
               median_ms=_ms(times, 50), p95_ms=_ms(times, 95), bounds_median_ms=_ms(bound_times, 50),
               bounds_p95_ms=_ms(bound_times, 95), wall_s=round(wall, 1), peak_rss_mb=round(peak_rss_mb()))
    return row, hulls


def _ms(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return round(1000 * float(np.percentile(values, q)), 1)


def reference(hulls: list, count: int) -> dict:
    """Today's one-at-a-time full-network bound on the first ``count`` hulls: its median time and the
    largest difference from the cone's bound."""
    from nnaudit.verify.bounds import spec_bounds
    from nnaudit.verify.regions.batch import hull_margins, spec_matrix

    took, diff = [], 0.0
    for ctx, fam in hulls[:count]:
        lo, hi = fam.hull()
        c = spec_matrix(ctx.network.output_size, ctx.label)
        t = time.perf_counter()
        full = float(spec_bounds(ctx.lowered, lo[None], hi[None], c, np.zeros(len(c)))[0].min())
        took.append(time.perf_counter() - t)
        diff = max(diff, abs(full - float(hull_margins([ctx], [fam]).margins[0])))
    return dict(full_net_ms=_ms(took, 50), full_net_regions=len(took), max_bound_diff=f"{diff:.1e}")


def lirpa_status() -> str:
    """``"ok"`` when auto_LiRPA imports, else the exception it raised."""
    try:
        import auto_LiRPA  # noqa: F401
    except Exception as e:  # noqa: BLE001  (any import failure is the finding)
        return f"{type(e).__name__}: {e}"
    return "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100, help="images per setting")
    ap.add_argument("--settings", default=",".join(s.key for s in SETTINGS),
                    help=f"comma-separated keys: {', '.join(s.key for s in SETTINGS)}")
    ap.add_argument("--timeout-per-region", type=float, default=10.0, help="seconds per region")
    ap.add_argument("--reference", type=int, default=16, help="hulls timed with today's full-network bound")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--bank", type=float, default=1.0,
                    help="time bank: a region may also spend what the image's earlier regions left unused of "
                         "their --timeout-per-region, up to this many timeouts more (0: a fixed budget per region)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    keys = args.settings.split(",")
    unknown = sorted(set(keys) - {s.key for s in SETTINGS})
    if unknown:
        ap.error(f"unknown settings {unknown}; expected some of {[s.key for s in SETTINGS]}")
    lirpa = lirpa_status()
    start_all = time.perf_counter()
    table = []
    for s in [s for s in SETTINGS if s.key in keys]:
        row, hulls = run_setting(s, args.images, args.timeout_per_region, args.bank)
        row.update(reference(hulls, args.reference))
        print(row, flush=True)
        table.append(row)
    args.wall_s = time.perf_counter() - start_all
    write(table, args, lirpa)


COLUMNS = ["setting", "images", "skipped", "regions", "safe", "unsafe", "unknown", "bounds", "relu", "decided_pct",
           "regions_per_s", "median_ms", "p95_ms", "bounds_median_ms", "bounds_p95_ms", "full_net_ms",
           "max_bound_diff", "wall_s", "peak_rss_mb"]

NOTES = """Columns: `bounds` = regions proved SAFE by the first (batched) hull bound; `relu` = regions decided by
the ReLU-splitting search over the hull (`verify/regions/relu_bab.py`); `decided_pct` = safe + unsafe; `regions_per_s` =
regions / wall time of the setting (loading the network and onnxruntime included); `median_ms`/`p95_ms` over all
regions, `bounds_*` over the bounds-decided ones (each region's time includes its share of the batched bound);
`full_net_ms` = median time of today's one-at-a-time `spec_bounds` over the full network on the same hulls (the
"before"), `max_bound_diff` = largest difference between it and the cone bound; `peak_rss_mb` = the process's peak
RSS so far (settings run in order in one process). Cone passes bound at most 32 boxes each (one region, several
images); a single image's regions are one pass each (their cones differ)."""


def merged(table: list[dict]) -> tuple[list[dict], list[str]]:
    """This run's rows with the earlier rows of the settings it did not run (from the CSV), in
    :data:`SETTINGS` order, and the keys of the kept earlier rows."""
    path = RESULTS / "regions_real.csv"
    earlier = {}
    if path.exists():
        with open(path, newline="") as f:
            earlier = {r["setting"]: r for r in csv.DictReader(f)}
    new = {r["setting"]: r for r in table}
    kept = [k for k in earlier if k not in new]
    rows = {**earlier, **new}
    order = [s.key for s in SETTINGS if s.key in rows] + [k for k in rows if k not in {s.key for s in SETTINGS}]
    return [rows[k] for k in order], kept


def write(table: list[dict], args: argparse.Namespace, lirpa: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    table, kept = merged(table)
    with open(RESULTS / "regions_real.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    lines = ["# Region safety on real networks: the bounds route's speed\n",
             f"Command: `python bench/regions_real.py --images {args.images} --settings {args.settings} "
             f"--timeout-per-region {args.timeout_per_region} --threads {args.threads} --bank {args.bank}`; "
             f"wall time {args.wall_s:.0f} s."
             + (f" Rows {', '.join(kept)}: kept from earlier runs (see the notes).\n" if kept else "\n"),
             f"Machine: {machine()}.\n",
             "auto_LiRPA 0.3 (speed and tightness anchor): "
             + ("imports, but this script has no comparison with it yet" if lirpa == "ok"
                else f"does not import: `{lirpa}`") + ".\n",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in COLUMNS) + " |" for r in table]
    lines += ["", NOTES]
    write_results(RESULTS / "regions_real.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
