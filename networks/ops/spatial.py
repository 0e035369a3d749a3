"""Shared geometry of 2-D windowed ops (Conv, MaxPool, AveragePool):
attribute parsing (kernel, strides, pads, dilations, auto_pad) and the
NumPy sliding-window view they evaluate with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@dataclass(frozen=True)
class Window2d:
    """Kernel geometry; ``pads`` are (top, left, bottom, right) like ONNX."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        """Size of the dilated kernel footprint."""
        return ((self.kernel[0] - 1) * self.dilations[0] + 1, (self.kernel[1] - 1) * self.dilations[1] + 1)

    def describe(self) -> str:
        return f"kernel={list(self.kernel)} strides={list(self.strides)} pads={list(self.pads)} dilations={list(self.dilations)}"

    def torch_pad(self) -> tuple[int, int, int, int]:
        """Pads in ``torch.nn.functional.pad`` order (left, right, top, bottom)."""
        top, left, bottom, right = self.pads
        return (left, right, top, bottom)

    def pad_numpy(self, x: np.ndarray, value: float) -> np.ndarray:
        top, left, bottom, right = self.pads
        width = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
        return np.pad(x, width, mode="constant", constant_values=value)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """``(M, C, Hp, Wp)`` padded -> ``(M, C, Ho, Wo, kh, kw)`` view."""
        eh, ew = self.extent
        if xp.shape[-2] < eh or xp.shape[-1] < ew:
            raise ValueError(f"kernel extent {(eh, ew)} larger than padded input {xp.shape[-2:]}")
        v = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
        return v[:, :, :: self.strides[0], :: self.strides[1], :: self.dilations[0], :: self.dilations[1]]


def parse_window(node: NodeView, kernel: tuple[int, int], spatial: tuple[int, int]) -> Window2d:
    """Read strides/pads/dilations/auto_pad of a 2-D windowed node."""
    strides = tuple(int(s) for s in node.attr("strides", [1, 1]))
    dilations = tuple(int(d) for d in node.attr("dilations", [1, 1]))
    if len(strides) != 2 or len(dilations) != 2:
        raise node.unsupported("only 2-D kernels are supported")
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("NOTSET", ""):
        pads = tuple(int(p) for p in node.attr("pads", [0, 0, 0, 0]))
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(kernel, strides, dilations, spatial, upper=auto_pad == "SAME_UPPER")  # type: ignore[arg-type]
    else:
        raise node.unsupported(f"auto_pad={auto_pad!r}")
    if len(pads) != 4 or min(pads) < 0:
        raise node.unsupported(f"pads={list(pads)} (expected 4 non-negative values)")
    return Window2d(kernel, strides, pads, dilations)  # type: ignore[arg-type]


def _same_pads(kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int],
               spatial: tuple[int, int], *, upper: bool) -> tuple[int, int, int, int]:
    begins, ends = [], []
    for k, s, d, n in zip(kernel, strides, dilations, spatial):
        extent = (k - 1) * d + 1
        total = max((-(-n // s) - 1) * s + extent - n, 0)
        small = total // 2
        begins.append(small if upper else total - small)
        ends.append(total - small if upper else small)
    return (begins[0], begins[1], ends[0], ends[1])


def as_images(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(B, *lead, C, H, W)`` -> ``(M, C, H, W)`` plus the leading dims."""
    lead = x.shape[:-3]
    return x.reshape((-1,) + x.shape[-3:]), lead
