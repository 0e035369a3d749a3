"""How far branch and bound's starting bounds are from exact ones, on one VNN-COMP instance.

Branch and bound with ReLU splitting (wide inputs such as MNIST) bounds every
sub-domain with the pre-activation bounds of the whole input box, computed once
by alpha-CROWN (:func:`nnaudit.verify.bounds.compute_bounds`, ``root_alpha_steps``
iterations).  This measures what tighter bounds of one node would give, three ways
for each unstable neuron of node ``--layer``:

- ``crown``: alpha-CROWN, as branch and bound has them;
- ``lp``: the LP of the triangle relaxation of every ReLU before the node, over
  the same earlier bounds -- the best any single-neuron convex relaxation can do
  with them;
- ``milp``: the MILP with one binary per unstable ReLU before the node (exact up
  to HiGHS' time limit ``--milp-time``; the solver's dual bound is reported, so a
  bound cut short is still sound).

Then alpha-CROWN is rerun on the whole box with the MILP bounds of that node,
and the unstable ReLUs per node and the worst property row's lower bound are
printed before and after: whether exact bounds of the node would let the later
layers (and the property) close.

    python bench/relaxation_gap.py --family mnist_fc --onnx mnist-net_256x4.onnx \\
        --vnnlib prop_2_0.05.vnnlib --layer 1 --milp-time 3 --workers 2

Appends its table to ``bench/results/relaxation_gap.md``.  Only networks whose
non-linear nodes are all ReLUs are supported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from nnaudit.networks import load
from nnaudit.verify.bab import BabConfig
from nnaudit.verify.bounds import LayerBounds, compute_bounds, spec_lower
from nnaudit.networks.lower import Lowered, lower
from nnaudit.verify.spec import Region
from nnaudit.verify.vnnlib import parse

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "vnncomp"
RESULTS = Path(__file__).parent / "results"


@dataclass
class Encoding:
    """The nodes before node ``k`` as linear constraints over ``[x, z_0, a_0, ..., z_{k-1}, a_{k-1}, d...]``
    (inputs, pre-activations, ReLU outputs, then one binary per unstable ReLU when ``exact``)."""

    matrix: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    var_lo: np.ndarray
    var_hi: np.ndarray
    integrality: np.ndarray
    source_offsets: list[int]  # where each source of an Affine starts (0: the input, s: node s-1's output)

    def objective(self, low: Lowered, k: int, i: int) -> tuple[np.ndarray, float]:
        """Coefficients and constant of neuron ``i`` of node ``k``'s pre-activation."""
        c = np.zeros(self.matrix.shape[1])
        pre = low.nodes[k].pre
        for s, m in pre.mats.items():
            c[self.source_offsets[s]:self.source_offsets[s] + m.shape[0]] = m[:, i]
        return c, float(pre.bias[i])


