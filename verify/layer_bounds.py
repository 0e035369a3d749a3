"""What bound propagation hands around: the bounds of every node of a batch of
sub-domains (:class:`LayerBounds`) and the lower bounds of a property's rows
(:class:`SpecBound`), with the operations that treat a batch as rows: map a
function over every tensor, change the dtype, cut out consecutive sub-domains
and join parts back.

:mod:`nnaudit.verify.bounds` makes these; branch and bound
(:mod:`nnaudit.verify.bab`) and the row packing of
:mod:`nnaudit.verify.rowpack` read and slice them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


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


def each(bounds: LayerBounds, f: Callable[[torch.Tensor], torch.Tensor]) -> LayerBounds:
    """The bounds with ``f`` applied to every tensor (each has the sub-domains first)."""
    many = lambda ts: [f(t) for t in ts]  # noqa: E731
    return LayerBounds(f(bounds.x_lo), f(bounds.x_hi), many(bounds.pre_lo), many(bounds.pre_hi),
                       many(bounds.out_lo), many(bounds.out_hi), f(bounds.feasible),
                       [tuple(many(rel)) for rel in bounds.relax])


def cast(bounds: LayerBounds, dtype: torch.dtype) -> LayerBounds:
    """The same bounds in another dtype (no copy when it already is)."""
    if bounds.x_lo.dtype == dtype:
        return bounds
    return each(bounds, lambda t: t.to(dtype) if t.is_floating_point() else t)  # feasibility and indices stay


def part(parent: LayerBounds | None, d: int, start: int, size: int) -> LayerBounds | None:
    """Sub-domains ``start : start + size`` of ``parent`` bounds of ``d`` sub-domains (or the
    one parent of them all, or None, as they are)."""
    if parent is None or parent.x_lo.shape[0] != d:
        return parent
    return each(parent, lambda t: t[start:start + size])


def joined(parts: list[LayerBounds]) -> LayerBounds:
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
