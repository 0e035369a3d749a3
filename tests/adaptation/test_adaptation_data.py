"""Bundled domain-adaptation tasks and errors for bad user .npz files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nnaudit.adaptation.data import moons_task, npz_task, rotate_2d
from nnaudit.adaptation.shifts import DigitsShift, digits_m_task, to_digits_m
from nnaudit.errors import DataError


def test_moons_task_shapes_and_rotation() -> None:
    task = moons_task(seed=3)
    assert task.source.x.shape == (150, 2) and task.source.y.shape == (150,)
    assert task.target.x.shape == (150, 2) and task.num_classes == 2
    assert task.input_shape == (2,)
    # rotating the target back by 35 degrees gives moons: every point near one of the two half circles
    back = rotate_2d(task.target.x, -35.0).astype(np.float64)
    upper = np.abs(np.hypot(back[:, 0], back[:, 1]) - 1.0)
    lower = np.abs(np.hypot(back[:, 0] - 1.0, back[:, 1] - 0.5) - 1.0)
    assert np.median(np.where(task.target.y == 0, upper, lower)) < 0.15
    # and without rotating back the target does not sit on the source moons
    raw = task.target.x.astype(np.float64)
    assert np.median(np.where(task.target.y == 0, np.abs(np.hypot(raw[:, 0], raw[:, 1]) - 1.0),
                              np.abs(np.hypot(raw[:, 0] - 1, raw[:, 1] - 0.5) - 1.0))) > 0.15


def test_rotate_2d_is_a_rotation() -> None:
    p = np.array([[1.5, 0.25]])  # 1 unit right of the centre (0.5, 0.25)
    r = rotate_2d(p, 90.0)
    assert np.allclose(r, [[0.5, 1.25]], atol=1e-6)
    assert np.allclose(np.hypot(*(rotate_2d(p, 35.0)[0] - [0.5, 0.25])), 1.0)
    assert math.isclose(math.degrees(math.atan2(*(rotate_2d(p, 35.0)[0] - [0.5, 0.25])[::-1])), 35.0, rel_tol=1e-5)


def test_moons_task_is_seeded() -> None:
    a, b, c = moons_task(seed=1), moons_task(seed=1), moons_task(seed=2)
    assert np.array_equal(a.source.x, b.source.x) and np.array_equal(a.target.x, b.target.x)
    assert not np.array_equal(a.source.x, c.source.x)


def test_digits_m_task() -> None:
    task = digits_m_task(seed=0)
    assert task.input_shape == (3, 8, 8) and task.num_classes == 10
    assert task.target.x.shape[1:] == (3, 8, 8)
    for split in (task.source, task.target, task.source_eval, task.target_eval):
        assert split.x.dtype == np.float32 and split.x.min() >= 0.0 and split.x.max() <= 1.0
    # grey source: three equal channels; coloured target: channels differ
    assert np.array_equal(task.source.x[:, 0], task.source.x[:, 2])
    assert np.abs(task.target.x[:, 0] - task.target.x[:, 1]).mean() > 0.05
    assert len(task.source) + len(task.target) == 1347  # disjoint halves of the train split
    again = digits_m_task(seed=0)
    assert np.array_equal(again.target.x, task.target.x)
    assert not np.array_equal(digits_m_task(seed=1).target.x, task.target.x)


def test_digits_m_shifts() -> None:
    from nnaudit.networks.datasets import digits

    x, _ = digits("test")
    x = x[:20]
    plain = to_digits_m(x, shift=DigitsShift(textures=False))
    assert np.allclose(plain[:, 0], x.reshape(-1, 8, 8))
    inverted = to_digits_m(x, shift=DigitsShift(textures=False, invert=True))
    assert np.allclose(inverted, 1.0 - plain)
    rotated = to_digits_m(x, shift=DigitsShift(textures=False, rotate=30.0), seed=4)
    assert rotated.shape == plain.shape and not np.allclose(rotated, plain)
    noisy = to_digits_m(x, shift=DigitsShift(textures=False, noise=0.2), seed=4)
    assert 0.05 < np.abs(noisy - plain).mean() < 0.2


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    src = _save(tmp_path / "s.npz", x=rng.normal(size=(20, 4)).astype(np.float32), y=np.arange(20) % 3)
    tgt = _save(tmp_path / "t.npz", x=rng.normal(size=(15, 4)), y=np.arange(15) % 3)
    return src, tgt


def test_npz_task_reads_user_files(good: tuple[Path, Path]) -> None:
    task = npz_task(*good)
    assert task.name == "custom" and task.num_classes == 3 and task.input_shape == (4,)
    assert task.target.x.dtype == np.float32 and task.target.y is not None


@pytest.mark.parametrize("case, which, arrays, match", [
    ("missing-y", "source", {"x": np.zeros((5, 4))}, r"s\.npz: missing array\(s\) 'y'"),
    ("shape", "target", {"x": np.zeros((5, 3))}, r"t\.npz: array 'x' has samples of shape \(3,\), but the source .* has \(4,\)"),
    ("dtype", "source", {"x": np.array([["a"] * 4] * 5), "y": np.zeros(5, int)}, r"s\.npz: array 'x' must be numeric .* got dtype <U1"),
    ("labels-length", "source", {"x": np.zeros((5, 4)), "y": np.zeros(4, int)}, r"s\.npz: array 'y' must be labels of shape \(5,\) .* got shape \(4,\)"),
    ("labels-float", "source", {"x": np.zeros((5, 4)), "y": np.full(5, 0.5)}, r"s\.npz: array 'y' must hold integer class labels"),
    ("nan", "target", {"x": np.full((5, 4), np.nan)}, r"t\.npz: array 'x' has NaN or Inf in 5 sample"),
    ("target-label-range", "target", {"x": np.zeros((5, 4)), "y": np.full(5, 7)}, r"t\.npz: array 'y' has labels in \[7, 7\]; expected labels in \[0, 3\)"),
    ("flat", "target", {"x": np.zeros(5)}, r"t\.npz: array 'x' must be \(N, \.\.\.\)"),
])
def test_npz_task_errors(tmp_path: Path, good: tuple[Path, Path], case: str, which: str, arrays: dict, match: str) -> None:
    src, tgt = good
    bad = _save(tmp_path / ("s.npz" if which == "source" else "t.npz"), **arrays)
    with pytest.raises(DataError, match=match):
        npz_task(bad if which == "source" else src, bad if which == "target" else tgt)


def test_npz_task_missing_and_unreadable(tmp_path: Path, good: tuple[Path, Path]) -> None:
    with pytest.raises(DataError, match=r"nope\.npz: data file not found"):
        npz_task(tmp_path / "nope.npz", good[1])
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        npz_task(good[0], junk)
