"""Benchmark: DLV's composed search against FGSM and JSMA on the same images.

DLV (:mod:`nnaudit.verify.regions.dlv`, the path search of Huang et al.,
CAV 2017) searches the discretized family of the whole image (every value
moves by ``k * step``, ``|k| <= steps``, clipped to [0, 1]) at the layers
given by ``--layers`` (0: the input; 1: the first hidden layer, mapped back
to the input with Z3); FGSM gets the same L-inf box (``eps = step * steps``),
JSMA is unbounded in L0 (theta 1, gamma 0.1).  Networks: mnist-net_256x4
(VNN-COMP mnist_fc) on ``mnist_test_100.npz`` and cifar_base_kw with its
normalisation (mean 0.485,0.456,0.406, std 0.225) on
``cifar10_test_100.npz``; the first ``--images`` images each, those
onnxruntime misclassifies skipped.  Every adversarial example, of every
method, is confirmed by onnxruntime on the original file.  Reported per
method: adversarial examples found and the median and mean L0 (values
changed) and L2 of the confirmed ones, and the time.  Writes
``bench/results/dlv_vs_attacks.{csv,md}``.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/dlv_vs_attacks.py --images 10``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrix products: threads only contend

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from results_file import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
SHARED = Path("/work/shared")
DATASETS = {
    "mnist": dict(model=SHARED / "benchmarks/vnncomp/mnist_fc/onnx/mnist-net_256x4.onnx",
                  images=SHARED / "data/images/mnist_test_100.npz", mean=None, std=None),
    "cifar": dict(model=ROOT / "tests/data/cifar10/cifar_base_kw.onnx",
                  images=SHARED / "data/images/cifar10_test_100.npz", mean=(0.485, 0.456, 0.406), std=(0.225,)),
}


def load_dataset(name: str, n: int) -> tuple[object, np.ndarray, np.ndarray]:
    from nnaudit.networks import load, normalised

    d = DATASETS[name]
    net = load(d["model"]) if d["mean"] is None else normalised(str(d["model"]), mean=d["mean"], std=d["std"])
    data = np.load(d["images"])
    x, y = data["x"][:n].astype(np.float32), data["y"][:n].astype(np.int64)
    return net, x.reshape((len(x),) + tuple(net.input_shape)), y


def run_dlv(net: object, x: np.ndarray, y: np.ndarray, layer: int, step: float, steps: int,
            timeout: float) -> dict:
    from nnaudit.networks.runtime import reference
    from nnaudit.verify.regions.api import RegionConfig, check_image
    from nnaudit.verify.regions.dlv import DLVConfig
    from nnaudit.verify.regions.spec import Manipulation

    ort = reference(net)
    cfg = RegionConfig(timeout_per_region=timeout, dlv=DLVConfig(layer=layer, mode="corners"))
    found, l0, l2, tried, start = 0, [], [], 0, time.perf_counter()
    for i in range(len(x)):
        res = check_image(net, x[i], int(y[i]), "whole", Manipulation(step=step, steps=steps), method="dlv",
                          config=cfg, ort=ort)
        if res.skipped:
            continue
        tried += 1
        r = res.regions[0]
        if r.verdict.value == "unsafe":
            cex = r.counterexample
            pred = ort.predict(cex.x.astype(np.float32).reshape((1,) + tuple(net.input_shape)))[0]
            assert pred != y[i], "DLV counterexample not confirmed by onnxruntime"
            found += 1
            l0.append(cex.l0)
            l2.append(cex.l2)
    return dict(images=tried, found=found, l0=l0, l2=l2, seconds=time.perf_counter() - start)


def run_attack(name: str, net: object, x: np.ndarray, y: np.ndarray, eps: float) -> dict:
    from nnaudit import attacks
    from nnaudit.networks.runtime import reference

    ort = reference(net)
    keep = ort.predict(x) == y
    start = time.perf_counter()
    if name == "fgsm":
        res = attacks.fgsm(net, x[keep], y[keep], eps=eps)
    else:
        res = attacks.jsma(net, x[keep], y[keep], eps=float("inf"))
    ok = np.asarray(res.success)
    adv = np.asarray(res.x_adv)[ok]
    if ok.any():
        assert np.all(ort.predict(adv.astype(np.float32)) != y[keep][ok]), f"{name}: not confirmed by onnxruntime"
    return dict(images=int(keep.sum()), found=int(ok.sum()), l0=list(res.norms["l0"][ok]),
                l2=list(res.norms["l2"][ok]), seconds=time.perf_counter() - start)


def row(dataset: str, method: str, r: dict) -> dict:
    def med(v: list) -> float:
        return round(float(statistics.median(v)), 3) if v else float("nan")

    def mean(v: list) -> float:
        return round(float(np.mean(v)), 3) if v else float("nan")

    return dict(dataset=dataset, method=method, images=r["images"], found=r["found"], median_l0=med(r["l0"]),
                mean_l0=mean(r["l0"]), median_l2=med(r["l2"]), mean_l2=mean(r["l2"]),
                seconds=round(r["seconds"], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10, help="first N images of each dataset")
    ap.add_argument("--datasets", default="mnist,cifar", help="comma-separated: mnist, cifar")
    ap.add_argument("--layers", default="0,1", help="DLV layers to run (0: input)")
    ap.add_argument("--step", type=float, default=0.1, help="DLV step (pixel units); FGSM eps = step x steps")
    ap.add_argument("--steps", type=int, default=2, help="DLV steps each side")
    ap.add_argument("--timeout", type=float, default=15.0, help="DLV seconds per image")
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    rows = []
    for ds in datasets:
        net, x, y = load_dataset(ds, args.images)
        for layer in (int(v) for v in args.layers.split(",")):
            r = run_dlv(net, x, y, layer, args.step, args.steps, args.timeout)
            rows.append(row(ds, f"dlv layer {layer}", r))
            print(rows[-1], flush=True)
            write(rows, args, datasets)  # after every row: an interrupted run keeps what it measured
        for name in ("fgsm", "jsma"):
            rows.append(row(ds, name + (f" (eps {args.step * args.steps:g})" if name == "fgsm" else ""),
                            run_attack(name, net, x, y, args.step * args.steps)))
            print(rows[-1], flush=True)
            write(rows, args, datasets)


def write(rows: list[dict], args: argparse.Namespace, datasets: list[str]) -> None:
    """The table of ``rows``, with the CSV's rows of the datasets this run does not measure kept
    (``--datasets mnist`` and ``--datasets cifar`` may run side by side, one process each)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "dlv_vs_attacks.csv"
    kept = [r for r in csv.DictReader(open(path))] if path.exists() else []
    rows = [r for r in kept if r["dataset"] not in datasets] + rows
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    machine = f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"
    lines = ["# DLV vs FGSM vs JSMA", "",
             f"Machine: {machine}; {args.images} images per dataset; DLV: whole image, step {args.step}, steps "
             f"{args.steps}, path search, corners, {args.timeout:g} s per image; FGSM eps {args.step * args.steps:g}; "
             "JSMA unbounded L0. Every adversarial example confirmed by onnxruntime.", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    write_results(RESULTS / "dlv_vs_attacks.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
