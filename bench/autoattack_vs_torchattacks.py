"""Benchmark: nnaudit's AutoAttack (standard) against torchattacks' AutoAttack, side by side in one run.

Strength: worst-case robust accuracy of AutoAttack's standard evaluation
(APGD-CE -> APGD-T -> FAB-T -> Square, L-inf) by each tool on the same
network, images, eps and seed; BOTH tools' adversarial examples are judged by
onnxruntime on the original ONNX file (with its normalisation prepended for
cifar_base_kw), so the numbers are comparable.  Goal: nnaudit <= torchattacks
on every row and seed (``check``).  Speed: samples/s of the full standard
evaluation and of PGD-40 alone (nnaudit's PGD capped at torchattacks' gradient
count, ``budget=1.0``, and started, like torchattacks' ``random_start=True``, at a
random point of the ball, ``clean_first=False``), same torch threads.

torchattacks 3.5.1's ``AutoAttack`` builds APGD, APGD-T and FAB without
``steps``, so they run their constructors' default of 10 iterations, not the
reference's 100 (Square: 5000 queries in both).  nnaudit is therefore run
twice: at the reference budget (``nnaudit_robust``, its default) and at
torchattacks' budget (``*_same_budget``: 10 iterations); ``check`` and
``check_same_budget`` say whether each is <= torchattacks, and
``ratio_same_budget`` (torchattacks' time over nnaudit's) compares like for like.

Both tools attack the same float32 torch function (the one nnaudit builds
from the ONNX file, :func:`nnaudit.attacks.base.torch_logits`), wrapped as an
``nn.Module`` for torchattacks, with images in pixel space; mnist-net's input
``(1, 784, 1)`` is shown to torchattacks as ``(1, 28, 28)`` and the digits'
``(64,)`` as ``(1, 8, 8)`` (torchattacks' APGD and Square need 4-d images).
Timing: the torch function and the onnxruntime session are built
before either tool is timed (cached on the network, shared by both); each
tool's time runs from the images to a robust accuracy judged by onnxruntime
(nnaudit's own confirmation of every success, inside its call; for
torchattacks, the attack and then the same onnxruntime check of its outputs).
AutoAttack rows are timed once; PGD-40 rows ``--repeats`` times, the tools
interleaved (theirs, ours, theirs, ...) on the same inputs, and the median
of each is reported (a shared machine's load moves both alike).

Run (full): ``python bench/autoattack_vs_torchattacks.py --images 100 --seeds 5``;
``--models``, ``--threads``, ``--no-speed`` (no PGD-40 rows), ``--no-aa`` (PGD-40
rows only) narrow it.  Writes
``bench/results/autoattack.{csv,md}`` (hand-written notes below the marker kept).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import nnaudit.attacks as A
from nnaudit.attacks.autoattack import autoattack
from nnaudit.attacks.base import onnx_reference, torch_logits
from nnaudit.attacks.square import image_shape
from nnaudit.networks import datasets, zoo
from nnaudit.networks.loader import load
from nnaudit.networks.normalise import normalised
from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = Path(__file__).parent / "results"
CIFAR_MEAN, CIFAR_STD = (0.485, 0.456, 0.406), (0.225, 0.225, 0.225)
#: model -> eps pair (pixel space)
EPS = {"digits-ffn": (0.05, 0.1), "digits-cnn": (0.05, 0.1), "mnist-net_256x4": (0.02, 0.05),
       "cifar_base_kw": (2 / 255, 8 / 255)}


def _load(name: str, images: int) -> tuple[object, np.ndarray, np.ndarray, tuple[int, ...]]:
    """(network, x, y, shape torchattacks sees) for a benchmark model."""
    if name.startswith("digits"):
        x, y = datasets.digits("test")
        net = zoo.load(name)
        return net, x[:images].reshape((-1,) + tuple(net.input_shape)), y[:images], image_shape(tuple(net.input_shape))
    if name.startswith("mnist-net"):
        net = load(SHARED / "benchmarks/vnncomp/mnist_fc/onnx" / f"{name}.onnx")
        d = np.load(SHARED / "data/images/mnist_test_100.npz")
        return net, d["x"][:images].reshape((-1,) + tuple(net.input_shape)), d["y"][:images], (1, 28, 28)
    net = normalised(SHARED / "benchmarks/vnncomp/oval21/onnx" / f"{name}.onnx", CIFAR_MEAN, CIFAR_STD)
    d = np.load(SHARED / "data/images/cifar10_test_100.npz")
    return net, d["x"][:images], d["y"][:images], tuple(net.input_shape)


class _Module(torch.nn.Module):
    """nnaudit's torch function of the network as an nn.Module taking ``shape`` images."""

    def __init__(self, fn, input_shape: tuple[int, ...]) -> None:  # noqa: ANN001
        super().__init__()
        self.fn, self.input_shape = fn, input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x.reshape((len(x),) + self.input_shape))


