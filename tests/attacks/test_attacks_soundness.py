"""Soundness: outputs never leave the threat model, robust samples are never
reported broken, and only onnxruntime-confirmed successes count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_build import random_mlp, save

import nnaudit.attacks as A
from nnaudit.attacks import base
from nnaudit.attacks.threat import Norm, ThreatModel, enforce, inside
from nnaudit.networks.runtime import OnnxRuntimeModel

ALL = ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "cw", "deepfool", "jsma", "apgd-t", "fab", "fab-t", "square"]
#: small budgets for the property tests
SMALL = {"pgd": {"steps": 5}, "apgd-ce": {"steps": 5}, "apgd-dlr": {"steps": 5}, "deepfool": {"steps": 5},
         "cw": {"steps": 10, "binary_search_steps": 2}, "apgd-t": {"steps": 5, "target_classes": 2},
         "fab": {"steps": 5}, "fab-t": {"steps": 5, "target_classes": 2}, "square": {"queries": 30}}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), norm=st.sampled_from(list(Norm)), eps=st.floats(0, 3),
       low=st.floats(-2, 0.5), width=st.floats(1e-3, 3), scale=st.floats(0, 10))
def test_enforce_always_lands_inside(seed, norm, eps, low, width, scale):
    rng = np.random.default_rng(seed)
    high = low + width
    x = rng.uniform(low, high, (5, 7)).astype(np.float32).clip(np.float32(low), np.float32(high))
    x = np.where(x < low, np.nextafter(np.float32(low), np.float32(np.inf)), x)
    x = np.where(x > high, np.nextafter(np.float32(high), np.float32(-np.inf)), x)
    if not (inside(x, x, ThreatModel(norm, 0.0 if norm is not Norm.L0 else 0, low, high))).all():
        return  # range narrower than float32 resolution at this magnitude
    eps = float(round(eps)) if norm is Norm.L0 else eps
    threat = ThreatModel(norm=norm, eps=eps, low=low, high=high)
    adv = x + rng.normal(0, 1, x.shape) * scale
    out = enforce(x, adv, threat)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert inside(x, out, threat).all()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    model = random_mlp(np.random.default_rng(3), [5, 12, 4])
    return save(model, tmp_path_factory.mktemp("mlp") / "mlp.onnx")


@pytest.mark.parametrize("attack", ALL)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_attacks_never_leave_the_ball_or_the_range(mlp, attack, data):
    norm = data.draw(st.sampled_from(["l0"] if attack == "jsma" else ["linf", "l2"]), label="norm")
    eps = float(data.draw(st.integers(1, 5))) if norm == "l0" else data.draw(st.floats(0.0, 0.6), label="eps")
    low = data.draw(st.sampled_from([0.0, -1.0]), label="low")
    seed = data.draw(st.integers(0, 1000), label="seed")
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, 1.0, (6, 5)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    res = A.run_attack(attack, mlp, x, y, eps=eps, norm=norm, bounds=(low, 1.0), seed=seed, threads=1,
                       **SMALL.get(attack, {}))
    threat = ThreatModel(norm=norm, eps=eps, low=low, high=1.0)
    assert inside(x, res.x_adv, threat).all()
    assert (res.norms[norm] <= eps).all()
    # successes are exactly what onnxruntime says about the returned points
    ort = OnnxRuntimeModel(mlp).predict(res.x_adv)
    np.testing.assert_array_equal(res.success, ort != y)


@pytest.mark.parametrize("attack", ALL)
def test_provably_robust_samples_are_never_broken(linear2, attack):
    """On the linear model, samples whose closed-form worst case keeps the label."""
    path, w, b = linear2
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, (200, 6)).astype(np.float32)
    y = OnnxRuntimeModel(path).predict(x)
    w64, b64 = w.astype(np.float64), b.astype(np.float64)
    v = np.where(y[:, None] == 0, w64[0] - w64[1], w64[1] - w64[0])
    c = np.where(y == 0, b64[0] - b64[1], b64[1] - b64[0])
    eps = 0.08
    worst = (np.clip(x - eps * np.sign(v), 0, 1) * v).sum(1) + c
    safe = worst > 1e-4
    assert safe.sum() > 50
    res = A.run_attack(attack, path, x[safe], y[safe], eps=eps, norm="linf", threads=1)
    assert not res.success.any() and not res.model_success.any()
    assert res.robust_accuracy == 1.0


def test_unconfirmed_successes_are_mismatches_not_successes(digits_small, monkeypatch):
    """A torch model that disagrees with the ONNX file: its 'successes' are not counted."""
    net, x, y = digits_small
    real = base.torch_logits

    def wrong(network, device):
        f = real(network, device)
        return lambda t: -f(t)  # every clean input looks misclassified

    monkeypatch.setattr(base, "torch_logits", wrong)
    res = A.fgsm(net, x, y, eps=0.0, threads=1)
    ort_clean = OnnxRuntimeModel(net.source).predict(x)
    correct = ort_clean == y
    assert res.model_success[correct].all()
    assert not res.success[correct].any()
    np.testing.assert_array_equal(res.mismatch, correct)
    assert res.num_mismatches == int(correct.sum())
