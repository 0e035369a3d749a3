"""Falsification before the search finds the easy counterexamples on every kind of net (issue #27):
a 1-D conv regression net with a few inputs free and the rest fixed at decimals no float32 equals,
and a sigmoid net.  Each threshold is set below the best of a dense sample of the box, so a
counterexample exists; every one found is re-checked by onnxruntime on the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import conv_nets
import verify_nets
from nnaudit.verify.bab import BabConfig
from nnaudit.verify.engine import VerifyConfig, counterexample_ok, verify_property
from nnaudit.verify.results import Verdict
from nnaudit.verify.vnnlib import parse

CONFIG = replace(VerifyConfig(timeout_s=120), bab=BabConfig(workers=1))


def _outputs(path: Path, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    sess = ort.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    return np.array([sess.run(None, {name: x.reshape(shape).astype(np.float32)})[0].ravel()[0] for x in xs])


@pytest.mark.parametrize("seed", range(4))
def test_conv1d_regression_with_fixed_inputs(seed: int, tmp_path: Path) -> None:
    net = conv_nets.conv1d_regression(tmp_path, seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=32)
    free = rng.choice(32, 4, replace=False)
    lo, hi = x.copy(), x.copy()
    lo[free] -= 0.5
    hi[free] += 0.5
    pts = np.repeat(x[None], 3000, 0)
    pts[:, free] = lo[free] + (hi - lo)[free] * rng.random((3000, 4))
    y = _outputs(net, pts, (1, 1, 1, 32))
    threshold = float(np.sort(y)[-3])  # only the best few samples of 3000 reach it
    prop = conv_nets.box_vnnlib(tmp_path / "p.vnnlib", lo, hi, f"(>= Y_0 {threshold!r})")
    res = verify_property(net, prop, config=CONFIG)
    assert res.verdict is Verdict.VIOLATED, res.message
    assert counterexample_ok(net, parse(prop), res.counterexample.x)
    assert res.subdomains == 0  # found before the search


def test_a_fixed_decimal_input_accepts_its_float32_rounding_only() -> None:
    from nnaudit.verify.spec import Box

    box = Box(np.array([0.1, 0.0]), np.array([0.1, 1.0]))
    near = np.float32(0.1)
    assert box.contains_float32(np.array([[near, 0.5]], np.float32))[0]
    assert not box.contains(np.array([[near, 0.5]], np.float32).astype(np.float64))[0]
    far = np.nextafter(np.nextafter(near, np.float32(1)), np.float32(1))
    assert not box.contains_float32(np.array([[far, 0.5]], np.float32))[0]
    assert not box.contains_float32(np.array([[near, 1.0001]], np.float32))[0]  # a float32 dimension stays exact


@pytest.mark.parametrize("seed", range(3))
def test_sigmoid_net(seed: int, tmp_path: Path) -> None:
    net = verify_nets.mlp(tmp_path, seed, (40, 24, 24, 3), act="Sigmoid")
    rng = np.random.default_rng(seed)
    lo, hi = -np.ones(40), np.ones(40)
    y = _outputs(net, rng.uniform(-1, 1, (2000, 40)), (1, 40))
    threshold = float(np.sort(y)[-2])
    prop = conv_nets.box_vnnlib(tmp_path / "p.vnnlib", lo, hi, f"(>= Y_0 {threshold!r})", outputs=3)
    res = verify_property(net, prop, config=CONFIG)
    assert res.verdict is Verdict.VIOLATED, res.message
    assert counterexample_ok(net, parse(prop), res.counterexample.x)


class _BatchAndAlone:
    """A stand-in for onnxruntime whose batch runs put y_0 at 0 (the region's boundary, unsafe) and
    whose single-input runs put it 1e-7 above (safe): the last-bit difference between batch sizes."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        flat = x.reshape(len(x), -1)
        return np.stack([flat[:, 0] * 0 + (0.0 if len(x) > 1 else 1e-7), flat[:, 0]], axis=1).astype(np.float32)


def test_confirm_counts_a_candidate_only_when_its_own_run_is_unsafe() -> None:
    from nnaudit.verify.falsify import confirm
    from nnaudit.verify.spec import linear_property

    prop = linear_property(np.zeros(2), np.ones(2), [(np.array([[1.0, 0.0]]), np.array([0.0]))])  # y_0 <= 0
    (box, region), = prop.cases
    fake = _BatchAndAlone()
    xs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert confirm(fake, box, region, xs, (2,)) is None          # unsafe in the batch, safe alone
    assert fake.calls == [2, 1, 1]                                 # every batch-unsafe candidate ran alone
    fake.run = lambda x: np.zeros((len(x), 2), np.float32)         # unsafe both ways
    found = confirm(fake, box, region, xs, (2,))
    assert found is not None and np.allclose(found.x, xs[0])
