"""The optimised bounds of ReLU splitting: the linear form they return is a
real lower bound (the LP closing builds on it), warm starts from any slopes
and multipliers stay sound and resume the optimisation, the hand-written Adam
is Adam, and intermediate bounds refined under a parent skip only what cannot
improve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.alpha import Adam
from nnaudit.verify.bounds import LayerBounds, compute_bounds, spec_lower
from nnaudit.networks.lower import lower

import verify_nets

_S = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mlp(tmp, seed: int, sizes=(3, 8, 8, 4)):
    return lower(load(verify_nets.mlp(tmp, seed % 7, sizes)))


def _splits_through(low, rng, anchor: np.ndarray, per_node: int) -> list[np.ndarray]:
    """Random ReLU phases that ``anchor`` ``(D, n)`` satisfies (so no sub-domain is empty)."""
    out = []
    for node, pre in zip(low.nodes, low.pre_activations(anchor)):
        s = np.zeros((len(anchor), node.pre.size), np.int8)
        for i in range(len(anchor)):
            pick = rng.choice(node.pre.size, size=min(per_node, node.pre.size), replace=False)
            s[i, pick] = np.where(pre[i, pick] >= 0, 1, -1)
        out.append(s)
    return out


def _satisfy(low, splits: list[np.ndarray], pts: np.ndarray) -> np.ndarray:
    ok = np.ones(len(pts), bool)
    for s, pre in zip(splits, low.pre_activations(pts)):
        ok &= np.all((s == 0) | ((s > 0) & (pre >= 0)) | ((s < 0) & (pre <= 0)), axis=1)
    return ok


@_S
@given(seed=st.integers(0, 10_000), steps=st.sampled_from([0, 8]), method=st.sampled_from(["crown", "interval"]))
def test_the_linear_form_is_a_lower_bound_everywhere(seed: int, steps: int, method: str, tmp_path) -> None:
    """``a_in @ x + (lin_lower - min a_in @ x)`` is below the true value at every sampled
    point.  ``lower`` itself is the best of several bounds and does not back a linear form
    (see the pinned case below); the LP that closes disjuncts by combining rows needs one."""
    low = _mlp(tmp_path, seed)
    rng = np.random.default_rng(seed)
    d = 8
    lo = rng.uniform(-1, 1, (d, 3))
    hi = lo + rng.uniform(0.001, 1.0, (d, 3))
    c = torch.as_tensor(rng.normal(size=(3, 4)))
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), method=method)
    with torch.enable_grad():
        sb = spec_lower(low, b, c, torch.zeros(3, dtype=torch.float64), method=method, alpha_steps=steps)
    a, lin = sb.a_in.detach().numpy(), sb.lin_lower.detach().numpy()
    assert np.all(sb.lower.detach().numpy() >= lin - 1e-12)
    least = (np.maximum(a, 0) * lo[:, None] + np.minimum(a, 0) * hi[:, None]).sum(-1)
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((d, 400, 3))
    y = low.evaluate(pts.reshape(-1, 3)).reshape(d, 400, -1) @ c.numpy().T
    assert np.all(np.einsum("drn,dpn->dpr", a, pts) + (lin - least)[:, None] <= y + 1e-9)


def test_the_best_bound_does_not_back_a_linear_form(tmp_path) -> None:
    """Pinned case where the interval bound beats CROWN on a row: a linear form built from
    ``lower`` (what the LP closing did before ``lin_lower``) overshoots the true value."""
    low = _mlp(tmp_path, 292)
    rng = np.random.default_rng(292)
    lo = rng.uniform(-1, 1, (8, 3))
    hi = lo + rng.uniform(0.001, 1.0, (8, 3))
    c = torch.as_tensor(rng.normal(size=(3, 4)))
    with torch.no_grad():
        sb = spec_lower(low, compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi)), c,
                        torch.zeros(3, dtype=torch.float64))
    a, best = sb.a_in.numpy(), sb.lower.numpy()
    assert np.any(best > sb.lin_lower.numpy() + 1e-9)
    least = (np.maximum(a, 0) * lo[:, None] + np.minimum(a, 0) * hi[:, None]).sum(-1)
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((8, 500, 3))
    y = low.evaluate(pts.reshape(-1, 3)).reshape(8, 500, -1) @ c.numpy().T
    assert np.any(np.einsum("drn,dpn->dpr", a, pts) + (best - least)[:, None] > y + 1e-9)


@_S
@given(seed=st.integers(0, 10_000), per_node=st.integers(1, 6), nan_share=st.floats(0.0, 1.0))
def test_a_warm_start_from_any_values_is_sound(seed: int, per_node: int, nan_share: float, tmp_path) -> None:
    """Slopes outside [0, 1], negative multipliers and NaN (the default start) in the warm
    start: the bound still holds at every sampled point that satisfies the splits."""
    low = _mlp(tmp_path, seed)
    rng = np.random.default_rng(seed)
    d, r = 3, 2
    lo = rng.uniform(-1, 0.5, (d, 3))
    hi = lo + rng.uniform(0.2, 1.0, (d, 3))
    anchor = lo + (hi - lo) * rng.random((d, 3))
    splits = _splits_through(low, rng, anchor, per_node)
    ts = [torch.as_tensor(s) for s in splits]

    def noise(n: int) -> torch.Tensor:
        v = rng.uniform(-1.0, 2.0, (d, r, n)).astype(np.float32)
        v[rng.random(v.shape) < nan_share] = np.nan
        return torch.as_tensor(v)

    init = {"alpha": {k: noise(node.pre.size) for k, node in enumerate(low.nodes)},
            "beta": {k: noise(node.pre.size) for k, node in enumerate(low.nodes)}}
    c = torch.as_tensor(rng.normal(size=(r, 4)))
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), splits=ts)
    with torch.enable_grad():
        sb = spec_lower(low, b, c, torch.zeros(r, dtype=torch.float64), alpha_steps=3, splits=ts, init=init)
    bound = sb.lower.detach().numpy()
    for i in range(d):
        pts = np.concatenate([anchor[i:i + 1], lo[i] + (hi[i] - lo[i]) * rng.random((3000, 3))])
        ok = _satisfy(low, [s[i:i + 1] for s in splits], pts)
        assert ok[0]
        assert np.all(low.evaluate(pts[ok]) @ c.numpy().T >= bound[i] - 1e-9)


def test_a_warm_start_resumes_the_optimisation(tmp_path) -> None:
    """Two steps from the state of 30 steps bound at least as well as that state itself and
    better than two steps from the default start (the start counts as an iterate)."""
    low = _mlp(tmp_path, 4, (3, 16, 16, 16, 4))
    rng = np.random.default_rng(4)
    lo = rng.uniform(-1, 0, (2, 3))
    hi = lo + 1.5
    c = torch.as_tensor(rng.normal(size=(3, 4)))
    d = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi))
    with torch.enable_grad():
        long = spec_lower(low, b, c, d, alpha_steps=30)
        cold = spec_lower(low, b, c, d, alpha_steps=2).lower.detach().numpy()
        at_state = spec_lower(low, b, c, d, alpha_steps=1, init=long.state).lower.detach().numpy()
        warm = spec_lower(low, b, c, d, alpha_steps=2, init=long.state).lower.detach().numpy()
    assert np.all(warm >= at_state - 1e-6)
    assert warm.sum() > cold.sum() + 1e-3


def test_adam_matches_torch() -> None:
    rng = np.random.default_rng(0)
    target = torch.as_tensor(rng.normal(size=(4, 5)))
    ours = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    ref = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    opt, ref_opt = Adam([ours], 0.1), torch.optim.Adam([ref], lr=0.1)
    for _ in range(25):
        loss = lambda p: ((p - target) ** 4).sum() + (p * target).sum()  # noqa: E731
        (g,) = torch.autograd.grad(loss(ours), [ours])
        with torch.no_grad():
            opt.step((g,))
        ref_opt.zero_grad()
        loss(ref).backward()
        ref_opt.step()
    assert torch.allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_refinement_under_a_parent_skips_only_what_cannot_improve(share: float, tmp_path, monkeypatch) -> None:
    """With the root's (alpha-CROWN) bounds as parent, skipping the refinement of sub-domains
    not split before a node changes no bound, and all bounds contain every sampled
    pre-activation that satisfies the splits."""
    from nnaudit.verify import bounds as bounds_mod

    monkeypatch.setattr(bounds_mod, "PAIRS_SHARE", share)
    low = _mlp(tmp_path, 2, (3, 12, 12, 12, 4))
    rng = np.random.default_rng(2)
    lo, hi = np.full((1, 3), -1.0), np.full((1, 3), 1.0)
    with torch.no_grad():
        root = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), alpha_steps=10)
    d = 6
    anchor = lo + (hi - lo) * rng.random((d, 3))
    splits = _splits_through(low, rng, anchor, 3)
    splits[0][:3] = 0                                      # sub-domains 0-2: nothing split before node 1
    grow = lambda ts: [t.expand(d, -1) for t in ts]  # noqa: E731
    parent = LayerBounds(root.x_lo.expand(d, -1), root.x_hi.expand(d, -1), grow(root.pre_lo), grow(root.pre_hi),
                         grow(root.out_lo), grow(root.out_hi), root.feasible.expand(d), [])
    ts = [torch.as_tensor(s) for s in splits]
    x_lo, x_hi = torch.as_tensor(np.repeat(lo, d, 0)), torch.as_tensor(np.repeat(hi, d, 0))
    results = {}
    for skip in (True, False):
        monkeypatch.setattr(bounds_mod, "SKIP_UNSPLIT", skip)
        with torch.no_grad():
            results[skip] = compute_bounds(low, x_lo, x_hi, splits=ts, parent=parent, intermediate="backward")
    b = results[True]
    for k in range(len(low.nodes)):
        assert torch.allclose(b.pre_lo[k], results[False].pre_lo[k], rtol=0, atol=1e-12)
        assert torch.allclose(b.pre_hi[k], results[False].pre_hi[k], rtol=0, atol=1e-12)
    assert np.any((b.pre_hi[2][3:] < parent.pre_hi[2][3:] - 1e-9).numpy())  # the refinement did tighten some
    pts = lo + (hi - lo) * rng.random((20_000, 3))
    pres = low.pre_activations(pts)
    for i in range(d):
        ok = _satisfy(low, [s[i:i + 1] for s in splits], pts)
        for k, pre in enumerate(pres):
            assert np.all(pre[ok] >= b.pre_lo[k][i].numpy() - 1e-9) and np.all(pre[ok] <= b.pre_hi[k][i].numpy() + 1e-9)


def test_a_parent_of_a_larger_box_refines_every_sub_domain(tmp_path, monkeypatch) -> None:
    """The skip needs the parent's box to be the sub-domain's: under a larger one, unsplit
    sub-domains still tighten (here: no splits at all, so the skip would keep the parent's)."""
    from nnaudit.verify import bounds as bounds_mod

    low = _mlp(tmp_path, 5, (3, 12, 12, 4))
    with torch.no_grad():
        root = compute_bounds(low, torch.full((1, 3), -1.0, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64))
    small_lo, small_hi = torch.full((2, 3), -0.3, dtype=torch.float64), torch.full((2, 3), 0.2, dtype=torch.float64)
    none = [torch.zeros(2, n.pre.size, dtype=torch.int8) for n in low.nodes]
    results = {}
    for skip in (True, False):
        monkeypatch.setattr(bounds_mod, "SKIP_UNSPLIT", skip)
        with torch.no_grad():
            results[skip] = compute_bounds(low, small_lo, small_hi, splits=none, parent=root, intermediate="backward")
    assert torch.equal(results[True].pre_hi[1], results[False].pre_hi[1])
    assert bool((results[True].pre_hi[1] < root.pre_hi[1] - 1e-6).any())



def _batch(tmp_path, seed: int, d: int = 24, per_node: int = 2):  # noqa: ANN202
    """A network, ``d`` random boxes with ReLU splits through an anchor point, and their bounds."""
    low = _mlp(tmp_path, seed)
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, (d, 3))
    hi = lo + rng.uniform(0.05, 0.8, (d, 3))
    anchor = lo + (hi - lo) * rng.random((d, 3))
    splits = _splits_through(low, rng, anchor, per_node)
    ts = [torch.as_tensor(s) for s in splits]
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), splits=ts)
    return low, rng, lo, hi, anchor, splits, ts, b


