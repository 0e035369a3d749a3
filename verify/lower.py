"""Lowering of the IR to the form the verifier reasons about.

Bound propagation, the Z3 encoding and branch and bound all see a network as
a short list of *non-linear nodes* (ReLU, MaxPool, Sigmoid, Tanh), each fed by
an affine function of earlier sources::

    source 0            = the flattened network input x           (n_0,)
    source k (k >= 1)   = output of node k-1                      (n_k,)
    pre-activation of k = sum_s  x_s @ M[s]  +  bias              (m_k,)

Every run of affine IR layers (Linear, Conv, reshapes, Transpose, Pad,
AveragePool, ElementwiseAffine, Sum, Concat, Identity) between non-linear
layers is composed exactly into the dense matrices ``M[s]``: each affine
layer is probed on the identity basis of its input (its ``forward`` applied to
unit vectors, float64), which is exact for affine maps.  Residual graphs keep
one matrix per source, so the result is a DAG of non-linear nodes with dense
affine edges.  The output is one more affine function of the sources.

Dense matrices are exact and simple; they cost memory ``n_in * n_out`` per
edge, fine for the fully connected and small convolutional networks this
verifier targets (ACAS Xu, MNIST MLPs, the zoo).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.errors import SolverError

#: Layers that are linear although not flagged ``affine`` in the IR (AveragePool
#: is a fixed weighted sum of its window).
_LINEAR_KINDS = ("avgpool",)
#: Non-linear layer kinds the verifier understands.
NONLINEAR = ("relu", "maxpool", "sigmoid", "tanh")


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
    """One non-linear node: ``kind`` applied to the pre-activation ``pre``.

    For ``maxpool``, ``windows`` is ``(n_out, k)`` indices into ``pre`` (-1
    marks padding, which never wins); otherwise the node is element-wise and
    its output size equals ``pre.size``.
    """

    kind: str
    name: str
    pre: Affine
    windows: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.windows.shape[0]) if self.windows is not None else self.pre.size

    def apply(self, z: np.ndarray) -> np.ndarray:
        """The non-linearity on pre-activations ``(B, pre.size)``."""
        if self.kind == "relu":
            return np.maximum(z, 0.0)
        if self.kind == "sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * z))
        if self.kind == "tanh":
            return np.tanh(z)
        assert self.windows is not None
        padded = np.concatenate([z, np.full((z.shape[0], 1), -np.inf)], axis=1)
        return padded[:, self.windows].max(axis=2)


@dataclass(frozen=True)
class Lowered:
    """A network as non-linear nodes over affine edges (see module docstring)."""

    input_size: int
    nodes: tuple[Node, ...]
    output: Affine

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


_CACHE: dict[int, tuple[Any, Lowered]] = {}


def lower(network: Any) -> Lowered:
    """Lower a :class:`~nnaudit.networks.ir.Network` (cached per object)."""
    if isinstance(network, Lowered):
        return network
    hit = _CACHE.get(id(network))
    if hit is not None and hit[0]() is network:
        return hit[1]
    result = _lower(network)
    _CACHE[id(network)] = (weakref.ref(network), result)
    return result


def _lower(network: Any) -> Lowered:
    shapes = network.node_shapes
    n_in = int(np.prod(shapes[network.input_name]))
    env: dict[str, Affine] = {network.input_name: Affine({0: np.eye(n_in)}, np.zeros(n_in))}
    nodes: list[Node] = []
    for layer in network.layers:
        kind = getattr(layer, "kind", "")
        if getattr(layer, "affine", False) or kind in _LINEAR_KINDS:
            env[layer.output] = _compose(layer, [env[t] for t in layer.inputs],
                                         [shapes[t] for t in layer.inputs], shapes[layer.output])
        elif kind in ("relu", "sigmoid", "tanh", "maxpool"):
            pre = env[layer.inputs[0]]
            windows = _pool_windows(layer, shapes[layer.inputs[0]]) if kind == "maxpool" else None
            nodes.append(Node(kind, layer.name, pre, windows))
            size = nodes[-1].size
            env[layer.output] = Affine({len(nodes): np.eye(size)}, np.zeros(size))
        else:
            raise SolverError(
                f"{network.source}: layer {layer.name!r} ({type(layer).__name__}) has no bound "
                f"propagation or exact encoding; supported non-linear layers: {', '.join(NONLINEAR)}")
    return Lowered(n_in, tuple(nodes), env[network.output_name])


def _compose(layer: Any, ins: list[Affine], in_shapes: list[tuple[int, ...]],
             out_shape: tuple[int, ...]) -> Affine:
    """Compose an affine layer with the affine forms of its inputs (exactly)."""
    sizes = [int(np.prod(s)) for s in in_shapes]
    n_out = int(np.prod(out_shape))

    def run(batch: int, fill: dict[int, np.ndarray]) -> np.ndarray:
        args = [fill.get(i, np.zeros((batch,) + tuple(s))) for i, s in enumerate(in_shapes)]
        return np.asarray(layer.forward(*args), dtype=np.float64).reshape(batch, n_out)

    offset = run(1, {})[0]
    mats: dict[int, np.ndarray] = {}
    bias = offset.copy()
    for i, (form, n_i) in enumerate(zip(ins, sizes)):
        probe = np.eye(n_i).reshape((n_i,) + tuple(in_shapes[i]))
        lin = run(n_i, {i: probe}) - offset  # (n_i, n_out)
        bias = bias + form.bias @ lin
        for s, m in form.mats.items():
            prod = m @ lin
            mats[s] = mats[s] + prod if s in mats else prod
    return Affine(mats, bias)


def _pool_windows(layer: Any, in_shape: tuple[int, ...]) -> np.ndarray:
    """Indices ``(n_out, kh*kw)`` of each MaxPool window into its flat input."""
    from nnaudit.networks.ops.spatial import as_images

    idx = np.arange(int(np.prod(in_shape)), dtype=np.float64).reshape((1,) + tuple(in_shape))
    imgs, _ = as_images(idx)
    v = layer.window.windows(layer.window.pad_numpy(imgs, -1.0))
    k = v.shape[-2] * v.shape[-1]
    return v.reshape(-1, k).astype(np.int64)
