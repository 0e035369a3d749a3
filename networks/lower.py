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
edge, fine for the fully connected and small convolutional networks this
verifier targets (ACAS Xu, MNIST MLPs, the zoo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnaudit.errors import SolverError



@dataclass(frozen=True)
class Affine:
    """``z = sum_s x_s @ mats[s] + bias``; ``mats[s]`` is ``(n_s, n_z)``."""

    mats: dict[int, np.ndarray]
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


def lower(network: Any) -> Lowered:
    """Lower a :class:`~nnaudit.networks.ir.Network`, once per network object (the
    network keeps its lowered form); a :class:`Lowered` is returned as it is."""
    if isinstance(network, Lowered):
        return network
    if network._lowered is None:
        network._lowered = _lower(network)
    return network._lowered


def _lower(network: Any) -> Lowered:
    shapes = network.node_shapes
    n_in = int(np.prod(shapes[network.input_name]))
    env: dict[str, Affine] = {network.input_name: Affine({0: np.eye(n_in)}, np.zeros(n_in))}
    nodes: list[Node] = []
    for layer in network.layers:
        in_shapes = [tuple(shapes[t]) for t in layer.inputs]
        if layer.affine:
            env[layer.output] = _compose(layer, [env[t] for t in layer.inputs], in_shapes, shapes[layer.output])
        elif layer.relaxable:
            nodes.append(Node(layer, env[layer.inputs[0]], in_shapes[0], tuple(shapes[layer.output])))
            size = nodes[-1].size
            env[layer.output] = Affine({len(nodes): np.eye(size)}, np.zeros(size))
        else:
            import nnaudit.networks.ops  # noqa: F401  (registers the op classes)
            from nnaudit.networks.ir import OP_REGISTRY

            supported = sorted({cls.kind for cls in OP_REGISTRY.values() if cls.relaxable})
            raise SolverError(
                f"{network.source}: layer {layer.name!r} ({type(layer).__name__}) has no bound "
                f"propagation or exact encoding; supported non-linear layers: {', '.join(supported)}")
    return Lowered(n_in, tuple(nodes), env[network.output_name])


def _compose(layer: Any, ins: list[Affine], in_shapes: list[tuple[int, ...]],
             out_shape: tuple[int, ...]) -> Affine:
    """Compose an affine layer's exact linear form with the affine forms of its inputs."""
    lins, bias = layer.linear_form(in_shapes, out_shape)
    mats: dict[int, np.ndarray] = {}
    bias = bias.copy()
    for form, lin in zip(ins, lins):
        bias = bias + form.bias @ lin
        for s, m in form.mats.items():
            d = _diagonal(m)
            prod = m @ lin if d is None else d[:, None] * lin  # the same numbers, without the n^3 product
            mats[s] = mats[s] + prod if s in mats else prod
    return Affine(mats, bias)


def _diagonal(m: np.ndarray) -> np.ndarray | None:
    """The diagonal of a square diagonal matrix ``m`` (the identity of an input or a node's output, or
    an element-wise scaling such as an input normalisation), else None."""
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        return None
    d = np.diagonal(m)
    return d.copy() if np.count_nonzero(m) == np.count_nonzero(d) else None
