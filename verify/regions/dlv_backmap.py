"""DLV's layer machinery: feature selection, ladders, and the layer-by-layer
pre-image with Z3 (Huang et al., CAV 2017, the paper's ``regionSynth``,
``precisionSynth`` and ``*_safety_solve``).

Both DLV searches of :mod:`nnaudit.verify.regions.dlv` (one feature at a time,
and the composed path search of :mod:`nnaudit.verify.regions.dlv_path`) use
this module: :func:`prepare` computes what does not depend on the image being
manipulated (the sound reach of every layer over the region's box, once per
region), :func:`node_state` what does (the activations of the current image of
a search node and the salient dimensions of each layer), :func:`points` and
:func:`target` the manipulations of one feature at layer ``k``, and
:func:`preimage` the input that maps to them.  Shapes: flat float64 vectors,
``(n_l,)`` at layer ``l``; layer 0 is the input.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.errors import SpecError
from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.dlv_config import DLVConfig, DLVMode, Heuristic
from nnaudit.verify.regions.spec import Family, Manipulation

#: an activation target at or below this is inverted as ``z <= 0``
ZERO_TOL = 1e-12


@dataclass
class Search:
    """What one DLV run shares across its nodes: the region, the reach bounds, counters."""

    ctx: RegionContext
    fam: Family
    manip: Manipulation
    config: DLVConfig
    reach: list[tuple[np.ndarray, np.ndarray]]   # reach[l]: sound bounds of layer l over the region's box
    stats: dict[str, int]


@dataclass(frozen=True)
class NodeState:
    """One image of the search: its activations and the dimensions DLV may move.

    ``dims[0]``: the region's input values (layer ``k = 0``: the salient ones
    not yet manipulated on the path); ``dims[l]``, ``1 <= l <= k``: the
    ``num_features * feature_dims`` most salient dimensions of layer ``l`` that
    the previous layer's selection influences and the region can move, at
    layer ``k`` excluding those already manipulated on the path.
    """

    x: np.ndarray                 # (n_in,) the image (a member of the family)
    acts: list[np.ndarray]        # acts[l]: (n_l,) activations of x at layer l
    dims: list[np.ndarray]


def prepare(ctx: RegionContext, fam: Family, manip: Manipulation, config: DLVConfig) -> Search:
    """Check the network and compute the reach of layers ``0..k`` over the region's box."""
    import torch

    from nnaudit.verify.bounds import compute_bounds

    low = ctx.lowered
    check_chain(ctx)
    if config.layer > len(low.nodes):
        raise SpecError(f"dlv: layer {config.layer} does not exist; {ctx.network.source} has layers 0 (input) "
                        f"to {len(low.nodes)} (its non-linear layers)")
    lo, hi = fam.hull()
    reach = [(lo, hi)]
    if config.layer > 0:
        with torch.no_grad():
            b = compute_bounds(low, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
        reach += [(b.out_lo[i][0].cpu().numpy(), b.out_hi[i][0].cpu().numpy()) for i in range(config.layer)]
    return Search(ctx, fam, manip, config, reach, {"z3_calls": 0, "preimages": 0})


def check_chain(ctx: RegionContext) -> None:
    low = ctx.lowered
    chain = all(set(n.pre.mats) == {i} for i, n in enumerate(low.nodes)) and set(low.output.mats) == {len(low.nodes)}
    if not chain or any(n.kind not in ("relu", "maxpool") for n in low.nodes):
        raise SpecError(f"dlv: {ctx.network.source} is not a feed-forward chain of ReLU/MaxPool layers "
                        "(residual connections, Sigmoid or Tanh); use --method exact")


def activations(ctx: RegionContext, x: np.ndarray, upto: int) -> list[np.ndarray]:
    """Activations ``[x, a_1, ..., a_upto]`` of flat ``x``."""
    acts = [np.asarray(x, dtype=np.float64)]
    for node in ctx.lowered.nodes[:upto]:
        acts.append(node.apply(node.pre.evaluate([a[None] for a in acts]))[0])
    return acts


def node_state(search: Search, x: np.ndarray, used: frozenset[int] = frozenset()) -> NodeState:
    """The state of image ``x``; ``used``: dimensions of layer ``k`` manipulated on the path so far."""
    cfg, fam, k = search.config, search.fam, search.config.layer
    acts = activations(search.ctx, x, k)
    scores = _scores(search, x, acts)
    n_sel = cfg.num_features * cfg.feature_dims
    if k == 0:
        free = np.array([p for p in fam.pixels if int(p) not in used], dtype=np.int64)
        return NodeState(x, acts, [salient(scores[0], free, n_sel)])
    dims = [fam.pixels]
    low = search.ctx.lowered
    for layer in range(1, k + 1):
        node = low.nodes[layer - 1]
        influenced = np.flatnonzero(np.abs(node.pre.mats[layer - 1][dims[-1]]).sum(axis=0) > 0)
        if node.windows is not None:
            influenced = np.flatnonzero(np.isin(node.windows, influenced).any(axis=1))
        lo_l, hi_l = search.reach[layer]
        movable = influenced[hi_l[influenced] - lo_l[influenced] > 1e-12]
        if layer == k and used:
            movable = np.array([j for j in movable if int(j) not in used], dtype=np.int64)
        dims.append(salient(scores[layer], movable, n_sel))
    return NodeState(x, acts, dims)


def _scores(search: Search, x: np.ndarray, acts: list[np.ndarray]) -> list[np.ndarray]:
    """Feature scores of layers ``0..k``: ``|a_j - mean(a)|`` (the paper's "Activation"
    heuristic) or ``|g_j|`` times the room the reach leaves in the direction that lowers the
    margin (its "Derivative" heuristic, weighted by what a manipulation can achieve)."""
    if search.config.heuristic is Heuristic.ACTIVATION:
        return [np.abs(a - a.mean()) for a in acts]
    grads = margin_gradients(search.ctx, x)
    out = []
    for a, g, (lo, hi) in zip(acts, grads, search.reach):
        out.append(np.abs(g) * np.where(g > 0, a - lo, hi - a))
    return out


def salient(score: np.ndarray, candidates: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` candidates with the largest ``score`` (ties: lower index)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    order = np.argsort(-score[candidates], kind="stable")
    return candidates[order[:count]]


def features(search: Search, state: NodeState) -> list[np.ndarray]:
    """The ``num_features`` features (``feature_dims`` dimensions each) of layer ``k``."""
    sel, d = state.dims[search.config.layer], search.config.feature_dims
    return [sel[i:i + d] for i in range(0, len(sel), d)][: search.config.num_features]


def ladder(search: Search) -> int:
    """Steps each side of the ladder of layer ``k`` [numSpan]."""
    if search.config.layer == 0:
        return search.manip.steps
    return search.config.ladder_steps or search.manip.steps


def points(search: Search, state: NodeState, feat: np.ndarray, n: int) -> list[tuple[int, ...]]:
    """Step vectors ``t`` of one feature for the enumeration mode (corners, line or point)."""
    d, mode = len(feat), search.config.mode
    if mode is DLVMode.CORNERS:
        return list(itertools.product((-n, n), repeat=d))
    if mode is DLVMode.LINE:
        return [t for t in itertools.product(range(-n, n + 1), repeat=d) if any(t)]
    g = margin_gradients(search.ctx, state.x)[search.config.layer][feat]
    return [tuple(int(-n if gi > 0 else n) for gi in g)]


def margin_gradients(ctx: RegionContext, x: np.ndarray) -> list[np.ndarray]:
    """Gradients ``g[l]`` ``(n_l,)`` of ``logit_c - logit_runner_up`` w.r.t. every layer
    ``l = 0..L`` at flat ``x`` (ReLU/MaxPool chain, one backward pass)."""
    low = ctx.lowered
    acts = activations(ctx, x, len(low.nodes))
    y = low.output.evaluate([a[None] for a in acts])[0]
    runner = int(np.argmax(np.where(np.arange(len(y)) == ctx.label, -np.inf, y)))
    w = np.zeros(len(y))
    w[ctx.label], w[runner] = 1.0, -1.0
    grads = [low.output.mats[len(low.nodes)] @ w]
    for layer in range(len(low.nodes), 0, -1):
        node, g = low.nodes[layer - 1], grads[0]
        z = node.pre.evaluate([a[None] for a in acts[:layer]])[0]
        if node.kind == "relu":
            gz = g * (z > 0)
        else:
            padded = np.append(z, -np.inf)
            arg = node.windows[np.arange(len(node.windows)), padded[node.windows].argmax(axis=1)]
            gz = np.zeros(len(z))
            np.add.at(gz, arg, g)
        grads.insert(0, node.pre.mats[layer - 1] @ gz)
    return grads


def target(search: Search, state: NodeState, feat: np.ndarray, t: tuple[int, ...], n: int) -> np.ndarray:
    """Manipulated values of the feature's dimensions at layer ``k``: ``t`` steps from the
    current image; at the input one step is the family's step (kept in the region's box), at a
    hidden layer ``n`` steps reach the end of the layer's reach on each side."""
    k = search.config.layer
    a = state.acts[k][feat]
    t_arr = np.asarray(t, dtype=np.float64)
    lo, hi = search.reach[k][0][feat], search.reach[k][1][feat]
    if k == 0:
        return np.clip(a + t_arr * search.manip.step, lo, hi)
    frac = search.config.hidden_reach
    span = frac * np.where(t_arr > 0, (hi - a) / n, (a - lo) / n)
    return a + t_arr * span


def preimage(search: Search, state: NodeState, feat: np.ndarray, t: tuple[int, ...], n: int,
             deadline: float) -> np.ndarray | None:
    """The input (flat) whose layers map to the manipulated feature, or None (one Z3 query
    per layer, from ``k`` down to 1; at layer 0 the manipulation is the input itself)."""
    dims, values = feat, target(search, state, feat, t, n)
    for layer in range(search.config.layer, 0, -1):
        budget = min(search.config.z3_timeout_s, deadline - time.perf_counter())
        solved = solve_layer(search, state, layer, dims, values, budget)
        if solved is None:
            return None
        dims, values = solved
    x = state.x.copy()
    x[dims] = values
    return x


def _inputs_of(search: Search, state: NodeState, layer: int, dims: np.ndarray) -> np.ndarray:
    """The selected dimensions of layer ``layer-1`` with a non-zero weight into ``dims`` of
    ``layer`` (the receptive field, the paper's region of the layer below); the others keep
    the image's values."""
    node = search.ctx.lowered.nodes[layer - 1]
    cols = np.asarray(dims, dtype=np.int64)
    if node.windows is not None:
        cols = node.windows[cols].reshape(-1)
        cols = cols[cols >= 0]
    prev = state.dims[layer - 1]
    return prev[np.abs(node.pre.mats[layer - 1][np.ix_(prev, cols)]).sum(axis=1) > 0]


def solve_layer(search: Search, state: NodeState, layer: int, dims: np.ndarray, values: np.ndarray,
                timeout_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Dimensions of layer ``layer-1`` (:func:`_inputs_of`) and their values mapping to
    ``values`` on ``dims`` of ``layer`` (Z3, QF_LRA), or None when there are none."""
    import z3

    from nnaudit.verify.smt import SmtStatus, real, solve

    node = search.ctx.lowered.nodes[layer - 1]
    prev = _inputs_of(search, state, layer, dims)
    mat, bias = node.pre.mats[layer - 1], node.pre.bias
    base = state.acts[layer - 1].copy()
    base[prev] = 0.0
    const = base @ mat + bias                    # the fixed part of every pre-activation
    xs = [z3.Real(f"a{layer - 1}_{i}") for i in prev]
    lo, hi = search.reach[layer - 1]
    cons = []
    for v, i in zip(xs, prev):
        cons += [v >= real(lo[i]), v <= real(hi[i])]
    fam = search.fam
    if layer == 1 and fam.budget is not None and fam.budget_norm == "l1":
        x0 = search.ctx.x0
        dev = [z3.If(v >= real(x0[i]), v - real(x0[i]), real(x0[i]) - v) for v, i in zip(xs, prev)]
        cons.append(z3.Sum(dev) <= real(fam.budget * search.manip.step))

    def pre(j: int) -> Any:
        col = mat[prev, j]
        return z3.Sum([real(w) * v for w, v in zip(col, xs) if w != 0.0] + [real(const[j])])

    for j, a in zip(dims, values):
        if node.kind == "relu":
            cons.append(pre(int(j)) == real(a) if a > ZERO_TOL else pre(int(j)) <= 0)
        else:
            win = [int(i) for i in node.windows[int(j)] if i >= 0]
            cons += [pre(i) <= real(a) for i in win]
            cons.append(z3.Or([pre(i) == real(a) for i in win]))
    res = solve(cons, timeout_s=timeout_s, values_of=xs, logic="QF_LRA")
    search.stats["z3_calls"] += 1
    return (prev, res.values) if res.status is SmtStatus.SAT else None


def snap_members(fam: Family, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest family members ``(B, n_in)`` of flat ``xs`` ``(B, n_in)`` value by value (as
    :meth:`Family.snap`, vectorised) and whether each keeps the budget ``(B,)``."""
    width = max(len(v) for v in fam.values)
    vals = np.full((len(fam.pixels), width), np.inf)
    costs = np.zeros((len(fam.pixels), width), dtype=np.int64)
    for j, (v, c) in enumerate(zip(fam.values, fam.costs)):
        vals[j, : len(v)], costs[j, : len(c)] = v, c
    sub = xs[:, fam.pixels]                                      # (B, p)
    idx = np.argmin(np.abs(vals[None] - sub[..., None]), axis=2)  # (B, p), first of equals as Family.snap
    rows = np.arange(len(fam.pixels))
    out = np.broadcast_to(fam.x0, xs.shape).copy()
    out[:, fam.pixels] = vals[rows, idx]
    cost = costs[rows, idx].sum(axis=1)
    ok = np.ones(len(xs), dtype=bool) if fam.budget is None else cost <= fam.budget
    return out, ok


def run_candidates(search: Search, xs: list[np.ndarray]) -> tuple[list[np.ndarray | None], np.ndarray, list[Any]]:
    """Snap pre-images ``xs`` to the family and run the network on both.

    Returns the members (nearest grid point of each pre-image, or None when
    the snapped point breaks the budget), their IR margins (``+inf`` for
    None), and per pre-image ``(cex, is_member)`` or None: the onnxruntime-
    confirmed counterexample, the member preferred to the off-grid pre-image.
    """
    ctx = search.ctx
    arr = np.array(xs)
    snapped, ok = snap_members(search.fam, arr)
    margins = ctx.margins(np.concatenate([snapped, arr]))
    m_margin = np.where(ok, margins[: len(xs)], np.inf)
    x_margin = margins[len(xs):]
    members = [snapped[i] if ok[i] else None for i in range(len(xs))]
    found: list[Any] = []
    for i in range(len(xs)):
        hit = None
        for cand, margin, member in ((members[i], m_margin[i], True), (arr[i], x_margin[i], False)):
            if cand is not None and margin <= 0 and hit is None:
                cex = ctx.confirm(cand[None])
                if cex is not None:
                    hit = (cex, member)
                else:
                    search.stats["unconfirmed"] = search.stats.get("unconfirmed", 0) + 1
        found.append(hit)
    return members, m_margin, found
