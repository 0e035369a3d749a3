"""Exact closing of small sub-domains by their ReLU phases and LP certificates.

Part of step 3 (branch and bound), between bounds and Z3.  On a sub-domain
with only a few unstable ReLUs, each pattern of their phases makes the
network exactly affine on the box: every pre-activation and every output is
``g @ x + h`` (composed here in float64 from the lowered network), and the
pattern holds where ``s_j z_j(x) >= 0`` for its phases ``s_j``.  An open
disjunct ``C y + d <= 0`` (all rows) is then impossible under the pattern
exactly when a convex combination of its rows' forms and of the forms
``-s_j z_j`` is positive on the whole box (Farkas' lemma with the box kept
as it is: the LP of :func:`combination_closes`, whose optimum is the
pattern's margin).  The sub-domain is closed when every pattern closes every
open disjunct; one pattern that does not close leaves it to the search.

Why: on ACAS Xu the three instances that ran out of time (3_3 and 4_2 prop
2, 4_7 prop 1) spend their search in a thin layer of depth-40 sub-domains
with 2-6 unstable ReLUs each, where the relaxation of those few ReLUs keeps
every row's bound a little below zero (median -3e-4) and no combination of
the rows' linear bounds closes (0 of 7055).  Z3 decides such a leaf exactly
but took 1.4-3.6 s on each (1.1 s of it building the encoding), more than a
probe's time; the 16-64 patterns of such a leaf take 4 ms on average here
(most patterns are closed by a candidate certificate without an LP), with
the same answer as Z3 on each of the 40 leaves compared.  It does not finish
those instances: 3_3 prop 2 closed 31 878 sub-domains this way in 300 s and
still had more; the layer of near-zero bounds is that large.  (4_7 prop 1
has since been solved by tighter intermediate bounds, see
:func:`nnaudit.verify.bounds._refine`.)

Soundness: a certificate is re-evaluated in float64 (its combination's
minimum over the box must exceed ``tol``, like every bound of the search),
and stability is read from the bounds widened as for Z3
(:func:`~nnaudit.verify.encode.widen`), so a neuron within rounding of zero
counts as unstable and gets both phases.  This module never answers
"violated" and never decides a sub-domain it cannot close.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from nnaudit.verify.encode import widen
from nnaudit.networks.lower import Lowered
from nnaudit.verify.spec import Region


def applies(low: Lowered) -> bool:
    """Whether phase enumeration is exact for ``low``: every non-linear node is a ReLU."""
    return all(node.kind == "relu" for node in low.nodes)


def unstable_neurons(pre: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Per node, the neurons whose widened pre-activation bounds straddle zero."""
    out = []
    for lo, hi in pre:
        l, u = widen(lo, hi)
        out.append(np.flatnonzero((l < 0) & (u > 0)))
    return out


