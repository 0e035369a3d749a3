"""Layers that merge several tensors: the residual Add/Sub of two activations
and Concat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register
from nnaudit.networks.ops.elementwise import lift_rank

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


class Sum(Layer):
    """``y = a + sign * b`` of two activations (residual connections).

    Converted from ONNX Add/Sub when neither input is constant (the constant
    case is :class:`~nnaudit.networks.ops.elementwise.ElementwiseAffine`).
    """

    kind = "sum"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, sign: float, rank: int) -> None:
        super().__init__(name, inputs, output)
        self.sign = float(sign)
        self.rank = rank

    def describe(self) -> str:
        return "a + b" if self.sign > 0 else "a - b"

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return lift_rank(a, self.rank) + self.sign * lift_rank(b, self.rank)

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        sign, rank = self.sign, self.rank
        return OpModule(self.describe(), lambda m, a, b: lift_rank(a, rank) + sign * lift_rank(b, rank))

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        rank = max(len(node.shape(0)), len(node.shape(1)))
        sign = 1.0 if node.op_type == "Add" else -1.0
        return [cls(node.name, (node.inputs[0], node.inputs[1]), node.output, sign, rank)]


@register("Concat")
class Concat(Layer):
    """Concatenate activations (and constants) along one node axis."""

    kind = "concat"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, axis: int,
                 parts: list[np.ndarray | None]) -> None:
        super().__init__(name, inputs, output)
        self.axis = axis
        # one entry per ONNX input: a constant array, or None for the next dynamic input
        self.parts = parts

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"const{i}": p for i, p in enumerate(self.parts) if p is not None}

    def describe(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        it, batch = iter(xs), xs[0].shape[0]
        pieces = [next(it) if p is None else np.broadcast_to(p, (batch,) + p.shape) for p in self.parts]
        return np.concatenate(pieces, axis=self.axis + 1)

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        parts, axis = self.parts, self.axis

        def run(m: Any, *xs: Any) -> Any:
            it, batch = iter(xs), xs[0].shape[0]
            pieces = [next(it) if p is None else getattr(m, f"const{i}").expand((batch,) + p.shape)
                      for i, p in enumerate(parts)]
            return torch.cat(pieces, dim=axis + 1)

        return OpModule("concat", run, **self.params)

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        rank = len(node.shape(node.dynamic_inputs()[0]))
        axis = int(node.attr("axis", 0))
        axis = axis + rank if axis < 0 else axis
        parts = [node.const(i).astype(np.float64) if node.is_const(i) else None for i in range(len(node.inputs))]
        dyn = tuple(node.inputs[i] for i in node.dynamic_inputs())
        return [cls(node.name, dyn, node.output, axis, parts)]
