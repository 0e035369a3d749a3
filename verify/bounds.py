"""Sound bounds on a network over input boxes: interval propagation and
symbolic linear bounds by backward substitution (DeepPoly / CROWN), with
optional optimisation of the lower ReLU slopes (alpha-CROWN).

This is step 2 of the verification pipeline (falsify -> bounds -> branch and
bound -> Z3).  It works on the lowered form of :mod:`nnaudit.networks.lower`
(non-linear nodes over exact dense affine edges) in float64 torch, batched
over ``D`` sub-domains at once.  Each sub-domain is an input box and,
optionally, fixed ReLU phases (``splits``) from branch and bound.

Soundness: every returned lower bound is <= the true minimum over the box (up
to float64 rounding, which callers absorb with a small tolerance).  Bounds of
a sub-domain may be intersected with those of its parent box, which contains
it.  The rule of each operation lives on its IR layer class (``interval``,
``relax``, ``linear_bounds``, ``forward_linear_bounds``; see
:mod:`nnaudit.networks.ops.activations` and :mod:`nnaudit.networks.ops.pool`);
this module drives them over the graph: it composes the affine edges,
intersects, applies splits and optimises the ReLU slopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Affine, Lowered, Node, lower

_DT = torch.float64
#: dtype of the alpha/beta gradient search; the bound itself is always evaluated in float64
#: with the slopes and multipliers found, so this affects only speed and tightness, never soundness.
OPT_DTYPE = torch.float32
#: l > u + EMPTY_TOL * (1 + |l| + |u|) after applying ReLU splits marks a sub-domain empty.
EMPTY_TOL = 1e-7
#: intermediate ReLU bounds are refined per (sub-domain, neuron) pair, not per neuron of the whole
#: batch, when the pairs are at most this share of the batch-wide rows (gathers cost a little more per row)
PAIRS_SHARE = 0.7
#: with ``parent`` bounds of the same boxes and splits, refine a node's bounds only in the
#: sub-domains split before it (elsewhere the refinement reproduces the parent's bounds)
SKIP_UNSPLIT = True
#: :func:`compute_bounds` bounds at most this many sub-domains per pass and joins the parts: backward
#: substitution's (D, rows, n) tensors of 512 ACAS Xu sub-domains (20 MB each) outgrow the cache, and
#: a pass over them costs more per sub-domain than over 64 (ACAS Xu 4_7 prop 1, batches of 512: 26.7 s -> 20 s)
BOUND_CHUNK = 64


class Intermediate(Enum):
    """How :func:`compute_bounds` bounds the pre-activations (all intersected with interval bounds)."""

    AUTO = "auto"            # forward symbolic bounds for at most 64 inputs, then backward substitution
    BACKWARD = "backward"    # backward substitution per node (tighter)
    FORWARD = "forward"      # forward symbolic linear bounds (cheaper, looser)
    NONE = "none"            # interval bounds only, meant with parent bounds of an enclosing box


@dataclass(frozen=True)
class BoundConfig:
    """Settings of bound propagation."""

    method: str = "crown"    # "interval" (IBP) or "crown" (backward substitution, intersected with IBP)
    alpha_steps: int = 0     # > 0: optimise lower ReLU slopes for the final objective (alpha-CROWN)
    alpha_lr: float = 0.1    # step size of the slope optimisation (Adam)


@dataclass(frozen=True)
class LayerBounds:
    """Bounds of every node of ``D`` sub-domains (torch float64 tensors).

    ``pre_lo[k]``/``pre_hi[k]``: ``(D, pre_size_k)`` pre-activation bounds of
    node k (after ReLU splits); ``out_lo``/``out_hi``: ``(D, size_k)`` bounds
    of its output; ``feasible``: ``(D,)`` False when the splits are
    contradictory (the sub-domain is empty); ``relax[k]``: node k's linear
    relaxation over its pre-activation bounds (its layer's ``relax``), made
    once and read by every backward pass through node k.
    """

    x_lo: torch.Tensor
    x_hi: torch.Tensor
    pre_lo: list[torch.Tensor]
    pre_hi: list[torch.Tensor]
    out_lo: list[torch.Tensor]
    out_hi: list[torch.Tensor]
    feasible: torch.Tensor
    relax: list[tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class SpecBound:
    """Lower bounds ``(D, r)`` of ``C @ y + d`` and their linear form.

    ``a_in`` ``(D, r, n_in)`` is the coefficient of the input in a linear
    lower bound (see ``lin_lower``; split heuristics, LP closing); ``node_coeffs[k]`` ``(D, r, size_k)``
    the coefficient of node k's output before its relaxation (ReLU scores).
    """

    lower: torch.Tensor
    a_in: torch.Tensor
    node_coeffs: list[torch.Tensor | None]
    #: with optimisation: the final slopes and multipliers, ``{"alpha": {k: (D, r, n_k)},
    #: "beta": {k: (D, r, n_k)}}`` (float32), to warm-start the sub-domains split from these
    state: dict[str, dict[int, torch.Tensor]] | None = None
    #: ``(D, r)``: the minimum over the box of the linear bound ``a_in @ x + const`` itself.
    #: ``lower`` is the best of several bounds (interval, plain and optimised CROWN) and can
    #: exceed it, so only ``lin_lower`` recovers ``const``: ``lin_lower - min_x a_in @ x``
    lin_lower: torch.Tensor | None = None


class _Mats:
    """Torch copies of a lowered network's matrices (cached per object)."""

    _cache: dict[tuple[int, torch.dtype], tuple[Lowered, Any]] = {}

    @classmethod
    def get(cls, low: Lowered, dtype: torch.dtype = _DT) -> Any:
        key = (id(low), dtype)
        hit = cls._cache.get(key)
        if hit is not None and hit[0] is low:
            return hit[1]
        conv = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        forms = [n.pre for n in low.nodes] + [low.output]
        mats = {id(f): ({s: conv(m) for s, m in f.mats.items()},
                        {s: conv(np.abs(m)) for s, m in f.mats.items()}, conv(f.bias),
                        {s: conv(np.maximum(m, 0)) for s, m in f.mats.items()},
                        {s: conv(np.minimum(m, 0)) for s, m in f.mats.items()}) for f in forms}
        cls._cache[key] = (low, mats)
        return mats


def _as_boxes(low: Lowered, lower_: Any, upper_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    lo = torch.as_tensor(np.asarray(lower_, dtype=np.float64)) if not torch.is_tensor(lower_) else lower_.to(_DT)
    hi = torch.as_tensor(np.asarray(upper_, dtype=np.float64)) if not torch.is_tensor(upper_) else upper_.to(_DT)
    if lo.shape != hi.shape or lo.ndim < 1:
        raise ValueError(f"expected lower and upper of the same shape (D, *input_shape), got {tuple(lo.shape)} and {tuple(hi.shape)}")
    lo, hi = lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)
    if lo.shape[1] != low.input_size:
        raise ValueError(f"expected boxes of {low.input_size} input values per sub-domain, got {lo.shape[1]}")
    if bool((lo > hi).any()) or not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("expected finite boxes with lower <= upper")
    return lo, hi


# -- interval propagation --------------------------------------------------
def _affine_interval(form: Affine, mats: Any, src_lo: list[torch.Tensor],
                     src_hi: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    m, m_abs, bias = mats[id(form)][:3]
    center, radius = bias, 0.0
    for s in m:
        center = center + ((src_lo[s] + src_hi[s]) / 2) @ m[s]
        radius = radius + ((src_hi[s] - src_lo[s]) / 2) @ m_abs[s]
    return center - radius, center + radius


def _concretize(a: torch.Tensor, x_lo: torch.Tensor, x_hi: torch.Tensor, upper: bool) -> torch.Tensor:
    """min (or max) over the box of linear functions ``a`` ``(D, n_in + 1, m)``."""
    w, c = a[:, :-1], a[:, -1]
    if upper:
        return c + (w.clamp(min=0) * x_hi[..., None]).sum(1) + (w.clamp(max=0) * x_lo[..., None]).sum(1)
    return c + (w.clamp(min=0) * x_lo[..., None]).sum(1) + (w.clamp(max=0) * x_hi[..., None]).sum(1)


def _backward(low: Lowered, bounds: LayerBounds, upto: int, target: Affine, lam: torch.Tensor | None,
              alphas: dict[int, torch.Tensor] | None = None,
              record: bool = False,
              betas: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
              rows: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
    """Lower bound of ``lam @ target`` using the relaxations of nodes ``< upto``;
    returns (bound (D, r), input coefficient, recorded).  ``lam``: ``(D, r,
    n_target)``, or ``(r, n_target)`` when the same for every sub-domain (as
    for intermediate bounds: composed with ``target`` once, not D times).
    With ``rows`` ``(D,)`` instead of ``lam``: the bounds of ``target[rows[i]]``
    and ``-target[rows[i]]`` in sub-domain i (``r = 2``), composed by indexing.

    ``betas[k] = (beta, sign)``: Lagrange multipliers ``beta >= 0`` ``(D, r, pre_size)``
    of the ReLU split constraints ``sign * z_k >= 0`` (``sign`` ``(D, pre_size)`` in
    {-1, 0, +1}); the bound is then of ``lam @ target - sum beta * sign * z_k``,
    which is <= ``lam @ target`` wherever the splits hold (beta-CROWN)."""
    mats = _Mats.get(low, bounds.x_lo.dtype)
    m, _, bias = mats[id(target)][:3]
    d = bounds.x_lo.shape[0]
    if rows is not None:
        coeff: dict[int, torch.Tensor] = {s: torch.stack([m[s].T[rows], -m[s].T[rows]], 1) for s in m}
        const = torch.stack([bias[rows], -bias[rows]], 1)
    else:
        assert lam is not None
        coeff = {s: lam @ m[s].T for s in m}
        const = lam @ bias
    if lam is not None and lam.ndim == 2:
        coeff = {s: v.expand(d, -1, -1) for s, v in coeff.items()}
        const = const.expand(d, -1)
    recorded: list[torch.Tensor | None] = [None] * len(low.nodes)
    for k in reversed(range(upto)):
        a = coeff.pop(k + 1, None)
        if a is None:
            continue
        if record:
            recorded[k] = a
        node = low.nodes[k]
        alpha = None if alphas is None else alphas.get(k)
        if alpha is None:
            rel = bounds.relax[k]
        elif alpha.ndim == 3:  # one slope per bounded row: the relaxation becomes (D, r, n)
            rel = node.layer.relax(bounds.pre_lo[k][:, None], bounds.pre_hi[k][:, None], in_shape=node.in_shape,
                                   alpha=alpha)
        else:
            rel = node.layer.relax(bounds.pre_lo[k], bounds.pre_hi[k], in_shape=node.in_shape, alpha=alpha)
        a_z, c = node.layer.linear_bounds(a, rel, in_shape=node.in_shape)
        if betas is not None and k in betas:
            beta, sign = betas[k]
            a_z = a_z - beta * sign[:, None, :]
        const = const + c
        pm, _, pb = mats[id(node.pre)][:3]
        const = const + a_z @ pb
        for s in pm:
            coeff[s] = coeff[s] + a_z @ pm[s].T if s in coeff else a_z @ pm[s].T
    a_in = coeff.get(0, torch.zeros((d, const.shape[-1], low.input_size), dtype=const.dtype))
    lo, hi = bounds.x_lo[:, None, :], bounds.x_hi[:, None, :]
    value = const + (a_in.clamp(min=0) * lo).sum(-1) + (a_in.clamp(max=0) * hi).sum(-1)
    return value, a_in, recorded


# -- public entry points ----------------------------------------------------
def compute_bounds(low: Lowered, x_lo: torch.Tensor, x_hi: torch.Tensor, *, method: str = "crown",
                   splits: list[torch.Tensor | None] | None = None,
                   parent: LayerBounds | None = None, intermediate: Intermediate = Intermediate.AUTO,
                   alpha_steps: int = 0) -> LayerBounds:
    """Bounds of every node for ``D`` boxes ``x_lo``/``x_hi`` ``(D, n_in)``.

    ``splits[k]`` ``(D, size_k)`` in {-1, 0, +1} fixes ReLU phases (+1: z >= 0,
    -1: z <= 0); ``parent`` (same D, or 1) holds bounds of enclosing domains to
    intersect with.  ``intermediate``: how pre-activation bounds are computed
    with ``method="crown"``: ``"auto"``/``"backward"`` (backward substitution per
    node, tighter) or ``"forward"`` (forward symbolic linear bounds, cheaper and
    looser), or ``"none"`` (interval bounds only, meant with ``parent`` bounds
    computed once for an enclosing box); all are intersected with interval bounds.
    ``alpha_steps > 0``: the backward bounds of each node are also optimised
    over the lower ReLU slopes (alpha-CROWN on intermediate bounds; costly,
    meant for a few boxes such as the root of branch and bound).
    """
    if method not in ("interval", "crown"):
        raise ValueError(f"expected method 'interval' or 'crown', got {method!r}")
    d = x_lo.shape[0]
    if d > BOUND_CHUNK and method == "crown":
        return _joined([compute_bounds(low, x_lo[i:i + BOUND_CHUNK], x_hi[i:i + BOUND_CHUNK], method=method,
                                       splits=None if splits is None else
                                       [None if s is None else s[i:i + BOUND_CHUNK] for s in splits],
                                       parent=_part(parent, d, i), intermediate=intermediate,
                                       alpha_steps=alpha_steps)
                        for i in range(0, d, BOUND_CHUNK)])
    mats = _Mats.get(low)
    src_lo, src_hi = [x_lo], [x_hi]
    pre_lo: list[torch.Tensor] = []
    pre_hi: list[torch.Tensor] = []
    feasible = torch.ones(d, dtype=torch.bool)
    relax: list[tuple[torch.Tensor, ...]] = []
    partial = LayerBounds(x_lo, x_hi, pre_lo, pre_hi, src_lo[1:], src_hi[1:], feasible, relax)
    intermediate = Intermediate(intermediate)
    forward = method == "crown" and (intermediate is Intermediate.FORWARD
                                     or (intermediate is Intermediate.AUTO and low.input_size <= 64))
    backward = method == "crown" and intermediate in (Intermediate.AUTO, Intermediate.BACKWARD)
    if forward:
        n_in = low.input_size
        eye = torch.cat([torch.eye(n_in, dtype=_DT), torch.zeros(1, n_in, dtype=_DT)]).expand(d, -1, -1)
        lin_l, lin_u = [eye], [eye]
    # with parent bounds of the same box, a node's backward bound can only improve on them
    # where a split before it changed a relaxation: the others' refinement is skipped
    skip = (SKIP_UNSPLIT and parent is not None and splits is not None
            and bool((parent.x_lo == x_lo).all()) and bool((parent.x_hi == x_hi).all()))
    changed = torch.zeros(d, dtype=torch.bool) if skip else None
    for k, node in enumerate(low.nodes):
        if changed is not None and k > 0 and splits[k - 1] is not None:
            changed = changed | (splits[k - 1] != 0).any(dim=1)
        lo, hi = _affine_interval(node.pre, mats, src_lo, src_hi)
        if forward:
            m, _, bias, mp, mn = mats[id(node.pre)]
            zl = sum(lin_l[s] @ mp[s] + lin_u[s] @ mn[s] for s in m)
            zu = sum(lin_u[s] @ mp[s] + lin_l[s] @ mn[s] for s in m)
            zl[:, -1] += bias
            zu[:, -1] += bias
            lo = torch.maximum(lo, _concretize(zl, x_lo, x_hi, False))
            hi = torch.minimum(hi, _concretize(zu, x_lo, x_hi, True))
        if backward and set(node.pre.mats) != {0}:
            lo, hi = _refine(low, partial, k, node, lo, hi, splits, alpha_steps, changed)
        if parent is not None:
            lo, hi = torch.maximum(lo, parent.pre_lo[k]), torch.minimum(hi, parent.pre_hi[k])
        if splits is not None and splits[k] is not None:
            s = splits[k]
            lo = torch.where(s > 0, lo.clamp(min=0), lo)
            hi = torch.where(s < 0, hi.clamp(max=0), hi)
        feasible &= ~(lo > hi + EMPTY_TOL * (1 + lo.abs() + hi.abs())).any(dim=1)
        hi = torch.maximum(hi, lo)
        pre_lo.append(lo)
        pre_hi.append(hi)
        out_lo, out_hi = node.layer.interval(lo, hi, in_shape=node.in_shape)
        relax.append(node.layer.relax(lo, hi, in_shape=node.in_shape))
        if forward:
            ol, ou = node.layer.forward_linear_bounds(zl, zu, relax[-1], in_shape=node.in_shape)
            lin_l.append(ol)
            lin_u.append(ou)
        src_lo.append(out_lo)
        src_hi.append(out_hi)
    return LayerBounds(x_lo, x_hi, pre_lo, pre_hi, src_lo[1:], src_hi[1:], feasible, relax)


def _each(bounds: LayerBounds, f: Any) -> LayerBounds:
    """The bounds with ``f`` applied to every tensor (each has the sub-domains first)."""
    many = lambda ts: [f(t) for t in ts]  # noqa: E731
    return LayerBounds(f(bounds.x_lo), f(bounds.x_hi), many(bounds.pre_lo), many(bounds.pre_hi),
                       many(bounds.out_lo), many(bounds.out_hi), f(bounds.feasible),
                       [tuple(many(rel)) for rel in bounds.relax])


def _part(parent: LayerBounds | None, d: int, i: int) -> LayerBounds | None:
    """Sub-domains ``i : i + BOUND_CHUNK`` of ``parent`` bounds of ``d`` sub-domains (or the one
    parent of them all)."""
    if parent is None or parent.x_lo.shape[0] != d:
        return parent
    return _each(parent, lambda t: t[i:i + BOUND_CHUNK])


def _joined(parts: list[LayerBounds]) -> LayerBounds:
    """The bounds of consecutive groups of sub-domains as one."""
    first = parts[0]
    cat = lambda get, n: [torch.cat([get(p)[k] for p in parts]) for k in range(n)]  # noqa: E731
    nodes = len(first.pre_lo)
    return LayerBounds(torch.cat([p.x_lo for p in parts]), torch.cat([p.x_hi for p in parts]),
                       cat(lambda p: p.pre_lo, nodes), cat(lambda p: p.pre_hi, nodes),
                       cat(lambda p: p.out_lo, nodes), cat(lambda p: p.out_hi, nodes),
                       torch.cat([p.feasible for p in parts]),
                       [tuple(torch.cat([p.relax[k][j] for p in parts]) for j in range(len(first.relax[k])))
                        for k in range(nodes)])


def _refine(low: Lowered, partial: LayerBounds, k: int, node: Node, lo: torch.Tensor, hi: torch.Tensor,
            splits: list[torch.Tensor | None] | None, alpha_steps: int = 0,
            changed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tighten node k's pre-activation bounds by backward substitution.

    For ReLU nodes only the neurons that may be active in some sub-domain of
    the batch (and are not split inactive) are refined.  An unstable neuron's
    bounds make its relaxation; an active one's relaxation is exact, but its
    bounds are its output's, which the next node's interval bounds start
    from (intersected with the linear ones, they decide which of its neurons
    are stable).  Refining those too cut ACAS Xu 4_7 prop 1 from 120 690
    sub-domains to 40 010.  An inactive neuron's output is 0 whatever its
    bounds.  ``changed`` ``(D,)``: only these sub-domains are refined (the
    others' bounds would not improve on their parent's).
    """
    n = node.pre.size
    if node.kind == "relu":
        need = hi > 0
        if splits is not None and splits[k] is not None:
            need &= splits[k] >= 0
        if changed is not None:
            need &= changed[:, None]
        rows = torch.nonzero(need.any(dim=0)).flatten()
        pairs = int(need.sum())
        if alpha_steps == 0 and 0 < pairs <= PAIRS_SHARE * len(rows) * lo.shape[0]:
            return _refine_pairs(low, partial, k, node, lo, hi, need)
    else:
        rows = torch.arange(n)
    if len(rows) == 0:
        return lo, hi
    eye = torch.eye(n, dtype=_DT)[rows]
    lam = torch.cat([eye, -eye])
    val, _, _ = _backward(low, partial, k, node.pre, lam)
    if alpha_steps > 0 and any(n.kind == "relu" for n in low.nodes[:k]):
        with torch.enable_grad():
            opt = _optimise_alpha(low, partial, lam.expand(lo.shape[0], -1, -1), alpha_steps, 0.1, splits,
                                  upto=k, target=node.pre)[0]
        val = torch.maximum(val, opt.detach())
    r = len(rows)
    lo, hi = lo.clone(), hi.clone()
    lo[:, rows] = torch.maximum(lo[:, rows], val[:, :r])
    hi[:, rows] = torch.minimum(hi[:, rows], -val[:, r:])
    return lo, hi


def _refine_pairs(low: Lowered, partial: LayerBounds, k: int, node: Node, lo: torch.Tensor, hi: torch.Tensor,
                  need: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_refine` for exactly the (sub-domain, neuron) pairs in ``need``
    ``(D, n)``: each pair is bounded as a sub-domain of its own, with its
    sub-domain's bounds gathered.  Backward substitution costs as many rows as
    it bounds, so this pays where a sub-domain needs a small share of the
    neurons the batch as a whole needs (ACAS Xu when only unstable neurons
    were refined: ~10 of ~45 per layer).  Each pair's bound is the same as in
    the batch-wide form.  Since active neurons are refined too, passes of 64
    ACAS Xu sub-domains need ~90% of the batch's rows and mostly take the
    batch-wide form (4_7 prop 1 takes 22-25 s with either form forced)."""
    dom, neu = torch.nonzero(need, as_tuple=True)
    # a backward pass without alpha reads the input box and the relaxations only
    sub = LayerBounds(partial.x_lo[dom], partial.x_hi[dom], [], [], [], [], partial.feasible[dom],
                      [tuple(t[dom] for t in rel) for rel in partial.relax[:k]])
    val, _, _ = _backward(low, sub, k, node.pre, None, rows=neu)
    lo, hi = lo.clone(), hi.clone()
    lo[dom, neu] = torch.maximum(lo[dom, neu], val[:, 0])
    hi[dom, neu] = torch.minimum(hi[dom, neu], -val[:, 1])
    return lo, hi


def spec_lower(low: Lowered, bounds: LayerBounds, c: torch.Tensor, d: torch.Tensor, *,
               method: str = "crown", alpha_steps: int = 0, alpha_lr: float = 0.1,
               record: bool = False, splits: list[torch.Tensor | None] | None = None,
               init: dict[str, dict[int, torch.Tensor]] | None = None) -> SpecBound:
    """Lower bounds of ``C @ y + d`` per sub-domain: ``c`` ``(r, n_out)`` or
    ``(D, r, n_out)``, ``d`` ``(r,)`` or ``(D, r)``; returns :class:`SpecBound`.

    With ``alpha_steps > 0`` and ReLU ``splits`` (as in :func:`compute_bounds`),
    the split constraints enter the bound through optimised Lagrange
    multipliers (beta-CROWN) together with the lower ReLU slopes (alpha), one
    slope per (row, neuron).  ``init``: a warm start in the form of
    :attr:`SpecBound.state` (NaN entries: the default start); the final
    slopes and multipliers come back in ``state``."""
    mats = _Mats.get(low)
    n_dom = bounds.x_lo.shape[0]
    c = c.to(_DT).expand(n_dom, -1, -1) if c.ndim == 2 else c.to(_DT)
    d = d.to(_DT).expand(n_dom, -1) if d.ndim == 1 else d.to(_DT)
    out_lo, out_hi = _affine_interval(low.output, mats, [bounds.x_lo] + bounds.out_lo, [bounds.x_hi] + bounds.out_hi)
    ibp = (c.clamp(min=0) @ out_lo[..., None])[..., 0] + (c.clamp(max=0) @ out_hi[..., None])[..., 0] + d
    if method == "interval":
        return SpecBound(ibp, torch.zeros(c.shape[:2] + (low.input_size,), dtype=_DT), [None] * len(low.nodes),
                         None, ibp)
    val, a_in, rec = _backward(low, bounds, len(low.nodes), low.output, c, record=record)
    state, lin = None, val
    if alpha_steps > 0:
        # the linear form (and the ReLU scores) of the optimised bound: on mnist_fc 256x4 prop 3
        # eps 0.05, scoring ReLUs by it instead of by plain CROWN's halved the sub-domains
        opt, state, a_in, rec = _optimise_alpha(low, bounds, c, alpha_steps, alpha_lr, splits, init=init)
        val, lin = torch.maximum(val, opt), opt
    return SpecBound(torch.maximum(val + d, ibp), a_in, rec, state, lin + d)


def _optimise_alpha(low: Lowered, bounds: LayerBounds, c: torch.Tensor, steps: int, lr: float,
                    splits: list[torch.Tensor | None] | None = None, upto: int | None = None,
                    target: Affine | None = None, init: dict[str, dict[int, torch.Tensor]] | None = None
                    ) -> tuple[torch.Tensor, dict[str, dict[int, torch.Tensor]], torch.Tensor, list[torch.Tensor | None]]:
    """alpha(-beta)-CROWN: gradient ascent on the lower ReLU slopes (in [0, 1],
    one per bounded row and neuron: each row's bound picks its own
    relaxation) and, where ReLUs are split, on the multipliers of the split
    constraints (>= 0).  Every choice of them gives a sound bound; per row, the
    iterate whose (float32) bound was best is evaluated in float64 and returned
    (with its input coefficients and recorded node coefficients).  The start
    counts as an iterate, so a warm start is never lost to the optimiser's
    first, large steps.  The state returned for warm starts is the *last*
    iterate, not the best: children started from the best one took 3.6x the
    sub-domains on mnist_fc 256x4 prop 3 eps 0.05 (the best is often the start
    itself, and the children then repeat their parent's steps).

    Bounds ``c @ target`` through the nodes before ``upto`` (default: the
    network output through all nodes).  ``init``: a warm start (see
    :func:`spec_lower`), e.g. the parent sub-domain's optimum, which the
    children's optimum is usually close to."""
    upto = len(low.nodes) if upto is None else upto
    target = low.output if target is None else target
    dt = OPT_DTYPE
    work = _cast(bounds, dt)  # the search runs in OPT_DTYPE; only float64 evaluations count as bounds
    rows = c.shape[:2]
    init_a = (init or {}).get("alpha", {})
    init_b = (init or {}).get("beta", {})
    alphas: dict[int, torch.Tensor] = {}
    for k, n in enumerate(low.nodes[:upto]):
        if n.kind == "relu":
            start = (work.pre_hi[k] > -work.pre_lo[k]).to(dt)[:, None, :].expand(*rows, -1)
            if k in init_a:
                start = torch.where(torch.isnan(init_a[k]), start, init_a[k].to(dt).clamp(0.0, 1.0))
            alphas[k] = start.clone().requires_grad_(True)
    betas: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for k, s in enumerate((splits or [])[:upto]):
        if s is not None and low.nodes[k].kind == "relu" and bool((s != 0).any()):
            sign = s.to(dt)
            start = torch.zeros(rows + sign.shape[1:], dtype=dt)
            if k in init_b:
                start = torch.nan_to_num(init_b[k].to(dt), nan=0.0).clamp(min=0.0)
            betas[k] = (start.clone().requires_grad_(True), sign)
    params = list(alphas.values()) + [b for b, _ in betas.values()]
    opt = _Adam(params, lr)
    c_work = c.to(dt)
    best = [p.detach().clone() for p in params]  # per row: the iterate with the best bound so far
    best_val: torch.Tensor | None = None
    for i in range(steps + 1):  # steps updates; the iterate after the last is scored too, without a gradient
        with torch.set_grad_enabled(i < steps):
            val, _, _ = _backward(low, work, upto, target, c_work, alphas=alphas, betas=betas or None)
        with torch.no_grad():
            better = torch.ones_like(val, dtype=torch.bool) if best_val is None else val > best_val
            best_val = val.detach() if best_val is None else torch.where(better, val, best_val)
            for kept, p in zip(best, params):
                kept.copy_(torch.where(better[..., None], p, kept))
        if i == steps:
            break
        grads = torch.autograd.grad(-val.sum(), params)
        with torch.no_grad():
            opt.step(grads)
            for a in alphas.values():
                a.clamp_(0.0, 1.0)
            for b, _ in betas.values():
                b.clamp_(min=0.0)
    keys_a, keys_b = list(alphas), list(betas)
    best_a = dict(zip(keys_a, best[:len(keys_a)]))
    best_b = dict(zip(keys_b, best[len(keys_a):]))
    with torch.no_grad():  # the bound: the best slopes and multipliers, evaluated in float64
        final_a = {k: a.to(_DT) for k, a in best_a.items()}
        final_b = {k: (best_b[k].to(_DT), s.to(_DT)) for k, (_, s) in betas.items()}
        val, a_in, rec = _backward(low, bounds, upto, target, c.to(_DT), alphas=final_a, betas=final_b or None,
                                   record=True)
    state = {"alpha": {k: a.detach() for k, a in alphas.items()}, "beta": {k: b.detach() for k, (b, _) in betas.items()}}
    return val, state, a_in, rec


class _Adam:
    """Adam (Kingma and Ba) on a few tensors, in place.  ``torch.optim.Adam`` would do
    the same, but its first use in a process imports torch's compiler stack (1.5 s,
    more than a whole mnist_fc verification's bounds)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


def _cast(bounds: LayerBounds, dtype: torch.dtype) -> LayerBounds:
    """The same bounds in another dtype (no copy when it already is)."""
    if bounds.x_lo.dtype == dtype:
        return bounds
    return _each(bounds, lambda t: t.to(dtype) if t.is_floating_point() else t)  # feasibility and indices stay


def output_bounds(network: Any, lower: np.ndarray, upper: np.ndarray, *,
                  method: str = "crown") -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of every output over ``D`` input boxes.

    ``lower``/``upper``: float arrays ``(D, *network.input_shape)`` (or
    ``(D, input_size)``).  Returns ``(lo, hi)``, each float64 ``(D, output_size)``.
    ``method``: ``"interval"`` or ``"crown"``.
    """
    low = lower_network(network)
    x_lo, x_hi = _as_boxes(low, lower, upper)
    with torch.no_grad():
        b = compute_bounds(low, x_lo, x_hi, method=method)
        n = low.output.size
        eye = torch.eye(n, dtype=_DT)
        res = spec_lower(low, b, torch.cat([eye, -eye]), torch.zeros(2 * n, dtype=_DT), method=method)
    lo, hi = res.lower[:, :n], -res.lower[:, n:]
    return lo.numpy().copy(), hi.numpy().copy()


def spec_bounds(network: Any, lower: np.ndarray, upper: np.ndarray, c: np.ndarray, d: np.ndarray, *,
                method: str = "crown", alpha_steps: int = 0) -> np.ndarray:
    """Sound lower bounds of ``C @ y + d`` over ``D`` input boxes.

    ``c`` ``(r, output_size)``, ``d`` ``(r,)``; ``lower``/``upper`` as in
    :func:`output_bounds`.  Returns float64 ``(D, r)``.  A row whose bound is
    > 0 proves ``C_i @ y + d_i > 0`` everywhere in that box.
    """
    low = lower_network(network)
    x_lo, x_hi = _as_boxes(low, lower, upper)
    ct = torch.as_tensor(np.asarray(c, dtype=np.float64)).reshape(-1, low.output.size)
    dt = torch.as_tensor(np.asarray(d, dtype=np.float64)).reshape(-1)
    with torch.no_grad():
        b = compute_bounds(low, x_lo, x_hi, method=method)
    if alpha_steps:
        res = spec_lower(low, b, ct, dt, method=method, alpha_steps=alpha_steps)
    else:
        with torch.no_grad():
            res = spec_lower(low, b, ct, dt, method=method)
    return res.lower.detach().numpy().copy()


def lower_network(network: Any) -> Lowered:
    """The lowered form (see :mod:`nnaudit.networks.lower`); accepts a Network or Lowered."""
    return lower(network)
