"""Benchmark: nnaudit's PGD and CW against torchattacks, side by side in one run.

Same zoo networks (the float32 torch function nnaudit builds from each ONNX
file is handed to torchattacks too: for digits-ffn its dense-chain form,
:mod:`nnaudit.networks.torch_chain`, whose forward pass is ``addmm`` and
``relu``; nnaudit's PGD also takes that form's hand-written input gradient,
torchattacks differentiates it by autograd), same data (bundled digits, test split), same
eps, steps, step size and seed, same number of torch threads.  Every
adversarial example of BOTH tools is judged by onnxruntime on the original
ONNX file, so robust accuracies are comparable.  Prints and writes
``bench/results/attacks_vs_torchattacks.{csv,md}``:

- robust accuracy of each tool (nnaudit's must be no higher than
  torchattacks': a weaker attack is a bug; the ``check`` column says so),
  compared at the timed seed and at ``--check-seeds - 1`` more (untimed; the
  ``*_seeds`` columns give mean [min, max] over all of them);
- the headline rows are like for like (``budget`` "same"): nnaudit's PGD
  with its default restarts (the first from the clean input, the second from
  a random point for unbroken samples only, per-sample early stop) capped at
  torchattacks' gradient count (``budget=1.0``: at most steps x samples
  gradients in all, a restart only runs if it can be paid in full; on the
  CPU the second starts beside the first, for the samples not broken yet,
  as soon as the budget pays for both) against
  torchattacks' PGD (one random start, exactly steps x samples gradients);
  and both CWs at c = 1 without binary search.  Same steps and the same step
  size 2.5 * eps / steps;
- nnaudit's defaults are shown too, marked by their budget: PGD with 2
  uncapped restarts (up to 2x torchattacks' gradients) and CW with its
  6-round binary search over c (up to 6x);
- ``grad_ratio``: the gradients nnaudit actually computed over torchattacks'
  (counted in an extra untimed run of each);
- throughput in samples/s (best of ``--repeats`` timed runs, input already
  in memory) and the ratio nnaudit / torchattacks (goal >= 1.0 on the
  like-for-like rows).

nnaudit's time includes its input checks, the projection into the threat
model and the onnxruntime confirmation of every success; torchattacks' does
not.  Run: ``python bench/attacks_vs_torchattacks.py [--samples N] [--device cpu]``
(torchattacks: ``pip install --no-deps torchattacks``).
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
from nnaudit.attacks.base import torch_logits
from nnaudit.networks import datasets, zoo
from nnaudit.networks.runtime import OnnxRuntimeModel
from results_file import write_results

RESULTS = Path(__file__).parent / "results"
NETWORKS = ("digits-ffn", "digits-cnn")
LABELS = {"pgd-same": "pgd-{steps} same budget", "pgd": "pgd-{steps} default", "cw": "cw-{steps} c=1",
          "cw-search": "cw-{steps} search"}
#: nnaudit's gradient budget relative to torchattacks' (the ``grad_ratio`` column gives what was used)
BUDGET = {"pgd-same": "same", "pgd": "up to 2x", "cw": "same", "cw-search": "up to 6x"}


def _torchattacks_run(kind: str, model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int,
                      seed: int, device: torch.device) -> tuple[np.ndarray, float]:
    import torchattacks

    torch.manual_seed(seed)
    if kind.startswith("pgd"):
        atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    else:
        atk = torchattacks.CW(model, c=1.0, kappa=0.0, steps=steps, lr=0.01)
    atk.set_device(device)
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor(y, device=device)
    start = time.perf_counter()
    adv = atk(xt, yt)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return adv.detach().cpu().numpy().astype(np.float32), time.perf_counter() - start


def _nnaudit_run(kind: str, net, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int, seed: int,
                 device: str, graph: bool | None = None) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    if kind.startswith("pgd"):  # nnaudit's default 2 restarts; "pgd-same": capped at torchattacks' gradients
        budget = 1.0 if kind == "pgd-same" else None
        res = A.pgd(net, x, y, eps=eps, steps=steps, step_size=2.5 * eps / steps, restarts=2, budget=budget,
                    seed=seed, device=device, batch_size=len(x), graph=graph)
    elif kind == "cw":  # torchattacks' configuration: fixed c = 1, no binary search
        res = A.cw(net, x, y, eps=float("inf"), norm="l2", binary_search_steps=1, initial_const=1.0, steps=steps,
                   lr=0.01, seed=seed, device=device, batch_size=len(x), graph=graph)
    else:  # nnaudit's default CW: 6 rounds of binary search over c, each of `steps` steps
        res = A.cw(net, x, y, eps=float("inf"), norm="l2", steps=steps, lr=0.01, seed=seed, device=device,
                   batch_size=len(x), graph=graph)
    return res.x_adv, time.perf_counter() - start, res.robust_accuracy


class _Module(torch.nn.Module):
    """nnaudit's torch conversion, with the flat logits torchattacks expects; counts the
    gradients asked of it (rows of inputs that require grad) while ``gradients`` is not None."""

    def __init__(self, net, device: torch.device) -> None:
        super().__init__()
        self.f = torch_logits(net, device)
        self.gradients: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradients is not None and x.requires_grad:
            self.gradients += len(x)
        return self.f(x)


def _gradient_ratio(kind: str, net, module: _Module, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int,
                    args) -> float:
    """Gradients nnaudit computed over torchattacks' (one per sample per step), in an untimed extra run:
    nnaudit's cached torch function is wrapped for the run (``torch_logits`` caches it in the network).
    On CUDA, PGD's restarts and CW's rounds are counted in their eager form: the CUDA graph that
    replays one on the whole batch padded to a multiple of 64 rows also computes, and throws away, the
    gradients of rows done or padded (and CW's of the steps after an early abort), and a counting
    wrapper in it would count its capture, not its replays."""
    key = f"attack-logits:{torch.device(args.device)}"
    inner, used = net._torch_cache[key], []

    def counting(t: torch.Tensor) -> torch.Tensor:
        if t.requires_grad:
            used.append(len(t))
        return inner(t)

    net._torch_cache[key] = counting
    try:
        _nnaudit_run(kind, net, x, y, eps=eps, steps=steps, seed=args.seed, device=args.device, graph=False)
    finally:
        net._torch_cache[key] = inner
    module.gradients = 0
    _torchattacks_run(kind, module, x, y, eps=eps, steps=steps, seed=args.seed, device=torch.device(args.device))
    ratio, module.gradients = sum(used) / module.gradients, None
    return round(ratio, 2)


def _robust(ort: OnnxRuntimeModel, x_adv: np.ndarray, y: np.ndarray, clean_ok: np.ndarray) -> float:
    return float((clean_ok & (ort.predict(x_adv) == y)).mean())


def _seed_check(kind: str, net, module: _Module, ort: OnnxRuntimeModel, x: np.ndarray, y: np.ndarray,
                clean_ok: np.ndarray, *, eps: float, steps: int, args) -> list[tuple[int, float, float]]:
    """``(seed, nnaudit's, torchattacks' robust accuracy)`` at the ``args.check_seeds - 1`` seeds after
    the timed one (untimed runs): one seed's random start is luck (torchattacks' PGD-10 on digits-ffn
    at eps 0.1 ranged 0.307-0.324 over ten seeds), so strength is compared seed by seed."""
    out = []
    for seed in range(args.seed + 1, args.seed + args.check_seeds):
        adv_nn = _nnaudit_run(kind, net, x, y, eps=eps, steps=steps, seed=seed, device=args.device)[0]
        adv_ta = _torchattacks_run(kind, module, x, y, eps=eps, steps=steps, seed=seed, device=torch.device(args.device))[0]
        out.append((seed, _robust(ort, adv_nn, y, clean_ok), _robust(ort, adv_ta, y, clean_ok)))
    return out


def _check(seed: int, rob_nn: float, rob_ta: float, per_seed: list[tuple[int, float, float]]) -> str:
    """"ok" when nnaudit's robust accuracy is no higher than torchattacks' at the timed ``seed`` and
    at every other seed checked, else "WEAKER" and the seeds where it was higher."""
    weaker = [k for k, a, b in [(seed, rob_nn, rob_ta)] + per_seed if a > b + 1e-12]
    return "ok" if not weaker else "WEAKER at seed " + ",".join(map(str, weaker))


def _spread(values: list[float]) -> str:
    """``mean [min, max]`` of robust accuracies over the seeds checked."""
    return f"{np.mean(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def _median_l2(x: np.ndarray, x_adv: np.ndarray, broken: np.ndarray) -> float:
    d = np.sqrt(((x_adv.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(1))
    return float(np.median(d[broken])) if broken.any() else float("nan")


def bench_one(name: str, kind: str, eps: float, steps: int, args) -> dict:
    net = zoo.load(name)
    x, y = datasets.load_data("digits", tuple(net.input_shape), num_classes=net.output_size)
    x, y = x[: args.samples], y[: args.samples]
    device = torch.device(args.device)
    ort = OnnxRuntimeModel(net.source)
    clean_ok = ort.predict(x) == y
    module = _Module(net, device).eval()
    t_nn, t_ta = [], []
    _nnaudit_run(kind, net, x[:8], y[:8], eps=eps, steps=2, seed=args.seed, device=args.device)  # warm-up
    _torchattacks_run(kind, module, x[:8], y[:8], eps=eps, steps=2, seed=args.seed, device=device)
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        adv_nn, t, rob_nn = _nnaudit_run(kind, net, x, y, eps=eps, steps=steps, seed=args.seed, device=args.device)
        t_nn.append(t)
        adv_ta, t = _torchattacks_run(kind, module, x, y, eps=eps, steps=steps, seed=args.seed, device=device)
        t_ta.append(t)
    rob_ta = _robust(ort, adv_ta, y, clean_ok)
    per_seed = _seed_check(kind, net, module, ort, x, y, clean_ok, eps=eps, steps=steps, args=args)
    n = len(x)
    row = {
        "network": name, "attack": LABELS[kind].format(steps=steps), "budget": BUDGET[kind],
        "grad_ratio": _gradient_ratio(kind, net, module, x, y, eps=eps, steps=steps, args=args),
        "norm": "linf" if kind.startswith("pgd") else "l2", "eps": eps if kind.startswith("pgd") else "inf", "samples": n,
        "clean_acc": round(float(clean_ok.mean()), 4),
        "robust_nnaudit": round(rob_nn, 4), "robust_torchattacks": round(rob_ta, 4),
        "check": _check(args.seed, rob_nn, rob_ta, per_seed),
        "robust_nnaudit_seeds": _spread([rob_nn] + [a for _, a, _ in per_seed]),
        "robust_torchattacks_seeds": _spread([rob_ta] + [b for _, _, b in per_seed]),
        "sps_nnaudit": round(n / min(t_nn), 1), "sps_torchattacks": round(n / min(t_ta), 1),
    }
    row["ratio"] = round(row["sps_nnaudit"] / row["sps_torchattacks"], 2)
    if kind.startswith("cw"):
        row["median_l2_nnaudit"] = round(_median_l2(x, adv_nn, clean_ok & (ort.predict(adv_nn) != y)), 4)
        row["median_l2_torchattacks"] = round(_median_l2(x, adv_ta, clean_ok & (ort.predict(adv_ta) != y)), 4)
    return row


def machine(args) -> str:
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "no GPU"
    return (f"{os.cpu_count()} cores, {gpu}, {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), device {args.device}")


def write(rows: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(RESULTS / f"{args.name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [f"# nnaudit attacks vs torchattacks\n", f"Machine: {machine(args)}. Data: bundled digits test split, "
             f"first {args.samples} samples; seed {args.seed}; best of {args.repeats} timed runs after a warm-up, "
             "the two tools interleaved; "
             + ("the machine is shared with other jobs, so throughput varies between runs. " if args.device == "cpu" else "")
             + "Robust accuracy judged by onnxruntime on the ONNX file for both tools; `check`: nnaudit's no higher "
             f"than torchattacks' at seed {args.seed} and at each of the {args.check_seeds - 1} seeds after it (untimed "
             "runs; `*_seeds`: mean [min, max] over those seeds). PGD: L-inf, step size "
             "2.5 eps / steps; torchattacks: one random start, steps x samples gradients; nnaudit `default`: its 2 "
             "restarts (the first from the clean input, the second from a random point for unbroken samples only) "
             "with per-sample early stop, `same budget`: the same capped at torchattacks' gradient count (a restart "
             "runs only if what is left pays for it in full; on the CPU the second starts beside the first, for the "
             "samples not broken yet, as soon as the budget pays for both; on CUDA the restarts run in turn, each "
             "replayed as one CUDA graph over the batch padded to a multiple of 64 rows, as are CW's rounds); `grad_ratio`: "
             "gradients nnaudit computed over torchattacks' (counted in an extra untimed run, without CUDA graphs: a "
             "graph also computes the gradients of done and padding rows, and throws them away). CW (unbounded L2, kappa 0, lr 0.01, 100 steps): torchattacks always "
             "runs c = 1 without binary search; nnaudit runs the same (`c=1`) and its default 6-round binary search "
             "over c (`search`). nnaudit's time includes its input checks, the projection into the threat model and "
             "the onnxruntime confirmation of every success; torchattacks' does not.\n"]
    for title, same in (("Like for like (same gradient budget): the goal is ratio >= 1.0", True),
                        ("nnaudit's defaults (more work than torchattacks, stronger)", False)):
        part = [r for r in rows if (r["budget"] == "same") == same]
        lines += [f"\n## {title}\n", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in part]
    write_results(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=450)
    parser.add_argument("--eps", default="0.05,0.1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--check-seeds", type=int, default=5,
                        help="compare robust accuracy at this many seeds: the timed --seed and the N-1 after it")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--name", default=None,
                        help="results file stem under bench/results (default attacks_vs_torchattacks, "
                             "with _cuda appended on a GPU)")
    args = parser.parse_args()
    if args.check_seeds < 1:
        parser.error(f"--check-seeds: expected at least 1 (the timed seed), got {args.check_seeds}")
    if args.name is None:
        args.name = "attacks_vs_torchattacks" + ("_cuda" if args.device.startswith("cuda") else "")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.networks.split(","):
        for eps in (float(e) for e in args.eps.split(",")):
            for kind, steps in (("pgd-same", 10), ("pgd-same", 40), ("pgd", 10), ("pgd", 40)):
                rows.append(bench_one(name, kind, eps, steps, args))
                print(rows[-1], flush=True)
        for kind in ("cw", "cw-search"):
            rows.append(bench_one(name, kind, 0.0, 100, args))
            print(rows[-1], flush=True)
    write(rows, args)
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
