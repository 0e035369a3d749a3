"""minimize_in_box: the box-constrained sign-gradient descent the verifier shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnaudit.attacks import minimize_in_box


def _box(b=5, d=4, seed=0):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, (b, d))
    return lo, lo + rng.uniform(0.1, 2, (b, d))


def test_linear_objective_reaches_the_best_corner():
    lo, hi = _box()
    c = torch.tensor(np.random.default_rng(1).normal(size=(5, 4)), dtype=torch.float32)
    x, v = minimize_in_box(lambda t: (t * c).sum(1), lo, hi, steps=30, stop_below=-np.inf)
    c64 = c.double().numpy()
    corner = np.where(c64 > 0, lo, hi)
    np.testing.assert_allclose(x, corner, atol=1e-6)
    np.testing.assert_allclose(v, (corner * c64).sum(1), rtol=1e-5, atol=1e-5)
    assert ((x >= lo) & (x <= hi)).all()


def test_quadratic_inside_the_box_and_per_sample_rows():
    lo, hi = _box(b=3, d=2)
    target = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [0.0, 0.0]])
    x, v = minimize_in_box(lambda t: ((t - target) ** 2).sum(1), lo, hi, steps=200, stop_below=-1.0)
    np.testing.assert_allclose(x[0], hi[0], atol=1e-6)
    np.testing.assert_allclose(x[1], lo[1], atol=1e-6)
    assert v[2] == pytest.approx(float((np.clip(0, lo[2], hi[2]) ** 2).sum()), abs=1e-3)


def test_early_stop_below_threshold_and_x_init():
    lo, hi = np.zeros((2, 3)), np.ones((2, 3))
    calls = []

    def f(t):
        calls.append(1)
        return t.sum(1) - 2.0

    x, v = minimize_in_box(f, lo, hi, steps=50, restarts=3, x_init=np.full((2, 3), 0.1), stop_below=0.0)
    assert (v < 0).all() and len(calls) == 1  # the start point already satisfies the goal
    np.testing.assert_allclose(x, 0.1, atol=1e-7)


def test_deterministic_given_seed_and_restarts_keep_the_best():
    lo, hi = _box()
    f = lambda t: torch.sin(7 * t).sum(1)  # noqa: E731 - many local minima
    a = minimize_in_box(f, lo, hi, steps=5, restarts=3, seed=9, stop_below=-np.inf)
    b = minimize_in_box(f, lo, hi, steps=5, restarts=3, seed=9, stop_below=-np.inf)
    np.testing.assert_array_equal(a[0], b[0])
    one = minimize_in_box(f, lo, hi, steps=5, restarts=1, seed=9, stop_below=-np.inf)
    assert (a[1] <= one[1] + 1e-7).all()


def test_degenerate_box_and_errors():
    lo = np.full((2, 3), 0.5)
    x, v = minimize_in_box(lambda t: t.sum(1), lo, lo, steps=3)
    np.testing.assert_array_equal(x, lo)
    with pytest.raises(ValueError, match="lower <= upper"):
        minimize_in_box(lambda t: t.sum(1), lo, lo - 1)
    with pytest.raises(ValueError, match="same shape"):
        minimize_in_box(lambda t: t.sum(1), lo, np.ones((2, 4)))
    with pytest.raises(ValueError, match="objective must return"):
        minimize_in_box(lambda t: t, np.zeros((2, 3)), np.ones((2, 3)))


def test_works_under_no_grad():
    lo, hi = np.zeros((2, 3)), np.ones((2, 3))
    with torch.no_grad():
        x, v = minimize_in_box(lambda t: -t.sum(1), lo, hi, steps=10, stop_below=-np.inf)
    np.testing.assert_allclose(x, 1.0, atol=1e-6)
