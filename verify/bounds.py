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
this module drives them over the graph: it intersects, applies splits and
chunks the batch.  The parts it drives live beside it: the bounds it returns
(:mod:`.layer_bounds`), the edges' torch matrices and interval step
(:mod:`.edges`), forward linear bounds (:mod:`.forward`), backward
substitution (:mod:`.backward`) and the slope optimisation (:mod:`.alpha`).
This module is the public import path of all of them.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Eye, Lowered, Node, lower
from nnaudit.verify.alpha import OPT_DTYPE, optimise_alpha
from nnaudit.verify.backward import backward
from nnaudit.verify.edges import affine_interval, edge_mats
from nnaudit.verify.forward import ForwardLinear
from nnaudit.verify.layer_bounds import LayerBounds, SpecBound, joined, part
from nnaudit.verify.limits import Limits

__all__ = ["BOUND_CHUNK", "EMPTY_TOL", "OPT_DTYPE", "PAIRS_SHARE", "SKIP_UNSPLIT", "BoundMethod", "Intermediate",
           "LayerBounds", "SpecBound", "compute_bounds", "lower_network", "output_bounds", "spec_bounds",
           "spec_lower"]

_DT = torch.float64
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
#: at most this many neurons of a node are refined per backward pass (the deadline is checked between
#: passes: one pass over a CIFAR conv layer's 2,048 neurons took ~1 s on the busy 2-core machine)
REFINE_GROUP = 512


class BoundMethod(Enum):
    """How bounds are computed; every ``method`` argument also takes the value as a string."""

    INTERVAL = "interval"    # interval bound propagation (IBP) only
    CROWN = "crown"          # backward substitution (DeepPoly / CROWN), intersected with IBP


class Intermediate(Enum):
    """How :func:`compute_bounds` bounds the pre-activations (all intersected with interval bounds)."""

    AUTO = "auto"            # forward symbolic bounds for at most 64 inputs, then backward substitution
    BACKWARD = "backward"    # backward substitution per node (tighter)
    FORWARD = "forward"      # forward symbolic linear bounds (cheaper, looser)
    NONE = "none"            # interval bounds only, meant with parent bounds of an enclosing box


def _as_method(method: BoundMethod | str) -> BoundMethod:
    try:
        return BoundMethod(method)
    except ValueError:
        raise ValueError(f"expected method 'interval' or 'crown', got {method!r}") from None


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


