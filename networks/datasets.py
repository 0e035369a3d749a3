"""Bundled data sets and the one loader behind every command's ``--data``.

Two small classification sets ship with nnaudit so that the zoo networks
(:mod:`nnaudit.networks.zoo`), the tests and the examples need no download:

- :func:`digits`: UCI optdigits, 8x8 handwritten digits (CC BY 4.0, via
  scikit-learn), stored once with a fixed split in ``data/digits.npz``;
- :func:`moons`: two interleaving half circles, generated in plain NumPy.

:func:`load_data` turns a ``--data`` value (a bundled name or an ``.npz``
path) into checked ``(x, y)`` arrays shaped for a network's input, and raises
:class:`~nnaudit.errors.DataError` naming the file and the problem otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnaudit.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
DIGITS_FILE = DATA_DIR / "digits.npz"
SPLITS = ("train", "test")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
#: largest array an .npz member may declare (checked from its header before anything is allocated):
#: 4 GiB, 30 times CIFAR-10's test set as float32
MAX_ARRAY_BYTES = 4 << 30

# Fixed moons sets used by the zoo: (number of points, seed) per split.
MOONS_SPLITS = {"train": (1000, 0), "test": (300, 1)}
MOONS_NOISE = 0.1


def _check_split(split: str, what: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{what}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits, fixed train (1,347) or test (450) split.

    Returns ``x`` float32 of shape (N, 64) with pixels in [0, 1] (row-major
    8x8 image, reshape to (N, 1, 8, 8) for a conv net) and ``y`` int64 of
    shape (N,) with digits 0-9. See ``data/README.md`` for source and split.
    """
    _check_split(split, "digits")
    with np.load(DIGITS_FILE, allow_pickle=False) as archive:
        x = archive[f"x_{split}"].astype(np.float32)
        y = archive[f"y_{split}"].astype(np.int64)
    return x, y


def moons(n: int = 300, *, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles in 2-D, deterministic for a given seed.

    Class 0 is the upper moon (angle t in [0, pi] on the unit circle), class
    1 the lower one, shifted to (1 - cos t, 0.5 - sin t); ``n // 2`` points go
    to class 1 and the rest to class 0, then Gaussian noise of standard
    deviation ``noise`` is added and the points are shuffled. Returns ``x``
    float32 (n, 2) and ``y`` int64 (n,).

    >>> x, y = moons(4, seed=3)
    >>> x.shape, y.dtype.name
    ((4, 2), 'int64')
    """
    if n < 1:
        raise DataError(f"moons: expected n >= 1 points, got {n}")
    if not noise >= 0.0:
        raise DataError(f"moons: expected noise >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n_lower = n // 2
    t = rng.uniform(0.0, math.pi, size=n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    y = (np.arange(n) < n_lower).astype(np.int64)
    x = np.where(y[:, None] == 1, lower, upper) + rng.normal(0.0, noise, size=(n, 2))
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order]


def moons_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The fixed moons sets the zoo uses: 1,000 train points (seed 0), 300 test (seed 1)."""
    _check_split(split, "moons")
    n, seed = MOONS_SPLITS[split]
    return moons(n, noise=MOONS_NOISE, seed=seed)


BUNDLED: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": lambda: digits("test"),
    "digits-test": lambda: digits("test"),
    "digits-train": lambda: digits("train"),
    "moons": lambda: moons_split("test"),
    "moons-test": lambda: moons_split("test"),
    "moons-train": lambda: moons_split("train"),
}


