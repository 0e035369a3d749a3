"""Source/target data for DANN: the bundled tasks and user ``.npz`` files.

- ``moons_task``: the paper's inter-twinning moons (Ganin et al., 2016,
  sec. 5.1.1): 150 labelled source points; the target is the same
  distribution rotated by 35 degrees around the centre of the moons.
- ``digits_m_task``: an MNIST -> MNIST-M-like shift on the bundled 8x8
  digits.  Source images are grey (replicated to 3 channels); target images
  are blended with procedurally generated, seeded coloured textures
  (``|texture - digit|`` per channel, as MNIST-M does), optionally inverted,
  rotated and noised.  Both domains are (3, 8, 8) in [0, 1].
- ``npz_task``: user files, source ``x``/``y`` and target ``x`` (optional
  ``y`` for evaluation only), with DataErrors naming file, array and shapes.

Target labels are never used for training; they only score the run.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnaudit.errors import DataError

MOONS_SOURCE_POINTS = 150
MOONS_ROTATION_DEG = 35.0
MOONS_CENTRE = (0.5, 0.25)


@dataclass(frozen=True)
class Split:
    """Samples ``x`` (N, *input_shape) float32 and labels ``y`` (N,) int64 or None."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class DomainData:
    """A domain-adaptation problem: labelled source, unlabelled target, and the
    sets the run is scored on (the training sets when no test split is given)."""

    name: str
    source: Split
    target: Split
    num_classes: int
    source_test: Split | None = None
    target_test: Split | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.source.x.shape[1:])

    @property
    def source_eval(self) -> Split:
        return self.source_test if self.source_test is not None else self.source

    @property
    def target_eval(self) -> Split:
        return self.target_test if self.target_test is not None else self.target

    def fingerprint(self) -> str:
        """A short hash of the training arrays, so a resume checks it has the same data."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.source.x, self.source.y, self.target.x):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- moons

def rotate_2d(x: np.ndarray, degrees: float, centre: tuple[float, float] = MOONS_CENTRE) -> np.ndarray:
    """Points ``x`` (N, 2) rotated counter-clockwise by ``degrees`` around ``centre``."""
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    c = np.asarray(centre)
    return ((x - c) @ rot.T + c).astype(np.float32)


def moons_task(*, seed: int = 0, n_source: int = MOONS_SOURCE_POINTS, n_target: int = MOONS_SOURCE_POINTS,
               n_test: int = 1000, rotation: float = MOONS_ROTATION_DEG, noise: float = 0.1) -> DomainData:
    """Inter-twinning moons: source (n_source, 2) labelled, target rotated by
    ``rotation`` degrees (labels kept for scoring only), and fresh test sets of
    ``n_test`` points per domain; everything deterministic in ``seed``."""
    from nnaudit.networks.datasets import moons

    base = 1000 * int(seed)
    sx, sy = moons(n_source, noise=noise, seed=base + 1)
    tx, ty = moons(n_target, noise=noise, seed=base + 2)
    sx_test, sy_test = moons(n_test, noise=noise, seed=base + 3)
    tx_test, ty_test = moons(n_test, noise=noise, seed=base + 4)
    return DomainData("moons", Split(sx, sy), Split(rotate_2d(tx, rotation), ty), 2,
                      Split(sx_test, sy_test), Split(rotate_2d(tx_test, rotation), ty_test))


# ---------------------------------------------------------------- digits -> digits-M

@dataclass(frozen=True)
class DigitsShift:
    """How digits-M differs from the grey digits (all on by flags, seeded)."""

    textures: bool = True     # blend with coloured textures, |strength * texture - digit| per channel
    strength: float = 0.5     # texture intensity in [0, 1]; above 0.5 some backgrounds outshine the strokes
    invert: bool = False      # x -> 1 - x after blending
    rotate: float = 0.0       # rotate each image by a uniform angle in [-rotate, rotate] degrees
    noise: float = 0.0        # additive Gaussian noise of this standard deviation (then clipped to [0, 1])


def textures(n: int, size: int = 8, *, seed: int = 0) -> np.ndarray:
    """``n`` coloured textures (n, 3, size, size) in [0, 1]: a random plane wave
    between two random colours plus smooth value noise, one per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    freq = rng.uniform(0.02, 0.12, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (freq[:, 0, None, None] * xx + freq[:, 1, None, None] * yy) + phase)
    coarse = rng.uniform(0, 1, size=(n, 3, 3))
    smooth = _upsample(coarse, size)
    t = np.clip(0.7 * wave + 0.3 * smooth, 0, 1)[:, None]  # (n, 1, s, s)
    c0 = rng.uniform(0, 1, size=(n, 3, 1, 1))
    c1 = rng.uniform(0, 1, size=(n, 3, 1, 1))
    return (c0 * (1 - t) + c1 * t).astype(np.float32)