def _robust(net, x: np.ndarray, y: np.ndarray, x_adv: np.ndarray) -> float:  # noqa: ANN001
    """Robust accuracy judged by onnxruntime: clean-correct and still correct at ``x_adv`` (inside the ball)."""
    ort = onnx_reference(net)
    clean = ort.run(x).argmax(axis=1) == y
    adv = ort.run(x_adv.reshape(x.shape)).argmax(axis=1) == y
    return float((clean & adv).mean())


def _torchattacks(kind: str, net, x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], eps: float,  # noqa: ANN001
                  seed: int) -> tuple[float, float]:
    """(robust accuracy by onnxruntime, seconds) of torchattacks' AutoAttack-standard or PGD-40."""
    import torchattacks

    model = _Module(torch_logits(net, torch.device("cpu")), tuple(net.input_shape)).eval()
    torch.manual_seed(seed)
    if kind == "aa":
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=net.output_size,
                                      seed=seed)
    else:
        atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 40, steps=40, random_start=True)
    xt, yt = torch.as_tensor(x.reshape((-1,) + shape)), torch.as_tensor(y)
    start = time.perf_counter()
    adv = atk(xt, yt).detach().numpy()
    over = np.abs(adv.reshape(len(x), -1) - x.reshape(len(x), -1)).max(axis=1) > eps + 1e-6
    adv[over] = x.reshape(adv.shape)[over]  # never credit a point outside the ball
    robust = _robust(net, x, y, adv)
    return robust, time.perf_counter() - start


#: torchattacks' AutoAttack leaves APGD, APGD-T and FAB at their constructors' 10 iterations (the reference: 100)
SAME_BUDGET = {"apgd-ce": {"steps": 10}, "apgd-t": {"steps": 10}, "fab-t": {"steps": 10}}


def _nnaudit(kind: str, net, x: np.ndarray, y: np.ndarray, eps: float, seed: int) -> tuple[float, float]:  # noqa: ANN001
    start = time.perf_counter()
    if kind.startswith("aa"):
        ev = autoattack(net, x, y, eps=[eps], seed=seed, options=SAME_BUDGET if kind == "aa-same" else None)
        return ev.robust_accuracy[eps], time.perf_counter() - start
    # torchattacks' PGD starts at a random point of the ball (random_start=True): so does this one
    # (clean_first=False; nnaudit's default first restart starts at x)
    res = A.pgd(net, x, y, eps=eps, steps=40, budget=1.0, clean_first=False, seed=seed)
    return float((res.clean_correct & ~res.success).mean()), time.perf_counter() - start


