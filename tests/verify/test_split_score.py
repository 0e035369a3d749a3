"""The input-split score: the bound's response to each width (``Brancher.sensitivities``), by
autograd, is the derivative that narrowing the box by a hair shows; children reuse their
parent's between fresh computations; and a search splits where it points."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verify_nets
from nnaudit.networks import load
from nnaudit.networks.runtime import OnnxRuntimeModel
from nnaudit.verify.bab import BabConfig, Chunk, Search
from nnaudit.verify.bounds import compute_bounds, spec_lower
from nnaudit.networks.lower import lower
from nnaudit.verify.spec import Box, Region

SCOPED = [HealthCheck.function_scoped_fixture]


def _search(tmp_path, seed: int, config: BabConfig = BabConfig()):
    path = verify_nets.mlp(tmp_path, seed, (3, 10, 10, 3))
    net = load(path)
    c = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    region = Region(((c, np.zeros(2)),))
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    return Search(lower(net), net, OnnxRuntimeModel(path), box, region, config, time.monotonic() + 30, None)


def _lower(search: Search, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        b = compute_bounds(search.low, torch.as_tensor(lo), torch.as_tensor(hi))
        return spec_lower(search.low, b, search.c, search.d).lower.numpy()


@settings(max_examples=10, deadline=None, suppress_health_check=SCOPED)
@given(seed=st.integers(0, 10_000))
def test_sensitivities_are_the_bounds_derivative_in_each_width(tmp_path, seed: int) -> None:
    """CROWN's bound is piecewise smooth in the box, with jumps where a relaxation changes (an
    adaptive lower slope flips, a neuron turns stable): narrowing by a hair moves it by ``h *
    derivative`` except where such a jump lies within ``h``, so most, not all, pairs agree."""
    search = _search(tmp_path, seed % 50)
    rng = np.random.default_rng(seed)
    k = 16
    lo = rng.uniform(-1.0, 0.2, (k, 3))
    hi = lo + rng.uniform(0.2, 0.8, (k, 3))
    rows = rng.integers(0, 2, k)
    chunk = Chunk(lo, hi, np.ones((k, 1), bool), np.zeros(k, np.int64), None)
    sens = search.brancher.sensitivities(chunk, rows)
    base = _lower(search, lo, hi)[np.arange(k), rows]
    h = 1e-7
    agree = np.zeros((k, 3), bool)
    for i in range(3):
        step = np.zeros(3)
        step[i] = h
        narrowed = _lower(search, lo + step, hi - step)[np.arange(k), rows]
        agree[:, i] = np.isclose((narrowed - base) / h, sens[:, i], rtol=1e-3, atol=1e-4)
    assert agree.mean() >= 0.9, (agree, sens)


def test_children_reuse_the_parents_sensitivities_between_fresh_ones(tmp_path) -> None:
    search = _search(tmp_path, 1, replace(BabConfig(), gradient_every=3))
    lo, hi = np.full((2, 3), -0.5), np.full((2, 3), 0.5)
    stored = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]])
    chunk = Chunk(lo, hi, np.ones((2, 1), bool), np.array([4, 4]), None, sens=stored)
    sens = search.brancher.sensitivities(chunk, np.zeros(2, np.int64))
    assert np.array_equal(sens[0], stored[0])                       # depth 4: not a fresh depth, reused
    assert not np.isnan(sens[1]).any()                              # no parent's (NaN): computed
    fresh = search.brancher.sensitivities(replace(chunk, depth=np.array([3, 3])), np.zeros(2, np.int64))
    assert not np.array_equal(fresh[0], stored[0])                  # depth 3: computed afresh
    assert np.allclose(fresh[1], sens[1])


def test_a_split_halves_the_dimension_with_the_largest_gain(tmp_path) -> None:
    search = _search(tmp_path, 2)
    lo, hi = np.array([[-1.0, -1.0, -1.0]]), np.array([[1.0, 0.5, 0.0]])
    chunk = Chunk(lo, hi, np.ones((1, 1), bool), np.zeros(1, np.int64), None)
    with torch.no_grad():
        b = compute_bounds(search.low, torch.as_tensor(lo), torch.as_tensor(hi))
        sb = spec_lower(search.low, b, search.c, search.d)
    row = np.array([int(sb.lower.numpy()[0].argmax())])
    gains = search.brancher.sensitivities(chunk, row) * (hi - lo)
    assert gains.max() > 0
    children = search.brancher.split(chunk, sb, b, np.array([0]), row, 0)
    dim = int(gains[0].argmax())
    assert np.allclose(children.hi[0, dim], (lo[0, dim] + hi[0, dim]) / 2)
    assert np.allclose(children.lo[1, dim], (lo[0, dim] + hi[0, dim]) / 2)
    others = [j for j in range(3) if j != dim]
    assert np.array_equal(children.lo[:, others], np.repeat(lo[:, others], 2, axis=0))
    assert np.array_equal(children.hi[:, others], np.repeat(hi[:, others], 2, axis=0))
    assert children.sens is not None and np.allclose(children.sens, np.repeat(gains / (hi - lo), 2, axis=0))


def test_bad_score_settings_are_refused() -> None:
    import pytest

    from nnaudit.errors import ConfigError

    with pytest.raises(ConfigError, match="split_score"):
        BabConfig(split_score="widest")
    with pytest.raises(ConfigError, match="gradient_every"):
        BabConfig(gradient_every=0)
