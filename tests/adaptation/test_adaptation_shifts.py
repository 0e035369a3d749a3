"""The bundled image shifts (derived data: shapes, provenance, determinism),
the gap arithmetic and train-on-target bound, and the report's gap table and
target points marked right or wrong."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nnaudit.adaptation.config import DannConfig
from nnaudit.adaptation.data import DomainData, Split
from nnaudit.adaptation.gap import gap_closed, train_on_target
from nnaudit.adaptation.record import gap_record
from nnaudit.adaptation.shifts import SHIFT_FILE, DigitsShift, mnist8, texture_patches, to_digits_m
from nnaudit.adaptation.tasks import Task, bundled_task
from nnaudit.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "images"
MAKE = SHIFT_FILE.parent / "make_shift_data.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_shift_data", MAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_shift_data_shapes_and_ranges() -> None:
    x, y = mnist8()
    assert x.shape == (100, 64) and x.dtype == np.float32 and y.shape == (100,)
    counts = x * 16
    assert np.array_equal(counts, np.round(counts)) and counts.min() == 0 and counts.max() == 16
    assert set(y.tolist()) == set(range(10))
    # every image fills the frame along its longer side: ink in both outer block rows or both outer columns
    img = x.reshape(100, 8, 8)
    rows, cols = img.sum(axis=2), img.sum(axis=1)
    tall = (rows[:, 0] > 0) & (rows[:, 7] > 0)
    assert (tall | ((cols[:, 0] > 0) & (cols[:, 7] > 0))).all() and tall.mean() > 0.9
    p = texture_patches()
    assert p.shape == (400, 3, 8, 8) and 0.0 <= p.min() and p.max() <= 1.0
    assert SHIFT_FILE.stat().st_size < 200_000
    assert (SHIFT_FILE.parent / "README.md").is_file()


def test_to_optdigits_on_a_known_image() -> None:
    img = np.zeros((28, 28), dtype=np.float32)
    img[4:24, 9:19] = 1.0                      # 20 tall, 10 wide -> 32 x 16, centred in columns 8..23
    blocks = _generator().to_optdigits(img).reshape(8, 8)
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[:, 2:6] = 16
    assert np.array_equal(blocks, expected)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared test images are not on this machine")
def test_bundle_regenerates_byte_for_byte(tmp_path: Path) -> None:
    gen = _generator()
    mnist = np.load(SHARED / "mnist_test_100.npz")
    cifar = np.load(SHARED / "cifar10_test_100.npz")
    mx = np.stack([gen.to_optdigits(im[0]) for im in mnist["x"]])
    patches, owner = gen.cifar_patches(cifar["x"])
    gen.write_npz(tmp_path / "s.npz", {"mnist8_x": mx, "mnist8_y": mnist["y"].astype(np.int64),
                                       "patches": patches, "patch_image": owner})
    assert (tmp_path / "s.npz").read_bytes() == SHIFT_FILE.read_bytes()
    # each patch is a crop of the CIFAR image it names
    i = 123
    src = np.round(cifar["x"][owner[i]] * 255).astype(np.uint8)
    found = any(np.array_equal(src[:, r:r + 8, c:c + 8], patches[i]) for r in range(25) for c in range(25))
    assert found


def test_digits_m_is_the_mnist_m_blend() -> None:
    from nnaudit.networks.datasets import digits

    x, _ = digits("test")
    out = to_digits_m(x[:5], shift=DigitsShift(), seed=3)
    bank = texture_patches()
    grey = np.repeat(x[:5].reshape(-1, 1, 8, 8), 3, axis=1)
    for img, d in zip(out, grey):
        errors = np.abs(np.abs(bank - d) - img).reshape(len(bank), -1).max(axis=1)
        assert errors.min() < 1e-6        # |patch - digit| for one patch of the bank
    assert np.array_equal(out, to_digits_m(x[:5], seed=3))
    assert not np.array_equal(out, to_digits_m(x[:5], seed=4))


def test_bundled_tasks() -> None:
    dm = bundled_task("digits-mnist")
    assert dm.input_shape == (1, 8, 8) and dm.transductive and dm.target_eval is dm.target
    assert len(dm.source) == 1347 and len(dm.target) == 100
    md = bundled_task(Task.MNIST_DIGITS)
    assert len(md.source) == 100 and len(md.target) == 1347 and len(md.target_eval) == 450 and not md.transductive
    hard = bundled_task("moons-hard", seed=1)
    assert hard.name == "moons-hard" and hard.input_shape == (2,)
    assert {t.value for t in Task} == {"moons", "moons-hard", "digits-mnist", "mnist-digits", "digits-m"}
    with pytest.raises(DataError, match="unknown task 'nope'; expected one of moons, moons-hard"):
        bundled_task("nope")


@pytest.mark.parametrize("so, dann, tot, closed", [
    (0.5, 0.7, 0.9, 0.5), (0.5, 0.4, 0.9, -0.25), (0.6, 0.9, 0.9, 1.0), (0.8, 0.9, 0.8, None), (0.8, 0.9, 0.7, None),
])
def test_gap_closed(so: float, dann: float, tot: float, closed: float | None) -> None:
    got = gap_closed(so, dann, tot)
    assert got == (None if closed is None else pytest.approx(closed))
    rec = gap_record({"source_only": {"target_accuracy": so}, "dann": {"target_accuracy": dann}}, tot)
    assert rec["closed"] == (None if closed is None else pytest.approx(closed))
    assert gap_record({"dann": {"target_accuracy": dann}}, tot)["closed"] is None


def test_train_on_target_transductive_cross_validation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cfg = DannConfig(epochs=20, batch_size=16, lr0=0.1, preset="mlp", mlp_hidden=(8,), a_distance_every=0, device="cpu")
    learnable = DomainData("t", Split(x, y), Split(x, y), 2, transductive=True)
    assert train_on_target(learnable, cfg) >= 0.9
    # labels the inputs cannot predict: held-out folds score near chance, never the 100 % a seen label would give
    noise = DomainData("t", Split(x, y), Split(x, rng.permutation(y)), 2, transductive=True)
    assert train_on_target(noise, cfg) <= 0.75
    with pytest.raises(DataError, match="needs target labels"):
        train_on_target(DomainData("t", Split(x, y), Split(x), 2), cfg)


def test_train_on_target_keeps_a_fixed_budget_whatever_the_selection(monkeypatch) -> None:
    """Its "source" validation set is the scored target test set, so it must never select an epoch on it."""
    import nnaudit.adaptation.trainer as trainer

    seen = []
    real = trainer.train_dann
    monkeypatch.setattr(trainer, "train_dann", lambda data, cfg, **kw: seen.append(cfg) or real(data, cfg, **kw))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cfg = DannConfig(epochs=4, batch_size=16, preset="mlp", mlp_hidden=(8,), a_distance_every=0, device="cpu", select="entropy")
    assert 0.0 <= train_on_target(DomainData("t", Split(x, y), Split(x, y), 2, Split(x, y), Split(x, y)), cfg) <= 1.0
    assert [c.select.value for c in seen] == ["last"]
