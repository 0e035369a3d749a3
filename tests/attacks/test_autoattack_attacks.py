"""APGD-T, FAB(-T) and Square: known answers on built networks, soundness on real files.

Every success counted here is onnxruntime's (``res.success``); the closed
forms come from linear models, whose exact worst case is known.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnaudit.attacks as A
from conftest import linear_model
from nnaudit.attacks.fab import project_on_hyperplane
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.networks.runtime import OnnxRuntimeModel


@pytest.fixture(scope="module")
def decoy(tmp_path_factory):
    """A 3-class linear net on [0, 1]^2 where the cross-entropy gradient points at class 1, which eps = 0.1
    cannot reach, while class 2 (more likely) is reachable along (-, +): z2 - z0 = -x1 + x2 - 0.15."""
    w = np.array([[0, 0], [10, 0], [-1, 1]], np.float32)
    b = np.array([0, -6.1, -0.15], np.float32)
    return linear_model(w, b, tmp_path_factory.mktemp("decoy") / "decoy.onnx"), np.array([[0.5, 0.5]], np.float32)


def test_apgd_t_breaks_what_the_cross_entropy_attacks_cannot(decoy):
    path, x = decoy
    y = np.array([0])
    for weak in ("fgsm", "pgd", "apgd-ce"):
        assert not A.run_attack(weak, path, x, y, eps=0.1, threads=1).success.any(), weak
    res = A.run_attack("apgd-t", path, x, y, eps=0.1, threads=1)
    assert res.success.all() and res.norms["linf"][0] <= 0.1
    assert OnnxRuntimeModel(str(path)).run(res.x_adv).argmax(axis=1)[0] == 2  # the target it was aimed at


@pytest.mark.parametrize("name", ["fab", "fab-t"])
def test_fab_finds_the_closest_boundary_point_of_a_linear_net(decoy, name):
    path, x = decoy
    res = A.run_attack(name, path, x, np.array([0]), eps=np.inf, threads=1)
    assert res.success.all()
    exact = 0.15 / 2  # min ||d||_inf with -d1 + d2 >= 0.15
    assert exact <= res.norms["linf"][0] <= 1.06 * exact  # never below the true minimum; within eta's overshoot
    res2 = A.run_attack(name, path, x, np.array([0]), eps=np.inf, norm="l2", threads=1)
    exact2 = 0.15 / np.sqrt(2)
    assert res2.success.all() and exact2 <= res2.norms["l2"][0] <= 1.06 * exact2


def test_fab_t_within_eps_on_a_real_net_is_confirmed(digits_small):
    net, x, y = digits_small
    res = A.run_attack("fab-t", net, x, y, eps=0.1, steps=30, target_classes=3, threads=1)
    assert res.success.any() and (res.norms["linf"] <= 0.1).all()
    pred = OnnxRuntimeModel(str(net.source)).run(res.x_adv).argmax(axis=1)
    assert np.array_equal(pred != y, res.success)


def test_projection_on_a_hyperplane_in_a_box_is_minimal():
    rng = np.random.default_rng(3)
    import torch

    p = torch.tensor(rng.uniform(0.2, 0.8, (64, 5)))
    w = torch.tensor(rng.normal(0, 1, (64, 5)))
    b = (w * torch.tensor(rng.uniform(0, 1, (64, 5)))).sum(1)  # a plane through a point of the box
    for norm in (Norm.LINF, Norm.L2):
        d = project_on_hyperplane(p, w, b, ThreatModel(norm=norm, eps=1.0))
        z = p + d
        assert ((z >= -1e-12) & (z <= 1 + 1e-12)).all()
        assert torch.allclose((w * z).sum(1), b, atol=1e-6)
        # random feasible points on the plane are never closer
        size = d.abs().amax(1) if norm is Norm.LINF else d.norm(dim=1)
        for _ in range(20):
            q = torch.tensor(rng.uniform(0, 1, (64, 5)))
            q = q - ((w * q).sum(1) - b)[:, None] * w / (w * w).sum(1, keepdim=True)  # onto the plane
            ok = ((q >= 0) & (q <= 1)).all(1)
            other = (q - p).abs().amax(1) if norm is Norm.LINF else (q - p).norm(dim=1)
            assert (size[ok] <= other[ok] + 1e-6).all()


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 0.6)])
def test_square_on_onnxruntime_only_matches_the_closed_form(linear2, norm, eps):
    from nnaudit.attacks.base import as_network

    path, w, b = linear2
    net = as_network(path)
    x = np.random.default_rng(5).uniform(0.3, 0.7, (40, 6)).astype(np.float32)
    logits = x @ w.T + b
    y = logits.argmax(axis=1)
    res = A.run_attack("square", net, x, y, eps=eps, norm=norm, queries=300, backend="onnxruntime", threads=1)
    assert not any(k.startswith("attack-logits") for k in net._torch_cache)  # never built a torch form
    sgn = np.where(y == 0, 1.0, -1.0)[:, None]
    direction = sgn * (w[1] - w[0])  # moves towards the other class
    gap = sgn[:, 0] * (logits[:, 0] - logits[:, 1])  # > 0, the margin to cover
    reach = eps * (np.abs(direction).sum(1) if norm == "linf" else np.linalg.norm(direction, axis=1))
    # the box [0, 1] is never binding here (x in [0.3, 0.7], eps <= 0.3 per coordinate for linf)
    assert not res.success[reach < gap - 1e-4].any()  # sound: never breaks what the exact worst case cannot
    assert res.success[reach > 1.2 * gap].all() if norm == "linf" else res.success[reach > 1.2 * gap].mean() > 0.8
    assert res.success.any() and not res.mismatch.any()
