"""The torch form of a convolutional chain with a hand-written input gradient.

Gradient attacks spend their time in one forward and one backward pass per
step.  On the small convolutions of this field (a few channels, stride 2)
oneDNN's backward-data kernel, which autograd calls, is the most expensive
part of a step: on cifar_base_kw's first layer (3 -> 8 channels, 4x4, stride
2) it takes some ten times its forward pass (6.6 against 0.6 ms for 100
images, one thread).  The same gradient is a forward convolution: by
"sub-pixel" decomposition the transposed convolution with stride ``s`` is
``s * s`` stride-1 convolutions of the output gradient, one per phase of the
input grid, run as one convolution with ``s * s`` times the channels whose
outputs are interleaved (a pixel shuffle): 1.6 ms there.

:class:`ConvChain` holds a network that is a sequence of convolutions, dense
layers, per-element affine maps (a normalisation), reshapes and ReLUs, each
reading the one before.  Calling it is an ordinary differentiable torch
function (its convolutions pad inside the kernel, not by a separate pad);
:meth:`ConvChain.with_tape` and :meth:`ConvChain.input_grad` are the
forward pass that keeps the ReLU outputs and the hand-written backward pass
to the input, as for :class:`~nnaudit.networks.torch_chain.DenseChain`.
Tensors are ``(B, *sample_shape)`` (the node shapes without their batch axis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.ir import Layer, Network

#: the layer kinds that only change the shape (row-major, as the IR does)
RESHAPING = frozenset({"flatten", "reshape", "squeeze", "unsqueeze", "identity"})


class _Step:
    """One layer: ``forward`` on ``(B, *in_shape)``, ``backward`` of a gradient ``(B, *out_shape)``."""

    relu = False

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.in_shape, self.out_shape = in_shape, out_shape

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _Relu(_Step):
    relu = True

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h)


class _Reshape(_Step):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.reshape((len(h),) + self.out_shape)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return g.reshape((len(g),) + self.in_shape)


class _Scale(_Step):
    """``h * scale + shift`` per element (an ONNX Add/Sub/Mul/Div by constants)."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], scale: torch.Tensor,
                 shift: torch.Tensor) -> None:
        super().__init__(in_shape, out_shape)
        self.scale, self.shift = scale, shift

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, h, self.scale)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return g * self.scale


class _Linear(_Step):
    """``h @ weight + bias`` on flat rows."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], weight: torch.Tensor,
                 bias: torch.Tensor) -> None:
        super().__init__(in_shape, out_shape)
        self.weight, self.bias, self.transposed = weight, bias, weight.t().contiguous()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, h.reshape(len(h), -1), self.weight)
        return out.reshape((len(h),) + self.out_shape)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return (g.reshape(len(g), -1) @ self.transposed).reshape((len(g),) + self.in_shape)


class _Conv(_Step):
    """A 2-d convolution; its backward is one forward convolution of the gradient (sub-pixel)."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], weight: torch.Tensor,
                 bias: torch.Tensor, window: Any) -> None:
        super().__init__(in_shape, out_shape)
        self.weight, self.bias = weight, bias
        self.stride, self.dilation = tuple(window.strides), tuple(window.dilations)
        top, left, bottom, right = window.pads
        self.inner = (top, left) if (top, left) == (bottom, right) else None  # padding inside the kernel
        self.outer = (left, right, top, bottom)
        self.grad_weight, self.grad_pad = subpixel_weight(weight, self.stride, (top, left), self.dilation,
                                                          in_shape[1:], out_shape[1:])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.inner is not None:
            return F.conv2d(h, self.weight, self.bias, stride=self.stride, padding=self.inner, dilation=self.dilation)
        return F.conv2d(F.pad(h, self.outer), self.weight, self.bias, stride=self.stride, dilation=self.dilation)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        pad = self.grad_pad
        if pad[0] == pad[1] >= 0 and pad[2] == pad[3] >= 0:
            phases = F.conv2d(g, self.grad_weight, padding=(pad[2], pad[0]))
        else:
            phases = F.conv2d(F.pad(g, pad), self.grad_weight)
        sy, sx = self.stride
        c, h, w = self.in_shape
        b, _, rows, cols = phases.shape
        out = phases.reshape(b, c, sy, sx, rows, cols).permute(0, 1, 4, 2, 5, 3).reshape(b, c, rows * sy, cols * sx)
        return out if (rows * sy, cols * sx) == (h, w) else out[:, :, :h, :w]


