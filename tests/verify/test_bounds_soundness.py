"""Bound propagation: every computed bound contains the true value at random
points of the box (hypothesis over random networks, boxes and methods), the
lowering is exact, and CROWN is no looser than intervals on MLPs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.bounds import output_bounds, spec_bounds
from nnaudit.verify.lower import lower

import verify_nets

_S = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KINDS = ["mlp", "cnn", "residual", "sigmoid", "tanh"]


def _net(kind: str, tmp, seed: int):
    if kind == "mlp":
        return load(verify_nets.mlp(tmp, seed, (3, 8, 8, 4)))
    if kind in ("sigmoid", "tanh"):
        return load(verify_nets.mlp(tmp, seed, (3, 6, 4), act=kind.capitalize()))
    return load(getattr(verify_nets, kind)(tmp, seed))


@pytest.mark.parametrize("kind", KINDS)
def test_lowering_is_exact(kind: str, tmp_path) -> None:
    net = _net(kind, tmp_path, 0)
    x = np.random.default_rng(0).uniform(-1, 1, (16,) + net.input_shape)
    assert np.allclose(lower(net).evaluate(x.reshape(16, -1)), net.evaluate(x).reshape(16, -1), atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@_S
@given(seed=st.integers(0, 10_000), radius=st.floats(0.001, 1.0), method=st.sampled_from(["interval", "crown"]))
def test_bounds_contain_sampled_outputs(kind: str, seed: int, radius: float, method: str, tmp_path) -> None:
    net = _net(kind, tmp_path, seed % 7)
    rng = np.random.default_rng(seed)
    d = 3
    centre = rng.uniform(-1, 1, (d,) + net.input_shape)
    lo, hi = centre - radius * rng.random(centre.shape), centre + radius * rng.random(centre.shape)
    blo, bhi = output_bounds(net, lo, hi, method=method)
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((d, 64) + net.input_shape)
    pts[:, 0], pts[:, 1] = lo, hi
    y = net.evaluate(pts.reshape((-1,) + net.input_shape)).reshape(d, 64, -1)
    assert np.all(y >= blo[:, None] - 1e-9) and np.all(y <= bhi[:, None] + 1e-9)
    c = rng.normal(size=(2, net.output_size))
    off = rng.normal(size=2)
    lb = spec_bounds(net, lo, hi, c, off, method=method)
    assert np.all(y @ c.T + off >= lb[:, None] - 1e-9)


def test_alpha_crown_is_sound_and_not_looser(tmp_path) -> None:
    net = _net("mlp", tmp_path, 3)
    rng = np.random.default_rng(1)
    lo = rng.uniform(-1, 0, (4, 3))
    hi = lo + 0.8
    c = rng.normal(size=(3, 4))
    plain = spec_bounds(net, lo, hi, c, np.zeros(3))
    tuned = spec_bounds(net, lo, hi, c, np.zeros(3), alpha_steps=20)
    assert np.all(tuned >= plain - 1e-12)
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((4, 200, 3))
    y = net.evaluate(pts.reshape(-1, 3)).reshape(4, 200, -1)
    assert np.all(y @ c.T >= tuned[:, None] - 1e-9)


def test_crown_tighter_than_interval_on_mlp(tmp_path) -> None:
    net = _net("mlp", tmp_path, 5)
    lo = np.full((1, 3), -0.2)
    hi = np.full((1, 3), 0.2)
    il, ih = output_bounds(net, lo, hi, method="interval")
    cl, ch = output_bounds(net, lo, hi, method="crown")
    assert np.all(cl >= il - 1e-12) and np.all(ch <= ih + 1e-12)


def test_bad_boxes_are_rejected(tmp_path) -> None:
    net = _net("mlp", tmp_path, 0)
    with pytest.raises(ValueError, match="lower <= upper"):
        output_bounds(net, np.ones((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="3 input values"):
        output_bounds(net, np.zeros((1, 4)), np.ones((1, 4)))