def pattern_forms(low: Lowered, pre: list[tuple[np.ndarray, np.ndarray]],
                  unstable: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The network's affine forms under every phase pattern of its unstable ReLUs.

    ``pre[k] = (lo, hi)``: node k's pre-activation bounds on the sub-domain
    (neurons stable by them keep their phase).  Returns ``(outputs, phases)``:
    ``outputs`` ``(P, n_in + 1, n_out)``, column j the output j as
    ``x @ g + h`` (last row: ``h``) under pattern p; ``phases`` ``(P, n_in + 1,
    U)``, the forms ``-s_j z_j`` that are ``<= 0`` exactly where pattern p's
    phases hold.  ``P = 2 ** U`` for ``U`` unstable neurons (``unstable``: their
    :func:`unstable_neurons`, when the caller has them already).
    """
    n = low.input_size
    unstable = unstable_neurons(pre) if unstable is None else unstable
    count = sum(len(q) for q in unstable)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=count)), dtype=np.float64).reshape(2 ** count, count)
    p = len(signs)
    identity = np.zeros((n + 1, n))
    identity[:n] = np.eye(n)
    sources = [np.broadcast_to(identity, (p, n + 1, n))]
    phases, used = [], 0
    for k, node in enumerate(low.nodes):
        z = _apply(node.pre, sources, n)
        lo, _ = widen(*pre[k])
        keep = np.broadcast_to(lo >= 0, (p, len(lo))).astype(np.float64)
        q = unstable[k]
        if len(q):
            s = signs[:, used:used + len(q)]
            keep[:, q] = s > 0
            phases.append(-z[:, :, q] * s[:, None, :])
            used += len(q)
        sources.append(z * keep[:, None, :])
    outputs = _apply(low.output, sources, n)
    return outputs, np.concatenate(phases, axis=2) if phases else np.zeros((p, n + 1, 0))


def _apply(form: Any, sources: list[np.ndarray], n: int) -> np.ndarray:
    """An affine edge on source forms ``(P, n + 1, n_s)``: ``(P, n + 1, n_z)``."""
    z = sum(sources[s] @ m for s, m in form.mats.items())
    z = np.array(z, dtype=np.float64)  # a fresh array even when the edge reads the input only
    z[:, n] += form.bias
    return z


def closes_by_phases(low: Lowered, region: Region, lo: np.ndarray, hi: np.ndarray,
                     pre: list[tuple[np.ndarray, np.ndarray]], open_disjuncts: np.ndarray, tol: float,
                     max_unstable: int) -> bool:
    """Whether every phase pattern of the sub-domain ``[lo, hi]`` closes every disjunct in
    ``open_disjuncts`` (indices into ``region.disjuncts``) by an LP certificate above ``tol``.

    ``pre``: node pre-activation bounds on the sub-domain (see :func:`pattern_forms`).
    False without trying when more than ``max_unstable`` ReLUs are unstable; else at
    most ``2 ** U`` small LPs per disjunct, stopping at the first pattern that does
    not close.  Requires :func:`applies`.
    """
    unstable = unstable_neurons(pre)
    if sum(len(q) for q in unstable) > max_unstable:
        return False
    outputs, phases = pattern_forms(low, pre, unstable)
    n = low.input_size
    for j in open_disjuncts:
        c, d = region.disjuncts[int(j)]
        rows = outputs @ c.T                      # (P, n + 1, R): the forms of C y
        rows[:, n] += d
        forms = np.concatenate([rows, phases], axis=2).transpose(0, 2, 1)  # (P, R + U, n + 1)
        if not _all_close(forms, lo, hi, tol):
            return False
    return True


def _all_close(forms: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float) -> bool:
    """Whether each of the ``P`` sets of forms ``(P, M, n + 1)`` has a convex combination above
    ``tol`` on the box.  Candidates first, an LP only where none works: each form alone
    (a pattern whose phases contradict each other on the box, or a row that closes it
    alone), then the combinations that closed earlier patterns (patterns differ in a
    few phases, and one certificate often serves several).  On ACAS Xu 3_3 prop 2 this
    took the LPs from 41 to 2.2 per sub-domain, and a sub-domain from 48 to 3.9 ms."""
    from scipy.optimize import linprog

    n = len(lo)
    cands = np.eye(forms.shape[1])
    for k in range(len(forms)):
        if (_values(cands, forms[k], lo, hi) > tol).any():
            continue
        lam = _best_combination(linprog, forms[k, :, :n], forms[k, :, n], lo, hi)
        if lam is None or not _values(lam[None], forms[k], lo, hi)[0] > tol:
            return False
        cands = np.concatenate([lam[None], cands])
    return True


def _values(lams: np.ndarray, forms: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minimum over the box of each combination ``lams`` ``(K, M)`` of the forms ``(M, n + 1)``."""
    w = lams @ forms
    n = len(lo)
    return w[:, n] + np.maximum(w[:, :n], 0) @ lo + np.minimum(w[:, :n], 0) @ hi


def combination_closes(a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float) -> np.ndarray:
    """Which boxes have a convex combination of the linear functions ``a_i x + c_i``
    that exceeds ``tol`` everywhere in the box (so some ``a_i x + c_i`` is positive
    at every point): ``a`` ``(P, R, n)``, ``c`` ``(P, R)``, boxes ``lo``/``hi``
    ``(P, n)``; returns a ``(P,)`` bool mask.

    The best combination comes from an LP (:func:`_best_combination`) and its
    value is re-evaluated exactly here.  That value is at most ``max_i (a_i p +
    c_i)`` at any point ``p`` of the box, so the LP runs only where that is above
    ``tol`` at every row's minimising vertex and at the centre (ACAS Xu 3_3
    prop 2: none of 7055 LPs could close, and they took a third of the search).
    """
    from scipy.optimize import linprog

    points = np.concatenate([np.where(a > 0, lo[:, None], hi[:, None]), (lo + hi)[:, None] / 2], axis=1)
    ceiling = (np.einsum("pqn,prn->pqr", points, a) + c[:, None, :]).max(-1).min(-1)
    closes = np.zeros(len(a), dtype=bool)
    for k in np.flatnonzero(ceiling > tol):
        lam = _best_combination(linprog, a[k], c[k], lo[k], hi[k])
        if lam is not None:
            closes[k] = _values(lam[None], np.concatenate([a[k], c[k][:, None]], axis=1), lo[k], hi[k])[0] > tol
    return closes


def _best_combination(linprog: Any, a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """``argmax_{lam in simplex} min_{x in [lo, hi]} lam @ (a x + c)`` by LP, or None."""
    r, n = a.shape
    # variables: lam (r), t (n); maximise sum t + lam @ c  s.t.  t_k <= (lam @ a)_k * lo_k, t_k <= (lam @ a)_k * hi_k
    cost = -np.concatenate([c, np.ones(n)])
    a_ub = np.zeros((2 * n, r + n))
    a_ub[:n, :r] = -(a * lo).T
    a_ub[n:, :r] = -(a * hi).T
    a_ub[:n, r:] = np.eye(n)
    a_ub[n:, r:] = np.eye(n)
    a_eq = np.concatenate([np.ones(r), np.zeros(n)])[None]
    bounds = [(0, None)] * r + [(None, None)] * n
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
    return np.maximum(res.x[:r], 0) if res.status == 0 else None