def encode(low: Lowered, k: int, x_lo: np.ndarray, x_hi: np.ndarray, pre_lo: list[np.ndarray],
           pre_hi: list[np.ndarray], *, exact: bool) -> Encoding:
    """The constraints of the nodes before node ``k`` over the box, with their bounds ``pre_lo/pre_hi``:
    each ReLU fixed where stable, else relaxed by its triangle (``exact=False``) or encoded with a binary."""
    sizes = [n.pre.size for n in low.nodes[:k]]
    z_at = [low.input_size + 2 * sum(sizes[:j]) for j in range(k)]  # node j's pre-activations,
    a_at = [z + n for z, n in zip(z_at, sizes)]                     # its ReLU outputs,
    at = low.input_size + 2 * sum(sizes)                            # and the binaries (from here)
    unstable = [np.flatnonzero((pre_lo[j] < 0) & (pre_hi[j] > 0)) for j in range(k)]
    n_bin = sum(len(u) for u in unstable) if exact else 0
    n_var = at + n_bin
    var_lo, var_hi = np.full(n_var, -np.inf), np.full(n_var, np.inf)
    var_lo[:low.input_size], var_hi[:low.input_size] = x_lo, x_hi
    offsets = [0] + a_at
    blocks: list[sp.coo_matrix] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []

    def rows(cols: list[tuple[int, np.ndarray, np.ndarray]], count: int, lo: np.ndarray, hi: np.ndarray) -> None:
        """Append ``count`` rows; ``cols`` lists (column offset, row-major coefficients, which rows)."""
        r = np.concatenate([which for _, _, which in cols])
        c = np.concatenate([off for off, _, _ in cols])
        v = np.concatenate([coef for _, coef, _ in cols])
        blocks.append(sp.coo_matrix((v, (r, c)), shape=(count, n_var)))
        row_lo.append(lo)
        row_hi.append(hi)

    binary = at
    for j, node in enumerate(low.nodes[:k]):
        if node.kind != "relu":
            raise SystemExit(f"relaxation_gap: node {j} ({node.name}) is {node.kind}; only ReLU networks are supported")
        n, l, u = sizes[j], pre_lo[j], pre_hi[j]
        var_lo[z_at[j]:z_at[j] + n], var_hi[z_at[j]:z_at[j] + n] = l, u
        var_lo[a_at[j]:a_at[j] + n], var_hi[a_at[j]:a_at[j] + n] = np.maximum(l, 0), np.maximum(u, 0)
        # z_j - sum_s M_s^T src_s = bias
        eq = [sp.coo_matrix(-m.T) for m in node.pre.mats.values()]
        eq_cols = [(offsets[s] + e.col, e.data, e.row) for s, e in zip(node.pre.mats, eq)]
        eq_cols.append((z_at[j] + np.arange(n), np.ones(n), np.arange(n)))
        rows(eq_cols, n, node.pre.bias, node.pre.bias)
        on, un = np.flatnonzero(l >= 0), unstable[j]
        m_un, both = len(un), np.concatenate([on, un])
        m = len(both)                                     # active: a = z, then unstable: a >= z
        rows([(a_at[j] + both, np.ones(m), np.arange(m)), (z_at[j] + both, -np.ones(m), np.arange(m))],
             m, np.zeros(m), np.r_[np.zeros(len(on)), np.full(m_un, np.inf)])
        lu, uu = l[un], u[un]
        if not exact:
            s = uu / (uu - lu)                                                          # a <= s (z - l)
            rows([(a_at[j] + un, np.ones(m_un), np.arange(m_un)), (z_at[j] + un, -s, np.arange(m_un))],
                 m_un, np.full(m_un, -np.inf), -s * lu)
            continue
        d = binary + np.arange(m_un)
        var_lo[d], var_hi[d] = 0.0, 1.0
        rows([(a_at[j] + un, np.ones(m_un), np.arange(m_un)), (z_at[j] + un, -np.ones(m_un), np.arange(m_un)),
              (d, -lu, np.arange(m_un))], m_un, np.full(m_un, -np.inf), -lu)            # a <= z - l (1 - d)
        rows([(a_at[j] + un, np.ones(m_un), np.arange(m_un)), (d, -uu, np.arange(m_un))],
             m_un, np.full(m_un, -np.inf), np.zeros(m_un))                              # a <= u d
        binary += m_un
    return Encoding(sp.vstack(blocks).tocsr(), np.concatenate(row_lo), np.concatenate(row_hi), var_lo, var_hi,
                    np.r_[np.zeros(at), np.ones(n_bin)], offsets)


def solve(enc: Encoding, c: np.ndarray, const: float, time_limit: float) -> tuple[float, float, float]:
    """Sound lower and upper bounds of ``c @ v + const`` over the encoding, and the seconds taken."""
    started, out = time.perf_counter(), []
    for sign in (1.0, -1.0):
        res = milp(sign * c, constraints=LinearConstraint(enc.matrix, enc.row_lo, enc.row_hi),
                   bounds=Bounds(enc.var_lo, enc.var_hi), integrality=enc.integrality,
                   options={"time_limit": time_limit, "disp": False})
        dual = getattr(res, "mip_dual_bound", None)
        if enc.integrality.any():
            bound = dual if dual is not None and np.isfinite(dual) else -np.inf
        else:
            bound = res.fun if res.status == 0 else -np.inf   # an LP solved to optimality: its value
        out.append(sign * bound + const)
    return out[0], out[1], time.perf_counter() - started


#: what each forked worker needs (set before the pool forks: the encodings are not pickled per task)
_JOB: dict = {}


def _work(i: int) -> tuple[int, float, float, float, float, float, float]:
    """Neuron ``i``: its LP bounds and seconds, then its MILP bounds and seconds."""
    low, k, lp, ex, limit = _JOB["low"], _JOB["k"], _JOB["lp"], _JOB["milp"], _JOB["limit"]
    lp_lo, lp_hi, lp_t = solve(lp, *lp.objective(low, k, i), limit)
    mi_lo, mi_hi, mi_t = solve(ex, *ex.objective(low, k, i), limit)
    return i, lp_lo, lp_hi, lp_t, mi_lo, mi_hi, mi_t


def alpha_root(low: Lowered, x_lo: np.ndarray, x_hi: np.ndarray, parent: LayerBounds | None = None) -> LayerBounds:
    """The whole box's bounds as branch and bound computes them (optionally intersected with ``parent``)."""
    with torch.no_grad():
        return compute_bounds(low, torch.as_tensor(x_lo[None]), torch.as_tensor(x_hi[None]),
                              alpha_steps=BabConfig().root_alpha_steps, parent=parent)


def worst_row(low: Lowered, bounds: LayerBounds, region: Region) -> float:
    """The lowest alpha-CROWN lower bound of the property's rows (the property holds on the box when
    every disjunct has a row above zero; for a robustness property every row must be)."""
    c, d, _ = region.stacked()
    with torch.enable_grad():
        sb = spec_lower(low, bounds, torch.as_tensor(c), torch.as_tensor(d), alpha_steps=BabConfig().relu_alpha_steps)
    return float(sb.lower.detach().min())