# -- bounds of every node ---------------------------------------------------
def compute_bounds(low: Lowered, x_lo: torch.Tensor, x_hi: torch.Tensor, *,
                   method: BoundMethod | str = BoundMethod.CROWN,
                   splits: list[torch.Tensor | None] | None = None,
                   parent: LayerBounds | None = None, intermediate: Intermediate | str = Intermediate.AUTO,
                   alpha_steps: int = 0, limits: Limits | None = None) -> LayerBounds:
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
    meant for a few boxes such as the root of branch and bound).  At most
    :data:`BOUND_CHUNK` sub-domains are bounded per pass.  ``limits``: deadline and memory budget
    (rows per pass chosen to fit; see :mod:`~nnaudit.verify.limits` for what it raises)."""
    method = _as_method(method)
    d = x_lo.shape[0]
    if d > BOUND_CHUNK and method is BoundMethod.CROWN:
        return _in_chunks(low, x_lo, x_hi, splits, parent, method=method, intermediate=intermediate,
                          alpha_steps=alpha_steps, limits=limits)
    limits = limits or Limits()
    limits.check_time()
    mats = edge_mats(low)
    limits.check_time()
    src_lo, src_hi = [x_lo], [x_hi]
    pre_lo: list[torch.Tensor] = []
    pre_hi: list[torch.Tensor] = []
    feasible = torch.ones(d, dtype=torch.bool)
    relax: list[tuple[torch.Tensor, ...]] = []
    # the bounds so far, which backward substitution reads (the relaxations and pre-activation bounds)
    partial = LayerBounds(x_lo, x_hi, pre_lo, pre_hi, [], [], feasible, relax)
    intermediate = Intermediate(intermediate)
    crown = method is BoundMethod.CROWN
    forward = crown and (intermediate is Intermediate.FORWARD
                         or (intermediate is Intermediate.AUTO and low.input_size <= 64))
    fwd = ForwardLinear(low.input_size, x_lo, x_hi) if forward else None
    refine = crown and intermediate in (Intermediate.AUTO, Intermediate.BACKWARD)
    changed = _split_so_far(x_lo, x_hi, splits, parent)
    for k, node in enumerate(low.nodes):
        if changed is not None and k > 0 and splits[k - 1] is not None:
            changed = changed | (splits[k - 1] != 0).any(dim=1)
        lo, hi = affine_interval(node.pre, mats, src_lo, src_hi)
        if fwd is not None:
            lo, hi = fwd.pre(node, mats, lo, hi)
        if refine and set(node.pre.mats) != {0} and not _passthrough(node):
            lo, hi = _refine(low, partial, k, node, lo, hi, splits, alpha_steps, changed, limits)
        lo, hi = _constrain(lo, hi, k, splits, parent, feasible)
        pre_lo.append(lo)
        pre_hi.append(hi)
        out_lo, out_hi = node.layer.interval(lo, hi, in_shape=node.in_shape)
        relax.append(node.layer.relax(lo, hi, in_shape=node.in_shape))
        if fwd is not None:
            fwd.post(node, relax[-1])
        src_lo.append(out_lo)
        src_hi.append(out_hi)
    return LayerBounds(x_lo, x_hi, pre_lo, pre_hi, src_lo[1:], src_hi[1:], feasible, relax)


def _in_chunks(low: Lowered, x_lo: torch.Tensor, x_hi: torch.Tensor, splits: list[torch.Tensor | None] | None,
               parent: LayerBounds | None, **kw: Any) -> LayerBounds:
    """:func:`compute_bounds` of consecutive groups of :data:`BOUND_CHUNK` sub-domains, joined."""
    d, size = x_lo.shape[0], BOUND_CHUNK
    cut = lambda s, i: None if s is None else s[i:i + size]  # noqa: E731
    return joined([compute_bounds(low, x_lo[i:i + size], x_hi[i:i + size],
                                  splits=None if splits is None else [cut(s, i) for s in splits],
                                  parent=part(parent, d, i, size), **kw)
                   for i in range(0, d, size)])


def _passthrough(node: Node) -> bool:
    """Whether ``node`` reads one earlier node's output as it is, through an implicit identity (a wide
    MaxPool after a ReLU): backward substitution cannot improve on the interval bounds there (each
    output's bounds are its own input's), and it would cost a pass of ``2 n`` rows over ``n`` values."""
    return len(node.pre.mats) == 1 and all(isinstance(m, Eye) for m in node.pre.mats.values())


def _split_so_far(x_lo: torch.Tensor, x_hi: torch.Tensor, splits: list[torch.Tensor | None] | None,
                  parent: LayerBounds | None) -> torch.Tensor | None:
    """``(D,)`` all False when only the sub-domains split before a node need its refinement,
    else None (refine all).  With parent bounds of the same box, a node's backward bound can
    only improve on them where a split before it changed a relaxation (see :data:`SKIP_UNSPLIT`)."""
    skip = (SKIP_UNSPLIT and parent is not None and splits is not None
            and bool((parent.x_lo == x_lo).all()) and bool((parent.x_hi == x_hi).all()))
    return torch.zeros(x_lo.shape[0], dtype=torch.bool) if skip else None


def _constrain(lo: torch.Tensor, hi: torch.Tensor, k: int, splits: list[torch.Tensor | None] | None,
               parent: LayerBounds | None, feasible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Node k's pre-activation bounds ``(D, pre_size)`` intersected with the parent's and cut by
    the ReLU splits; the sub-domains they leave empty are marked in ``feasible`` (in place), and
    the upper bound is raised to the lower where they cross."""
    if parent is not None:
        lo, hi = torch.maximum(lo, parent.pre_lo[k]), torch.minimum(hi, parent.pre_hi[k])
    if splits is not None and splits[k] is not None:
        s = splits[k]
        lo = torch.where(s > 0, lo.clamp(min=0), lo)
        hi = torch.where(s < 0, hi.clamp(max=0), hi)
    feasible &= ~(lo > hi + EMPTY_TOL * (1 + lo.abs() + hi.abs())).any(dim=1)
    return lo, torch.maximum(hi, lo)


