"""Dense affine layers: ONNX Gemm and MatMul with a constant weight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register
from nnaudit.networks.ops.shape import Transpose

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@register("Gemm", "MatMul")
class Linear(Layer):
    """``y = x @ weight + bias`` over the last axis of ``x``.

    ``weight`` is ``(n_in, n_out)``; ``bias`` broadcasts against the output's
    node shape.  Gemm's ``alpha``/``beta``/``transB`` are folded into them;
    ``transA`` and a constant left operand become Transpose layers around it.
    """

    kind = "linear"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str,
                 weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__(name, inputs, output)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.zeros(self.weight.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def describe(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight + self.bias

    def linear_form(self, in_shapes: Any, out_shape: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """On one row (node shape ``(n,)`` or ``(1, n)``) the weight itself, without probing
        ``forward`` on ``n`` unit vectors (an ``n x n`` array on a wide layer)."""
        if int(np.prod(in_shapes[0])) == self.weight.shape[0]:
            bias = np.broadcast_to(self.bias, tuple(out_shape)).reshape(-1).astype(np.float64)
            return [self.weight.copy()], bias.copy()
        return super().linear_form(in_shapes, out_shape)

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        return OpModule("linear", lambda m, x: x @ m.weight + m.bias, weight=self.weight, bias=self.bias)

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        if node.op_type == "MatMul":
            return cls._from_matmul(node)
        return cls._from_gemm(node)

    @classmethod
    def _from_matmul(cls, node: NodeView) -> list[Layer]:
        """MatMul with one constant operand, 1-D operands as numpy's ``matmul`` treats them (a 1-D
        right operand is a column whose axis is dropped from the result, a 1-D left one a row)."""
        dyn = node.dynamic_inputs()
        if dyn == [1]:
            a, x_rank = node.const(0), len(node.shape(1))
            if a.ndim == 2 and x_rank == 1:  # A @ x on a vector: x @ A.T
                return [cls(node.name, (node.inputs[1],), node.output, a.T, None)]
            if a.ndim == 1 and x_rank == 1:  # a dot product
                return cls._dropping_last(node, node.inputs[1], a)
            return cls._left_multiply(node, a, None)
        if dyn != [0]:
            raise node.unsupported("MatMul of two non-constant inputs is not supported (not piecewise-linear)")
        weight = node.const(1)
        if weight.ndim == 1:  # x @ w: a column whose axis the result drops
            return cls._dropping_last(node, node.inputs[0], weight)
        if weight.ndim != 2:
            raise node.unsupported(f"MatMul weight must be 1-D or 2-D, got shape {weight.shape}")
        return [cls(node.name, (node.inputs[0],), node.output, weight, None)]

    @classmethod
    def _dropping_last(cls, node: NodeView, src: str, w: np.ndarray) -> list[Layer]:
        """``x @ w`` for a 1-D ``w``: a Linear to one column, then a reshape that drops that axis."""
        from nnaudit.networks.ops.shape import Reshape

        mid = f"{node.output}::col"
        target = tuple(int(d) for d in node.shape(0 if src == node.inputs[0] else 1)[:-1])
        return [cls(node.name, (src,), mid, np.asarray(w, dtype=np.float64)[:, None], None),
                Reshape(f"{node.name}/drop", (mid,), node.output, target)]

    @classmethod
    def _from_gemm(cls, node: NodeView) -> list[Layer]:
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
        c = node.optional_const(2)
        bias = None if c is None else beta * c
        dyn = node.dynamic_inputs()
        if dyn == [0]:
            weight = alpha * (node.const(1).T if trans_b else node.const(1))
            if not trans_a:
                return [cls(node.name, (node.inputs[0],), node.output, weight, bias)]
            mid = f"{node.output}::transA"
            return [Transpose(f"{node.name}/transA", (node.inputs[0],), mid, (1, 0)),
                    cls(node.name, (mid,), node.output, weight, bias)]
        if dyn == [1]:
            a = alpha * (node.const(0).T if trans_a else node.const(0))
            # op(B) = B.T when transB, so Y.T = B @ op(A).T needs no transpose in front
            return cls._left_multiply(node, a, bias, pretransposed=bool(trans_b))
        raise node.unsupported("Gemm of two non-constant inputs is not supported (not piecewise-linear)")

    @classmethod
    def _left_multiply(cls, node: NodeView, a: np.ndarray, bias: np.ndarray | None,
                       *, pretransposed: bool = False) -> list[Layer]:
        """``Y = A @ X (+ bias)`` with constant A: as ``(X.T @ A.T).T``."""
        if a.ndim != 2:
            raise node.unsupported(f"constant left operand must be 2-D, got shape {a.shape}")
        src = node.inputs[1]
        layers: list[Layer] = []
        if not pretransposed:
            t_in = f"{node.output}::T_in"
            layers.append(Transpose(f"{node.name}/T_in", (src,), t_in, (1, 0)))
            src = t_in
        t_out = f"{node.output}::T_out"
        n_out = a.shape[0]
        bias_t = None
        if bias is not None:
            cols = node.shape(1)[0] if pretransposed else node.shape(1)[1]
            bias_t = np.broadcast_to(bias, (n_out, cols)).T.copy()
        layers.append(cls(node.name, (src,), t_out, a.T, bias_t))
        layers.append(Transpose(f"{node.name}/T_out", (t_out,), node.output, (1, 0)))
        return layers