def unstable_counts(b: LayerBounds) -> list[int]:
    """Unstable ReLUs (lower bound < 0 < upper bound) per node."""
    return [int(((lo < 0) & (hi > 0)).sum()) for lo, hi in zip(b.pre_lo, b.pre_hi)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="mnist_fc")
    ap.add_argument("--onnx", required=True, help="file name under <family>/onnx")
    ap.add_argument("--vnnlib", required=True, help="file name under <family>/vnnlib")
    ap.add_argument("--layer", type=int, default=1, help="node whose pre-activation bounds are measured (0 = first)")
    ap.add_argument("--neurons", type=int, default=0, help="an evenly spaced sample of this many unstable neurons (0: all)")
    ap.add_argument("--milp-time", type=float, default=3.0, help="HiGHS time limit per bound, seconds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "relaxation_gap.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = BENCH / args.family
    low = lower(load(str(folder / "onnx" / args.onnx)))
    box, region = parse(str(folder / "vnnlib" / args.vnnlib)).cases[0]
    if not 0 < args.layer < len(low.nodes):
        raise SystemExit(f"relaxation_gap: --layer must be between 1 and {len(low.nodes) - 1}, got {args.layer}")
    k = args.layer
    started = time.perf_counter()
    root = alpha_root(low, box.lower, box.upper)
    root_s = time.perf_counter() - started
    pre_lo = [t[0].numpy() for t in root.pre_lo]
    pre_hi = [t[0].numpy() for t in root.pre_hi]
    cand = np.flatnonzero((pre_lo[k] < 0) & (pre_hi[k] > 0))
    if args.neurons and args.neurons < len(cand):
        cand = cand[np.linspace(0, len(cand) - 1, args.neurons).round().astype(int)]
    _JOB.update(low=low, k=k, limit=args.milp_time,
                lp=encode(low, k, box.lower, box.upper, pre_lo, pre_hi, exact=False),
                milp=encode(low, k, box.lower, box.upper, pre_lo, pre_hi, exact=True))
    with mp.get_context("fork").Pool(args.workers) as pool:
        got = pool.map(_work, [int(i) for i in cand])
    milp_lo, milp_hi = pre_lo[k].copy(), pre_hi[k].copy()
    for i, _, _, _, lo, hi, _ in got:
        milp_lo[i], milp_hi[i] = max(milp_lo[i], lo), min(milp_hi[i], hi)
    parent = LayerBounds(root.x_lo, root.x_hi,
                         [torch.as_tensor(milp_lo[None]) if j == k else torch.full_like(t, -np.inf) for j, t in enumerate(root.pre_lo)],
                         [torch.as_tensor(milp_hi[None]) if j == k else torch.full_like(t, np.inf) for j, t in enumerate(root.pre_hi)],
                         [], [], root.feasible, [])
    after = alpha_root(low, box.lower, box.upper, parent)
    report(args, low, region, root, after, got, cand, root_s)


def report(args: argparse.Namespace, low: Lowered, region: Region, root: LayerBounds, after: LayerBounds, got: list, cand: np.ndarray,
           root_s: float) -> None:
    """Print and append the summary."""
    def stable(lo: float, hi: float) -> bool:
        return lo >= 0 or hi <= 0

    crown_w = [float(root.pre_hi[args.layer][0, i] - root.pre_lo[args.layer][0, i]) for i, *_ in got]
    lp_w = [hi - lo for _, lo, hi, *_ in got]
    milp_w = [g[5] - g[4] for g in got]
    lines = [
        f"## {args.family} {args.onnx} {args.vnnlib}, node {args.layer}",
        "",
        f"Machine: {platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.workers} worker(s); HiGHS (scipy) time limit {args.milp_time} s per bound; "
        f"{len(cand)} unstable neurons measured; {time.strftime('%Y-%m-%d')}.",
        "",
        "| bounds | stable of the measured | median width | median s per neuron (2 bounds) |",
        "|---|---|---|---|",
        f"| alpha-CROWN (root, {BabConfig().root_alpha_steps} steps) | 0 | {statistics.median(crown_w):.3f} | "
        f"{root_s:.2f} (all nodes) |",
        f"| LP, triangle relaxation | {sum(stable(g[1], g[2]) for g in got)} | {statistics.median(lp_w):.3f} | "
        f"{statistics.median(g[3] for g in got):.2f} |",
        f"| MILP (dual bound) | {sum(stable(g[4], g[5]) for g in got)} | {statistics.median(milp_w):.3f} | "
        f"{statistics.median(g[6] for g in got):.2f} |",
        "",
        f"Unstable ReLUs per node: alpha-CROWN {unstable_counts(root)}; with the MILP bounds of node "
        f"{args.layer}, then alpha-CROWN: {unstable_counts(after)}.",
        f"Worst property row's lower bound (alpha-CROWN on the whole box; > 0 everywhere proves it): "
        f"{worst_row(low, root, region):.3f} -> {worst_row(low, after, region):.3f}.",
        "",
    ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