# -- refinement of intermediate bounds by backward substitution -------------
def _refine(low: Lowered, partial: LayerBounds, k: int, node: Node, lo: torch.Tensor, hi: torch.Tensor,
            splits: list[torch.Tensor | None] | None, alpha_steps: int = 0,
            changed: torch.Tensor | None = None, limits: Limits = Limits()) -> tuple[torch.Tensor, torch.Tensor]:
    """Tighten node k's pre-activation bounds by backward substitution.

    For ReLU nodes only the neurons that may be active in some sub-domain of
    the batch (and are not split inactive) are refined.  An unstable neuron's
    bounds make its relaxation; an active one's relaxation is exact, but its
    bounds are its output's, which the next node's interval bounds start
    from (intersected with the linear ones, they decide which of its neurons
    are stable).  Refining those too cut ACAS Xu 4_7 prop 1 from 120 690
    sub-domains to 40 010.  An inactive neuron's output is 0 whatever its
    bounds.  ``changed`` ``(D,)``: only these sub-domains are refined (the
    others' bounds would not improve on their parent's).  The rows are bounded
    in groups that fit the memory budget, the deadline checked between groups.
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
    lo, hi = lo.clone(), hi.clone()
    # a backward pass holds a few (D, 2 rows, n_s) tensors per source; alpha's autograd graph more
    per_row = 2 * 8 * lo.shape[0] * sum(low.source_sizes()[:k + 1]) * (8 if alpha_steps > 0 else 3)
    group = min(limits.rows_fitting(per_row, len(rows)), REFINE_GROUP)
    limits.need(per_row * group, f"backward substitution of node {k} ({node.name})")
    for start in range(0, len(rows), group):
        limits.check_time()
        part = rows[start:start + group]
        eye = torch.zeros((len(part), n), dtype=_DT)
        eye[torch.arange(len(part)), part] = 1.0
        lam = torch.cat([eye, -eye])
        val, _, _ = backward(low, partial, k, node.pre, lam)
        if alpha_steps > 0 and any(n.kind == "relu" for n in low.nodes[:k]):
            with torch.enable_grad():
                opt = optimise_alpha(low, partial, lam.expand(lo.shape[0], -1, -1), alpha_steps, 0.1, splits,
                                     upto=k, target=node.pre, limits=limits)[0]
            val = torch.maximum(val, opt.detach())
        r = len(part)
        lo[:, part] = torch.maximum(lo[:, part], val[:, :r])
        hi[:, part] = torch.minimum(hi[:, part], -val[:, r:])
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
    val, _, _ = backward(low, sub, k, node.pre, None, rows=neu)
    lo, hi = lo.clone(), hi.clone()
    lo[dom, neu] = torch.maximum(lo[dom, neu], val[:, 0])
    hi[dom, neu] = torch.minimum(hi[dom, neu], -val[:, 1])
    return lo, hi


# -- bounds of a property ----------------------------------------------------
def spec_lower(low: Lowered, bounds: LayerBounds, c: torch.Tensor, d: torch.Tensor, *,
               method: BoundMethod | str = BoundMethod.CROWN, alpha_steps: int = 0, alpha_lr: float = 0.1,
               record: bool = False, splits: list[torch.Tensor | None] | None = None,
               init: dict[str, dict[int, torch.Tensor]] | None = None, limits: Limits | None = None) -> SpecBound:
    """Lower bounds of ``C @ y + d`` per sub-domain: ``c`` ``(r, n_out)`` or
    ``(D, r, n_out)``, ``d`` ``(r,)`` or ``(D, r)``; returns :class:`SpecBound`.

    With ``alpha_steps > 0`` and ReLU ``splits`` (as in :func:`compute_bounds`),
    the split constraints enter the bound through optimised Lagrange
    multipliers (beta-CROWN) together with the lower ReLU slopes (alpha), one
    slope per (row, neuron).  ``init``: a warm start in the form of
    :attr:`SpecBound.state` (NaN entries: the default start); the final
    slopes and multipliers come back in ``state``.  ``limits``: as in :func:`compute_bounds`."""
    method = _as_method(method)
    mats = edge_mats(low)
    n_dom = bounds.x_lo.shape[0]
    if limits is not None:
        limits.check_time()
        per = 8 * n_dom * c.shape[-2] * sum(low.source_sizes()) * (8 if alpha_steps > 0 else 3)
        limits.need(per, "backward substitution of the property's rows")
    c = c.to(_DT).expand(n_dom, -1, -1) if c.ndim == 2 else c.to(_DT)
    d = d.to(_DT).expand(n_dom, -1) if d.ndim == 1 else d.to(_DT)
    out_lo, out_hi = affine_interval(low.output, mats, [bounds.x_lo] + bounds.out_lo, [bounds.x_hi] + bounds.out_hi)
    ibp = (c.clamp(min=0) @ out_lo[..., None])[..., 0] + (c.clamp(max=0) @ out_hi[..., None])[..., 0] + d
    if method is BoundMethod.INTERVAL:
        return SpecBound(ibp, torch.zeros(c.shape[:2] + (low.input_size,), dtype=_DT), [None] * len(low.nodes),
                         None, ibp)
    val, a_in, rec = backward(low, bounds, len(low.nodes), low.output, c, record=record)
    state, lin = None, val
    if alpha_steps > 0:
        # the linear form (and the ReLU scores) of the optimised bound: on mnist_fc 256x4 prop 3
        # eps 0.05, scoring ReLUs by it instead of by plain CROWN's halved the sub-domains
        # rows proved already (by plain CROWN or intervals) ask nothing more of the optimiser; a
        # sub-domain leaves it once every row is proved (verify.alpha._ascend)
        enough = torch.where(torch.maximum(val + d, ibp) > 0, torch.full_like(d, -1e30), -d)
        opt, state, a_in, rec = optimise_alpha(low, bounds, c, alpha_steps, alpha_lr, splits, init=init,
                                               limits=limits, enough=enough)
        val, lin = torch.maximum(val, opt), opt
    return SpecBound(torch.maximum(val + d, ibp), a_in, rec, state, lin + d)


# -- on a network, over NumPy boxes ------------------------------------------
def output_bounds(network: Any, lower: np.ndarray, upper: np.ndarray, *,
                  method: BoundMethod | str = BoundMethod.CROWN) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of every output over ``D`` input boxes.

    ``lower``/``upper``: float arrays ``(D, *network.input_shape)`` (or
    ``(D, input_size)``).  Returns ``(lo, hi)``, each float64 ``(D, output_size)``.
    ``method``: ``"interval"`` or ``"crown"`` (see :class:`BoundMethod`).
    """
    low = lower_network(network)
    x_lo, x_hi = _as_boxes(low, lower, upper)
    with torch.no_grad():
        b = compute_bounds(low, x_lo, x_hi, method=method)
        n = low.output.size
        eye = torch.eye(n, dtype=_DT)
        res = spec_lower(low, b, torch.cat([eye, -eye]), torch.zeros(2 * n, dtype=_DT), method=method)
    lo, hi = res.lower[:, :n], -res.lower[:, n:]
    return lo.cpu().numpy().copy(), hi.cpu().numpy().copy()


def spec_bounds(network: Any, lower: np.ndarray, upper: np.ndarray, c: np.ndarray, d: np.ndarray, *,
                method: BoundMethod | str = BoundMethod.CROWN, alpha_steps: int = 0) -> np.ndarray:
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
    return res.lower.detach().cpu().numpy().copy()


def lower_network(network: Any) -> Lowered:
    """The lowered form (see :mod:`nnaudit.networks.lower`); accepts a Network or Lowered."""
    return lower(network)
