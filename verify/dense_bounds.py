"""Sound lower bounds of a property's rows over batches of input boxes, in float64 NumPy.

The bounds of the dense route (:mod:`nnaudit.verify.dense_bab`), on a
:class:`~nnaudit.networks.dense.DenseChain` whose last map computes the rows ``C y + d``:

1. pre-activation bounds of every ReLU layer by forward symbolic linear bounds (each
   neuron's lower and upper linear function of the input, through the triangle relaxation
   of the ReLUs before it), intersected with interval bounds; the torch route's ``auto``
   intermediate bounds start the same way for networks of at most 64 inputs;
2. the rows' lower bounds by backward substitution (CROWN) through those relaxations, with
   adaptive lower slopes (1 where ``u > -l``, else 0), intersected with interval bounds.

Floating point: the sums are float64 like the torch route's; every pre-activation bound is
widened outwards by :data:`WIDEN` relative to its magnitude, and a row's bound is lowered by
:data:`SLACK` times the magnitude of the terms it sums, so that rounding cannot turn a
bound that is barely below the true minimum into one above it; the search's ``prove_tol``
(as :attr:`~nnaudit.verify.bab.config.BabConfig.prove_tol`) is on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnaudit.networks.dense import DenseChain

#: pre-activation bounds are widened by this much relative to ``1 + |l| + |u|``
WIDEN = 1e-9
#: a row's lower bound is lowered by this much relative to the magnitude of the terms it sums
SLACK = 1e-11


@dataclass(frozen=True)
class RowBounds:
    """Bounds of ``D`` boxes: ``lower`` ``(D, R)`` lower bounds of the rows; ``a_in`` ``(D, R, n_in)``
    the input coefficients of their linear lower bounds ``a_in @ x + offset`` (``offset`` ``(D, R)``,
    already lowered by the rounding slack); ``unstable`` ``(D,)`` ReLUs whose bounds straddle 0."""

    lower: np.ndarray
    a_in: np.ndarray
    unstable: np.ndarray
    offset: np.ndarray


@dataclass(frozen=True)
class _Relax:
    """One ReLU layer's relaxation over ``D`` boxes, each ``(D, n)``: ``lo <= z <= hi``,
    ``slope * z <= relu(z) <= up * z + shift``."""

    lo: np.ndarray
    hi: np.ndarray
    slope: np.ndarray
    up: np.ndarray
    shift: np.ndarray


def bound_rows(chain: DenseChain, lo: np.ndarray, hi: np.ndarray, *, refine: bool = True) -> RowBounds:
    """Lower bounds of every output of ``chain`` (the property's rows) over the boxes
    ``lo``/``hi`` ``(D, n_in)``; ``refine``: tighten the unstable ReLUs' pre-activation bounds
    by backward substitution too (see :func:`_forward`)."""
    widest = max(w.shape[1] for w in chain.weights)
    work = _Work(len(lo) * 2 * widest * max(w.shape[0] for w in chain.weights))
    relax, h_lo, h_hi = _forward(chain, lo, hi, refine, work)
    w, b = chain.weights[-1], chain.biases[-1]
    ibp = h_lo @ np.maximum(w, 0) + h_hi @ np.minimum(w, 0) + b
    value, scale, a_in = _backward(chain, relax, len(relax), w.T, b, lo, hi, work)
    lower = np.maximum(value - SLACK * scale, ibp - SLACK * _ibp_scale(h_lo, h_hi, w, b))
    unstable = sum(((r.lo < 0) & (r.hi > 0)).sum(axis=1) for r in relax) if relax else np.zeros(len(lo), int)
    offset = value - SLACK * scale - _min_over(a_in, lo, hi)
    return RowBounds(lower, a_in, np.asarray(unstable), offset)


def _backward(chain: DenseChain, relax: list[_Relax], upto: int, lam: np.ndarray, const: np.ndarray,
              lo: np.ndarray, hi: np.ndarray, work: _Work, *,
              track: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds ``(D, r)`` of ``lam @ h + const`` (``lam`` ``(r, n)``, ``const`` ``(r,)``; ``h`` the
    output of ReLU layer ``upto - 1``, or the input for 0) by backward substitution through the
    relaxations of layers ``< upto``; with the magnitude of the terms summed ``(D, r)`` (zero
    unless ``track``) and the input coefficients ``(D, r, n_in)``."""
    d, rows = len(lo), lam.shape[0]
    const = np.broadcast_to(const, (d, rows)).copy()
    scale = np.abs(const) if track else np.zeros_like(const)
    for k in reversed(range(upto)):
        a_z, c = _relu_step(lam, relax[k], work)
        const += c + a_z @ chain.biases[k]
        if track:
            scale += np.abs(c) + np.abs(a_z) @ np.abs(chain.biases[k])
        w = chain.weights[k]
        lam = np.matmul(a_z.reshape(-1, w.shape[1]), w.T, out=work.take(0, (d * rows, w.shape[0])))
        lam = lam.reshape(d, rows, w.shape[0])
    lam = np.broadcast_to(lam, (d,) + lam.shape[-2:]).copy()
    value = const + _min_over(lam, lo, hi)
    if track:
        scale += (np.abs(lam) * np.maximum(np.abs(lo), np.abs(hi))[:, None]).sum(-1)
    return value, scale, lam


class _Work:
    """Three scratch arrays that one backward pass reuses: a fresh multi-megabyte NumPy
    temporary is faulted in page by page, which took 3-5 times the arithmetic of a step
    (64 boxes x 100 rows x 50 neurons: 3.4 ms against 0.7 ms with reused arrays)."""

    def __init__(self, size: int) -> None:
        self.bufs = [np.empty(size) for _ in range(3)]
        self.lam = 0   # which array holds the coefficients being substituted

    def take(self, i: int, shape: tuple[int, ...]) -> np.ndarray:
        """Array ``i`` (0: the next coefficients, 1: a scratch one, 2: the step's result) as ``shape``;
        0 and 1 alternate, so that the coefficients just made are never written over while read."""
        if i == 0:
            self.lam = 1 - self.lam
            i = self.lam
        elif i == 1:
            i = 1 - self.lam
        return self.bufs[i][:int(np.prod(shape))].reshape(shape)


def _relu_step(lam: np.ndarray, r: _Relax, work: _Work) -> tuple[np.ndarray, np.ndarray]:
    """One step back through a ReLU layer: the coefficients ``(D, rows, n)`` of its input ``z`` in the
    lower bound of ``lam @ relu(z)`` (``lam`` ``(rows, n)`` or ``(D, rows, n)``; the lower slope
    where a coefficient is positive, the upper one where negative) and the constant ``(D, rows)``
    (the upper line's intercept)."""
    shape = (len(r.lo), lam.shape[-2], lam.shape[-1])
    pos = np.maximum(lam, 0, out=work.take(1, shape))
    a_z = np.subtract(lam, pos, out=work.take(2, shape))                # the negative part
    c = np.matmul(a_z, r.shift[:, :, None])[..., 0]
    np.multiply(a_z, r.up[:, None], out=a_z)
    np.multiply(pos, r.slope[:, None], out=pos)
    np.add(a_z, pos, out=a_z)
    return a_z, c


def _forward(chain: DenseChain, lo: np.ndarray, hi: np.ndarray, refine: bool,
             work: _Work) -> tuple[list[_Relax], np.ndarray, np.ndarray]:
    """Every ReLU layer's relaxation, and the interval bounds of the last ReLU layer's output
    (of the input when there is none), by forward symbolic and interval bounds; with ``refine``,
    the neurons unstable in some box also by backward substitution (the torch route's ``auto``
    intermediate bounds; forward bounds alone left ACAS Xu 1_1 prop 1 open after 145,000 boxes)."""
    d = len(lo)
    eye = np.broadcast_to(np.eye(lo.shape[1]), (d,) + (lo.shape[1],) * 2)
    la, lc = eye, np.zeros(lo.shape)                   # lower linear form of h over x: x @ la + lc
    ua, uc = eye, np.zeros(lo.shape)                   # upper linear form
    h_lo, h_hi = lo, hi
    relax: list[_Relax] = []
    for k, (w, b) in enumerate(zip(chain.weights[:-1], chain.biases[:-1])):
        wp, wn = np.maximum(w, 0), np.minimum(w, 0)
        la, ua = _mm(la, wp) + _mm(ua, wn), _mm(ua, wp) + _mm(la, wn)
        lc, uc = lc @ wp + uc @ wn + b, uc @ wp + lc @ wn + b
        z_lo = np.maximum(lc + _min_over_t(la, lo, hi), h_lo @ wp + h_hi @ wn + b)
        z_hi = np.minimum(uc - _min_over_t(-ua, lo, hi), h_hi @ wp + h_lo @ wn + b)
        if refine and k > 0:
            z_lo, z_hi = _refine(chain, relax, k, z_lo, z_hi, lo, hi, work)
        pad = WIDEN * (1 + np.abs(z_lo) + np.abs(z_hi))
        r = _relu(z_lo - pad, np.maximum(z_hi, z_lo) + pad)
        relax.append(r)
        la, lc = la * r.slope[:, None], lc * r.slope
        ua, uc = ua * r.up[:, None], uc * r.up + r.shift
        h_lo, h_hi = np.maximum(r.lo, 0), np.maximum(r.hi, 0)
    return relax, h_lo, h_hi


def _refine(chain: DenseChain, relax: list[_Relax], k: int, z_lo: np.ndarray, z_hi: np.ndarray,
            lo: np.ndarray, hi: np.ndarray, work: _Work) -> tuple[np.ndarray, np.ndarray]:
    """Layer ``k``'s pre-activation bounds ``(D, n)``, those of its neurons unstable in some box of
    the batch intersected with their backward substitution bounds (rows ``w_j`` and ``-w_j``)."""
    rows = np.flatnonzero(((z_lo < 0) & (z_hi > 0)).any(axis=0))
    if len(rows) == 0:
        return z_lo, z_hi
    w, b = chain.weights[k][:, rows].T, chain.biases[k][rows]
    value, _, _ = _backward(chain, relax, k, np.concatenate([w, -w]), np.concatenate([b, -b]), lo, hi, work,
                          track=False)
    z_lo, z_hi = z_lo.copy(), z_hi.copy()
    z_lo[:, rows] = np.maximum(z_lo[:, rows], value[:, :len(rows)])
    z_hi[:, rows] = np.minimum(z_hi[:, rows], -value[:, len(rows):])
    return z_lo, z_hi


def _relu(lo: np.ndarray, hi: np.ndarray) -> _Relax:
    """The triangle relaxation with CROWN's adaptive lower slope."""
    active, unstable = lo >= 0, (lo < 0) & (hi > 0)
    width = np.where(unstable, hi - lo, 1.0)
    up = np.where(active, 1.0, np.where(unstable, hi / width, 0.0))
    shift = np.where(unstable, -up * lo, 0.0)
    slope = np.where(active, 1.0, np.where(unstable & (hi > -lo), 1.0, 0.0))
    return _Relax(lo, hi, slope, up, shift)


def _mm(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w`` for a stack ``a`` ``(D, r, n)`` as one matrix product (NumPy's stacked product
    runs one small product per ``D``)."""
    return (a.reshape(-1, a.shape[-1]) @ w).reshape(a.shape[:-1] + (w.shape[1],))


def _min_over(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min over x in [lo, hi]`` of ``a @ x`` per row: ``a`` ``(D, R, n)``, boxes ``(D, n)``; ``(D, R)``."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    return (a * mid[:, None]).sum(-1) - (np.abs(a) * rad[:, None]).sum(-1)


def _min_over_t(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:func:`_min_over` of forms stored by column: ``a`` ``(D, n, m)``; ``(D, m)``."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    return (a * mid[:, :, None]).sum(1) - (np.abs(a) * rad[:, :, None]).sum(1)


def _ibp_scale(h_lo: np.ndarray, h_hi: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Magnitude of the terms of the interval bound ``(D, R)``."""
    return np.maximum(np.abs(h_lo), np.abs(h_hi)) @ np.abs(w) + np.abs(b)
