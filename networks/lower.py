"""Lowering of the IR to the form the verifier reasons about.

Bound propagation, the Z3 encoding and branch and bound all see a network as
a short list of *non-linear nodes* (ReLU, MaxPool, Sigmoid, Tanh), each fed by
an affine function of earlier sources::

    source 0            = the flattened network input x           (n_0,)
    source k (k >= 1)   = output of node k-1                      (n_k,)
    pre-activation of k = sum_s  x_s @ M[s]  +  bias              (m_k,)

Every run of affine IR layers (Linear, Conv, reshapes, Transpose, Pad,
AveragePool, ElementwiseAffine, Sum, Concat, Identity) between non-linear
layers is composed exactly into the dense matrices ``M[s]`` from each
layer's :meth:`~nnaudit.networks.ir.Layer.linear_form`.  Residual graphs
keep one matrix per source, so the result is a DAG of non-linear nodes with
dense affine edges.  The output is one more affine function of the sources.
Each node keeps its IR layer, whose methods are the bound rules and the exact
encoding (:mod:`nnaudit.verify.bounds`, :mod:`nnaudit.verify.encode` drive
them over the whole graph, batched over sub-domains).

Dense matrices are exact and simple; they cost memory ``n_in * n_out`` per
edge, fine for the fully connected and small convolutional networks (ACAS Xu,
MNIST MLPs, the zoo).  Past :data:`DENSE_BYTES` per matrix a wide layer stays
structured: a node's output as an implicit identity (:class:`Eye`), reshapes
passed through, a convolution on it as a convolution
(:class:`~nnaudit.networks.ops.conv.ConvMap`); every such map supports
``x @ M``, ``M.T``, ``abs``/``pos``/``neg`` and ``column``.  A dense matrix that
would take over half the memory budget (``max_bytes``) raises :class:`DenseTooLarge`
(a ``MemoryError``) before it is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnaudit.errors import SolverError

#: a matrix of an affine edge is kept dense up to this many bytes (regions and Z3 read dense ones),
#: beyond it structured (an identity, a convolution) where the layer has such a form
DENSE_BYTES = 64 << 20
#: the threshold of the complete verifier (:func:`lower`'s ``structured_bytes``): a convolution reads
#: a few dozen of its thousands of inputs per output, so past about a megabyte its dense matrix is
#: mostly zeros, and its backward passes cost many times a transposed convolution's (issue #27:
#: cifar_deep_kw's branch and bound ran 4x faster with its four convolutions kept as convolutions)
COMPACT_BYTES = 1 << 20


class DenseTooLarge(MemoryError):
    """Lowering would make a dense matrix over the memory budget (the message names the layer)."""


class Eye:
    """The identity map of ``n`` values times ``scale``, kept implicit (``np.eye`` of a wide
    layer's output is ``n^2`` floats: 4 GiB for 23,328 ReLUs).  ``x @ Eye`` is ``scale * x``
    for NumPy arrays and torch tensors."""

    __array_ufunc__ = None  # NumPy defers ``x @ Eye`` to __rmatmul__

    def __init__(self, n: int, scale: float = 1.0) -> None:
        self.n, self.scale = int(n), float(scale)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def T(self) -> Eye:  # noqa: N802 - as ndarray.T
        return self

    def abs(self) -> Eye:
        return Eye(self.n, abs(self.scale))

    def pos(self) -> Eye:
        return Eye(self.n, max(self.scale, 0.0))

    def neg(self) -> Eye:
        return Eye(self.n, min(self.scale, 0.0))

    def __rmatmul__(self, x: Any) -> Any:
        if x.shape[-1] != self.n:
            raise ValueError(f"expected (..., {self.n}) values for an identity map, got {tuple(x.shape)}")
        return x if self.scale == 1.0 else x * self.scale

    def __matmul__(self, other: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(other, dtype=np.float64)

    def column(self, j: int) -> np.ndarray:
        col = np.zeros(self.n)
        col[j] = self.scale
        return col

    def dense(self) -> np.ndarray:
        return self.scale * np.eye(self.n)


def identity(n: int) -> np.ndarray | Eye:
    """The identity of ``n`` values: dense when small, else an implicit :class:`Eye`."""
    return np.eye(n) if 8 * n * n <= DENSE_BYTES else Eye(n)


def column(m: Any, j: int) -> np.ndarray:
    """Column ``j`` of an edge matrix, dense or structured."""
    return m[:, j] if isinstance(m, np.ndarray) else m.column(j)


@dataclass(frozen=True)
class Affine:
    """``z = sum_s x_s @ mats[s] + bias``; ``mats[s]`` is ``(n_s, n_z)``."""

    mats: dict[int, Any]  # np.ndarray, or a structured map (Eye, ConvMap) past DENSE_BYTES
    bias: np.ndarray  # (n_z,)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    def evaluate(self, sources: list[np.ndarray]) -> np.ndarray:
        """Apply to source values shaped ``(B, n_s)``; returns ``(B, n_z)``."""
        out = np.broadcast_to(self.bias, (sources[0].shape[0], self.size)).copy()
        for s, m in self.mats.items():
            out += sources[s] @ m
        return out


@dataclass(frozen=True)
class Node:
    """One non-linear IR layer applied to the pre-activation ``pre``.

    ``layer`` is the IR layer itself (Relu, Sigmoid, Tanh or MaxPool): its
    bound rules (``interval``, ``linear_bounds``, ``forward_linear_bounds``,
    ``z3_encode``) are what bound propagation and the Z3 encoding call, on
    flat tensors over the layer's input node shape ``in_shape``.
    """

    layer: Any
    pre: Affine
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return str(self.layer.kind)

    @property
    def name(self) -> str:
        return str(self.layer.name)

    @property
    def size(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def windows(self) -> np.ndarray | None:
        """For MaxPool, ``(size, k)`` indices of each window's inputs in ``pre`` (-1: padding)."""
        if self.kind != "maxpool":
            return None
        from nnaudit.networks.ops.pool import window_table

        return window_table(self.layer.window, self.in_shape)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """The layer's own ``forward`` on flat pre-activations ``(B, pre.size)``."""
        out = self.layer.forward(np.asarray(z, dtype=np.float64).reshape((len(z),) + self.in_shape))
        return np.asarray(out, dtype=np.float64).reshape(len(z), -1)


@dataclass(frozen=True)
class Lowered:
    """A network as non-linear nodes over affine edges (see module docstring).

    ``cache`` holds what its users derive from it once and reuse for every call on
    it (e.g. torch copies of the matrices per dtype, :func:`nnaudit.verify.edges.edge_mats`),
    keyed by what it is; it lives and dies with this object.
    """

    input_size: int
    nodes: tuple[Node, ...]
    output: Affine
    cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def source_sizes(self) -> list[int]:
        return [self.input_size] + [n.size for n in self.nodes]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(B, n_out)`` for flattened inputs ``(B, n_in)`` (float64)."""
        sources = [np.asarray(x, dtype=np.float64).reshape(len(x), -1)]
        for node in self.nodes:
            sources.append(node.apply(node.pre.evaluate(sources)))
        return self.output.evaluate(sources)

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activation of every node, each ``(B, pre.size)``."""
        sources = [np.asarray(x, dtype=np.float64).reshape(len(x), -1)]
        pres = []
        for node in self.nodes:
            pres.append(node.pre.evaluate(sources))
            sources.append(node.apply(pres[-1]))
        return pres


def lower(network: Any, max_bytes: int | None = None, structured_bytes: int = DENSE_BYTES) -> Lowered:
    """Lower a :class:`~nnaudit.networks.ir.Network`, once per network object and threshold (the
    network keeps its lowered forms); a :class:`Lowered` is returned as it is.
    ``max_bytes``: the memory budget (:class:`DenseTooLarge` instead of a dense matrix over half of it).
    ``structured_bytes``: a layer with a structured form (a convolution, an average pool) keeps it when
    its dense matrix would be larger than this (:data:`COMPACT_BYTES`: wherever the structured form
    is the cheaper one to multiply by)."""
    if isinstance(network, Lowered):
        return network
    if structured_bytes not in network._lowered:
        network._lowered[structured_bytes] = _lower(network, max_bytes, structured_bytes)
    return network._lowered[structured_bytes]


def _lower(network: Any, max_bytes: int | None = None, dense_bytes: int = DENSE_BYTES) -> Lowered:
    shapes = network.node_shapes
    n_in = int(np.prod(shapes[network.input_name]))
    env: dict[str, Affine] = {network.input_name: Affine({0: identity(n_in)}, np.zeros(n_in))}
    nodes: list[Node] = []
    for layer in network.layers:
        in_shapes = [tuple(shapes[t]) for t in layer.inputs]
        if layer.affine:
            env[layer.output] = _compose(layer, [env[t] for t in layer.inputs], in_shapes, shapes[layer.output],
                                         _Sizes(max_bytes, dense_bytes))
        elif layer.relaxable:
            nodes.append(Node(layer, env[layer.inputs[0]], in_shapes[0], tuple(shapes[layer.output])))
            size = nodes[-1].size
            env[layer.output] = Affine({len(nodes): Eye(size) if 8 * size * size > dense_bytes else np.eye(size)},
                                       np.zeros(size))
        else:
            import nnaudit.networks.ops  # noqa: F401  (registers the op classes)
            from nnaudit.networks.ir import OP_REGISTRY

            supported = sorted({cls.kind for cls in OP_REGISTRY.values() if cls.relaxable})
            raise SolverError(
                f"{network.source}: layer {layer.name!r} ({type(layer).__name__}) has no bound "
                f"propagation or exact encoding; supported non-linear layers: {', '.join(supported)}")
    return Lowered(n_in, tuple(nodes), env[network.output_name])


@dataclass(frozen=True)
class _Sizes:
    """Lowering's size limits: the memory budget (None: none) and the dense size of a matrix
    beyond which a layer with a structured form keeps it."""

    max_bytes: int | None
    dense_bytes: int

    def check(self, layer: Any, nbytes: int) -> None:
        """:class:`DenseTooLarge` when one dense matrix would take over half the budget."""
        if self.max_bytes is not None and 2 * nbytes > self.max_bytes:
            raise DenseTooLarge(f"dense lowering of layer {layer.name!r} ({type(layer).__name__}) needs "
                                f"{nbytes / (1 << 30):.2f} GiB, over the memory budget of "
                                f"{self.max_bytes / (1 << 30):.2f} GiB (--max-memory)")


def _compose(layer: Any, ins: list[Affine], in_shapes: list[tuple[int, ...]],
             out_shape: tuple[int, ...], sizes: _Sizes = _Sizes(None, DENSE_BYTES)) -> Affine:
    """Compose an affine layer's exact linear form with the affine forms of its inputs."""
    if layer.flat_identity and len(ins) == 1:
        return ins[0]
    n_out = int(np.prod(out_shape))
    n_ins = [int(np.prod(s)) for s in in_shapes]
    dense = 8 * n_out * sum(n_ins)
    if dense > sizes.dense_bytes and len(ins) == 1 and _plain_source(ins[0]):
        structured = layer.linear_map(in_shapes, out_shape)
        if structured is not None:
            (lin,), bias = structured
            (s, _), = ins[0].mats.items()
            return Affine({s: lin}, bias + np.asarray(ins[0].bias[None] @ lin)[0])
    sizes.check(layer, dense + 8 * max(n * n for n in n_ins))  # the matrix, and the unit vectors probing it
    lins, bias = layer.linear_form(in_shapes, out_shape)
    mats: dict[int, Any] = {}
    bias = bias.copy()
    for form, lin in zip(ins, lins):
        bias = bias + form.bias @ lin
        for s, m in form.mats.items():
            d = _diagonal(m)
            if d is None:
                sizes.check(layer, 8 * m.shape[0] * lin.shape[1])
            prod = m @ lin if d is None else d[:, None] * lin  # the same numbers, without the n^3 product
            mats[s] = _dense(mats[s], layer, sizes) + prod if s in mats else prod
    return Affine(mats, bias)


def _dense(m: Any, layer: Any, sizes: _Sizes) -> np.ndarray:
    """``m`` as a dense matrix (a structured one made dense, within the budget)."""
    if isinstance(m, np.ndarray):
        return m
    sizes.check(layer, 8 * m.shape[0] * m.shape[1])
    return m.dense()


def _plain_source(form: Affine) -> bool:
    """One source, read as it is (an :class:`Eye` of scale 1 or a dense identity)."""
    if len(form.mats) != 1:
        return False
    (m,) = form.mats.values()
    if isinstance(m, Eye):
        return m.scale == 1.0
    d = _diagonal(m) if isinstance(m, np.ndarray) else None
    return d is not None and bool((d == 1.0).all())


def _diagonal(m: Any) -> np.ndarray | None:
    """The diagonal of a square diagonal matrix ``m`` (the identity of an input or a node's output, or
    an element-wise scaling such as an input normalisation), else None."""
    if isinstance(m, Eye):
        return np.full(m.n, m.scale)
    if not isinstance(m, np.ndarray) or m.ndim != 2 or m.shape[0] != m.shape[1]:
        return None
    d = np.diagonal(m)
    return d.copy() if np.count_nonzero(m) == np.count_nonzero(d) else None
