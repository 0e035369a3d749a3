"""What one batch's bounds settle: the disjuncts they refute on each sub-domain, each
sub-domain's most promising row, and the ReLUs its bounds leave unstable.

A disjunct of the unsafe region is closed on a sub-domain once one of its rows has a lower
bound above the tolerance, or (deep sub-domains, disjuncts of several rows) once a convex
combination of its rows' linear lower bounds is positive on the whole box.
"""

from __future__ import annotations

import numpy as np
import torch

from nnaudit.networks.lower import Lowered
from nnaudit.verify.bab.queue import Chunk
from nnaudit.verify.bounds import LayerBounds, SpecBound
from nnaudit.verify.phases import combination_closes


def close_refuted(chunk: Chunk, b: LayerBounds, sb: SpecBound, lbs: np.ndarray, owner: np.ndarray, tol: float,
                  lp_depth: int | None) -> np.ndarray:
    """Close the disjuncts the bounds refute (in ``chunk.open``; ``owner``: the disjunct of each
    row; ``lp_depth``: from this depth on, also by row combinations, None: never); returns which
    sub-domains stay open ``(k,)``."""
    proved = lbs > tol
    closed = np.zeros_like(chunk.open)
    for j in range(chunk.open.shape[1]):
        closed[:, j] = proved[:, owner == j].any(axis=1)
    chunk.open &= ~closed
    alive = b.feasible.cpu().numpy() & chunk.open.any(axis=1)
    if lp_depth is None:
        return alive
    deep = np.flatnonzero(alive & (chunk.depth >= lp_depth))
    if len(deep):
        _lp_close(chunk, deep, sb.lin_lower.detach().cpu().numpy(), sb.a_in.detach().cpu().numpy(), owner, tol)
        alive = b.feasible.cpu().numpy() & chunk.open.any(axis=1)
    return alive


def _lp_close(chunk: Chunk, idx: np.ndarray, lin: np.ndarray, a_in: np.ndarray, owner: np.ndarray,
              tol: float) -> None:
    """Close a disjunct when a convex combination of its rows' linear lower
    bounds ``a_i x + c_i`` is positive on the whole box (see :func:`combination_closes`).
    ``lin``: the minima of those linear bounds over the box (``SpecBound.lin_lower``,
    not the best bound ``lower``, whose excess over it no linear form backs)."""
    for j in range(chunk.open.shape[1]):
        rows = np.flatnonzero(owner == j)
        cand = idx[chunk.open[idx, j]] if len(rows) >= 2 else idx[:0]
        if len(cand) == 0:
            continue
        lo, hi = chunk.lo[cand], chunk.hi[cand]
        a = a_in[cand][:, rows]                                                  # (P, R, n)
        c = lin[cand][:, rows] - (np.maximum(a, 0) * lo[:, None] + np.minimum(a, 0) * hi[:, None]).sum(-1)
        chunk.open[cand[combination_closes(a, c, lo, hi, tol)], j] = False


def unstable_counts(low: Lowered, b: LayerBounds, splits: list[torch.Tensor] | None) -> np.ndarray:
    """Per sub-domain, its ReLUs whose bounds straddle 0 and whose phase no split fixed ``(k,)``."""
    count = torch.zeros(b.x_lo.shape[0], dtype=torch.int64)
    for k, node in enumerate(low.nodes):
        if node.kind == "relu":
            u = (b.pre_lo[k] < 0) & (b.pre_hi[k] > 0)
            if splits is not None:
                u &= splits[k] == 0
            count += u.sum(dim=1)
    return count.cpu().numpy()
