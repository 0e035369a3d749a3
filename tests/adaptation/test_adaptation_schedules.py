"""The paper's schedules, and that the trainer applies them."""

from __future__ import annotations

import math

import pytest

from nnaudit.adaptation.config import DannConfig
from nnaudit.adaptation.schedules import adaptation_factor, learning_rate, progress
from nnaudit.errors import ConfigError


@pytest.mark.parametrize("p", [0.0, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_lambda_formula(p: float) -> None:
    assert adaptation_factor(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0, abs=1e-15)
    assert adaptation_factor(p, gamma=3.0) == pytest.approx(2.0 / (1.0 + math.exp(-3.0 * p)) - 1.0, abs=1e-15)


def test_lambda_endpoints_and_monotone() -> None:
    assert adaptation_factor(0.0) == 0.0
    assert adaptation_factor(1.0) == pytest.approx(0.99990920, abs=1e-8)
    values = [adaptation_factor(i / 50) for i in range(51)]
    assert all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_learning_rate_formula(p: float) -> None:
    assert learning_rate(p) == pytest.approx(0.01 / (1 + 10 * p) ** 0.75, rel=1e-14)
    assert learning_rate(p, mu0=0.1, alpha=5, beta=0.5) == pytest.approx(0.1 / (1 + 5 * p) ** 0.5, rel=1e-14)
    assert learning_rate(p, alpha=0.0) == 0.01


def test_learning_rate_at_end() -> None:
    assert learning_rate(1.0) == pytest.approx(0.01 / 11**0.75)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_progress_outside_unit_interval_is_rejected(p: float) -> None:
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        adaptation_factor(p)


def test_progress() -> None:
    assert progress(0, 100) == 0.0
    assert progress(99, 100) == 1.0
    assert progress(0, 1) == 0.0
    assert progress(49, 99) == pytest.approx(0.5)


def test_trainer_applies_schedules() -> None:
    from nnaudit.adaptation.data import moons_task
    from nnaudit.adaptation.trainer import train_dann

    cfg = DannConfig(epochs=2, batch_size=32, a_distance_every=0, lr0=0.02, gamma=7.0)
    run = train_dann(moons_task(seed=0, n_test=50), cfg)
    last = run.epochs[-1]["dann"]
    assert last["lambda"] == pytest.approx(adaptation_factor(1.0, gamma=7.0), abs=1e-6)
    assert last["lr"] == pytest.approx(learning_rate(1.0, mu0=0.02), abs=1e-6)
    # epoch 1 ends at step 9 of 20 (150 points, 16 per half batch -> 10 steps per epoch)
    first = run.epochs[0]["dann"]
    assert first["lambda"] == pytest.approx(adaptation_factor(9 / 19, gamma=7.0), abs=1e-6)
    fixed = train_dann(moons_task(seed=0, n_test=50), DannConfig(epochs=1, a_distance_every=0, fixed_lambda=0.3))
    assert fixed.epochs[0]["dann"]["lambda"] == pytest.approx(0.3)


@pytest.mark.parametrize("bad", [{"batch_size": 3}, {"epochs": 0}, {"momentum": 1.0}, {"device": "tpu"},
                                 {"preset": "resnet"}, {"lr0": 0.0}, {"mlp_hidden": ()}])
def test_bad_config_is_rejected(bad: dict) -> None:
    with pytest.raises(ConfigError, match="DannConfig"):
        DannConfig(**bad)


def test_config_round_trip() -> None:
    cfg = DannConfig(mlp_hidden=(8, 4), fixed_lambda=0.5)
    assert DannConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        DannConfig.from_dict({"epochz": 3})
