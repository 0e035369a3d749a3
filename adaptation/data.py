"""Source/target data for DANN: the bundled tasks and user ``.npz`` files.

- ``moons_task``: the paper's inter-twinning moons (Ganin et al., 2016,
  sec. 5.1.1): 150 labelled source points; the target is the same
  distribution rotated by 35 degrees around the centre of the moons.
- the image shifts (digits -> MNIST, MNIST -> digits, digits -> digits-M)
  live in :mod:`nnaudit.adaptation.shifts`, the task names in
  :mod:`nnaudit.adaptation.tasks`;
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
    transductive: bool = False    # the scored target set is the unlabelled training target itself

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
        from nnaudit.networks.datasets import check_member_header

        for k in set(archive.files) & {"x", "y"}:
            check_member_header(archive, k, path)  # a forged header is refused before numpy allocates
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
    if high >= 100_000:  # one output per class: a label this large is not a class index
        raise DataError(f"{path}: array 'y' has label {high}; expected class labels below 100000")
    return labels
