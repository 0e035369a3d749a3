"""FAB in L1: the minimal-L1 step onto a hyperplane, the L1 threat model, and FAB-L1's results
on digits-ffn (measured sizes, onnxruntime-confirmed, smaller than FAB-L2's in L1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nnaudit.attacks as A
from nnaudit.attacks.fab import project_on_hyperplane
from nnaudit.attacks.threat import Norm, ThreatModel, enforce, inside, project_l1_ball
from nnaudit.errors import ConfigError
from nnaudit.networks import zoo
from nnaudit.networks.runtime import OnnxRuntimeModel


def test_l1_step_onto_a_hyperplane_is_the_linear_programs_optimum() -> None:
    linprog = pytest.importorskip("scipy.optimize").linprog
    gen = torch.Generator().manual_seed(5)
    b_rows, n = 8, 10
    p = torch.rand((b_rows, n), generator=gen, dtype=torch.float64) * 2 - 1
    w = torch.randn((b_rows, n), generator=gen, dtype=torch.float64)
    w[0, :4] = 0.0  # coordinates that cannot move the plane
    b = torch.randn(b_rows, generator=gen, dtype=torch.float64) * 2
    b[1] = 1e3  # out of reach inside the range: every coordinate at its bound
    threat = ThreatModel(Norm.L1, float("inf"), -1.0, 1.0)
    d = project_on_hyperplane(p, w, b, threat)
    assert ((p + d) >= -1.0).all() and ((p + d) <= 1.0).all()
    for i in range(b_rows):
        wi, pi, need = w[i].numpy(), p[i].numpy(), float(b[i] - (w[i] * p[i]).sum())
        # d = up - down, up in [0, 1 - p], down in [0, p + 1]; minimise |up| + |down| subject to w . d = need
        lp = linprog(np.ones(2 * n), A_eq=np.concatenate([wi, -wi])[None], b_eq=[need],
                     bounds=[(0, 1 - v) for v in pi] + [(0, v + 1) for v in pi])
        if lp.status == 0:
            assert float((w[i] * (p[i] + d[i])).sum()) == pytest.approx(float(b[i]), abs=1e-9)
            assert float(d[i].abs().sum()) == pytest.approx(lp.fun, rel=1e-9, abs=1e-12)
        else:  # infeasible: the box corner closest to the plane
            assert i == 1
            np.testing.assert_allclose((p[i] + d[i]).numpy(), np.where(wi > 0, 1.0, -1.0))


def test_l1_ball_projection_and_enforce() -> None:
    rng = np.random.default_rng(2)
    v = rng.normal(0, 1, (6, 30))
    out = project_l1_ball(v, 2.0)
    np.testing.assert_allclose(np.abs(out).sum(axis=1), 2.0)
    # Euclidean projection: soft-thresholding, the signs kept, no entry grows
    assert (np.sign(out) * np.sign(v) >= 0).all() and (np.abs(out) <= np.abs(v)).all()
    x = rng.uniform(0, 1, (6, 30)).astype(np.float32)
    threat = ThreatModel("l1", 1.5)
    adv = enforce(x, x + rng.normal(0, 0.5, x.shape), threat)
    assert inside(x, adv, threat).all()
    assert (np.abs(adv.astype(np.float64) - x).sum(axis=1) <= 1.5).all()


def test_l1_spelling_and_attacks_without_it_refuse() -> None:
    assert Norm.parse("l1") is Norm.L1 and Norm.parse("1") is Norm.L1 and Norm.L1.value == "l1"
    net = zoo.load("digits-ffn")
    x = np.full((2, 64), 0.5, np.float32)
    with pytest.raises(ConfigError, match="pgd: supports the norms linf, l2, got l1"):
        A.run_attack("pgd", net, x, np.array([0, 1]), eps=1.0, norm="l1")
    with pytest.raises(ConfigError, match="not l1 attacks"):
        A.evaluate(net, x, np.array([0, 1]), eps=[1.0], norm="l1", attacks=["fab", "deepfool"])


@pytest.fixture(scope="module")
def digits():
    from nnaudit.networks import datasets

    x, y = datasets.digits("test")
    return zoo.load("digits-ffn"), x[:40], y[:40]


def test_fab_l1_sizes_confirmed_and_smaller_than_fab_l2s(digits) -> None:
    net, x, y = digits
    l1 = A.run_attack("fab", net, x, y, eps=float("inf"), norm="l1", seed=0, threads=1, steps=30)
    l2 = A.run_attack("fab", net, x, y, eps=float("inf"), norm="l2", seed=0, threads=1, steps=30)
    # successes are exactly onnxruntime's verdicts on the returned points, sizes measured in float64
    ort = OnnxRuntimeModel(zoo.path("digits-ffn")).predict(l1.x_adv)
    np.testing.assert_array_equal(l1.success, ort != y)
    np.testing.assert_allclose(l1.norms["l1"], np.abs(l1.x_adv.astype(np.float64) - x).sum(axis=1))
    both = l1.success & l2.success & l1.clean_correct
    assert both.sum() >= 30
    # FAB-L1 minimises L1: its median L1 size is well below FAB-L2's (about half on these digits)
    l2_sizes = np.abs(l2.x_adv.astype(np.float64) - x).sum(axis=1)
    assert np.median(l1.norms["l1"][both]) < 0.8 * np.median(l2_sizes[both])
    assert "l1" not in l2.norms  # only results of the L1 threat model carry L1 sizes


def test_fab_l1_under_a_bounded_eps_stays_inside_and_keeps_its_successes(digits) -> None:
    net, x, y = digits
    free = A.run_attack("fab", net, x, y, eps=float("inf"), norm="l1", seed=0, threads=1, steps=30)
    eps = float(np.median(free.norms["l1"][free.success & free.clean_correct]))
    bounded = A.run_attack("fab", net, x, y, eps=eps, norm="l1", seed=0, threads=1, steps=30)
    assert (bounded.norms["l1"] <= eps).all()
    small = free.success & free.clean_correct & (free.norms["l1"] <= eps)
    assert small.sum() >= 15 and bounded.success[small].all()  # a success of size <= eps is never lost
    assert not bounded.mismatch.any()


def test_cli_accepts_l1_for_fab() -> None:
    from nnaudit.cli import cli

    model = str(zoo.path("digits-ffn"))
    res = CliRunner().invoke(cli, ["attack", model, "--data", "digits", "--limit", "10", "--attacks", "fab",
                                   "--norm", "l1", "--eps", "2", "--set", "fab.steps=10", "--threads", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["attack", model, "--data", "digits", "--limit", "10", "--attacks", "pgd",
                                   "--norm", "l1", "--eps", "2"])
    assert res.exit_code == 2 and "l1" in res.output
