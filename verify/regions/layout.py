"""How a network input is an image, and the regions of that image.

The first half of the region-safety specification (the family of one region
is :mod:`nnaudit.verify.regions.spec`): an :class:`ImageLayout` says how the
flat input is ``channels`` x ``height`` x ``width`` and in which order;
regions (:class:`ImageRegion`) are sets of *pixels* of the ``H x W`` image
(grid boxes ``--grid 4x4``, square patches ``--patch 2``, masks or the whole
image), so grids and patches count pixels, never input values.  A region
moves its pixels in all channels (:attr:`RegionChannels.ALL`, the default)
or in one channel each (:attr:`RegionChannels.EACH`: one region per pixel set
and channel).  Each region lists the flat input indices it moves
(``pixels``), its pixels as ``row * W + col`` (``image_pixels``) and its
channels.

The layout of a network (:func:`layout_of`): ``--image-shape`` when given;
else channels-last when the input's only use is a leading Transpose
``(H, W, C) -> (C, H, W)``, channels-first when a Conv reads it directly,
and otherwise the shape decides (:meth:`ImageLayout.from_input_shape`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from nnaudit.errors import SpecError


class RegionChannels(Enum):
    """Which channels a region moves."""

    ALL = "all"    # a region is a set of pixels, moved in every channel
    EACH = "each"  # one region per set of pixels and channel


@dataclass(frozen=True)
class ImageLayout:
    """How a network input is an image: ``channels`` x ``height`` x ``width``.

    ``channels_first`` says whether the flat input is ordered (C, H, W) or
    (H, W, C).  A flat input of a perfect-square size is a 1-channel square.
    """

    channels: int
    height: int
    width: int
    channels_first: bool = True

    @classmethod
    def from_input_shape(cls, shape: Sequence[int]) -> ImageLayout:
        """The layout a shape implies: ``(H, W)``, a flat square, ``(C, H, W)``
        with C <= 4 (or W > 4), else ``(H, W, C)``."""
        shape = tuple(int(s) for s in shape)
        if len(shape) == 1 or (len(shape) == 2 and 1 in shape):
            n = int(np.prod(shape))
            side = math.isqrt(n)
            if side * side != n:
                raise SpecError(f"regions: input shape {shape} is flat with {n} values, not a square image; "
                                "expected (H, W), (C, H, W) or a flat square (or give --image-shape HxW)")
            return cls(1, side, side)
        if len(shape) == 2:
            return cls(1, shape[0], shape[1])
        if len(shape) == 3:
            if shape[0] <= 4 or shape[2] > 4:
                return cls(shape[0], shape[1], shape[2], True)
            return cls(shape[2], shape[0], shape[1], False)
        raise SpecError(f"regions: input shape {shape} is not an image; expected (H, W), (C, H, W) or a flat square")

    @property
    def size(self) -> int:
        return self.channels * self.height * self.width

    @property
    def shape(self) -> tuple[int, ...]:
        """The image's shape in the order of the flat input: ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``."""
        if self.channels == 1:
            return (self.height, self.width)
        if self.channels_first:
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    def index(self, row: int, col: int, channel: int) -> int:
        """The flat input index of one pixel's channel."""
        if self.channels_first:
            return (channel * self.height + row) * self.width + col
        return (row * self.width + col) * self.channels + channel

    def flat_indices(self, rows: Sequence[int], cols: Sequence[int],
                     channels: Sequence[int] | None = None) -> list[int]:
        """Flat input indices of ``channels`` (default: all) of pixels (rows x cols), sorted."""
        chans = range(self.channels) if channels is None else channels
        return sorted(self.index(r, c, ch) for r in rows for c in cols for ch in chans)

    def region(self, id: int, cells: Sequence[tuple[int, int]], channels: Sequence[int] | None = None,
               box: tuple[int, int, int, int] | None = None) -> ImageRegion:
        """The region of pixels ``cells`` ((row, col) pairs) in ``channels`` (default: all)."""
        chans = tuple(range(self.channels)) if channels is None else tuple(sorted(channels))
        pixels = sorted(self.index(r, c, ch) for r, c in cells for ch in chans)
        if box is None:
            rows, cols = [r for r, _ in cells], [c for _, c in cells]
            box = (min(rows), min(cols), max(rows) + 1, max(cols) + 1)
        image_pixels = tuple(sorted(r * self.width + c for r, c in cells))
        return ImageRegion(id, box, tuple(pixels), chans, image_pixels)

    def gray(self, x: np.ndarray) -> np.ndarray:
        """The image ``(H, W)`` (channel mean) of a flat input, for plotting."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self.channels_first:
            return x.reshape(self.channels, self.height, self.width).mean(axis=0)
        return x.reshape(self.height, self.width, self.channels).mean(axis=2)


@dataclass(frozen=True)
class ImageRegion:
    """One region: ``id``, ``box`` ``(row0, col0, row1, col1)`` end-exclusive
    (the bounding box for masks), ``pixels``, the flat input indices it moves,
    and (regions built from a layout) its ``channels`` and its pixels as
    ``row * W + col`` (``image_pixels``)."""

    id: int
    box: tuple[int, int, int, int]
    pixels: tuple[int, ...]
    channels: tuple[int, ...] = ()
    image_pixels: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "box": list(self.box), "pixels": list(self.pixels)}
        if self.channels:
            d.update(channels=list(self.channels), image_pixels=list(self.image_pixels))
        return d


def _box_cells(box: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    return [(r, c) for r in range(box[0], box[2]) for c in range(box[1], box[3])]


def grid_regions(layout: ImageLayout, rows: int, cols: int) -> list[ImageRegion]:
    """A ``rows`` x ``cols`` grid over the image's pixels (edges split as evenly as possible)."""
    if rows < 1 or cols < 1 or rows > layout.height or cols > layout.width:
        raise SpecError(f"regions: grid {rows}x{cols} does not fit an image of {layout.height}x{layout.width} pixels")
    r_edges = np.linspace(0, layout.height, rows + 1).round().astype(int)
    c_edges = np.linspace(0, layout.width, cols + 1).round().astype(int)
    out = []
    for i in range(rows):
        for j in range(cols):
            box = (int(r_edges[i]), int(c_edges[j]), int(r_edges[i + 1]), int(c_edges[j + 1]))
            out.append(layout.region(len(out), _box_cells(box), box=box))
    return out


def patch_regions(layout: ImageLayout, size: int) -> list[ImageRegion]:
    """Non-overlapping ``size`` x ``size`` pixel patches (smaller at the right/bottom edge)."""
    if size < 1 or size > max(layout.height, layout.width):
        raise SpecError(f"regions: patch size {size} does not fit an image of {layout.height}x{layout.width} pixels")
    out = []
    for r in range(0, layout.height, size):
        for c in range(0, layout.width, size):
            box = (r, c, min(r + size, layout.height), min(c + size, layout.width))
            out.append(layout.region(len(out), _box_cells(box), box=box))
    return out


def mask_regions(layout: ImageLayout, masks: np.ndarray) -> list[ImageRegion]:
    """One region per boolean pixel mask ``(M, H, W)`` (or ``(H, W)``)."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != (layout.height, layout.width):
        raise SpecError(f"regions: expected masks shaped (M, {layout.height}, {layout.width}), got {masks.shape}")
    out = []
    for m in masks.astype(bool):
        rr, cc = np.nonzero(m)
        if len(rr) == 0:
            raise SpecError(f"regions: mask {len(out)} selects no pixel")
        out.append(layout.region(len(out), [(int(r), int(c)) for r, c in zip(rr, cc)]))
    return out


def whole_image(layout: ImageLayout) -> list[ImageRegion]:
    """The whole image as one region."""
    return grid_regions(layout, 1, 1)


def per_channel(layout: ImageLayout, regions: Sequence[ImageRegion]) -> list[ImageRegion]:
    """Each region once per channel (ids renumbered region-major: region k, channel c -> k * C + c)."""
    out = []
    for region in regions:
        cells = [divmod(p, layout.width) for p in region.image_pixels]
        if not cells:
            raise SpecError(f"regions: region {region.id} has no image pixels to split by channel")
        for ch in range(layout.channels):
            out.append(layout.region(len(out), cells, (ch,), box=region.box))
    return out


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x4"`` -> ``(4, 4)``; SpecError otherwise."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise SpecError(f"regions: expected --grid ROWSxCOLS such as 4x4, got {text!r}") from None
    return rows, cols


def parse_image_shape(text: str) -> ImageLayout:
    """``"28x28"`` (H x W), ``"3x32x32"`` (C x H x W) or ``"32x32x3"`` (H x W x C: the
    last number <= 4 and the first > 4) -> the layout; SpecError otherwise."""
    try:
        dims = tuple(int(p) for p in text.lower().replace("×", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise SpecError(f"regions: expected --image-shape HxW, CxHxW or HxWxC such as 28x28 or 3x32x32, got {text!r}")
    return ImageLayout.from_input_shape(dims)


def layout_of(network: Any, image_shape: str | None = None) -> ImageLayout:
    """The image layout of ``network``'s input (see the module docstring); SpecError
    when ``image_shape`` does not match the input's size or the input is no image."""
    shape = tuple(int(s) for s in network.input_shape)
    if image_shape is not None:
        layout = parse_image_shape(image_shape)
        if layout.size != math.prod(shape):
            raise SpecError(f"regions: --image-shape {image_shape} has {layout.size} values but the network "
                            f"input {shape} has {math.prod(shape)}")
        return layout
    if len(shape) == 3:
        channels_last = _leading_transpose(network)
        if channels_last is not None:
            h, w, c = shape if channels_last else (shape[1], shape[2], shape[0])
            return ImageLayout(c, h, w, not channels_last)
    return ImageLayout.from_input_shape(shape)


def _leading_transpose(network: Any) -> bool | None:
    """For a 3-D input: True when its only use is a Transpose ``(H, W, C) -> (C, H, W)``,
    False when a Conv or an identity Transpose reads it as ``(C, H, W)``, None when
    nothing says; SpecError for another leading Transpose."""
    from nnaudit.networks.ops.conv import Conv
    from nnaudit.networks.ops.shape import Transpose

    users = [layer for layer in network.layers if network.input_name in layer.inputs]
    if any(isinstance(u, Conv) for u in users):
        return False
    transposes = [u for u in users if isinstance(u, Transpose)]
    if not transposes:
        return None
    b = len(network.input_node_shape) - 3            # 1 with a batch axis
    lead = tuple(range(b))
    perms = {t.perm for t in transposes}
    if len(perms) == 1 and len(transposes) == len(users):
        perm = perms.pop()
        if perm == lead + (b + 2, b, b + 1):
            return True
        if perm == lead + (b, b + 1, b + 2):
            return False
    raise SpecError(f"regions: the network input {tuple(network.input_shape)} is transposed by "
                    f"{sorted(list(p) for p in perms)} before its first layer; cannot tell which axis holds the "
                    "channels (give --image-shape)")
