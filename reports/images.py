"""Small inline images for the report: inputs, differences and safety maps.

Every picture is a PNG encoded in a ``data:`` URI so the report is one file;
:func:`save_safety_map` writes the same safety map to a PNG file
(``nnaudit regions --maps``).
Images are stored at their native resolution (an 8x8 digit is ~150 bytes)
and enlarged by the browser with ``image-rendering: pixelated``; only the
safety map is enlarged here, because it draws region borders between pixels.
Colours come from matplotlib colormaps; encoding is done by Pillow (a
matplotlib dependency) to keep thousands of thumbnails fast and small.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import DataError

#: verdict -> RGB colour of the safety map (colour-blind safe: blue / orange-red / grey)
VERDICT_RGB = {"safe": (0x1b, 0x9e, 0x77), "unsafe": (0xd9, 0x3b, 0x1b), "unknown": (0x9e, 0x9e, 0x9e)}
MAP_TARGET_PX = 160  # enlarged safety maps are about this wide (a 32x32 image x5, 28x28 x6)
MAP_MAX_SCALE = 12
MAP_THICK_SCALE = 5  # from this enlargement on, region borders are two pixels wide
TINT = 0.45  # how strongly a region's verdict colour covers the image


def as_image(flat: Sequence[float], shape: Sequence[int]) -> np.ndarray | None:
    """The flat input as a displayable image, or None when it is not one.

    Returns (H, W) for grey images or (H, W, 3) for colour ones.  Accepts
    (H, W), (C, H, W) and (H, W, C) with C = 3 (colour) or 2 or 4 (shown as the
    channel mean), and flat vectors of a square size >= 16 (e.g. (64,) digits,
    (784, 1) MNIST)."""
    arr = np.asarray(flat, dtype=np.float64)
    dims = [int(d) for d in shape if int(d) != 1] if shape else [arr.size]
    if arr.size == 0 or math.prod(dims) != arr.size:
        return None
    if len(dims) == 1:
        side = math.isqrt(dims[0])
        return arr.reshape(side, side) if side * side == dims[0] and side >= 4 else None
    if len(dims) == 2:
        return arr.reshape(dims) if min(dims) >= 2 else None
    if len(dims) == 3 and dims[0] == 3:
        return np.moveaxis(arr.reshape(dims), 0, -1)
    if len(dims) == 3 and dims[2] == 3:
        return arr.reshape(dims)
    if len(dims) == 3 and dims[0] <= 4 < min(dims[1:]):
        return arr.reshape(dims).mean(axis=0)
    if len(dims) == 3 and dims[2] <= 4 < min(dims[:2]):
        return arr.reshape(dims).mean(axis=2)
    return None


def value_range(*images: np.ndarray) -> tuple[float, float]:
    """A shared display range covering [0, 1] and all values of ``images``."""
    lo = min([0.0] + [float(np.nanmin(im)) for im in images if im.size])
    hi = max([1.0] + [float(np.nanmax(im)) for im in images if im.size])
    return lo, hi


def png_uri(rgb: np.ndarray) -> str:
    """(H, W, 3|4) uint8 pixels as a ``data:image/png;base64`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colormap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def to_rgb(image: np.ndarray, lo: float, hi: float, cmap: str = "gray") -> np.ndarray:
    """Grey (H, W) through ``cmap`` or colour (H, W, 3) scaled to ``[lo, hi]`` -> uint8 (H, W, 3)."""
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    if image.ndim == 3:
        return (scaled * 255).round().astype(np.uint8)
    return (_colormap(cmap)(scaled)[..., :3] * 255).round().astype(np.uint8)


def image_uri(image: np.ndarray, lo: float, hi: float) -> str:
    """An input image as a PNG URI (grey images: ``lo`` white, ``hi`` black, like ink on paper)."""
    return png_uri(to_rgb(image, lo, hi, cmap="gray_r"))


def difference_uri(diff: np.ndarray) -> tuple[str, float]:
    """The perturbation amplified to the full colour range of a diverging map.

    Returns the URI and the largest absolute change (blue = decreased, red =
    increased, white = unchanged); colour images are shown as the per-pixel
    channel mean."""
    d = diff.mean(axis=-1) if diff.ndim == 3 else diff
    peak = float(np.nanmax(np.abs(d))) if d.size else 0.0
    scale = peak if peak > 0 else 1.0
    return png_uri(to_rgb(d, -scale, scale, cmap="RdBu_r")), peak


def map_scale(height: int, width: int) -> int:
    """The integer enlargement of safety maps and outlined pictures (about :data:`MAP_TARGET_PX` wide)."""
    return max(1, min(MAP_MAX_SCALE, math.ceil(MAP_TARGET_PX / max(height, width))))


def _frame(box: Sequence[int], scale: int) -> list[tuple[slice, slice]]:
    """The four border strips of ``box`` in a picture enlarged ``scale`` times, inside the
    box's own pixels: 2 px wide from :data:`MAP_THICK_SCALE` on, else 1."""
    r0, c0, r1, c1 = box
    t = 2 if scale >= MAP_THICK_SCALE else 1
    R0, C0, R1, C1 = r0 * scale, c0 * scale, r1 * scale - 1, c1 * scale - 1
    return [(slice(R0, R0 + t), slice(C0, C1 + 1)), (slice(R1 - t + 1, R1 + 1), slice(C0, C1 + 1)),
            (slice(R0, R1 + 1), slice(C0, C0 + t)), (slice(R0, R1 + 1), slice(C1 - t + 1, C1 + 1))]


def safety_map_uri(image: np.ndarray, regions: Sequence[dict[str, Any]], lo: float, hi: float) -> tuple[str, int]:
    """:func:`safety_map_rgb` as a PNG URI; returns the URI and the enlargement factor."""
    rgb, scale = safety_map_rgb(image, regions, lo, hi)
    return png_uri(rgb), scale


def safety_map_rgb(image: np.ndarray, regions: Sequence[dict[str, Any]], lo: float,
                   hi: float) -> tuple[np.ndarray, int]:
    """The image (dark ink on white) with each region tinted by its verdict and outlined.

    ``regions`` are dicts with ``box`` ([row0, col0, row1, col1), end exclusive)
    and ``verdict``; the image is enlarged by an integer factor so borders fall
    between pixels (two pixels wide from :data:`MAP_THICK_SCALE` on, so they
    stay legible over colour images).  Unsafe regions are drawn last so they
    stay visible where regions overlap.  Returns the pixels (H*scale, W*scale, 3)
    uint8 and the enlargement factor ``scale``."""
    h, w = image.shape[:2]
    scale = map_scale(h, w)
    base = to_rgb(image, lo, hi, cmap="gray_r").astype(np.float64)  # ink dark on white: tints stay readable
    tinted = base.copy()
    borders = np.zeros((h * scale, w * scale, 3), dtype=np.float64)
    edge = np.zeros((h * scale, w * scale), dtype=bool)
    order = {"safe": 0, "unknown": 1, "unsafe": 2}
    for region in sorted(regions, key=lambda r: order.get(r["verdict"], 1)):
        r0, c0, r1, c1 = region["box"]
        colour = np.array(VERDICT_RGB.get(region["verdict"], VERDICT_RGB["unknown"]), dtype=np.float64)
        tinted[r0:r1, c0:c1] = (1 - TINT) * base[r0:r1, c0:c1] + TINT * colour
        for rows, cols in _frame(region["box"], scale):
            borders[rows, cols] = colour * 0.7
            edge[rows, cols] = True
    big = np.repeat(np.repeat(tinted, scale, axis=0), scale, axis=1)
    if scale >= 3:
        big[edge] = borders[edge]
    return big.round().astype(np.uint8), scale


def combined_verdicts(regions: Sequence[dict[str, Any]]) -> dict[tuple[int, ...], str]:
    """One verdict per box.  A region checked by several methods (``methods:
    ["exact", "dlv"]``) is unsafe if any method found a counterexample, else safe
    if any proved it, else unknown; a box split into regions per channel
    (``channels``) is then unsafe if any of them is, else unknown if any is,
    else safe."""
    by_method = {"unknown": 0, "safe": 1, "unsafe": 2}
    per_region: dict[tuple[tuple[int, ...], tuple[int, ...]], str] = {}
    for r in regions:
        key = (tuple(r["box"]), tuple(r.get("channels") or ()))
        if key not in per_region or by_method[r["verdict"]] > by_method[per_region[key]]:
            per_region[key] = r["verdict"]
    by_channel = {"safe": 0, "unknown": 1, "unsafe": 2}
    out: dict[tuple[int, ...], str] = {}
    for (box, _), verdict in per_region.items():
        if box not in out or by_channel[verdict] > by_channel[out[box]]:
            out[box] = verdict
    return out


def save_safety_map(image: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the safety map of one image of a ``regions`` result as a PNG file, drawn as in the report.

    ``image``: one entry of the result's ``images`` list (``ImageResult.to_dict()``:
    ``x``, ``shape`` and ``regions``); a box checked by several methods shows their
    combined verdict (:func:`combined_verdicts`).  Returns the path written."""
    from PIL import Image

    pic = as_image(image["x"], image["shape"])
    if pic is None:
        raise DataError(f"image {image.get('index')}: shape {image['shape']} cannot be drawn as an image")
    regions = [{**r, "box": box_of(r, pic.shape[:2])} for r in image.get("regions", [])]
    boxes = [{"verdict": v, "box": list(box)} for box, v in combined_verdicts(regions).items()]
    rgb, _ = safety_map_rgb(pic, boxes, *value_range(pic))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="PNG", compress_level=6)
    return out


def box_of(region: dict[str, Any], shape: tuple[int, int]) -> list[int]:
    """The region's ``box``, or the bounding box of its ``image_pixels`` (``row * W + col``;
    else of its ``pixels``, which are those for one-channel images), or the whole image."""
    h, w = shape
    box = region.get("box")
    if box:
        r0, c0, r1, c1 = (int(v) for v in box)
        return [max(0, r0), max(0, c0), min(h, max(r1, r0 + 1)), min(w, max(c1, c0 + 1))]
    pixels = [p for p in region.get("image_pixels") or region.get("pixels") or [] if 0 <= p < h * w]
    if pixels:
        rows, cols = np.divmod(np.asarray(pixels), w)
        return [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]
    return [0, 0, h, w]


def thumbnail(image: np.ndarray, max_side: int = 64) -> tuple[np.ndarray, int]:
    """Block-average ``image`` (H, W[, 3]) by the smallest integer factor that
    brings its longer side to at most ``max_side``; returns it and the factor."""
    h, w = image.shape[:2]
    factor = max(1, math.ceil(max(h, w) / max_side))
    if factor == 1:
        return image, 1
    ph, pw = -h % factor, -w % factor
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor) + padded.shape[2:]
    return padded.reshape(shape).mean(axis=(1, 3)), factor


def scaled_box(box: Sequence[int], factor: int, shape: tuple[int, int]) -> list[int]:
    """A pixel box of the full image in thumbnail coordinates (at least one pixel)."""
    if factor == 1:
        return list(box)
    r0, c0 = box[0] // factor, box[1] // factor
    r1, c1 = max(r0 + 1, -(-box[2] // factor)), max(c0 + 1, -(-box[3] // factor))
    return [r0, c0, min(r1, shape[0]), min(c1, shape[1])]
