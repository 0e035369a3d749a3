"""Zero wrong answers on tiny networks where a brute-force grid knows the
truth: across input splitting, ReLU splitting and Z3-only decisions, "holds"
is never contradicted by the grid and every "violated" counterexample is
re-checked by onnxruntime on the file."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.engine import VerifyConfig, counterexample_ok, verify_property
from nnaudit.verify.falsify import FalsifyConfig
from nnaudit.verify.results import Verdict
from nnaudit.verify.spec import linear_property

import verify_nets

NO_FALSIFY = FalsifyConfig(samples=1, pgd_starts=0)
BASE = VerifyConfig(timeout_s=30, falsify=NO_FALSIFY)
MODES = {
    "input-split": BASE,
    # the older split score (the final linear bound's input coefficients times the widths)
    "input-split-smear": replace(BASE, bab=replace(BASE.bab, split_score="smear")),
    # one input-split search on two processes sharing sub-domains (batches of 2, so that they are handed around)
    "input-split-shared": replace(BASE, bab=replace(BASE.bab, workers=2, batch=2, share_after=0.0)),
    # sub-domains with few unstable ReLUs closed by an LP per phase pattern, from the root on
    "phases": replace(BASE, bab=replace(BASE.bab, phase_depth=0, phase_max_unstable=8)),
    "relu-split": replace(BASE, bab=replace(BASE.bab, input_split_dims=0, z3_max_unstable_relu=1)),
    # the same on two processes sharing sub-domains (batches of 2, so that they are handed around)
    "relu-split-shared": replace(BASE, bab=replace(BASE.bab, input_split_dims=0, z3_max_unstable_relu=1, workers=2,
                                                    batch_relu=2, share_after=0.0)),
    "z3-only": replace(BASE, bab=replace(BASE.bab, z3_max_unstable=1000)),
    # every Z3 probe runs out at once: sub-domains sent to Z3 for their depth are split on instead
    "z3-probes-run-out": replace(BASE, bab=replace(BASE.bab, z3_max_depth=2, z3_probe_timeout=0.0, z3_depth_step=3,
                                                    z3_final_depth=24)),
}


def _net_box_grid(tmp_path, seed: int, sizes: tuple[int, ...]):
    """A random 2-input MLP, a random box, and its outputs on a 161 x 161 grid of the box."""
    path = verify_nets.mlp(tmp_path, seed, sizes)
    net = load(path)
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, 2)
    hi = lo + rng.uniform(0.1, 1.0, 2)
    g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 161), np.linspace(lo[1], hi[1], 161)), -1).reshape(-1, 2)
    return path, net, lo, hi, net.evaluate(g)


def _agrees_with_grid(path, net, prop, res, margin: np.ndarray, span: float) -> None:
    """``res`` against a grid of the box, where ``margin`` ``(points,)`` is below 0 exactly at the
    grid's violations: "holds" never has one, "violated" comes with a counterexample onnxruntime
    confirms, and a clear violation or a clear margin gets its answer."""
    grid_violates = bool((margin <= -1e-6 * (1 + span)).any())
    if res.verdict is Verdict.HOLDS:
        assert not grid_violates, "holds contradicted by the grid"
    if res.verdict is Verdict.VIOLATED:
        assert counterexample_ok(path, prop, res.counterexample.x)
        assert np.allclose(res.counterexample.y, net.evaluate(res.counterexample.x[None]).ravel(), atol=1e-5)
    if grid_violates:
        assert res.verdict is Verdict.VIOLATED
    elif margin.min() > 1e-3 * (1 + span):
        assert res.verdict is Verdict.HOLDS


@pytest.mark.parametrize("mode", list(MODES))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), quantile=st.sampled_from([-0.05, 0.0, 0.002, 0.3, 1.05]))
@example(seed=2810, quantile=-0.05)  # ReLU splitting timed out here before its Z3 probes at depth
def test_verdicts_agree_with_grid(mode: str, seed: int, quantile: float, tmp_path) -> None:
    path, net, lo, hi, y = _net_box_grid(tmp_path, seed, (2, 8, 8, 2))
    diff = y @ np.array([1.0, -1.0])
    span = diff.max() - diff.min()
    t = diff.min() + quantile * span                      # unsafe: y0 - y1 <= t
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
    res = verify_property(net, prop, config=MODES[mode])
    _agrees_with_grid(path, net, prop, res, diff - t, span)


def test_robustness_on_cnn_with_maxpool(tmp_path) -> None:
    from nnaudit.verify.spec import robustness_property

    path = verify_nets.cnn(tmp_path, 3)
    net = load(path)
    x = np.random.default_rng(0).uniform(0, 1, (1,) + net.input_shape)
    label = int(net.predict(x)[0])
    small = robustness_property(x.ravel() - 0.001, x.ravel() + 0.001, label, 3)
    assert verify_property(net, small, config=BASE).verdict is Verdict.HOLDS
    large = robustness_property(x.ravel() - 0.5, x.ravel() + 0.5, label, 3)
    res = verify_property(net, large, config=VerifyConfig(timeout_s=5))
    assert res.verdict is not Verdict.HOLDS or res.subdomains > 0
    if res.verdict is Verdict.VIOLATED:
        assert counterexample_ok(path, large, res.counterexample.x)


@pytest.mark.parametrize("share", [True, False], ids=["shared-search", "leaf-workers"])
def test_z3_leaves_in_worker_processes(tmp_path, share: bool) -> None:
    """Two workers: one search shared by two processes, or (``share=False``) one search whose Z3
    leaves go to two worker processes."""
    path = verify_nets.mlp(tmp_path, 11, (2, 8, 8, 2))
    net = load(path)
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(-0.5, 0.5, 101)), -1).reshape(-1, 2)
    diff = net.evaluate(g) @ np.array([1.0, -1.0])
    cfg = replace(MODES["z3-only"], bab=replace(MODES["z3-only"].bab, workers=2, share=share))
    for t, want in ((diff.min() - 0.1, Verdict.HOLDS), (np.median(diff), Verdict.VIOLATED)):
        prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
        res = verify_property(net, prop, config=cfg)
        assert res.verdict is want
        assert want is Verdict.VIOLATED or res.z3_calls >= 1
        if want is Verdict.VIOLATED:
            assert counterexample_ok(path, prop, res.counterexample.x)


def test_a_z3_probe_that_runs_out_splits_on(tmp_path) -> None:
    """A sub-domain that Z3 does not decide within its probe time is split further and
    closed by bounds (without probes, or at the final depth, it would stay unknown)."""
    path = verify_nets.mlp(tmp_path, 5, (2, 8, 8, 2))
    net = load(path)
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(-0.5, 0.5, 101)), -1).reshape(-1, 2)
    t = (net.evaluate(g) @ np.array([1.0, -1.0])).min() - 0.05
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
    base = replace(BASE.bab, z3_max_depth=1, z3_probe_timeout=0.0, z3_leaf_timeout=0.0)
    probing = verify_property(net, prop, config=replace(BASE, bab=replace(base, z3_final_depth=60)))
    assert probing.verdict is Verdict.HOLDS and probing.z3_calls >= 1
    stuck = verify_property(net, prop, config=replace(BASE, bab=replace(base, z3_final_depth=1)))
    assert stuck.verdict is Verdict.UNKNOWN and "undecided by Z3" in stuck.message


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), slack=st.sampled_from([-0.05, -0.01, 0.0, 0.05, 0.3]))
@example(seed=3, slack=-0.01)  # holds by a little: 10 batches bound only their open disjuncts
@example(seed=6, slack=0.002)  # violated, found after 10 such batches
def test_relu_splitting_with_several_disjuncts_agrees_with_grid(seed: int, slack: float, tmp_path) -> None:
    """ReLU splitting on "class 0 beats the others by ``t``" (two disjuncts, each row with its
    own slopes, warm starts joined across sub-domains that closed different disjuncts, only
    the disjuncts a sub-domain has not refuted bounded)."""
    path, net, lo, hi, y = _net_box_grid(tmp_path, seed, (2, 10, 10, 3))
    gap = np.minimum(y[:, 0] - y[:, 1], y[:, 0] - y[:, 2])
    span = gap.max() - gap.min()
    t = float(gap.min() + slack * span)                    # unsafe: y0 - yk <= t for k = 1 or 2
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0, 0.0]]), np.array([-t])),
                                    (np.array([[1.0, 0.0, -1.0]]), np.array([-t]))])
    res = verify_property(net, prop, config=MODES["relu-split"])
    _agrees_with_grid(path, net, prop, res, gap - t, span)


def test_relu_split_packs_open_rows_on_a_tight_disjunctive_property(tmp_path, monkeypatch) -> None:
    """ReLU splitting bounds only the disjuncts a sub-domain has not refuted yet (verify/rowpack.py):
    the example of the test above goes through that path, and agrees with the grid."""
    from nnaudit.verify import rowpack

    packed = []
    pack = rowpack._packed
    monkeypatch.setattr(rowpack, "_packed", lambda rows: (packed.append(rows.shape), pack(rows))[1])
    test_relu_splitting_with_several_disjuncts_agrees_with_grid.hypothesis.inner_test(3, -0.01, tmp_path)
    assert packed  # called only for batches where some sub-domain has a refuted disjunct


def test_warm_starts_join_across_chunks_with_nan_for_missing_parts() -> None:
    from nnaudit.verify.bab import Chunk

    def chunk(k: int, warm):
        return Chunk(np.zeros((k, 2)), np.ones((k, 2)), np.ones((k, 2), bool), np.zeros(k, np.int64),
                      [np.zeros((k, 3), np.int8)], warm)

    a = chunk(2, {"alpha": {0: np.full((2, 1, 3), 0.5, np.float16)}, "beta": {0: np.ones((2, 1, 3), np.float16)}})
    b = chunk(1, None)
    c = chunk(1, {"alpha": {0: np.zeros((1, 1, 3), np.float16)}, "beta": {}})
    j = Chunk.join([a, b, c])
    assert j.warm["alpha"][0].shape == (4, 1, 3) and j.warm["beta"][0].shape == (4, 1, 3)
    assert np.all(j.warm["alpha"][0][:2] == 0.5) and np.isnan(j.warm["alpha"][0][2]).all()
    assert np.all(j.warm["alpha"][0][3] == 0) and np.isnan(j.warm["beta"][0][2:]).all()
    t = j.take(np.array([3, 0]))
    assert np.all(t.warm["alpha"][0][0] == 0) and np.all(t.warm["beta"][0][1] == 1)
    assert Chunk.join([b, b]).warm is None


def test_targeted_margins_are_per_disjunct_and_never_below_the_region_margin() -> None:
    import torch

    from nnaudit.verify.falsify import torch_margin
    from nnaudit.verify.spec import Region

    region = Region(((np.array([[1.0, -1.0, 0.0]]), np.array([0.0])),
                     (np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), np.array([0.5, -2.0]))))
    y = np.random.default_rng(0).normal(size=(6, 3))
    per = np.stack([(y @ c.T + d).max(axis=1) for c, d in region.disjuncts], 1)
    whole = region.margin(y)
    targets = np.array([0, 1, 2, 0, 1, 2])
    got = torch_margin(region, targets)(torch.as_tensor(y, dtype=torch.float32)).numpy()
    want = np.where(targets == 2, whole, per[np.arange(6), np.minimum(targets, 1)])
    assert np.allclose(got, want, atol=1e-5) and np.all(got >= whole - 1e-5)
    assert np.allclose(torch_margin(region)(torch.as_tensor(y, dtype=torch.float32)).numpy(), whole, atol=1e-5)


def test_falsification_goes_on_during_the_search(tmp_path) -> None:
    """With the first falsification off, a renewed round inside branch and bound finds
    the counterexample (confirmed by onnxruntime), and says so."""
    path = verify_nets.mlp(tmp_path, 8, (2, 8, 8, 2))
    net = load(path)
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(-0.5, 0.5, 101)), -1).reshape(-1, 2)
    diff = net.evaluate(g) @ np.array([1.0, -1.0])
    centre = float((net.evaluate(np.zeros((1, 2))) @ np.array([1.0, -1.0]))[0])
    t = min(float(np.quantile(diff, 0.05)), centre - 1e-3)  # the first falsification's one sample and centre miss
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.verify.falsify import falsify

    box, region = prop.cases[0]
    assert falsify(net, OnnxRuntimeModel(path), box, region, NO_FALSIFY) is None
    renewed = replace(BASE, bab=replace(BASE.bab, refalsify_after=0.0, refalsify_share=1.0))
    res = verify_property(net, prop, config=renewed)
    assert res.verdict is Verdict.VIOLATED and "falsification round 1" in res.message
    assert counterexample_ok(path, prop, res.counterexample.x)
    plain = verify_property(net, prop, config=replace(BASE, bab=replace(BASE.bab, refalsify_share=0.0)))
    assert plain.verdict is Verdict.VIOLATED and "falsification" not in plain.message
    # the message says where in the search the counterexample came from
    assert re.fullmatch(r"counterexample (at the centre or bound-minimising vertex|from Z3's model|from a search near Z3's "
                        r"model \(rounding defeated the model itself\)) of a sub-domain "
                        r"at depths? \d+(-\d+)?( of the search)?", plain.message), plain.message
    first = verify_property(net, prop, config=replace(BASE, falsify=FalsifyConfig()))
    assert first.verdict is Verdict.VIOLATED and first.message.endswith("before the search")
    assert counterexample_ok(path, prop, first.counterexample.x)


def test_a_combination_of_rows_closes_what_no_single_row_does() -> None:
    """Rows ``x + 0.5`` and ``0.5 - x`` on [-1, 1]: each is negative somewhere,
    their average is 0.5 everywhere, so the conjunction of both <= 0 is empty."""
    from nnaudit.verify.phases import combination_closes

    a = np.array([[[1.0], [-1.0]]])
    c = np.array([[0.5, 0.5]])
    box = (np.array([[-1.0]]), np.array([[1.0]]))
    assert combination_closes(a, c, *box, 1e-7).tolist() == [True]
    assert combination_closes(a, c - 0.6, *box, 1e-7).tolist() == [False]   # both <= 0 at x = 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(2, 4))
def test_combination_closes_only_boxes_where_some_row_is_positive_everywhere(seed: int, rows: int) -> None:
    """Against a grid over 2-D boxes: a closed box has no point where every row is <= 0;
    and the cheap pre-check never skips an LP that would have closed (compared with the LP alone)."""
    from scipy.optimize import linprog

    from nnaudit.verify.phases import _best_combination, combination_closes

    rng = np.random.default_rng(seed)
    p = 6
    a = rng.normal(size=(p, rows, 2))
    c = rng.normal(size=(p, rows)) * 0.5 + rng.uniform(-0.5, 0.8)  # about half the boxes close
    lo = rng.uniform(-1, 0, (p, 2))
    hi = lo + rng.uniform(0.1, 1.5, (p, 2))
    closes = combination_closes(a, c, lo, hi, 1e-7)
    t = np.linspace(0, 1, 41)
    for k in range(p):
        g = lo[k] + (hi[k] - lo[k]) * np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)
        if closes[k]:
            assert ((g @ a[k].T + c[k]).max(1) > 0).all()
        lam = _best_combination(linprog, a[k], c[k], lo[k], hi[k])
        w = lam @ a[k]
        lp_value = lam @ c[k] + np.maximum(w, 0) @ lo[k] + np.minimum(w, 0) @ hi[k]
        assert closes[k] == (lp_value > 1e-7)


@pytest.mark.parametrize("cap", [{"max_domains": 3}, {"max_queue_bytes": 3 * (16 * 2 + 1 + 8)},
                                 {"input_split_dims": 0, "max_queue_bytes": 3 * (16 * 2 + 1 + 8 + 16)}])
def test_past_the_queue_cap_the_answer_is_unknown(cap: dict, tmp_path) -> None:
    """The queue holds at most ``max_domains`` sub-domains and ``max_queue_bytes`` of them (box,
    open disjuncts, depth, and with ReLU splitting one byte per ReLU: 16 here): past either, unknown."""
    path, net, lo, hi, y = _net_box_grid(tmp_path, 14, (2, 8, 8, 2))
    t = (y @ np.array([1.0, -1.0])).min() - 1e-4           # holds, by a hair: 33 (71 ReLU-split) sub-domains
    prop = linear_property(lo, hi, [(np.array([[1.0, -1.0]]), np.array([-t]))])
    res = verify_property(net, prop, config=replace(BASE, bab=replace(BASE.bab, phase_max_unstable=0, **cap)))
    assert res.verdict is Verdict.UNKNOWN and "more than 3 open sub-domains (queue cap" in res.message
    assert verify_property(net, prop, config=BASE).verdict is Verdict.HOLDS


def test_a_batch_whose_bounds_would_end_past_the_deadline_is_not_started(tmp_path) -> None:
    """The search stops when the last batch's bounding time no longer fits before the deadline
    (a wide network's batch takes up to a second)."""
    import time

    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.verify.bab import Search
    from nnaudit.networks.lower import lower
    from nnaudit.verify.spec import Box, Region

    path, net, lo, hi, y = _net_box_grid(tmp_path, 14, (2, 8, 8, 2))
    t = (y @ np.array([1.0, -1.0])).min() - 1e-4
    region = Region(((np.array([[1.0, -1.0]]), np.array([-t])),))
    args = (lower(net), net, OnnxRuntimeModel(path), Box(lo, hi), region, BASE.bab)
    search = Search(*args, time.monotonic() + 5.0, None)
    search.batch_s = 6.0
    out = search.run()
    assert out.status is Verdict.TIMEOUT and out.subdomains == 0
    search = Search(*args, time.monotonic() + 30.0, None)
    assert search.run().status is Verdict.HOLDS and 0.0 < search.batch_s < 5.0
