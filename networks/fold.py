"""Fold element-wise affine pre/post-processing into neighbouring linear layers.

Networks exported from training code often normalise inputs with Sub/Div
(ACAS Xu subtracts a mean, images are divided by a std) or carry
BatchNormalization after a convolution.  Verifiers are tighter and faster
when those maps are part of the neighbouring Linear/Conv layer, so the loader
rewrites, whenever the result is mathematically exact:

- ``affine -> affine`` into one affine;
- ``Linear -> affine`` and ``Conv -> affine`` (per output unit / channel);
- ``affine -> (reshapes)* -> Linear`` (the affine becomes a row scaling and a
  bias shift of the weight);
- ``affine -> Conv`` when the affine is per input channel and its shift is 0
  or the convolution does not pad (padding zeros are not shifted).

A layer is only folded into its successor when nothing else reads its output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from nnaudit.networks.ir import Layer, Network
from nnaudit.networks.ops.conv import Conv
from nnaudit.networks.ops.elementwise import ElementwiseAffine
from nnaudit.networks.ops.linear import Linear
from nnaudit.networks.ops.shape import Identity, _Reshaping


def fold_affine(net: Network) -> list[Layer]:
    """Return the network's layers with every exact fold applied."""
    layers = list(net.layers)
    changed = True
    while changed:
        changed = False
        uses = _consumers(layers, net.output_name)
        for i, layer in enumerate(layers):
            if not isinstance(layer, (ElementwiseAffine, Identity)) or uses[layer.output] != 1:
                continue
            new = _fold_forward(layers, i, net) if isinstance(layer, ElementwiseAffine) else None
            if new is None:
                new = _fold_backward(layers, i, net, uses)
            if new is not None:
                layers, changed = new, True
                break
    return layers


def _consumers(layers: Sequence[Layer], output: str) -> Counter[str]:
    uses: Counter[str] = Counter(name for layer in layers for name in layer.inputs)
    uses[output] += 1
    return uses


def _rename_input(layer: Layer, old: str, new: str) -> None:
    layer.inputs = tuple(new if n == old else n for n in layer.inputs)


def _fold_backward(layers: list[Layer], i: int, net: Network, uses: Counter[str]) -> list[Layer] | None:
    """Fold layer ``i`` (affine or identity) into the layer that produced its input."""
    layer = layers[i]
    src = layer.inputs[0]
    j = next((k for k in range(i) if layers[k].output == src), None)
    if j is None or uses[src] != 1:
        return None
    prev = layers[j]
    if isinstance(layer, Identity):
        merged = prev
    elif isinstance(prev, ElementwiseAffine) and prev.rank <= layer.rank:
        merged = ElementwiseAffine(prev.name, prev.inputs, layer.output,
                                   prev.scale * layer.scale, prev.shift * layer.scale + layer.shift, layer.rank)
    elif isinstance(prev, Linear):
        merged = _linear_then_affine(prev, layer, net)
    elif isinstance(prev, Conv):
        merged = _conv_then_affine(prev, layer, net)
    else:
        return None
    if merged is None:
        return None
    merged.output = layer.output
    return layers[:j] + [merged] + layers[j + 1 : i] + layers[i + 1 :]


def _per_last_axis(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``arr`` broadcast to ``shape`` as a vector over the last axis, if it is one."""
    full = np.broadcast_to(arr, shape)
    flat = full.reshape(-1, shape[-1])
    return flat[0].copy() if np.all(flat == flat[0]) else None


def _linear_then_affine(prev: Linear, aff: ElementwiseAffine, net: Network) -> Layer | None:
    out_shape = net.node_shapes[aff.output]
    if out_shape != net.node_shapes[prev.output]:
        return None
    s, t = _per_last_axis(aff.scale, out_shape), _per_last_axis(aff.shift, out_shape)
    bias = _per_last_axis(prev.bias, out_shape)
    if s is None or t is None or bias is None:
        return None
    return Linear(prev.name, prev.inputs, aff.output, prev.weight * s, bias * s + t)


def _per_channel(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``arr`` broadcast to node shape ``(..., C, H, W)`` as a per-channel vector."""
    full = np.broadcast_to(arr, shape).reshape((-1,) + shape[-3:])
    ref = full[0, :, :1, :1]
    return ref[:, 0, 0].copy() if np.all(full == ref) else None


def _conv_then_affine(prev: Conv, aff: ElementwiseAffine, net: Network) -> Layer | None:
    shape = net.node_shapes[aff.output]
    if shape != net.node_shapes[prev.output]:
        return None
    s, t = _per_channel(aff.scale, shape), _per_channel(aff.shift, shape)
    if s is None or t is None:
        return None
    return Conv(prev.name, prev.inputs, aff.output, prev.weight * s[:, None, None, None],
                prev.bias * s + t, prev.window)


def _fold_forward(layers: list[Layer], i: int, net: Network) -> list[Layer] | None:
    """Fold affine layer ``i`` through reshapes into the next Linear or Conv."""
    aff = layers[i]
    assert isinstance(aff, ElementwiseAffine)
    shape = net.node_shapes[aff.output]
    if shape != net.node_shapes[aff.inputs[0]]:
        return None  # the affine broadcasts its input to a new shape
    uses = _consumers(layers, net.output_name)
    scale = np.broadcast_to(aff.scale, shape)[None]
    shift = np.broadcast_to(aff.shift, shape)[None]
    chain, cur, k = [], aff.output, i + 1
    while True:
        k = next((m for m in range(k, len(layers)) if cur in layers[m].inputs), None)
        if k is None:
            return None
        nxt = layers[k]
        if isinstance(nxt, _Reshaping) and uses[nxt.output] == 1:
            scale, shift = nxt.forward(scale), nxt.forward(shift)
            chain.append(nxt)
            cur, k = nxt.output, k + 1
            continue
        break
    if isinstance(nxt, Linear):
        target = _affine_then_linear(nxt, scale[0], shift[0])
    elif isinstance(nxt, Conv):
        target = _affine_then_conv(nxt, scale[0], shift[0])
    else:
        return None
    if target is None:
        return None
    # the chain now carries the affine's input; the folded layer replaces nxt
    first = chain[0] if chain else target
    _rename_input(first, aff.output, aff.inputs[0])
    return [lay for lay in layers[:k] if lay is not aff] + [target] + layers[k + 1 :]


def _affine_then_linear(lin: Linear, scale: np.ndarray, shift: np.ndarray) -> Layer | None:
    s, t = _per_last_axis(scale, scale.shape), _per_last_axis(shift, shift.shape)
    if s is None or t is None:
        return None
    return Linear(lin.name, lin.inputs, lin.output, s[:, None] * lin.weight, lin.bias + t @ lin.weight)


def _affine_then_conv(conv: Conv, scale: np.ndarray, shift: np.ndarray) -> Layer | None:
    s, t = _per_channel(scale, scale.shape), _per_channel(shift, shift.shape)
    if s is None or t is None:
        return None
    if np.any(t != 0) and any(conv.window.pads):
        return None  # padded zeros would not be shifted: not exact
    weight = conv.weight * s[None, :, None, None]
    bias = conv.bias + np.einsum("ocij,c->o", conv.weight, t)
    return Conv(conv.name, conv.inputs, conv.output, weight, bias, conv.window)