def load_data(
    spec: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    *,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load and check labelled samples for a network with per-sample ``input_shape``.

    ``spec`` is a bundled name (``digits`` = digits test split,
    ``digits-train``, ``moons`` = moons test split, ``moons-train``; a string
    naming a bundled set wins over a file of that name, write ``./digits`` for
    the file) or a path to an ``.npz`` with arrays ``x`` (N, ...) and ``y``
    (N,). ``input_shape`` excludes the batch axis. Samples whose size equals
    ``prod(input_shape)`` are reshaped (C order) to it, so flat (N, 64) digits
    feed a (1, 8, 8) conv net.

    Returns ``x`` float32 (N, *input_shape) and ``y`` int64 (N,). Raises
    DataError naming the file for: missing or unreadable file, missing
    arrays, empty data, length mismatch, non-numeric ``x``, NaN/Inf in ``x``,
    non-integer labels, labels outside [0, num_classes), wrong sample size.
    """
    x, y, source = read_data(spec)
    return validate_arrays(x, y, tuple(int(d) for d in input_shape), num_classes, source)


def read_data(spec: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """The arrays ``x`` and ``y`` of a ``--data`` value as stored (not yet checked by
    :func:`validate_arrays`), and the name of their source for messages."""
    if isinstance(spec, str) and spec in BUNDLED:
        x, y = BUNDLED[spec]()
        return x, y, f"bundled data set {spec!r}"
    source = os.fspath(spec)
    x, y = _read_npz(Path(source))
    return x, y, source


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of the .npz at ``path``, as stored."""
    if not path.exists():
        hint = f"; bundled names are {', '.join(BUNDLED)}" if path.suffix == "" else ""
        raise DataError(f"{path}: data file not found{hint}")
    if not path.is_file():
        raise DataError(f"{path}: expected an .npz file, got a directory or special file")
    with path.open("rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic.startswith(_NPY_MAGIC):
        raise DataError(
            f"{path}: expected an .npz archive with arrays 'x' and 'y', got a single .npy array"
        )
    if not magic.startswith(_ZIP_MAGIC):
        raise DataError(f"{path}: not an .npz archive (expected a zip file, got {magic!r}...)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive:
        return _member(archive, "x", path), _member(archive, "y", path)


def _member(archive: np.lib.npyio.NpzFile, name: str, path: Path) -> np.ndarray:
    if name not in archive.files:
        found = ", ".join(repr(f)[:40] for f in archive.files[:10]) or "none"
        raise DataError(f"{path}: missing array {name!r}; expected 'x' and 'y', found {found}")
    check_member_header(archive, name, path)
    try:
        return np.asarray(archive[name])
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise DataError(f"{path}: array {name!r} is corrupt or unreadable ({exc})") from exc
        raise DataError(
            f"{path}: array {name!r} holds Python objects (dtype object); "
            "expected a numeric array, and pickled data is never loaded"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: array {name!r} is corrupt or unreadable ({exc})") from exc


def check_member_header(archive: np.lib.npyio.NpzFile, name: str, path: Path,
                        max_bytes: int = MAX_ARRAY_BYTES) -> None:
    """Refuse array ``name`` of an .npz from its .npy header alone, before numpy allocates it:
    pickled objects, a malformed header, or a declared shape larger than ``max_bytes`` or than the
    data the member holds (a truncated or forged file)."""
    member = name if name in archive.zip.namelist() else f"{name}.npy"
    try:
        info = archive.zip.getinfo(member)
        with archive.zip.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fp)
            header_size = fp.tell()
    except (ValueError, OSError, EOFError, KeyError, SyntaxError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: array {name!r} is corrupt or unreadable (.npy header: {str(exc)[:80]})") from exc
    if dtype.hasobject:
        raise DataError(f"{path}: array {name!r} holds Python objects (dtype object); "
                        "expected a numeric array, and pickled data is never loaded")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DataError(f"{path}: array {name!r}: header declares an invalid shape {str(shape)[:60]}")
    declared = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_size
    if declared > max_bytes:
        raise DataError(f"{path}: array {name!r}: header declares shape {str(shape)[:60]} of {dtype} "
                        f"({min(declared, 10**300):.3g} bytes), over the limit of {max_bytes:.3g} bytes")
    if declared > held:
        raise DataError(f"{path}: array {name!r}: header declares shape {str(shape)[:60]} of {dtype} "
                        f"({declared} bytes) but the file holds {max(held, 0)} bytes (truncated or forged)")


def check_value_range(x: np.ndarray, low: float, high: float, source: str, hint: str = "") -> None:
    """DataError naming ``source`` and the first sample of ``x`` with a value outside [low, high]
    (the valid input range a command was given), so that out-of-range data is refused, not used;
    ``hint`` ends the message (e.g. why the data may be in another space)."""
    if len(x) == 0:
        return
    flat = np.asarray(x).reshape(len(x), -1)
    if flat.size == 0 or (float(flat.min()) >= low and float(flat.max()) <= high):
        return
    out = (flat < low).any(axis=1) | (flat > high).any(axis=1)
    i = int(np.argmax(out))
    raise DataError(f"{source}: array 'x' sample {i} has values in [{flat[i].min():g}, {flat[i].max():g}], outside "
                    f"the valid range [{low:g}, {high:g}] ({int(out.sum())} such samples); give data in that "
                    f"range or set the range (--low/--high, --clip){hint}")


def validate_arrays(
    x: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...], num_classes: int | None, src: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert in-memory samples ``x`` and labels ``y`` like :func:`load_data` does.

    ``src`` names where the arrays came from in error messages.  Returns x float32
    ``(N, *input_shape)`` and y int64 ``(N,)``.
    """
    if x.ndim == 0 or len(x) == 0:
        raise DataError(
            f"{src}: array 'x' is empty (shape {x.shape}); expected at least one sample"
        )
    if y.ndim != 1:
        raise DataError(f"{src}: array 'y' must be 1-D labels of shape (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{src}: 'x' has {len(x)} samples but 'y' has {len(y)} labels")
    x = _as_float_samples(x, input_shape, src)
    return x, _as_labels(y, num_classes, src)


def _as_float_samples(x: np.ndarray, input_shape: tuple[int, ...], src: str) -> np.ndarray:
    """``x`` as float32 (N, *input_shape), finite."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{src}: array 'x' must be numeric, got dtype {x.dtype}")
    sample_shape = x.shape[1:]
    if sample_shape != input_shape:
        if math.prod(sample_shape) != math.prod(input_shape):
            raise DataError(
                f"{src}: samples in 'x' have shape {sample_shape} "
                f"({math.prod(sample_shape)} values) but the network input is {input_shape} "
                f"({math.prod(input_shape)} values)"
            )
        log.debug("%s: reshaping samples %s -> %s", src, sample_shape, input_shape)
        x = x.reshape((len(x), *input_shape))
    with np.errstate(over="ignore"):  # overflow becomes Inf, reported just below
        x = x.astype(np.float32)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{src}: array 'x' has NaN or Inf (as float32) in {int(bad.sum())} sample(s), "
            f"first at sample index {first}"
        )
    return x


def _as_labels(y: np.ndarray, num_classes: int | None, src: str) -> np.ndarray:
    """``y`` as int64 (N,), integer-valued and within [0, num_classes)."""
    if y.dtype.kind == "f":
        non_int = ~(np.isfinite(y) & (np.floor(y) == y))
        if non_int.any():
            first = int(np.argmax(non_int))
            raise DataError(
                f"{src}: array 'y' must hold integer labels, "
                f"got {y[first].item()!r} at index {first}"
            )
    elif y.dtype.kind not in "biu":
        raise DataError(f"{src}: array 'y' must hold integer labels, got dtype {y.dtype}")
    too_big = np.abs(y.astype(np.float64)) >= 2.0**62
    if too_big.any():
        first = int(np.argmax(too_big))
        raise DataError(
            f"{src}: array 'y' has label {y[first].item()!r} at index {first}, "
            "too large for int64"
        )
    labels = y.astype(np.int64)
    if num_classes is not None:
        out = (labels < 0) | (labels >= num_classes)
        if out.any():
            first = int(np.argmax(out))
            raise DataError(
                f"{src}: array 'y' has label {int(labels[first])} at index {first}; "
                f"expected labels in [0, {num_classes}) ({int(out.sum())} out of range)"
            )
    return labels
