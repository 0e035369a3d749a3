"""2-D convolution (ONNX Conv, group=1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register
from nnaudit.networks.ops.spatial import Window2d, as_images, parse_window

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@register("Conv")
class Conv(Layer):
    """``y = conv2d(x, weight) + bias`` on node shape ``(N, C, H, W)``.

    ``weight`` is ``(C_out, C_in, kh, kw)``, ``bias`` ``(C_out,)``.
    """

    kind = "conv"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str,
                 weight: np.ndarray, bias: np.ndarray | None, window: Window2d) -> None:
        super().__init__(name, inputs, output)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.zeros(self.weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        self.window = window

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def describe(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]} channels, {self.window.describe()}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        imgs, lead = as_images(x)
        if imgs.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected {self.weight.shape[1]} input channels, got {imgs.shape[1]}")
        v = self.window.windows(self.window.pad_numpy(imgs, 0.0))
        y = np.einsum("mchwij,ocij->mohw", v, self.weight, optimize=True) + self.bias[:, None, None]
        return y.reshape(lead + y.shape[1:])

    def to_torch(self) -> Any:
        import torch.nn.functional as F

        from nnaudit.networks.torch_module import OpModule

        w = self.window

        def run(m: Any, x: Any) -> Any:
            lead = x.shape[:-3]
            imgs = F.pad(x.reshape((-1,) + tuple(x.shape[-3:])), w.torch_pad())
            y = F.conv2d(imgs, m.weight, m.bias, stride=w.strides, dilation=w.dilations)
            return y.reshape(tuple(lead) + tuple(y.shape[1:]))

        return OpModule("conv", run, weight=self.weight, bias=self.bias)

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        if node.dynamic_inputs() != [0]:
            raise node.unsupported("Conv weights and bias must be constants")
        if int(node.attr("group", 1)) != 1:
            raise node.unsupported(f"group={node.attr('group')} (only group=1 is supported)")
        weight = node.const(1)
        if weight.ndim != 4:
            raise node.unsupported(f"only 2-D convolution is supported, weight shape {list(weight.shape)}")
        in_shape = node.shape(0)
        if len(in_shape) < 3 or in_shape[-3] != weight.shape[1]:
            raise node.error(f"input shape {list(in_shape)} does not match weight shape {list(weight.shape)}")
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        ks = node.attr("kernel_shape")
        if ks is not None and tuple(int(k) for k in ks) != kernel:
            raise node.error(f"kernel_shape {list(ks)} does not match weight shape {list(weight.shape)}")
        window = parse_window(node, kernel, (in_shape[-2], in_shape[-1]))
        return [cls(node.name, (node.inputs[0],), node.output, weight, node.optional_const(2), window)]
