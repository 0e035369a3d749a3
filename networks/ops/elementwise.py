"""Element-wise affine maps ``y = x * scale + shift`` with constant scale and
shift: ONNX Add/Sub/Mul/Div by a constant and BatchNormalization at
inference.  These are what the loader folds into neighbouring linear layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


def lift_rank(x: Any, rank: int) -> Any:
    """Insert size-1 node axes in front so ``x`` has node rank ``rank``.

    ONNX broadcasting can raise a tensor's rank; with the sample axis in
    front, numpy/torch would align it wrongly without this.
    """
    missing = rank - (x.ndim - 1)
    if missing <= 0:
        return x
    return x.reshape((x.shape[0],) + (1,) * missing + tuple(x.shape[1:]))


@register("Add", "Sub", "Mul", "Div")
class ElementwiseAffine(Layer):
    """``y = x * scale + shift``; scale and shift broadcast to the node shape."""

    kind = "affine"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str,
                 scale: np.ndarray, shift: np.ndarray, rank: int) -> None:
        super().__init__(name, inputs, output)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.shift = np.asarray(shift, dtype=np.float64)
        self.rank = rank

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {"scale": self.scale, "shift": self.shift}

    def describe(self) -> str:
        return f"scale{list(self.scale.shape)} shift{list(self.shift.shape)}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return lift_rank(x, self.rank) * self.scale + self.shift

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        rank = self.rank
        return OpModule("affine", lambda m, x: lift_rank(x, rank) * m.scale + m.shift,
                        scale=self.scale, shift=self.shift)

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        dyn = node.dynamic_inputs()
        if len(dyn) == 2:
            if node.op_type in ("Add", "Sub"):
                from nnaudit.networks.ops.merge import Sum

                return Sum.from_onnx(node)
            raise node.unsupported(f"{node.op_type} of two non-constant inputs is not supported (not piecewise-linear)")
        x_i = dyn[0]
        c = node.const(1 - x_i).astype(np.float64)
        rank = max(len(node.shape(x_i)), c.ndim)
        one, zero = np.ones_like(c), np.zeros_like(c)
        op = node.op_type
        if op == "Add":
            scale, shift = one, c
        elif op == "Sub":
            scale, shift = (one, -c) if x_i == 0 else (-one, c)
        elif op == "Mul":
            scale, shift = c, zero
        else:  # Div
            if x_i == 1:
                raise node.unsupported("division by a non-constant tensor is not supported")
            if np.any(c == 0):
                raise node.error("division by a constant that contains 0")
            scale, shift = 1.0 / c, zero
        return [cls(node.name, (node.inputs[x_i],), node.output, scale, shift, rank)]


@register("BatchNormalization")
class BatchNormalization(ElementwiseAffine):
    """Inference-mode batch norm: a per-channel (axis 1) affine map."""

    kind = "batchnorm"

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        if int(node.attr("training_mode", 0)):
            raise node.unsupported("training_mode=1 (only inference batch norm is supported)")
        if node.dynamic_inputs() != [0]:
            raise node.unsupported("scale, bias, mean and variance must be constants")
        gamma, beta, mean, var = (node.const(i).astype(np.float64) for i in (1, 2, 3, 4))
        eps = float(node.attr("epsilon", 1e-5))
        rank = len(node.shape(0))
        if rank < 2:
            raise node.error(f"expected an input with a channel axis, got shape {list(node.shape(0))}")
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        per_channel = (-1,) + (1,) * (rank - 2)
        return [cls(node.name, (node.inputs[0],), node.output,
                    scale.reshape(per_channel), shift.reshape(per_channel), rank)]
