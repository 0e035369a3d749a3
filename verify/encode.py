"""Exact encoding of a network in linear real arithmetic for Z3.

Step 4 of the pipeline: a sub-domain that bounds neither prove nor refute is
decided exactly.  The encoding follows the lowered form
(:mod:`nnaudit.networks.lower`): each node's pre-activation is a fresh real
``z == sum(w * source) + b`` with the float64 weights as exact rationals;
then the node's IR layer encodes itself (``z3_encode``: ReLU with a case
split only for unstable neurons, MaxPool, see
:mod:`nnaudit.networks.ops.activations` and :mod:`nnaudit.networks.ops.pool`);
Sigmoid / Tanh are not piecewise linear and are rejected with
:class:`SolverError`.

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
from nnaudit.networks.lower import Affine, Lowered, column
from nnaudit.networks.lower import lower as lower_network
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
        pre = [(l[0].cpu().numpy(), u[0].cpu().numpy()) for l, u in zip(b.pre_lo, b.pre_hi)]
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
        needed = node.layer.z3_inputs_needed(lo_hi, phase, in_shape=node.in_shape)
        z = _affine(node.pre, sources, coef_cache, cons, f"n{tag}_{k}_z", needed)
        out, node_cons = node.layer.z3_encode(z, lo_hi, phase, in_shape=node.in_shape, name=f"n{tag}_{k}_x")
        sources.append(out)
        cons += node_cons
    outs = _affine(low.output, sources, coef_cache, cons, f"n{tag}_y", None)
    return cons, outs


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
            col = column(m, j)
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
