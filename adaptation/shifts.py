"""The image domain shifts of the bundled tasks, built from data shipped here.

- ``digits_mnist_task``: the scikit-learn 8x8 digits (UCI optdigits, NIST
  forms) -> 100 MNIST test images brought to the same 8x8 block-count form
  (``shift_data/make_shift_data.py`` says exactly how): other writers, other
  scanning and stroke widths.  Transductive, as the DANN paper scores: the
  100 target images are the unlabelled training target *and* the scored set.
- ``mnist_digits_task``: the reverse, 100 labelled MNIST-8x8 images -> the
  digits (unlabelled train split, scored on the test split).
- ``digits_m_task``: digits -> digits-M, made the way MNIST-M was: each grey
  digit ``d`` is blended with a random 8x8 patch ``p`` of a natural colour
  image (400 native-resolution crops of the 100 CIFAR-10 test images, as
  BSDS500 crops were for MNIST-M): ``|p - d|`` per channel.  Optional extra
  shifts: invert, rotate, noise.

Target labels are never used for training; they only score the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from nnaudit.adaptation.data import DomainData, Split

SHIFT_FILE = Path(__file__).resolve().parent / "shift_data" / "shifts.npz"


@lru_cache(maxsize=1)
def _bundle() -> dict[str, np.ndarray]:
    with np.load(SHIFT_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def mnist8() -> tuple[np.ndarray, np.ndarray]:
    """The 100 MNIST images in 8x8 optdigits form: x (100, 64) float32 in [0, 1]
    (block counts / 16, as ``nnaudit.networks.datasets.digits``) and y (100,) int64."""
    b = _bundle()
    return (b["mnist8_x"].astype(np.float32) / 16.0), b["mnist8_y"].astype(np.int64)


def texture_patches() -> np.ndarray:
    """The digits-M texture bank: (400, 3, 8, 8) float32 in [0, 1], crops of CIFAR-10 images."""
    return _bundle()["patches"].astype(np.float32) / 255.0


@dataclass(frozen=True)
class DigitsShift:
    """How digits-M differs from the grey digits (all seeded)."""

    textures: bool = True     # blend |patch - digit| with a random CIFAR-10 patch (MNIST-M's recipe)
    invert: bool = False      # x -> 1 - x after blending
    rotate: float = 0.0       # rotate each image by a uniform angle in [-rotate, rotate] degrees
    noise: float = 0.0        # additive Gaussian noise of this standard deviation (then clipped to [0, 1])


def rotate_images(x: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Images ``x`` (n, C, H, W) each rotated by ``degrees[i]`` about the centre
    (bilinear, zero outside)."""
    n, c, h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.empty_like(x)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i, deg in enumerate(np.radians(degrees)):
        sy = cy + (yy - cy) * math.cos(deg) - (xx - cx) * math.sin(deg)
        sx = cx + (yy - cy) * math.sin(deg) + (xx - cx) * math.cos(deg)
        sy, sx = np.clip(sy + 1, 0, h + 1 - 1e-6), np.clip(sx + 1, 0, w + 1 - 1e-6)
        y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
        fy, fx = sy - y0, sx - x0
        y1, x1 = np.minimum(y0 + 1, h + 1), np.minimum(x0 + 1, w + 1)
        img = padded[i]
        out[i] = (img[:, y0, x0] * (1 - fy) * (1 - fx) + img[:, y0, x1] * (1 - fy) * fx
                  + img[:, y1, x0] * fy * (1 - fx) + img[:, y1, x1] * fy * fx)
    return out


def to_digits_m(x: np.ndarray, *, shift: DigitsShift = DigitsShift(), seed: int = 0) -> np.ndarray:
    """Flat grey digits ``x`` (n, 64) in [0, 1] -> shifted images (n, 3, 8, 8) float32."""
    img = grey_to_rgb(x).astype(np.float64)
    rng = np.random.default_rng([seed, 7])
    if shift.textures:
        bank = texture_patches()
        img = np.abs(bank[rng.integers(0, len(bank), size=len(img))] - img)
    if shift.invert:
        img = 1.0 - img
    if shift.rotate:
        img = rotate_images(img, rng.uniform(-shift.rotate, shift.rotate, size=len(img)))
    if shift.noise:
        img = img + rng.normal(0.0, shift.noise, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def grey_to_rgb(x: np.ndarray) -> np.ndarray:
    """Flat grey digits (n, 64) -> (n, 3, 8, 8), the channel replicated."""
    return np.repeat(x.reshape(-1, 1, 8, 8), 3, axis=1).astype(np.float32)


def _grey(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 1, 8, 8).astype(np.float32)


def digits_m_task(*, seed: int = 0, shift: DigitsShift = DigitsShift()) -> DomainData:
    """Digits -> digits-M.  The bundled train split (1,347 images) is shuffled
    with ``seed`` and cut in two disjoint halves: grey labelled source and
    shifted unlabelled target; the test split (450) scores both domains."""
    from nnaudit.networks.datasets import digits

    x, y = digits("train")
    order = np.random.default_rng([seed, 1]).permutation(len(x))
    half = len(x) // 2
    s_idx, t_idx = order[:half], order[half:]
    xt, yt = digits("test")
    source = Split(grey_to_rgb(x[s_idx]), y[s_idx])
    target = Split(to_digits_m(x[t_idx], shift=shift, seed=seed * 1000 + 11), y[t_idx])
    return DomainData("digits-m", source, target, 10,
                      Split(grey_to_rgb(xt), yt), Split(to_digits_m(xt, shift=shift, seed=seed * 1000 + 12), yt))


def digits_mnist_task(*, seed: int = 0) -> DomainData:
    """Digits (train split, 1,347 labelled; test split scores the source) ->
    MNIST-8x8 (100 images, unlabelled for training and scored: transductive).
    Images are (1, 8, 8); ``seed`` is unused (the data are fixed) but kept for
    the common signature."""
    from nnaudit.networks.datasets import digits

    del seed
    x, y = digits("train")
    xs, ys = digits("test")
    mx, my = mnist8()
    target = Split(_grey(mx), my)
    return DomainData("digits-mnist", Split(_grey(x), y), target, 10, Split(_grey(xs), ys), target,
                      transductive=True)


def mnist_digits_task(*, seed: int = 0) -> DomainData:
    """MNIST-8x8 (100 labelled images; also their own source score) -> digits
    (train split unlabelled, test split scored).  Images are (1, 8, 8)."""
    from nnaudit.networks.datasets import digits

    del seed
    mx, my = mnist8()
    x, y = digits("train")
    xt, yt = digits("test")
    source = Split(_grey(mx), my)
    return DomainData("mnist-digits", source, Split(_grey(x), y), 10, source, Split(_grey(xt), yt))