def _optimised(low, b, c, d, ts, share: float, monkeypatch) -> tuple[np.ndarray, list[int]]:  # noqa: ANN001
    """spec_lower with 12 alpha-beta steps and ``DROP_SHARE = share``: the bounds, and the number of
    sub-domains of every backward pass it ran."""
    from nnaudit.verify import alpha

    sizes: list[int] = []
    real = alpha.backward

    def spy(low_, bounds, *args, **kwargs):  # noqa: ANN001, ANN202
        sizes.append(bounds.x_lo.shape[0])
        return real(low_, bounds, *args, **kwargs)

    monkeypatch.setattr(alpha, "backward", spy)
    monkeypatch.setattr(alpha, "DROP_SHARE", share)
    with torch.enable_grad():
        out = spec_lower(low, b, c, d, alpha_steps=12, splits=ts).lower.detach().numpy()
    monkeypatch.undo()
    return out, sizes


@_S
@given(seed=st.integers(0, 10_000), per_node=st.integers(0, 4))
def test_proved_sub_domains_leave_the_optimiser_soundly(seed: int, per_node: int, tmp_path, monkeypatch) -> None:
    """A sub-domain whose rows are all proved stops being optimised (verify.alpha._ascend): the
    bounds still hold at every sampled point that satisfies the splits, and every sub-domain the
    full optimisation proves with some margin is still proved."""
    low, rng, lo, hi, anchor, splits, ts, b = _batch(tmp_path, seed, per_node=per_node)
    c = torch.as_tensor(rng.normal(size=(2, 4)))
    zero = torch.zeros(2, dtype=torch.float64)
    full, _ = _optimised(low, b, c, zero, ts, 2.0, monkeypatch)        # DROP_SHARE 2: nothing ever leaves
    d = torch.as_tensor(-np.median(full, axis=0))                      # about half the sub-domains proved
    whole, _ = _optimised(low, b, c, d, ts, 2.0, monkeypatch)
    pruned, sizes = _optimised(low, b, c, d, ts, 0.125, monkeypatch)
    assert sizes[-1] == len(lo)                                        # the bound: every sub-domain, in float64
    assert np.all(pruned[(whole > 1e-3).all(axis=1)] > 0)
    for i in range(len(lo)):
        pts = np.concatenate([anchor[i:i + 1], lo[i] + (hi[i] - lo[i]) * rng.random((2000, 3))])
        ok = _satisfy(low, [s[i:i + 1] for s in splits], pts)
        assert np.all(low.evaluate(pts[ok]) @ c.numpy().T + d.numpy() >= pruned[i] - 1e-9)


def test_the_optimiser_runs_on_fewer_sub_domains_once_some_are_proved(tmp_path, monkeypatch) -> None:
    low, rng, lo, hi, anchor, splits, ts, b = _batch(tmp_path, 11, d=64)
    c = torch.as_tensor(rng.normal(size=(2, 4)))
    full, _ = _optimised(low, b, c, torch.zeros(2, dtype=torch.float64), ts, 2.0, monkeypatch)
    d = torch.as_tensor(-np.median(full, axis=0))
    whole, every = _optimised(low, b, c, d, ts, 2.0, monkeypatch)
    pruned, sizes = _optimised(low, b, c, d, ts, 0.125, monkeypatch)
    assert set(every) == {64} and min(sizes) < 64 and sizes[-1] == 64
    assert ((pruned > 0).all(axis=1) >= (whole > 1e-3).all(axis=1)).all()
