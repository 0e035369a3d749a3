"""Known answers on a linear two-class model, where the worst case is closed-form.

For logits ``z = W x + b`` and label ``y`` the margin is ``v . x + c`` with
``v = w_y - w_other``; over the L-inf ball intersected with [0, 1] its minimum
is at ``clip(x - eps * sign(v), 0, 1)``, over an L2 ball (away from the range
bounds) it is ``m(x) - eps * ||v||_2``, and the smallest L2 perturbation that
flips the class has norm ``|m(x)| / ||v||_2``.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnaudit.attacks as A
from nnaudit.networks import load
from nnaudit.networks.runtime import OnnxRuntimeModel


def _setup(linear2, n=40, lo=0.2, hi=0.8, seed=0):
    path, w, b = linear2
    w64, b64 = w.astype(np.float64), b.astype(np.float64)
    x = np.random.default_rng(seed).uniform(lo, hi, (n, w.shape[1])).astype(np.float32)
    y = OnnxRuntimeModel(path).predict(x)
    v = np.where(y[:, None] == 0, w64[0] - w64[1], w64[1] - w64[0])
    c = np.where(y == 0, b64[0] - b64[1], b64[1] - b64[0])
    return path, x, y, v, c


def _margin(x, v, c):
    return (np.asarray(x, np.float64) * v).sum(1) + c


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_linf_reaches_the_analytic_worst_case(linear2, attack):
    path, x, y, v, c = _setup(linear2)
    eps = 0.05
    worst = np.clip(x - eps * np.sign(v), 0.0, 1.0)
    m_worst = _margin(worst, v, c)
    assert (m_worst < -1e-3).any() and (m_worst > 1e-3).any()  # the test covers both outcomes
    res = getattr(A, attack)(path, x, y, eps=eps, threads=1)
    clear = np.abs(m_worst) > 1e-3
    np.testing.assert_array_equal(res.success[clear], (m_worst < 0)[clear])
    robust = clear & (m_worst > 0)
    # unbroken samples: the attack's point is the worst case itself
    np.testing.assert_allclose(_margin(res.x_adv[robust], v[robust], c[robust]), m_worst[robust], atol=1e-4)


def test_pgd_l2_reaches_the_analytic_worst_case(linear2):
    path, x, y, v, c = _setup(linear2, lo=0.4, hi=0.6)
    eps = 0.05
    m_worst = _margin(x, v, c) - eps * np.linalg.norm(v, axis=1)
    robust = m_worst > 1e-3
    assert robust.sum() >= 10
    res = A.pgd(path, x, y, eps=eps, norm="l2", steps=60, step_size=eps / 2, threads=1)
    assert not res.success[robust].any()
    np.testing.assert_allclose(_margin(res.x_adv[robust], v[robust], c[robust]), m_worst[robust], atol=2e-3)
    assert res.success[m_worst < -1e-3].all()


def test_deepfool_finds_the_minimal_l2_perturbation(linear2):
    path, x, y, v, c = _setup(linear2, lo=0.45, hi=0.55)
    minimal = np.abs(_margin(x, v, c)) / np.linalg.norm(v, axis=1)
    ok = minimal < 0.04  # stays inside [0, 1]: the box does not bind
    res = A.deepfool(path, x[ok], y[ok], eps=np.inf, norm="l2", overshoot=0.02, threads=1)
    assert res.success.all()
    # one step (|m| + 1e-4) / ||v|| along -v, times (1 + overshoot)
    expected = 1.02 * (np.abs(_margin(x, v, c)) + 1e-4) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(res.norms["l2"], expected[ok], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("attack", ["cw", "deepfool", "pgd", "apgd-ce", "fgsm", "jsma"])
def test_no_success_is_smaller_than_the_minimal_perturbation(linear2, attack):
    path, x, y, v, c = _setup(linear2, lo=0.0, hi=1.0)
    m = _margin(x, v, c)
    norm = {"jsma": "l0"}.get(attack, "l2")
    eps = np.inf if attack in ("cw", "deepfool", "jsma") else 0.5
    options = {"gamma": 1.0} if attack == "jsma" else {}
    res = A.run_attack(attack, path, x, y, eps=eps, norm=norm, threads=1, **options)
    assert res.success.any()
    # no point closer than |m| / ||v||_2 can change the sign of the margin
    bound = np.abs(m) / np.linalg.norm(v, axis=1)
    assert (res.norms["l2"][res.success] >= bound[res.success] * (1 - 1e-5)).all()


def test_cw_is_close_to_minimal(linear2):
    path, x, y, v, c = _setup(linear2, lo=0.4, hi=0.6)
    minimal = np.abs(_margin(x, v, c)) / np.linalg.norm(v, axis=1)
    ok = minimal < 0.1
    res = A.cw(path, x[ok], y[ok], eps=np.inf, threads=1)
    assert res.success.all()
    assert (res.norms["l2"] <= 1.2 * minimal[ok] + 1e-3).all()


def test_net_given_as_ir_or_path_agree(linear2):
    path, x, y, _, _ = _setup(linear2)
    a = A.pgd(path, x, y, eps=0.1, threads=1)
    b = A.pgd(load(path), x, y, eps=0.1, threads=1)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
