"""2-D pooling: ONNX MaxPool and AveragePool (ceil_mode=0).

AveragePool is affine (a fixed weighted sum of its window), so the verifier
uses its exact linear form.  MaxPool carries its bound rules on flat tensors
``(D, n)`` over the input node shape ``in_shape`` (see
:mod:`nnaudit.networks.ir`), through the table of each output's window
positions in the flat input (:func:`window_table`):

- interval: the max of the window's lower and of its upper bounds;
- linear bounds: below by the window input with the largest lower bound;
  above by that same input when its lower bound beats every other input's
  upper bound (then it is the max), else by the constant max upper bound;
- Z3: ``y >= z_i`` for every window input and ``y <= z_i`` for one of them,
  leaving out inputs the bounds prove can never be the maximum.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, Shape, register
from nnaudit.networks.ops.spatial import Window2d, as_images, parse_window

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from nnaudit.networks.loader import NodeView


@functools.lru_cache(maxsize=64)
def window_table(window: Window2d, in_shape: Shape) -> np.ndarray:
    """Indices ``(n_out, kh*kw)`` of each pooling window's inputs in the flat
    input of node shape ``in_shape``; -1 marks padding."""
    idx = np.arange(int(np.prod(in_shape)), dtype=np.float64).reshape((1,) + tuple(in_shape))
    imgs, _ = as_images(idx)
    v = window.windows(window.pad_numpy(imgs, -1.0))
    table = v.reshape(-1, v.shape[-2] * v.shape[-1]).astype(np.int64)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=64)
def _torch_table(window: Window2d, in_shape: Shape, device: Any) -> Any:
    import torch

    return torch.as_tensor(window_table(window, in_shape).copy(), device=device)


def _windowed(v: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(D, n)`` -> ``(D, n_out, k)`` window values; padding is -inf."""
    import torch

    pad = torch.full((v.shape[0], 1), -torch.inf, dtype=v.dtype, device=v.device)
    return torch.cat([v, pad], dim=1)[:, table]


class _Pool(Layer):
    """Shared conversion of the pooling ops."""

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, window: Window2d) -> None:
        super().__init__(name, inputs, output)
        self.window = window

    def describe(self) -> str:
        return self.window.describe()

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        if int(node.attr("ceil_mode", 0)):
            raise node.unsupported("ceil_mode=1 (only ceil_mode=0 is supported)")
        if len(node.node.output) > 1 and node.node.output[1]:
            raise node.unsupported("the Indices output of MaxPool is not supported")
        ks = node.attr("kernel_shape")
        if ks is None or len(ks) != 2:
            raise node.unsupported(f"kernel_shape={ks} (only 2-D pooling is supported)")
        shape = node.shape(0)
        window = parse_window(node, (int(ks[0]), int(ks[1])), (shape[-2], shape[-1]))
        return [cls._build(node, window)]

    @classmethod
    def _build(cls, node: NodeView, window: Window2d) -> Layer:
        return cls(node.name, (node.inputs[0],), node.output, window)


