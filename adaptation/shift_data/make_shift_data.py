"""Regenerate ``shifts.npz``: the small derived data of the image domain shifts.

Reads the 100 MNIST and 100 CIFAR-10 test images in ``shared/data/images``
(see that folder's README) and writes, with fixed zip timestamps (same bytes
on every run):

- ``mnist8_x`` (100, 64) uint8 in 0..16 and ``mnist8_y`` (100,) int64: the
  MNIST images brought to the 8x8 form of the scikit-learn digits (UCI
  optdigits): the ink (pixels >= 0.5) is cropped to its bounding box, scaled
  (bilinear, aspect ratio kept) so that its height is 32 pixels (width at most
  32), centred in a 32x32 frame, thresholded at 0.5 to a bitmap, and the on
  pixels of each non-overlapping 4x4 block are counted (0..16);
- ``patches`` (400, 3, 8, 8) uint8 and ``patch_image`` (400,) int64: four
  8x8 crops at native resolution from each CIFAR-10 image, at positions drawn
  by ``numpy.random.default_rng(0)``; the texture bank of digits-M (as the
  BSDS500 crops were for MNIST-M).

    python adaptation/shift_data/make_shift_data.py [--images ../shared/data/images]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "shifts.npz"
PATCHES_PER_IMAGE = 4
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def to_optdigits(img: np.ndarray) -> np.ndarray:
    """One grey image (H, W) in [0, 1] -> 64 block counts in 0..16 (uint8)."""
    ink = img >= 0.5
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = 32.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, min(32, round(w * scale)))
    resized = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((nw, nh), Image.BILINEAR))
    frame = np.zeros((32, 32), dtype=np.float32)
    top, left = (32 - nh) // 2, (32 - nw) // 2
    frame[top:top + nh, left:left + nw] = resized
    bitmap = frame >= 0.5
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.uint8).reshape(64)


def cifar_patches(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``PATCHES_PER_IMAGE`` random 8x8 crops of each image x (N, 3, 32, 32) in [0, 1], as uint8."""
    rng = np.random.default_rng(seed)
    out, owner = [], []
    for i, img in enumerate(x):
        for _ in range(PATCHES_PER_IMAGE):
            r, c = rng.integers(0, 32 - 8 + 1, size=2)
            out.append(np.round(img[:, r:r + 8, c:c + 8] * 255).astype(np.uint8))
            owner.append(i)
    return np.stack(out), np.asarray(owner, dtype=np.int64)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with fixed timestamps, so the bytes depend on the arrays only."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE.parents[2] / "shared" / "data" / "images",
                    help="folder with mnist_test_100.npz and cifar10_test_100.npz")
    args = ap.parse_args()
    mnist = np.load(args.images / "mnist_test_100.npz")
    cifar = np.load(args.images / "cifar10_test_100.npz")
    mnist8 = np.stack([to_optdigits(img[0]) for img in mnist["x"]])
    patches, owner = cifar_patches(cifar["x"])
    write_npz(OUT, {"mnist8_x": mnist8, "mnist8_y": mnist["y"].astype(np.int64),
                    "patches": patches, "patch_image": owner})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
