"""Exact encoding of a network in linear real arithmetic for Z3.

Step 4 of the pipeline: a sub-domain that bounds neither prove nor refute is
decided exactly.  The encoding follows the lowered form
(:mod:`nnaudit.verify.lower`): each node's pre-activation is a fresh real
``z == sum(w * source) + b`` with the float64 weights as exact rationals;
then

- ReLU: a neuron whose bounds prove it active is ``x = z``, inactive
  ``x = 0`` (no case split); an unstable one gets ``x >= 0, x >= z,
  (x <= 0 or x <= z)`` plus the triangle ``x <= u (z - l) / (u - l)`` and
  ``l <= z <= u`` to help the solver;
- MaxPool: ``y >= z_i`` for every window input and ``y <= z_i`` for one of
  them, leaving out inputs the bounds prove can never be the maximum;
- Sigmoid / Tanh: not piecewise linear, rejected with :class:`SolverError`.

Bounds are widened by a small tolerance before use, so float64 rounding in
bound propagation can never cut off a real solution.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import z3

from nnaudit.errors import SolverError
from nnaudit.verify.lower import Affine, Lowered
from nnaudit.verify.lower import lower as lower_network
from nnaudit.verify.smt import real

_IDS = itertools.count()


def widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds loosened by ``1e-6 * (1 + |bound|)`` to absorb rounding."""
    tol = 1e-6 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    return lo - tol, hi + tol


def encode_network(network: Any, x_vars: Sequence[Any], *, lower: np.ndarray | None = None,
                   upper: np.ndarray | None = None) -> tuple[list[Any], list[Any]]:
    """Encode ``network`` exactly over the z3 input expressions ``x_vars``.

    ``x_vars``: ``network.input_size`` z3 arithmetic expressions (Real
    constants, or any linear expression, e.g. of Int step counts) for the
    flattened input.  ``lower``/``upper``: optional input box (arrays shaped
    ``input_shape``) used to fix provably stable neurons; the caller must
    constrain ``x_vars`` to that box itself.  Returns ``(constraints,
    output_exprs)`` with ``len(output_exprs) == network.output_size``.
    """
    low = lower_network(network)
    if len(x_vars) != low.input_size:
        raise SolverError(f"expected {low.input_size} input expressions, got {len(x_vars)}")
    pre = None
    if lower is not None and upper is not None:
        import torch

        from nnaudit.verify.bounds import compute_bounds

        lo = torch.as_tensor(np.asarray(lower, dtype=np.float64).reshape(1, -1))
        hi = torch.as_tensor(np.asarray(upper, dtype=np.float64).reshape(1, -1))
        with torch.no_grad():
            b = compute_bounds(low, lo, hi)
        pre = [(l[0].numpy(), u[0].numpy()) for l, u in zip(b.pre_lo, b.pre_hi)]
    return encode_lowered(low, x_vars, pre)


def encode_lowered(low: Lowered, x_vars: Sequence[Any], pre: list[tuple[np.ndarray, np.ndarray]] | None,
                   splits: list[np.ndarray | None] | None = None) -> tuple[list[Any], list[Any]]:
    """:func:`encode_network` on a lowered network with given pre-activation
    bounds ``pre[k] = (lo, hi)`` (1-D arrays, may be None) and optional ReLU
    phases ``splits[k]`` (+1 active, -1 inactive, 0 free)."""
    tag = next(_IDS)
    sources: list[list[Any]] = [list(x_vars)]
    cons: list[Any] = []
    coef_cache: dict[float, Any] = {}
    for k, node in enumerate(low.nodes):
        lo_hi = None if pre is None else widen(*pre[k])
        phase = None if splits is None else splits[k]
        needed = _needed(node, lo_hi, phase)
        z = _affine(node.pre, sources, coef_cache, cons, f"n{tag}_{k}_z", needed)
        if node.kind == "relu":
            sources.append(_relu(z, lo_hi, phase, cons, f"n{tag}_{k}_x"))
        elif node.kind == "maxpool":
            sources.append(_maxpool(z, node.windows, lo_hi, cons, f"n{tag}_{k}_x"))
        else:
            raise SolverError(f"layer {node.name!r} ({node.kind}) is not piecewise linear and cannot be encoded exactly")
    outs = _affine(low.output, sources, coef_cache, cons, f"n{tag}_y", None)
    return cons, outs


def _needed(node: Any, lo_hi: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None) -> np.ndarray | None:
    """Mask of pre-activations the encoding needs (inactive ReLUs are not)."""
    if node.kind != "relu":
        return None
    need = np.ones(node.pre.size, dtype=bool)
    if lo_hi is not None:
        need &= lo_hi[1] >= 0
    if phase is not None:
        need |= phase != 0  # a fixed phase is a constraint on z
    return need


def _affine(form: Affine, sources: list[list[Any]], cache: dict[float, Any], cons: list[Any],
            name: str, needed: np.ndarray | None) -> list[Any]:
    """Fresh reals ``z_j == sum_s sources[s] @ mats[s][:, j] + bias_j``."""
    out: list[Any] = []
    for j in range(form.size):
        if needed is not None and not needed[j]:
            out.append(None)
            continue
        terms = []
        for s, m in form.mats.items():
            col = m[:, j]
            for i in np.flatnonzero(col):
                w = float(col[i])
                if w not in cache:
                    cache[w] = real(w)
                terms.append(cache[w] * sources[s][i])
        b = float(form.bias[j])
        if b != 0.0:
            terms.append(cache.setdefault(b, real(b)))
        var = z3.Real(f"{name}{j}")
        cons.append(var == (z3.Sum(terms) if terms else z3.RealVal(0)))
        out.append(var)
    return out


def _relu(z: list[Any], lo_hi: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
          cons: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for j, zj in enumerate(z):
        p = 0 if phase is None else int(phase[j])
        l, u = (-np.inf, np.inf) if lo_hi is None else (float(lo_hi[0][j]), float(lo_hi[1][j]))
        if zj is None or u < 0:
            out.append(z3.RealVal(0))
            if zj is not None and p < 0:
                cons.append(zj <= 0)
            continue
        if p > 0 or l > 0:
            if p > 0:
                cons.append(zj >= 0)
            out.append(zj)
            continue
        if p < 0:
            cons.append(zj <= 0)
            out.append(z3.RealVal(0))
            continue
        x = z3.Real(f"{name}{j}")
        cons += [x >= 0, x >= zj, z3.Or(x <= 0, x <= zj)]
        if np.isfinite(l) and np.isfinite(u):
            cons += [zj >= real(l), zj <= real(u), x * real(u - l) <= real(u) * (zj - real(l))]
        out.append(x)
    return out


def _maxpool(z: list[Any], windows: np.ndarray, lo_hi: tuple[np.ndarray, np.ndarray] | None,
             cons: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for j, win in enumerate(windows):
        idx = [int(i) for i in win if i >= 0]
        if lo_hi is not None:
            best_lo = max(float(lo_hi[0][i]) for i in idx)
            idx = [i for i in idx if float(lo_hi[1][i]) >= best_lo]
        y = z3.Real(f"{name}{j}")
        cons += [y >= z[i] for i in idx]
        cons.append(z3.Or([y <= z[i] for i in idx]))
        out.append(y)
    return out
