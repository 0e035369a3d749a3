"""Bundled data sets and ``load_data``: shapes, dtypes, determinism, every error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnaudit.errors import DataError
from nnaudit.networks import datasets
from nnaudit.networks.datasets import digits, load_data, moons, moons_split

# --- digits -------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 1347), ("test", 450)])
def test_digits_shapes_dtypes_ranges(split: str, n: int) -> None:
    x, y = digits(split)
    assert x.shape == (n, 64) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x * 16, np.round(x * 16))  # pixel counts / 16
    assert set(np.unique(y)) == set(range(10))


def test_digits_split_is_fixed_and_covers_the_set() -> None:
    (x1, y1), (x2, y2) = digits("test"), digits("test")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert len(digits("train")[1]) + len(y1) == 1797
    assert digits()[0].shape == x1.shape  # default is the test split


def test_digits_unknown_split_names_valid_ones() -> None:
    with pytest.raises(DataError, match=r"'valid'.*train, test"):
        digits("valid")


# --- moons --------------------------------------------------------------------


def test_moons_shapes_dtypes_balance() -> None:
    x, y = moons(301, seed=4)
    assert x.shape == (301, 2) and x.dtype == np.float32
    assert y.shape == (301,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [151, 150]


def test_moons_deterministic_per_seed() -> None:
    a, b, c = moons(50, seed=7), moons(50, seed=7), moons(50, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_moons_without_noise_lie_on_the_half_circles() -> None:
    x, y = moons(200, noise=0.0, seed=1)
    centre = np.where(y[:, None] == 1, [1.0, 0.5], [0.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(x - centre, axis=1), 1.0, atol=1e-6)
    assert (x[y == 0, 1] >= -1e-6).all() and (x[y == 1, 1] <= 0.5 + 1e-6).all()


@pytest.mark.parametrize(("kwargs", "match"), [({"n": 0}, "n >= 1"), ({"noise": -1.0}, "noise")])
def test_moons_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        moons(**kwargs)


def test_moons_split_is_fixed() -> None:
    x_train, y_train = moons_split("train")
    x_test, y_test = moons_split("test")
    assert x_train.shape == (1000, 2) and x_test.shape == (300, 2)
    np.testing.assert_array_equal(x_test, moons_split()[0])
    assert not np.array_equal(x_train[:300], x_test)
    with pytest.raises(DataError, match="train, test"):
        moons_split("dev")


# --- load_data: bundled names and good files -------------------------------------


@pytest.mark.parametrize(
    ("spec", "shape", "n"),
    [
        ("digits", (64,), 450),
        ("digits-train", (64,), 1347),
        ("digits", (1, 8, 8), 450),
        ("moons", (2,), 300),
        ("moons-train", (2,), 1000),
    ],
)
def test_load_data_bundled(spec: str, shape: tuple[int, ...], n: int) -> None:
    x, y = load_data(spec, shape, num_classes=10)
    assert x.shape == (n, *shape) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64


def test_load_data_bundled_reshape_is_c_order() -> None:
    flat, _ = load_data("digits", (64,))
    image, _ = load_data("digits", (1, 8, 8))
    np.testing.assert_array_equal(image[:, 0, 2, 5], flat[:, 2 * 8 + 5])


def test_load_data_bundled_wrong_shape_names_the_set() -> None:
    with pytest.raises(DataError, match=r"bundled data set 'moons'.*\(2,\).*\(64,\)"):
        load_data("moons", (64,))


def test_load_data_file_converts_dtypes(tmp_path: Path) -> None:
    file = tmp_path / "ok.npz"
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.savez(file, x=x, y=np.array([0, 2, 1], dtype=np.int32))
    for spec in (file, str(file)):
        got_x, got_y = load_data(spec, (2, 2), num_classes=3)
        assert got_x.dtype == np.float32 and got_x.shape == (3, 2, 2)
        np.testing.assert_array_equal(got_x.reshape(3, 4), x)
        assert got_y.dtype == np.int64 and got_y.tolist() == [0, 2, 1]


def test_load_data_accepts_integral_float_and_bool(tmp_path: Path) -> None:
    file = tmp_path / "floaty.npz"
    np.savez(file, x=np.ones((2, 2), dtype=bool), y=np.array([1.0, 0.0]))
    x, y = load_data(file, (2,))
    assert x.tolist() == [[1.0, 1.0], [1.0, 1.0]] and y.tolist() == [1, 0]


def test_path_named_like_a_bundled_set_is_a_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_data(Path("digits"), (64,))


# --- load_data: every error names the file and the problem -----------------------


def _savez(**arrays: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.savez(p, **arrays)


def _write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _truncated_npz(p: Path) -> None:
    np.savez(p, x=np.zeros((4, 2)), y=np.zeros(4, dtype=int))
    p.write_bytes(p.read_bytes()[:100])


def _corrupt_member(p: Path) -> None:
    """A stored (uncompressed) archive with bytes of 'x' flipped: CRC check fails."""
    np.savez(p, x=np.zeros((64, 2)), y=np.zeros(64, dtype=int))
    raw = bytearray(p.read_bytes())
    start = raw.index(b"x.npy") + 200  # inside x's data, after its .npy header
    raw[start : start + 8] = b"\xff" * 8
    p.write_bytes(bytes(raw))


def _single_npy(p: Path) -> None:
    with p.open("wb") as f:
        np.save(f, np.zeros((3, 2)))


def _object_x(p: Path) -> None:
    np.savez(p, x=np.array([[1, "a"]], dtype=object), y=np.array([0]))


X4 = np.zeros((4, 2), dtype=np.float32)
Y4 = np.array([0, 1, 0, 1])
NAN_AT_2 = X4.copy()
NAN_AT_2[2, 1] = np.nan
INF_AT_1 = np.zeros((4, 2))
INF_AT_1[1, 0] = 1e39  # finite as float64, Inf as float32

ERROR_CASES = [
    ("empty-file", _write_bytes(b""), "not an .npz archive"),
    ("missing-file", None, "data file not found"),
    ("directory", lambda p: p.mkdir(), "directory"),
    ("not-npz", _write_bytes(b"hello, not numpy"), "not an .npz archive (expected a zip file, got b'hello,'"),
    ("truncated", _truncated_npz, "not a readable .npz"),
    ("corrupt-member", _corrupt_member, "array 'x' is corrupt"),
    ("single-npy", _single_npy, "got a single .npy array"),
    ("object-x", _object_x, "array 'x' holds Python objects (dtype object)"),
    ("missing-x", _savez(y=Y4), "missing array 'x'; expected 'x' and 'y', found 'y'"),
    ("missing-y", _savez(x=X4, z=Y4), "missing array 'y'; expected 'x' and 'y', found 'x', 'z'"),
    ("empty", _savez(x=np.zeros((0, 2)), y=np.zeros(0, dtype=int)), "'x' is empty"),
    ("scalar-x", _savez(x=np.float32(1), y=Y4), "'x' is empty"),
    ("len-mismatch", _savez(x=X4, y=Y4[:3]), "'x' has 4 samples but 'y' has 3 labels"),
    ("y-2d", _savez(x=X4, y=Y4.reshape(4, 1)), "'y' must be 1-D labels"),
    ("string-x", _savez(x=np.array([["a", "b"]] * 4), y=Y4), "'x' must be numeric, got dtype <U1"),
    ("complex-x", _savez(x=X4.astype(complex), y=Y4), "'x' must be numeric"),
    (
        "nan-x",
        _savez(x=NAN_AT_2, y=Y4),
        "NaN or Inf (as float32) in 1 sample(s), first at sample index 2",
    ),
    ("inf-x", _savez(x=INF_AT_1, y=Y4), "first at sample index 1"),
    (
        "wrong-shape",
        _savez(x=np.zeros((4, 3)), y=Y4),
        "samples in 'x' have shape (3,) (3 values) but the network input is (2,) (2 values)",
    ),
    ("float-labels", _savez(x=X4, y=np.array([0, 0.5, 1, 1])), "integer labels, got 0.5 at index 1"),
    ("nan-labels", _savez(x=X4, y=np.array([0, 1, np.nan, 1])), "at index 2"),
    ("huge-labels", _savez(x=X4, y=np.array([0, 1, 1, 1e30])), "too large for int64"),
    ("string-labels", _savez(x=X4, y=np.array(["a", "b", "a", "b"])), "integer labels, got dtype <U1"),
    (
        "label-too-big",
        _savez(x=X4, y=np.array([0, 1, 2, 7])),
        "label 2 at index 2; expected labels in [0, 2) (2 out of range)",
    ),
    ("negative-label", _savez(x=X4, y=np.array([0, -1, 1, 1])), "label -1 at index 1"),
]


@pytest.mark.parametrize(("case", "write", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_load_data_errors_name_file_and_problem(
    tmp_path: Path, case: str, write: Callable[[Path], None] | None, message: str
) -> None:
    file = tmp_path / f"{case}.npz"
    if write is not None:
        write(file)
    with pytest.raises(DataError) as info:
        load_data(file, (2,), num_classes=2)
    text = str(info.value)
    assert str(file) in text
    assert message in text


def test_missing_bare_name_hints_at_bundled_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="bundled names are digits.*moons"):
        load_data(tmp_path / "digit", (64,))


def test_labels_unchecked_without_num_classes(tmp_path: Path) -> None:
    file = tmp_path / "big.npz"
    np.savez(file, x=X4, y=np.array([0, 1, 2, 70]))
    assert load_data(file, (2,))[1].tolist() == [0, 1, 2, 70]


def test_bundled_names_all_load() -> None:
    for name in datasets.BUNDLED:
        shape = (64,) if name.startswith("digits") else (2,)
        x, y = load_data(name, shape, num_classes=10)
        assert len(x) == len(y) > 0