def _taps(stride: int, pad: int, dilation: int, kernel: int) -> dict[int, list[tuple[int, int]]]:
    """Per phase ``r`` of the input grid (input index ``stride * a + r``): the pairs ``(d, k)`` of
    output offset (output index ``a + d``) and kernel tap ``k`` that reach it."""
    return {r: [((r + pad - dilation * k) // stride, k) for k in range(kernel) if (r + pad - dilation * k) % stride == 0]
            for r in range(stride)}


def subpixel_weight(weight: torch.Tensor, stride: tuple[int, int], begin: tuple[int, int],
                    dilation: tuple[int, int], in_hw: tuple[int, ...], out_hw: tuple[int, ...]
                    ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The stride-1 convolution weight ``(c_in * sy * sx, c_out, ky', kx')`` whose output on the
    output gradient, padded by the returned ``F.pad`` amounts (negative: cropped), holds the input
    gradient of the convolution ``weight`` ``(c_out, c_in, ky, kx)`` phase by phase: channel
    ``(c * sy + ry) * sx + rx`` at ``(a, b)`` is the gradient at input ``(sy * a + ry, sx * b + rx)``."""
    c_out, c_in, ky, kx = weight.shape
    axes = []
    for s, p, dil, k, n_in, n_out in zip(stride, begin, dilation, (ky, kx), in_hw, out_hw):
        taps = _taps(s, p, dil, k)
        offsets = [d for pairs in taps.values() for d, _ in pairs] or [0]
        lo, size = min(offsets), max(offsets) - min(offsets) + 1
        cells = -(-n_in // s)  # input positions per phase
        axes.append((taps, lo, size, (-lo, cells + size - 1 + lo - n_out)))
    (ty, ly, hy, pad_y), (tx, lx, hx, pad_x) = axes
    out = torch.zeros(c_in, stride[0], stride[1], c_out, hy, hx, dtype=weight.dtype, device=weight.device)
    for ry, pairs_y in ty.items():
        for dy, iy in pairs_y:
            for rx, pairs_x in tx.items():
                for dx, ix in pairs_x:
                    out[:, ry, rx, :, dy - ly, dx - lx] = weight[:, :, iy, ix].t()
    return out.reshape(c_in * stride[0] * stride[1], c_out, hy, hx), (pad_x[0], pad_x[1], pad_y[0], pad_y[1])


class ConvChain:
    """Convolutions, dense layers, per-element affine maps, reshapes and ReLUs applied in order, in float32."""

    def __init__(self, steps: list[_Step], input_shape: tuple[int, ...]) -> None:
        self.steps, self.input_shape = steps, input_shape

    @classmethod
    def of(cls, net: Network, device: torch.device | str) -> ConvChain | None:
        """The chain form of ``net`` on ``device``, or None when some layer is of another kind or does
        not read the one before (or the chain's logits differ from the IR's module on random inputs)."""
        steps, current = [], net.input_name
        for layer in net.layers:
            if tuple(layer.inputs) != (current,):
                return None
            step = _step(layer, _sample_shape(net, current), _sample_shape(net, layer.output), net, device)
            if step is None:
                return None
            steps.append(step)
            current = layer.output
        if current != net.output_name or not any(isinstance(s, _Conv) for s in steps):
            return None
        chain = cls(steps, tuple(net.input_shape))
        return chain if _agrees(chain, net, device) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of inputs ``(B, *input_shape)``; differentiable by autograd."""
        h = x.reshape((len(x),) + self.steps[0].in_shape)
        for step in self.steps:
            h = step.forward(h)
        return h.reshape(len(x), -1)

    def with_tape(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, K)`` and the ReLU outputs :meth:`input_grad` needs (no autograd graph
        for an input that does not require gradients)."""
        h, outs = x.reshape((len(x),) + self.steps[0].in_shape), []
        for step in self.steps:
            h = step.forward(h)
            if step.relu:
                outs.append(h)
        return h.reshape(len(x), -1), outs

    def input_grad(self, tape: list[torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum(seed * logits)`` w.r.t. the input of :meth:`with_tape`, ``(B, *input_shape)``."""
        g, outs = seed.reshape((len(seed),) + self.steps[-1].out_shape), list(tape)
        for step in reversed(self.steps):
            g = torch.ops.aten.threshold_backward(g, outs.pop(), 0) if step.relu else step.backward(g)
        return g.reshape((len(g),) + self.input_shape)


def _sample_shape(net: Network, name: str) -> tuple[int, ...]:
    """The node shape of tensor ``name`` without the batch axis."""
    shape = tuple(int(d) for d in net.node_shapes[name])
    return shape[1:] if net.batch_axis and shape and shape[0] == 1 else shape


def _step(layer: Layer, shape_in: tuple[int, ...], shape_out: tuple[int, ...], net: Network,
          device: torch.device | str) -> _Step | None:
    """The chain step of ``layer``, or None when it has none."""
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=np.float32), device=device)

    kind = layer.kind
    if kind == "relu":
        return _Relu(shape_in, shape_out)
    if kind in RESHAPING and int(np.prod(shape_in)) == int(np.prod(shape_out)):
        return _Reshape(shape_in, shape_out)
    if kind == "linear" and np.asarray(layer.weight).shape == (int(np.prod(shape_in)), int(np.prod(shape_out))):
        return _Linear(shape_in, shape_out, tensor(layer.weight), tensor(np.asarray(layer.bias).reshape(-1)))
    if kind == "conv" and len(shape_in) == 3 and len(shape_out) == 3:
        return _Conv(shape_in, shape_out, tensor(layer.weight), tensor(layer.bias), layer.window)
    if kind == "affine" and shape_in == shape_out:
        scale, shift = (_per_sample(np.asarray(a), shape_out) for a in (layer.scale, layer.shift))
        if scale is not None and shift is not None:
            return _Scale(shape_in, shape_out, tensor(scale), tensor(shift))
    return None


def _per_sample(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` broadcast to one sample's ``shape`` (a leading batch axis of 1 dropped), or None."""
    while a.ndim > len(shape) and a.shape[0] == 1:
        a = a[0]
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        return None


def _agrees(chain: ConvChain, net: Network, device: torch.device | str) -> bool:
    """Whether the chain's logits and its hand-written gradient match the IR's module and autograd
    on two random inputs (a check of the shapes the chain assumed, made once per network)."""
    module = net.to_torch(str(device))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2,) + tuple(net.input_shape), generator=gen).to(device).requires_grad_(True)
    seed = torch.randn((2, net.output_size), generator=gen).to(device)
    out = module(x).reshape(2, -1)
    (grad,) = torch.autograd.grad((out * seed).sum(), x)
    theirs = out.detach()
    with torch.no_grad():
        ours, tape = chain.with_tape(x.detach())
        mine = chain.input_grad(tape, seed)
    scale = float(theirs.abs().max()) + 1.0
    return (ours.shape == theirs.shape and bool(torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale))
            and bool(torch.allclose(mine, grad, rtol=1e-3, atol=1e-4 * (float(grad.abs().max()) + 1e-6))))
