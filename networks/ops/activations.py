"""Element-wise activations: Relu, Sigmoid, Tanh."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


class _Activation(Layer):
    """An element-wise non-linearity of one input."""

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        return [cls(node.name, (node.inputs[0],), node.output)]


@register("Relu")
class Relu(_Activation):
    kind = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("relu", lambda m, x: torch.relu(x))


@register("Sigmoid")
class Sigmoid(_Activation):
    kind = "sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        # split by sign so exp never overflows
        out = np.empty_like(x, dtype=np.float64)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        ex = np.exp(x[~pos])
        out[~pos] = ex / (1.0 + ex)
        return out

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("sigmoid", lambda m, x: torch.sigmoid(x))


@register("Tanh")
class Tanh(_Activation):
    kind = "tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("tanh", lambda m, x: torch.tanh(x))