def _upsample(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (n, k, k) grids to (n, size, size)."""
    k = a.shape[-1]
    pos = np.linspace(0, k - 1, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
    f = pos - i0
    rows = a[:, i0, :] * (1 - f)[None, :, None] + a[:, i0 + 1, :] * f[None, :, None]
    return rows[:, :, i0] * (1 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :]


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
    img = np.repeat(x.reshape(-1, 1, 8, 8), 3, axis=1).astype(np.float64)
    rng = np.random.default_rng([seed, 7])
    if shift.textures:
        img = np.abs(shift.strength * textures(len(img), 8, seed=seed) - img)
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


# ---------------------------------------------------------------- user files

def npz_task(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> DomainData:
    """User data: ``source`` .npz with ``x`` (N, ...) and integer ``y`` (N,);
    ``target`` .npz with ``x`` (M, ...) of the same sample shape and optional
    ``y`` (M,) used for scoring only.  Raises DataError naming file and array."""
    s = _read(Path(source), required=("x", "y"))
    t = _read(Path(target), required=("x",))
    sx = _samples(s["x"], Path(source))
    tx = _samples(t["x"], Path(target))
    if sx.shape[1:] != tx.shape[1:]:
        raise DataError(f"{target}: array 'x' has samples of shape {tx.shape[1:]}, but the source "
                        f"{source} has {sx.shape[1:]}; both domains need the same sample shape")
    sy = _labels(s["y"], len(sx), Path(source), None)
    num_classes = int(sy.max()) + 1
    if num_classes < 2:
        raise DataError(f"{source}: array 'y' has a single class ({num_classes - 1}); expected at least 2 classes")
    ty = _labels(t["y"], len(tx), Path(target), num_classes) if "y" in t else None
    return DomainData("custom", Split(sx, sy), Split(tx, ty), num_classes)


def _read(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: data file not found (expected an .npz with arrays {', '.join(required)})")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with arrays {', '.join(required)}, got a single .npy array")
    with archive:
        missing = [k for k in required if k not in archive.files]
        if missing:
            found = ", ".join(repr(f) for f in archive.files) or "none"
            raise DataError(f"{path}: missing array(s) {', '.join(repr(m) for m in missing)}; found {found}")
        try:
            return {k: np.asarray(archive[k]) for k in archive.files if k in ("x", "y")}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: an array is corrupt or unreadable ({exc})") from exc


def _samples(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{path}: array 'x' must be (N, ...) with N >= 1 samples, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array 'x' must be numeric (float or int), got dtype {x.dtype}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: array 'x' has NaN or Inf in {int(bad.sum())} sample(s), first at index {int(np.argmax(bad))}")
    return x


def _labels(y: np.ndarray, n: int, path: Path, num_classes: int | None) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: array 'y' must be labels of shape ({n},) to match 'x', got shape {y.shape}")
    if y.dtype.kind == "f":
        if not (np.isfinite(y) & (np.floor(y) == y)).all():
            raise DataError(f"{path}: array 'y' must hold integer class labels, got non-integer values (dtype {y.dtype})")
    elif y.dtype.kind not in "biu":
        raise DataError(f"{path}: array 'y' must hold integer class labels, got dtype {y.dtype}")
    labels = y.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        expected = ">= 0" if num_classes is None else f"in [0, {num_classes}) (the source's classes)"
        raise DataError(f"{path}: array 'y' has labels in [{low}, {high}]; expected labels {expected}")
    return labels


def bundled_task(name: str, *, seed: int = 0, shift: DigitsShift = DigitsShift()) -> DomainData:
    """``moons`` or ``digits-m`` by name."""
    if name == "moons":
        return moons_task(seed=seed)
    if name == "digits-m":
        return digits_m_task(seed=seed, shift=shift)
    raise DataError(f"unknown task {name!r}; expected moons or digits-m")
