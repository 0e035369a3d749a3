"""Bounding only the rows of the unsafe region a sub-domain still has to refute.

A robustness property's unsafe region is a disjunction of one row per other
class ("class j scores at least the true one"); a sub-domain is done when
every disjunct is refuted, and a disjunct refuted in a sub-domain stays
refuted in everything split from it.  On mnist_fc 256x4 at eps 0.05 a
sub-domain deep in the search has 3.5 of its 9 rows open on average, and 42%
of them a single one, yet bounding all rows costs all rows: the slope
optimisation of branch and bound works on ``(sub-domains, rows, neurons)``.

:func:`spec_lower_open` bounds, per sub-domain, only the rows of its open
disjuncts.  The batch is split into at most two groups by how many rows they
have open (when the saving pays for a second call), each group's rows are
packed (a sub-domain with fewer open rows than its group repeats its first
one) and bounded with :func:`~nnaudit.verify.bounds.spec_lower`, and the
result is unpacked to all rows: a closed row gets the bound +inf (it is
refuted already), zero coefficients and no warm start.  Rows are bounded
independently (each has its own slopes and multipliers), so an open row's
bound is the one the whole batch would give it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Lowered
from nnaudit.verify.bounds import spec_lower
from nnaudit.verify.layer_bounds import LayerBounds, SpecBound, each

#: a second bounding call costs about this many (sub-domain, row) pairs of work
CALL_COST = 16


def spec_lower_open(low: Lowered, bounds: LayerBounds, c: torch.Tensor, d: torch.Tensor, open_rows: np.ndarray,
                    **kw: Any) -> SpecBound:
    """:func:`~nnaudit.verify.bounds.spec_lower` for the rows ``open_rows`` ``(D, r)`` (bool) of
    each sub-domain; other rows come back refuted (+inf).  ``c`` ``(r, n_out)``, ``d`` ``(r,)``;
    ``kw`` goes to ``spec_lower`` (its ``splits`` and ``init`` are per sub-domain, split here)."""
    open_rows = open_rows.copy()
    open_rows[~open_rows.any(axis=1)] = True  # nothing open: bound every row (never asked by the search)
    groups = _groups(open_rows.sum(axis=1))
    if len(groups) == 1 and open_rows.all():
        return spec_lower(low, bounds, c, d, **kw)
    parts = [(sel, _packed(open_rows[sel])) for sel in groups]
    return _unpack([(sel, rows, _bound_part(low, bounds, c, d, sel, rows, kw)) for sel, rows in parts],
                   open_rows.shape, c.shape[0])


def _groups(counts: np.ndarray) -> list[np.ndarray]:
    """Sub-domain indices in one group, or two split by open-row count where that costs less
    (``size x most rows`` per group, plus :data:`CALL_COST` per call)."""
    order = np.argsort(counts, kind="stable")
    ranked = counts[order]
    n = len(order)
    best_cost, best_cut = n * int(ranked[-1]), n
    for cut in range(1, n):
        cost = cut * int(ranked[cut - 1]) + (n - cut) * int(ranked[-1]) + CALL_COST
        if cost < best_cost:
            best_cost, best_cut = cost, cut
    if best_cut == n:
        return [np.arange(n)]
    return [np.sort(order[:best_cut]), np.sort(order[best_cut:])]


def _packed(open_rows: np.ndarray) -> np.ndarray:
    """``(k, m)`` row numbers: each sub-domain's open rows, padded with its first one."""
    m = int(open_rows.sum(axis=1).max())
    out = np.empty((len(open_rows), m), np.int64)
    for i, mask in enumerate(open_rows):
        rows = np.flatnonzero(mask)
        out[i, :len(rows)] = rows
        out[i, len(rows):] = rows[0]
    return out


def _bound_part(low: Lowered, bounds: LayerBounds, c: torch.Tensor, d: torch.Tensor, sel: np.ndarray,
                rows: np.ndarray, kw: dict[str, Any]) -> SpecBound:
    """``spec_lower`` of sub-domains ``sel`` on their packed ``rows``."""
    at, r = torch.as_tensor(sel), torch.as_tensor(rows)
    part = _take(bounds, at)
    opts = dict(kw)
    if opts.get("splits") is not None:
        opts["splits"] = [None if s is None else s.index_select(0, at) for s in opts["splits"]]
    if opts.get("init") is not None:
        opts["init"] = {g: {k: _gather_rows(v.index_select(0, at), r) for k, v in group.items()}
                        for g, group in opts["init"].items()}
    return spec_lower(low, part, c[r], d[r], **opts)


def _take(bounds: LayerBounds, at: torch.Tensor) -> LayerBounds:
    """Sub-domains ``at`` of ``bounds`` (tensors shared by all sub-domains, first axis 1, stay)."""
    d = bounds.x_lo.shape[0]
    return each(bounds, lambda t: t if t.shape[0] != d else t.index_select(0, at))


def _gather_rows(v: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``v`` ``(k, r, ...)`` at each sub-domain's ``rows`` ``(k, m)``: ``(k, m, ...)``."""
    index = rows.reshape(rows.shape + (1,) * (v.dim() - 2)).expand(rows.shape + v.shape[2:])
    return v.gather(1, index)


Part = tuple[np.ndarray, np.ndarray, SpecBound]  # a group's sub-domains, packed rows, and bounds


def _unpack(parts: list[Part], shape: tuple[int, int], r: int) -> SpecBound:
    """One :class:`SpecBound` over all sub-domains and rows from the groups' packed ones."""
    n_dom = shape[0]
    full = lambda get, fill: _scattered(parts, get, fill, n_dom, r)  # noqa: E731
    lower = full(lambda sb: sb.lower, float("inf"))
    a_in = full(lambda sb: sb.a_in, 0.0)
    coeffs = [full(lambda sb, k=k: sb.node_coeffs[k], 0.0) for k in range(len(parts[0][2].node_coeffs))]
    lin = full(lambda sb: sb.lin_lower, float("inf"))
    state = None
    if parts[0][2].state is not None:  # a group without splits at a node has no multipliers there
        keys = {g: sorted({k for _, _, sb in parts for k in sb.state[g]}) for g in parts[0][2].state}
        state = {g: {k: full(lambda sb, g=g, k=k: sb.state[g].get(k), float("nan")) for k in ks}
                 for g, ks in keys.items()}
    assert lower is not None and a_in is not None
    return SpecBound(lower, a_in, coeffs, state, lin)


def _scattered(parts: list[Part], get: Any, fill: float, n_dom: int, r: int) -> torch.Tensor | None:
    """``get(bounds)`` of every group, ``(k, m, ...)`` on its packed rows, placed in one
    ``(n_dom, r, ...)`` tensor (``fill`` where no group has a value); None when no group has one."""
    values = [(sel, rows, get(sb)) for sel, rows, sb in parts]
    first = next((v for _, _, v in values if v is not None), None)
    if first is None:
        return None
    out = torch.full((n_dom, r) + tuple(first.shape[2:]), fill, dtype=first.dtype)
    for sel, rows, v in values:
        if v is not None:
            out[torch.as_tensor(sel)[:, None].expand(rows.shape), torch.as_tensor(rows)] = v
    return out