def _row(name: str, eps: float, kind: str, seed: int, net, x: np.ndarray, y: np.ndarray,  # noqa: ANN001
         shape: tuple[int, ...], repeats: int = 1) -> dict:
    """One table row: both tools on one model, eps and seed (AutoAttack: nnaudit at both budgets);
    PGD-40 ``repeats`` times interleaved, median times."""
    if kind != "aa":
        runs = [(_torchattacks(kind, net, x, y, shape, eps, seed), _nnaudit(kind, net, x, y, eps, seed))
                for _ in range(max(1, repeats))]
        (theirs, _), (same, _) = runs[0]
        t_theirs = float(np.median([r[0][1] for r in runs]))
        t_same = float(np.median([r[1][1] for r in runs]))
    else:
        theirs, t_theirs = _torchattacks(kind, net, x, y, shape, eps, seed)
        same, t_same = _nnaudit("aa-same", net, x, y, eps, seed)
    full, t_full = _nnaudit(kind, net, x, y, eps, seed) if kind == "aa" else (same, t_same)
    n, aa = len(y), kind == "aa"  # PGD-40 is run once, at the same budget: no separate same-budget columns
    return {"model": name, "eps": round(eps, 5), "attack": "autoattack-standard" if aa else "pgd-40",
            "seed": seed, "images": n, "nnaudit_robust": full, "nnaudit_robust_same_budget": same if aa else "",
            "torchattacks_robust": theirs, "check": "ok" if full <= theirs else "WEAKER",
            "check_same_budget": ("ok" if same <= theirs else "WEAKER") if aa else "",
            "nnaudit_samples_s": round(n / t_full, 2),
            "nnaudit_same_budget_samples_s": round(n / t_same, 2) if aa else "",
            "torchattacks_samples_s": round(n / t_theirs, 2), "ratio_same_budget": round(t_theirs / t_same, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(EPS))
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-speed", action="store_true", help="skip the PGD-40 rows")
    ap.add_argument("--no-aa", action="store_true", help="skip the AutoAttack rows (PGD-40 rows only)")
    ap.add_argument("--repeats", type=int, default=5, help="PGD-40 runs per tool, interleaved (median time)")
    ap.add_argument("--append", action="store_true", help="keep the rows of the CSV already written (other models)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = _previous() if args.append else []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        net, x, y, shape = _load(name, args.images)
        torch_logits(net, torch.device("cpu")), onnx_reference(net)  # built once, outside both tools' timings
        kinds = [k for k, off in (("aa", args.no_aa), ("pgd40", args.no_speed)) if not off]
        for eps in EPS[name]:
            for kind in kinds:
                for seed in range(args.seeds) if kind == "aa" else range(1):
                    rows.append(_row(name, eps, kind, seed, net, x, y, shape, args.repeats))
                    print(rows[-1], flush=True)
                    _write(rows, args)  # after every row: an interrupted run keeps what it measured


def _previous() -> list[dict]:
    """The rows of ``autoattack.csv`` as written (strings), to extend with ``--append``."""
    path = RESULTS / "autoattack.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(rows: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "autoattack.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = list(rows[0])
    lines = [f"# AutoAttack (standard, L-inf): nnaudit vs torchattacks {_version()}", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
             f"{args.threads}, load average {load:.2f} at the end of the last invocation "
             f"(`python bench/autoattack_vs_torchattacks.py --images {args.images} --seeds {args.seeds} "
             f"--models {args.models}{' --no-aa' if args.no_aa else ''}"
             f"{' --no-speed' if args.no_speed else f' --repeats {args.repeats}'}"
             f"{' --append' if args.append else ''}`); images and seeds per row as listed. "
             "Full run: `--images 100 --seeds 5`. Robust accuracy by onnxruntime for both tools.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(k, r[k]) for k in head) + " |" for r in rows]
    write_results(RESULTS / "autoattack.md", "\n".join(lines) + "\n")


def _cell(key: str, value: object) -> str:
    """A table cell: robust accuracies as percentages, other values as written."""
    if "robust" in key and value not in ("", None):
        return f"{float(value):.1%}"  # type: ignore[arg-type]
    return str(value)


def _version() -> str:
    import torchattacks

    return torchattacks.__version__


if __name__ == "__main__":
    main()
