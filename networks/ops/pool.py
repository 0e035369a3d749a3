"""2-D pooling: ONNX MaxPool and AveragePool (ceil_mode=0)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register
from nnaudit.networks.ops.spatial import Window2d, as_images, parse_window

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


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


@register("AveragePool")
class AveragePool(_Pool):
    """Mean over each window; with ``count_include_pad=0`` pads are not counted."""

    kind = "avgpool"

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