@register("MaxPool")
class MaxPool(_Pool):
    """Maximum over each window; padding never wins (it is -inf)."""

    kind = "maxpool"
    relaxable = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        imgs, lead = as_images(x)
        y = self.window.windows(self.window.pad_numpy(imgs, -np.inf)).max(axis=(-2, -1))
        return y.reshape(lead + y.shape[1:])

    def to_torch(self) -> Any:
        import torch.nn.functional as F

        from nnaudit.networks.torch_module import OpModule

        w = self.window

        def run(m: Any, x: Any) -> Any:
            lead = x.shape[:-3]
            imgs = F.pad(x.reshape((-1,) + tuple(x.shape[-3:])), w.torch_pad(), value=float("-inf"))
            y = F.max_pool2d(imgs, w.kernel, stride=w.strides, dilation=w.dilations)
            return y.reshape(tuple(lead) + tuple(y.shape[1:]))

        return OpModule("maxpool", run)

    def interval(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        table = _torch_table(self.window, tuple(in_shape), lo.device)
        return _windowed(lo, table).max(dim=2).values, _windowed(hi, table).max(dim=2).values

    def relax(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape,
              alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Per output ``(D, n_out)``: the flat index of the window input with the
        largest lower bound, whether it provably is the max, and the max upper bound."""
        import torch

        table = _torch_table(self.window, tuple(in_shape), lo.device)
        lw, uw = _windowed(lo, table), _windowed(hi, table)
        best = lw.argmax(dim=2)
        sel = torch.gather(table.expand(lo.shape[0], -1, -1), 2, best[..., None])[..., 0]
        others = uw.scatter(2, best[..., None], -torch.inf).max(dim=2).values
        return sel, lw.max(dim=2).values >= others, uw.max(dim=2).values

    def linear_bounds(self, a: torch.Tensor, relax: tuple[torch.Tensor, ...], *,
                      in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        sel, exact, umax = relax
        ap, an = a.clamp(min=0), a.clamp(max=0)
        to_sel = ap + torch.where(exact[:, None, :], an, 0.0)
        coeff = torch.zeros(a.shape[:2] + (int(np.prod(in_shape)),), dtype=a.dtype, device=a.device)
        coeff.scatter_add_(2, sel[:, None, :].expand(-1, a.shape[1], -1), to_sel)
        const = torch.where(exact[:, None, :], 0.0, an * umax[:, None, :]).sum(-1)
        return coeff, const

    def forward_linear_bounds(self, zl: torch.Tensor, zu: torch.Tensor, relax: tuple[torch.Tensor, ...],
                              *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        sel, exact, umax = relax
        idx = sel[:, None, :].expand(-1, zl.shape[1], -1)
        ol = torch.gather(zl, 2, idx)
        const = torch.zeros_like(ol)
        const[:, -1] = umax
        return ol, torch.where(exact[:, None, :], torch.gather(zu, 2, idx), const)

    def z3_encode(self, z: Sequence[Any], bounds: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
                  *, in_shape: Shape, name: str) -> tuple[list[Any], list[Any]]:
        import z3

        out: list[Any] = []
        cons: list[Any] = []
        for j, win in enumerate(window_table(self.window, tuple(in_shape))):
            idx = [int(i) for i in win if i >= 0]
            if bounds is not None:
                best_lo = max(float(bounds[0][i]) for i in idx)
                idx = [i for i in idx if float(bounds[1][i]) >= best_lo]
            y = z3.Real(f"{name}{j}")
            cons += [y >= z[i] for i in idx]
            cons.append(z3.Or([y <= z[i] for i in idx]))
            out.append(y)
        return out, cons


@register("AveragePool")
class AveragePool(_Pool):
    """Mean over each window; with ``count_include_pad=0`` pads are not counted."""

    kind = "avgpool"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, window: Window2d,
                 count_include_pad: bool = False) -> None:
        super().__init__(name, inputs, output, window)
        self.count_include_pad = count_include_pad

    @classmethod
    def _build(cls, node: NodeView, window: Window2d) -> Layer:
        if window.dilations != (1, 1):
            raise node.unsupported(f"dilations={list(window.dilations)} for AveragePool")
        return cls(node.name, (node.inputs[0],), node.output, window, bool(node.attr("count_include_pad", 0)))

    def describe(self) -> str:
        return f"{self.window.describe()} count_include_pad={int(self.count_include_pad)}"

    def divisor(self, spatial: tuple[int, int]) -> np.ndarray:
        """Number of averaged elements per output position ``(Ho, Wo)``."""
        if self.count_include_pad:
            ones = np.ones((1, 1) + tuple(s + p for s, p in zip(spatial, self._pad_sum())))
        else:
            ones = self.window.pad_numpy(np.ones((1, 1) + spatial), 0.0)
        return self.window.windows(ones).sum(axis=(-2, -1))[0, 0]

    def _pad_sum(self) -> tuple[int, int]:
        top, left, bottom, right = self.window.pads
        return (top + bottom, left + right)

    def linear_form(self, in_shapes: Any, out_shape: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """The dense form, by torch's convolution of the unit vectors (see :meth:`linear_map`)."""
        (m,), bias = self.linear_map(in_shapes, out_shape)
        return [m.dense()], bias

    def linear_map(self, in_shapes: Any, out_shape: Any) -> tuple[list[Any], np.ndarray]:
        """The mean as a depthwise :class:`~nnaudit.networks.ops.conv.ConvMap` of ones, scaled by
        each output's divisor (padding not counted unless ``count_include_pad``)."""
        from nnaudit.networks.ops.conv import ConvMap

        in_shape, out = tuple(int(d) for d in in_shapes[0]), tuple(int(d) for d in out_shape)
        c = in_shape[-3]
        div = self.divisor(in_shape[-2:])
        scale = np.broadcast_to(1.0 / div, (c,) + div.shape).reshape(-1).copy()
        ones = np.ones((c, 1) + tuple(self.window.kernel))
        return [ConvMap(ones, self.window, in_shape, out, groups=c, out_scale=scale)], np.zeros(int(np.prod(out)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        imgs, lead = as_images(x)
        sums = self.window.windows(self.window.pad_numpy(imgs, 0.0)).sum(axis=(-2, -1))
        y = sums / self.divisor(imgs.shape[-2:])
        return y.reshape(lead + y.shape[1:])

    def to_torch(self) -> Any:
        import torch.nn.functional as F

        from nnaudit.networks.torch_module import OpModule

        w = self.window
        kh, kw = w.kernel
        cache: dict[tuple[int, int], np.ndarray] = {}
        layer = self

        def run(m: Any, x: Any) -> Any:
            lead = x.shape[:-3]
            spatial = (int(x.shape[-2]), int(x.shape[-1]))
            if spatial not in cache:
                cache[spatial] = layer.divisor(spatial)
            imgs = F.pad(x.reshape((-1,) + tuple(x.shape[-3:])), w.torch_pad())
            sums = F.avg_pool2d(imgs, w.kernel, stride=w.strides) * (kh * kw)
            y = sums / x.new_tensor(cache[spatial])
            return y.reshape(tuple(lead) + tuple(y.shape[1:]))

        return OpModule("avgpool", run)
