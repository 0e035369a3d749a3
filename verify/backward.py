"""Backward substitution (DeepPoly / CROWN): a linear lower bound of a linear
function of one affine form, substituted back through the linear relaxations of
the nodes before it down to the input, then minimised over the input box.

Each node's layer supplies the rule of one step (``linear_bounds`` over its
relaxation, or ``relax`` with given lower slopes ``alpha``); this module
composes the steps over the graph's affine edges.
:func:`nnaudit.verify.bounds.compute_bounds` uses it for the intermediate bounds,
:func:`~nnaudit.verify.bounds.spec_lower` for a property's rows and
:mod:`nnaudit.verify.alpha` for every step of its slope optimisation.
"""

from __future__ import annotations

import torch

from nnaudit.networks.lower import Affine, Lowered, Node
from nnaudit.verify.edges import dense_rows, edge_mats
from nnaudit.verify.layer_bounds import LayerBounds


def backward(low: Lowered, bounds: LayerBounds, upto: int, target: Affine, lam: torch.Tensor | None,
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
    mats = edge_mats(low, bounds.x_lo.dtype)
    coeff, const = _start(mats[id(target)][:3], lam, rows, bounds.x_lo.shape[0])
    recorded: list[torch.Tensor | None] = [None] * len(low.nodes)
    for k in reversed(range(upto)):
        a = coeff.pop(k + 1, None)
        if a is None:
            continue
        if record:
            recorded[k] = a
        node = low.nodes[k]
        a_z, c = node.layer.linear_bounds(a, _relaxation(node, bounds, k, alphas), in_shape=node.in_shape)
        if betas is not None and k in betas:
            beta, sign = betas[k]
            a_z = a_z - beta * sign[:, None, :]
        const = const + c
        pm, _, pb = mats[id(node.pre)][:3]
        const = const + a_z @ pb
        for s in pm:
            coeff[s] = coeff[s] + a_z @ pm[s].T if s in coeff else a_z @ pm[s].T
    d = bounds.x_lo.shape[0]
    a_in = coeff.get(0, torch.zeros((d, const.shape[-1], low.input_size), dtype=const.dtype))
    lo, hi = bounds.x_lo[:, None, :], bounds.x_hi[:, None, :]
    value = const + (a_in.clamp(min=0) * lo).sum(-1) + (a_in.clamp(max=0) * hi).sum(-1)
    return value, a_in, recorded


def _start(target: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], torch.Tensor], lam: torch.Tensor | None,
           rows: torch.Tensor | None, d: int) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """The coefficients ``(D, r, n_s)`` per source and the constant ``(D, r)`` of ``lam @ target``
    (or of the ``rows`` of ``target`` and their negations; see :func:`backward`)."""
    m, _, bias = target
    if rows is not None:
        picked = {s: dense_rows(m[s], rows).to(bias.dtype) for s in m}
        coeff: dict[int, torch.Tensor] = {s: torch.stack([v, -v], 1) for s, v in picked.items()}
        const = torch.stack([bias[rows], -bias[rows]], 1)
    else:
        assert lam is not None
        coeff = {s: lam @ m[s].T for s in m}
        const = lam @ bias
    if lam is not None and lam.ndim == 2:
        coeff = {s: v.expand(d, -1, -1) for s, v in coeff.items()}
        const = const.expand(d, -1)
    return coeff, const


def _relaxation(node: Node, bounds: LayerBounds, k: int,
                alphas: dict[int, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    """Node k's relaxation: the one made with its bounds, or with the lower slopes ``alphas[k]``
    (``(D, r, n)``: one slope per bounded row, and the relaxation becomes ``(D, r, n)``)."""
    alpha = None if alphas is None else alphas.get(k)
    if alpha is None:
        return bounds.relax[k]
    if alpha.ndim == 3:
        return node.layer.relax(bounds.pre_lo[k][:, None], bounds.pre_hi[k][:, None], in_shape=node.in_shape,
                                alpha=alpha)
    return node.layer.relax(bounds.pre_lo[k], bounds.pre_hi[k], in_shape=node.in_shape, alpha=alpha)
