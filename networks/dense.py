"""Small fully connected ReLU networks as a chain of float64 NumPy affine maps and ReLUs.

The verifier's dense route (:mod:`nnaudit.verify.dense_bab`) decides properties of
ACAS Xu-sized networks (5 inputs, 300 ReLUs) without importing torch, whose import
alone costs more than such a search.  The chain is read from the IR's lowered form
(:func:`nnaudit.networks.lower.lower`), so the model has been through every check of
the loader first, and affine pre-processing (Flatten, Reshape, Sub/Div normalisation,
constants, ``--mean``/``--std``) is already composed into the first matrix.
:func:`dense_chain` takes the network only when that form is a plain chain::

    z_0 = x @ W_0 + b_0,  h_1 = relu(z_0),  ...,  y = h_L @ W_L + b_L

with dense matrices, at most :attr:`DenseLimits.max_inputs` inputs and
:attr:`DenseLimits.max_hidden` ReLUs; anything else (convolutions, other activations,
skip connections, wide inputs) gives None, and the caller takes the general route.
:func:`agrees_with_runtime` cross-checks the chain against onnxruntime on the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DenseLimits:
    """Which networks the dense route takes."""

    max_inputs: int = 16      # input splitting is hopeless beyond a few dozen inputs; 16 keeps it quick
    max_hidden: int = 2_000   # ReLUs in all (ACAS Xu: 300)


@dataclass(frozen=True)
class DenseChain:
    """``weights[k]`` ``(n_k, n_{k+1})`` and ``biases[k]`` ``(n_{k+1},)``, float64; a ReLU
    follows every map but the last (row vectors: ``z = h @ W + b``)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def input_size(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def output_size(self) -> int:
        return int(self.weights[-1].shape[1])

    @property
    def hidden(self) -> int:
        """ReLUs in all."""
        return int(sum(w.shape[1] for w in self.weights[:-1]))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(B, n_out)`` of flat inputs ``(B, n_in)``."""
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return h @ self.weights[-1] + self.biases[-1]

    def with_rows(self, c: np.ndarray, d: np.ndarray) -> DenseChain:
        """The chain of ``C @ y + d`` (``c`` ``(R, n_out)``, ``d`` ``(R,)``): the rows folded into the last map."""
        c = np.asarray(c, dtype=np.float64)
        w = self.weights[-1] @ c.T
        b = self.biases[-1] @ c.T + np.asarray(d, dtype=np.float64)
        return DenseChain(self.weights[:-1] + (w,), self.biases[:-1] + (b,))

    def gradient(self, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs ``(B, n_out)`` at ``x`` ``(B, n_in)`` and the gradient ``(B, n_in)`` of output
        ``rows[i]`` at ``x[i]`` (a ReLU at exactly 0 counts as inactive)."""
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        masks = []
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            z = h @ w + b
            masks.append(z > 0)
            h = np.where(masks[-1], z, 0.0)
        y = h @ self.weights[-1] + self.biases[-1]
        g = self.weights[-1].T[np.asarray(rows)]                          # (B, n_L)
        for w, m in zip(reversed(self.weights[:-1]), reversed(masks)):
            g = (g * m) @ w.T
        return y, g


def dense_chain(network: Any, limits: DenseLimits = DenseLimits(), max_bytes: int | None = None) -> DenseChain | None:
    """The chain of ``network`` (a loaded :class:`~nnaudit.networks.ir.Network`), or None when the
    dense route does not apply to it: more inputs or ReLUs than ``limits``, a non-ReLU
    non-linear layer, a node that reads anything but the one before it, or a structured
    (non-dense) matrix.  ``max_bytes``: the memory budget of lowering (None: none)."""
    from nnaudit.errors import SolverError
    from nnaudit.networks.lower import lower

    if network.input_size > limits.max_inputs or network.output_size < 1:
        return None
    try:
        low = lower(network, max_bytes)
    except (SolverError, MemoryError):  # a layer without bound rules, or too large: the general route says so
        return None
    if sum(node.pre.size for node in low.nodes) > limits.max_hidden:
        return None
    if any(node.kind != "relu" for node in low.nodes):
        return None
    forms = [node.pre for node in low.nodes] + [low.output]
    weights, biases = [], []
    for k, form in enumerate(forms):
        m = form.mats.get(k)
        if set(form.mats) != {k} or not isinstance(m, np.ndarray) or m.ndim != 2:
            return None
        weights.append(np.asarray(m, dtype=np.float64))
        biases.append(np.asarray(form.bias, dtype=np.float64).reshape(-1))
    return DenseChain(tuple(weights), tuple(biases))


def agrees_with_runtime(chain: DenseChain, ort: Any, lower: np.ndarray, upper: np.ndarray,
                        input_shape: tuple[int, ...], *, samples: int = 8, seed: int = 0,
                        rtol: float = 1e-5) -> bool:
    """Whether the chain computes what onnxruntime computes on the file, on the box's centre and
    ``samples`` random float32 points of the box ``lower``/``upper`` (flat ``(n_in,)``): errors
    relative to the largest output magnitude (at least 1) within ``rtol``, as the loader's check."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    x = np.concatenate([((lo + hi) / 2)[None], lo + (hi - lo) * rng.random((samples, lo.size))])
    x = x.astype(np.float32)
    theirs = ort.run(x.reshape((len(x),) + tuple(input_shape))).astype(np.float64)
    ours = chain.evaluate(x.astype(np.float64))
    if ours.shape != theirs.shape or not np.all(np.isfinite(theirs)):
        return False
    scale = max(1.0, float(np.max(np.abs(theirs))))
    return bool(np.max(np.abs(ours - theirs)) / scale <= rtol)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with the BLAS NumPy loaded on one thread, then restore its count (as the
    torch route sets torch's threads): the dense route's products are small ((6,400, 50) @ (50, 50)),
    and OpenBLAS's threads made one 5x slower on the shared 2-core machine (0.8 ms -> 4 ms)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield

