"""Regenerate ``digits.npz`` from scikit-learn's bundled copy of UCI optdigits.

Run from the repository root (scikit-learn is needed here only, never at run
time)::

    python networks/data/make_digits.py

The split is a seeded, class-stratified permutation: for every digit class the
images are shuffled with ``numpy.random.default_rng(SEED)`` and the first
quarter (rounded) goes to the test set; both sets are then shuffled once more.
The archive is written with fixed zip timestamps, so rerunning this script
gives a byte-identical file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

SEED = 0
TEST_FRACTION = 0.25
OUT = Path(__file__).with_name("digits.npz")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def split_indices(y: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified train/test index arrays for labels ``y`` of shape (N,)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(TEST_FRACTION * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed .npz whose bytes do not depend on the clock."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def main() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # (1797, 64), pixel counts 0..16
    y = bunch.target.astype(np.int64)  # (1797,)
    train, test = split_indices(y)
    write_npz(
        OUT,
        {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]},
    )
    print(f"wrote {OUT}: {len(train)} train / {len(test)} test images")


if __name__ == "__main__":
    main()
