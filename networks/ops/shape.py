"""Data-movement layers: Transpose, and the reshaping family (Flatten,
Reshape, Squeeze, Unsqueeze), plus Identity/Dropout which do nothing at
inference.  All are linear maps that only move values around.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, Shape, register

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@register("Transpose")
class Transpose(Layer):
    """Permute the node axes; the sample axis stays first."""

    kind = "transpose"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, perm: tuple[int, ...]) -> None:
        super().__init__(name, inputs, output)
        self.perm = tuple(int(p) for p in perm)

    def describe(self) -> str:
        return f"perm={list(self.perm)}"

    def _axes(self) -> tuple[int, ...]:
        return (0,) + tuple(p + 1 for p in self.perm)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.transpose(self._axes())

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        axes = self._axes()
        return OpModule("transpose", lambda m, x: x.permute(axes))

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        rank = len(node.shape(0))
        perm = tuple(node.attr("perm", list(range(rank))[::-1]))
        if sorted(perm) != list(range(rank)):
            raise node.error(f"perm {list(perm)} is not a permutation of {rank} axes")
        return [cls(node.name, (node.inputs[0],), node.output, perm)]


class _Reshaping(Layer):
    """Base of the ops that only change the node shape to ``target``."""

    kind = "reshape"
    affine = True
    flat_identity = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str, target: Shape) -> None:
        super().__init__(name, inputs, output)
        self.target = tuple(int(d) for d in target)

    def describe(self) -> str:
        return f"-> {list(self.target)}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0],) + self.target)

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        target = self.target
        return OpModule(self.kind, lambda m, x: x.reshape((x.shape[0],) + target))

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        in_shape = node.shape(0)
        target = cls.target_shape(node, in_shape)
        if int(np.prod(target)) != int(np.prod(in_shape)):
            raise node.error(f"cannot reshape {list(in_shape)} to {list(target)}")
        return [cls(node.name, (node.inputs[0],), node.output, target)]

    @classmethod
    def target_shape(cls, node: NodeView, in_shape: Shape) -> Shape:
        raise NotImplementedError


@register("Flatten")
class Flatten(_Reshaping):
    kind = "flatten"

    @classmethod
    def target_shape(cls, node: NodeView, in_shape: Shape) -> Shape:
        axis = int(node.attr("axis", 1))
        axis = axis + len(in_shape) if axis < 0 else axis
        return (int(np.prod(in_shape[:axis])), int(np.prod(in_shape[axis:])))


@register("Reshape")
class Reshape(_Reshaping):
    kind = "reshape"

    @classmethod
    def target_shape(cls, node: NodeView, in_shape: Shape) -> Shape:
        if not node.is_const(1):
            raise node.unsupported("the target shape must be a constant")
        spec = [int(d) for d in node.const(1).reshape(-1)]
        allow_zero = int(node.attr("allowzero", 0))
        dims = [in_shape[i] if (d == 0 and not allow_zero) else d for i, d in enumerate(spec)]
        if dims.count(-1) > 1:
            raise node.error(f"target shape {spec} has more than one -1")
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1]))
            total = int(np.prod(in_shape))
            if known == 0 or total % known:
                raise node.error(f"cannot reshape {list(in_shape)} to {spec}")
            dims[dims.index(-1)] = total // known
        return tuple(dims)


def _axes_of(node: NodeView) -> list[int] | None:
    """Axes from the ``axes`` input (opset >= 13) or attribute (older)."""
    if len(node.inputs) > 1 and node.inputs[1]:
        return [int(a) for a in node.optional_const(1).reshape(-1)]  # type: ignore[union-attr]
    axes = node.attr("axes")
    return None if axes is None else [int(a) for a in axes]


@register("Squeeze")
class Squeeze(_Reshaping):
    kind = "squeeze"

    @classmethod
    def target_shape(cls, node: NodeView, in_shape: Shape) -> Shape:
        axes = _axes_of(node)
        rank = len(in_shape)
        if axes is None:
            axes = [i for i, d in enumerate(in_shape) if d == 1]
        axes = [a + rank if a < 0 else a for a in axes]
        for a in axes:
            if not 0 <= a < rank or in_shape[a] != 1:
                raise node.error(f"cannot squeeze axis {a} of shape {list(in_shape)}")
        return tuple(d for i, d in enumerate(in_shape) if i not in axes)


@register("Unsqueeze")
class Unsqueeze(_Reshaping):
    kind = "unsqueeze"

    @classmethod
    def target_shape(cls, node: NodeView, in_shape: Shape) -> Shape:
        axes = _axes_of(node)
        if axes is None:
            raise node.error("Unsqueeze needs axes")
        rank = len(in_shape) + len(axes)
        axes = sorted(a + rank if a < 0 else a for a in axes)
        dims = list(in_shape)
        for a in axes:
            if not 0 <= a <= len(dims):
                raise node.error(f"axis {a} out of range for output rank {rank}")
            dims.insert(a, 1)
        return tuple(dims)


@register("Identity", "Dropout")
class Identity(Layer):
    """Identity, and Dropout at inference (its optional mask output unused)."""

    kind = "identity"
    affine = True
    flat_identity = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def to_torch(self) -> Any:
        from nnaudit.networks.torch_module import OpModule

        return OpModule("identity", lambda m, x: x)

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        return [cls(node.name, (node.inputs[0],), node.output)]
