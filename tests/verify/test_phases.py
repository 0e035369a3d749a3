"""Closing a sub-domain by its ReLU phase patterns: the patterns' affine forms are the
network's, a closed sub-domain is one Z3 finds safe, and a clearly safe one closes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.bab import LeafTask, decide_leaf
from nnaudit.verify.bounds import compute_bounds
from nnaudit.networks.lower import lower
from nnaudit.verify.phases import applies, closes_by_phases, pattern_forms, unstable_neurons
from nnaudit.verify.results import Verdict
from nnaudit.verify.smt import SmtStatus
from nnaudit.verify.spec import Region

import verify_nets

SCOPED = [HealthCheck.function_scoped_fixture]


def _leaf(tmp_path, seed: int, sizes: tuple[int, ...], width: float):
    """A random MLP, a random box of about ``width`` per input, and its pre-activation bounds."""
    low = lower(load(verify_nets.mlp(tmp_path, seed, sizes)))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, sizes[0])
    hi = lo + rng.uniform(0.5, 1.0, sizes[0]) * width
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    pre = [(l[0].numpy().copy(), u[0].numpy().copy()) for l, u in zip(b.pre_lo, b.pre_hi)]
    return low, lo, hi, pre, rng


@settings(max_examples=20, deadline=None, suppress_health_check=SCOPED)
@given(seed=st.integers(0, 10_000))
def test_each_point_is_affine_under_its_own_pattern(seed: int, tmp_path) -> None:
    low, lo, hi, pre, rng = _leaf(tmp_path, seed, (3, 5, 5, 2), 0.3)
    if sum(len(q) for q in unstable_neurons(pre)) > 8:
        return
    outputs, phases = pattern_forms(low, pre)
    x = rng.uniform(lo, hi, (200, 3))
    z = np.concatenate([p[:, q] for p, q in zip(low.pre_activations(x), unstable_neurons(pre))], axis=1)
    # patterns are enumerated as itertools.product((1, -1), ...): bit set = inactive, first neuron highest
    index = ((z < 0).astype(int) * (2 ** np.arange(z.shape[1]))[::-1]).sum(axis=1)
    xe = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    y = np.einsum("bn,bnm->bm", xe, outputs[index])
    assert np.allclose(y, low.evaluate(x), atol=1e-9)
    assert (np.einsum("bn,bnm->bm", xe, phases[index]) <= 1e-12).all()


@settings(max_examples=30, deadline=None, suppress_health_check=SCOPED)
@given(seed=st.integers(0, 10_000), quantile=st.sampled_from([-0.2, -0.01, 0.0, 0.01, 0.2]))
def test_closed_means_z3_finds_no_unsafe_input_and_clearly_safe_means_closed(seed: int, quantile: float,
                                                                              tmp_path) -> None:
    """Unsafe: ``y0 - y1 <= t`` and ``y0 - y2 <= t`` (one disjunct of two rows), with ``t``
    around the sampled minimum of the larger row.  Z3 decides the same sub-domain exactly."""
    low, lo, hi, pre, rng = _leaf(tmp_path, seed, (2, 6, 6, 3), 0.4)
    if sum(len(q) for q in unstable_neurons(pre)) > 8:
        return
    x = rng.uniform(lo, hi, (4000, 2))
    y = low.evaluate(x)
    worst = np.maximum(y[:, 0] - y[:, 1], y[:, 0] - y[:, 2])
    t = float(worst.min() + quantile * (worst.max() - worst.min()))
    c = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])      # rows: y_k - y0 + t <= 0
    region = Region(((c, np.array([t, t])),))
    closed = closes_by_phases(low, region, lo, hi, pre, np.array([0]), 1e-7, max_unstable=8)

    def z3(slack: float) -> SmtStatus:
        task = LeafTask(lo, hi, pre, None, np.array([0]), 30.0, slack)
        return decide_leaf(low, region, task).status

    if closed:
        assert z3(0.0) is SmtStatus.UNSAT, "closed by phases, but Z3 finds an unsafe input"
    if z3(-1e-4) is SmtStatus.UNSAT:   # no input comes within 1e-4 of the region: the LPs are exact, so it closes
        assert closed


def test_only_networks_of_relus_apply(tmp_path) -> None:
    assert applies(lower(load(verify_nets.mlp(tmp_path, 1, (2, 4, 2)))))
    assert not applies(lower(load(verify_nets.mlp(tmp_path, 1, (2, 4, 2), act="Sigmoid"))))


def test_more_unstable_relus_than_allowed_are_not_tried(tmp_path) -> None:
    low, lo, hi, pre, _ = _leaf(tmp_path, 3, (2, 8, 8, 2), 2.0)
    count = sum(len(q) for q in unstable_neurons(pre))
    assert count >= 2
    safe = Region(((np.array([[0.0, 0.0]]), np.array([1.0])),))   # 0 * y + 1 <= 0: never
    assert closes_by_phases(low, safe, lo, hi, pre, np.array([0]), 1e-7, max_unstable=count)
    assert not closes_by_phases(low, safe, lo, hi, pre, np.array([0]), 1e-7, max_unstable=count - 1)


@pytest.mark.parametrize("rows", [1, 3])
def test_a_pattern_with_contradicting_phases_is_closed_without_rows(rows: int) -> None:
    """z1 = x and z2 = -x on [-1, 1]: the pattern with both active holds only at x = 0,
    and the unsafe set (y = relu(z1) + relu(z2) <= 0, i.e. x = 0) is a point: it does
    not close; move it off the box (y <= -0.5) and every pattern closes."""
    from nnaudit.networks.lower import Affine, Lowered, Node
    from nnaudit.networks.ops.activations import Relu

    relu = Relu("r", ("z",), "h")
    node = Node(relu, Affine({0: np.array([[1.0, -1.0]])}, np.zeros(2)), (2,), (2,))
    low = Lowered(1, (node,), Affine({1: np.array([[1.0], [1.0]])}, np.zeros(1)))
    pre = [(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))]
    lo, hi = np.array([-1.0]), np.array([1.0])
    c = np.ones((rows, 1))
    assert not closes_by_phases(low, Region(((c, np.zeros(rows)),)), lo, hi, pre, np.array([0]), 1e-7, 4)
    assert closes_by_phases(low, Region(((c, np.full(rows, 0.5)),)), lo, hi, pre, np.array([0]), 1e-7, 4)


def test_branch_and_bound_closes_sub_domains_by_phases_and_agrees_with_the_grid(tmp_path) -> None:
    """Input splitting with phase closing from the root: "holds" just above the grid's
    minimum (some sub-domains closed by phases), "violated" just below it."""
    import time
    from dataclasses import replace

    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.verify.bab import BabConfig, run_bab
    from nnaudit.verify.spec import Box

    path = verify_nets.mlp(tmp_path, 7, (2, 8, 8, 2))
    net = load(path)
    low = lower(net)
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 201), np.linspace(-0.5, 0.5, 201)), -1).reshape(-1, 2)
    diff = low.evaluate(g) @ np.array([1.0, -1.0])
    cfg = replace(BabConfig(), phase_depth=0, phase_max_unstable=8)
    outcomes = {}
    for name, t in (("above", diff.min() - 1e-3), ("below", diff.min() + 1e-3)):
        region = Region(((np.array([[1.0, -1.0]]), np.array([-t])),))
        outcomes[name] = run_bab(low, net, OnnxRuntimeModel(path), Box(lo, hi), region, cfg, time.monotonic() + 30)
    assert outcomes["above"].status is Verdict.HOLDS and outcomes["above"].phase_closed > 0
    assert outcomes["below"].status is Verdict.VIOLATED


def test_the_result_counts_the_sub_domains_closed_by_phases(tmp_path) -> None:
    from dataclasses import replace

    from nnaudit.verify.engine import VerifyConfig, verify_property
    from nnaudit.verify.falsify import FalsifyConfig
    from nnaudit.verify.spec import linear_property

    net = load(verify_nets.mlp(tmp_path, 7, (2, 8, 8, 2)))
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 201), np.linspace(-0.5, 0.5, 201)), -1).reshape(-1, 2)
    t = (net.evaluate(g) @ np.array([1.0, -1.0])).min() - 1e-3
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
    base = VerifyConfig(timeout_s=30, falsify=FalsifyConfig(samples=1, pgd_starts=0))
    res = verify_property(net, prop, config=replace(base, bab=replace(base.bab, phase_depth=0, phase_max_unstable=8)))
    assert res.verdict.value == "holds" and res.phase_closed > 0
    assert res.to_dict()["phase_closed"] == res.phase_closed
