"""Constant padding (ONNX Pad, mode="constant")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@register("Pad")
class Pad(Layer):
    """Pad every node axis with a constant; ``widths`` is ((before, after), ...)."""

    kind = "pad"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str,
                 widths: tuple[tuple[int, int], ...], value: float) -> None:
        super().__init__(name, inputs, output)
        self.widths = widths
        self.value = float(value)

    def describe(self) -> str:
        return f"widths={[list(w) for w in self.widths]} value={self.value:g}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0),) + self.widths, mode="constant", constant_values=self.value)

    def to_torch(self) -> Any:
        import torch.nn.functional as F

        from nnaudit.networks.torch_module import OpModule

        flat: list[int] = []
        for before, after in reversed(self.widths):
            flat += [before, after]
        value = self.value
        return OpModule("pad", lambda m, x: F.pad(x, tuple(flat), value=value))

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        mode = node.attr("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            raise node.unsupported(f"mode={mode!r} (only constant padding is supported)")
        rank = len(node.shape(0))
        pads_arr = node.optional_const(1)
        pads = [int(p) for p in (pads_arr.reshape(-1) if pads_arr is not None else node.attr("pads", []))]
        value_arr = node.optional_const(2)
        value = float(value_arr.reshape(-1)[0]) if value_arr is not None and value_arr.size else float(node.attr("value", 0.0))
        axes_arr = node.optional_const(3)
        axes = list(range(rank)) if axes_arr is None else [int(a) + rank if a < 0 else int(a) for a in axes_arr.reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise node.error(f"expected {2 * len(axes)} pad values, got {len(pads)}")
        if min(pads, default=0) < 0:
            raise node.unsupported(f"negative pads {pads} (cropping) are not supported")
        widths = [(0, 0)] * rank
        for i, axis in enumerate(axes):
            widths[axis] = (pads[i], pads[i + len(axes)])
        return [cls(node.name, (node.inputs[0],), node.output, tuple(widths), value)]
