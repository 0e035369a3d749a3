"""Bound propagation: every computed bound contains the true value at random
points of the box (hypothesis over random networks, boxes and methods), the
lowering is exact, and CROWN is no looser than intervals on MLPs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.bounds import output_bounds, spec_bounds
from nnaudit.networks.lower import lower

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


def test_methods_are_an_enum_and_their_names_still_work(tmp_path) -> None:
    """``method`` takes a :class:`BoundMethod` or its value as a string, with the same bounds;
    an unknown name is refused with the known ones."""
    import torch

    from nnaudit.verify.bounds import BoundMethod, compute_bounds, spec_lower

    net = _net("mlp", tmp_path, 2)
    lo, hi = np.full((2, 3), -0.5), np.full((2, 3), 0.3)
    for m in BoundMethod:
        assert np.array_equal(np.stack(output_bounds(net, lo, hi, method=m)),
                              np.stack(output_bounds(net, lo, hi, method=m.value)))
    low = lower(net)
    with pytest.raises(ValueError, match="expected method 'interval' or 'crown', got 'deeppoly'"):
        compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), method="deeppoly")
    b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi))
    with pytest.raises(ValueError, match="got 'ibp'"):
        spec_lower(low, b, torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), method="ibp")


def test_the_lowered_form_and_its_torch_matrices_are_cached_on_their_objects(tmp_path) -> None:
    """A network keeps its lowered form, and the lowered form its torch matrices (per dtype):
    no module-level table keyed by ``id``, whose entries could outlive or be mistaken for their
    objects.  A network changed by ``dataclasses.replace`` is lowered afresh."""
    from dataclasses import replace

    import torch

    from nnaudit.verify.edges import edge_mats

    net = _net("mlp", tmp_path, 0)
    low = lower(net)
    assert lower(net) is low and lower(low) is low
    assert lower(replace(net)) is not low
    mats = edge_mats(low)
    assert edge_mats(low) is mats and edge_mats(low, torch.float32) is not mats
    cpu = torch.device("cpu")  # keyed by device too: a GPU run makes its own copies
    assert set(low.cache) == {("edge_mats", torch.float64, cpu), ("edge_mats", torch.float32, cpu)}
    assert all(t.dtype == torch.float32 for mats32 in edge_mats(low, torch.float32).values()
               for t in mats32[0].values())


@_S
@given(seed=st.integers(0, 10_000), n_split=st.integers(1, 8))
def test_alpha_beta_bounds_hold_where_the_splits_hold(seed: int, n_split: int, tmp_path) -> None:
    """beta-CROWN: with ReLU phases fixed by splits, the optimised bound stays
    below the true value at every sampled point that satisfies the splits."""
    import torch

    from nnaudit.verify.bounds import compute_bounds, spec_lower

    net = _net("mlp", tmp_path, seed % 7)
    low = lower(net)
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, (1, 3))
    hi = lo + rng.uniform(0.2, 1.0, (1, 3))
    anchor = lo + (hi - lo) * rng.random((1, 3))            # the splits follow this point's phases: non-empty
    pres = low.pre_activations(anchor)
    splits = []
    for node, pre in zip(low.nodes, pres):
        s = np.zeros((1, node.pre.size), np.int8)
        pick = rng.choice(node.pre.size, size=min(n_split, node.pre.size), replace=False)
        s[0, pick] = np.where(pre[0, pick] >= 0, 1, -1)
        splits.append(s)
    ts = [torch.as_tensor(s) for s in splits]
    c = torch.as_tensor(rng.normal(size=(2, net.output_size)))
    d = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), splits=ts)
        plain = spec_lower(low, b, c, d).lower.numpy()
    with torch.enable_grad():
        tuned = spec_lower(low, b, c, d, alpha_steps=30, splits=ts).lower.detach().numpy()
    assert np.all(tuned >= plain - 1e-12)
    pts = np.concatenate([anchor, lo + (hi - lo) * rng.random((4000, 3))])
    ok = np.ones(len(pts), bool)
    for s, pre in zip(splits, low.pre_activations(pts)):
        ok &= np.all((s == 0) | ((s > 0) & (pre >= 0)) | ((s < 0) & (pre <= 0)), axis=1)
    y = low.evaluate(pts[ok]) @ c.numpy().T
    assert ok[0] and np.all(y >= tuned - 1e-9)


def test_alpha_on_intermediate_bounds_is_sound_and_tighter(tmp_path) -> None:
    import torch

    from nnaudit.verify.bounds import compute_bounds

    net = load(verify_nets.mlp(tmp_path, 4, (3, 16, 16, 16, 4)))
    low = lower(net)
    rng = np.random.default_rng(4)
    lo = rng.uniform(-1, 0, (1, 3))
    hi = lo + 1.5
    with torch.no_grad():
        plain = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi))
        tuned = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), alpha_steps=20)
    pres = low.pre_activations(lo + (hi - lo) * rng.random((5000, 3)))
    width = lambda b: sum(float((h - l).sum()) for l, h in zip(b.pre_lo, b.pre_hi))  # noqa: E731
    assert width(tuned) <= width(plain) + 1e-9
    for k, pre in enumerate(pres):
        assert np.all(pre >= tuned.pre_lo[k].numpy() - 1e-9) and np.all(pre <= tuned.pre_hi[k].numpy() + 1e-9)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "residual"])
@pytest.mark.parametrize("share", [0.0, 1.0])
@_S
@given(seed=st.integers(0, 10_000))
def test_pairwise_and_batchwide_refinement_are_both_sound(kind: str, share: float, seed: int, tmp_path,
                                                          monkeypatch) -> None:
    """Intermediate bounds refined per (sub-domain, neuron) pair (share 1.0) or
    per neuron of the whole batch (share 0.0), in chunks of sub-domains, contain
    every sampled pre-activation, and the spec bounds contain the sampled outputs."""
    import torch

    from nnaudit.verify import bounds as bounds_mod

    monkeypatch.setattr(bounds_mod, "PAIRS_SHARE", share)
    monkeypatch.setattr(bounds_mod, "BOUND_CHUNK", 4)  # 6 sub-domains: bounded as 4 + 2, then joined
    net = _net(kind, tmp_path, seed % 7)
    low = lower(net)
    rng = np.random.default_rng(seed)
    d, n = 6, low.input_size
    lo = rng.uniform(-1, 0.5, (d, n))
    hi = lo + rng.uniform(0.05, 1.0, (d, n))
    with torch.no_grad():
        b = bounds_mod.compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), intermediate="backward")
        c = torch.as_tensor(rng.normal(size=(2, low.output.size)))
        spec = bounds_mod.spec_lower(low, b, c, torch.zeros(2, dtype=torch.float64)).lower.numpy()
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((d, 300, n))
    for k, pre in enumerate(low.pre_activations(pts.reshape(-1, n))):
        pre = pre.reshape(d, 300, -1)
        assert np.all(pre >= b.pre_lo[k].numpy()[:, None] - 1e-9) and np.all(pre <= b.pre_hi[k].numpy()[:, None] + 1e-9)
    y = low.evaluate(pts.reshape(-1, n)).reshape(d, 300, -1)
    assert np.all(y @ c.numpy().T >= spec[:, None] - 1e-9)


ACAS = Path(__file__).resolve().parents[1] / "data" / "vnncomp" / "acasxu"


def _acas_boxes(n: int, seed: int) -> tuple:
    """ACAS Xu 4_7 lowered and ``n`` random boxes of 1/8 the width of prop 1's box."""
    from nnaudit.verify.vnnlib import parse

    low = lower(load(ACAS / "onnx" / "ACASXU_run2a_4_7_batch_2000.onnx"))
    box = parse(ACAS / "vnnlib" / "prop_1.vnnlib").cases[0][0]
    full_lo, full_hi = np.asarray(box.lower, float).ravel(), np.asarray(box.upper, float).ravel()
    width = (full_hi - full_lo) / 8
    lo = full_lo + np.random.default_rng(seed).random((n, len(full_lo))) * (full_hi - full_lo - width)
    return low, lo, lo + width


def test_every_neuron_that_may_be_active_gets_its_backward_bound() -> None:
    """An active neuron's relaxation is exact, but its bounds are its output's, which
    the next layer's interval bounds start from: every neuron that may be active
    (upper bound > 0) has bounds at least as tight as its own backward substitution
    through the relaxations before it.  (Refining only the unstable ones left active
    neurons of ACAS Xu's last layer 1246 looser and took 4_7 prop 1 three times the
    sub-domains.)"""
    import torch

    from nnaudit.verify import bounds as bounds_mod
    from nnaudit.verify.backward import backward

    low, lo, hi = _acas_boxes(12, 0)
    with torch.no_grad():
        b = bounds_mod.compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi))
    active_checked = 0
    for k, node in enumerate(low.nodes):
        if k == 0 or node.kind != "relu":  # the first layer's interval bounds are exact
            continue
        eye = torch.eye(node.pre.size, dtype=torch.float64)
        with torch.no_grad():
            val, _, _ = backward(low, b, k, node.pre, torch.cat([eye, -eye]))
        n = node.pre.size
        own_lo, own_hi = val[:, :n].numpy(), -val[:, n:].numpy()
        may = b.pre_hi[k].numpy() > 0
        assert np.all(b.pre_lo[k].numpy()[may] >= own_lo[may] - 1e-9)
        assert np.all(b.pre_hi[k].numpy()[may] <= own_hi[may] + 1e-9)
        active_checked += int((may & (b.pre_lo[k].numpy() > 0)).sum())
    assert active_checked > 50  # the claim is about active neurons: there are many in these boxes


@pytest.mark.parametrize("relu_split", [None, "root", "same"])
def test_bounds_do_not_depend_on_how_the_batch_is_chunked(relu_split: str | None, monkeypatch) -> None:
    """Bounding 23 sub-domains in chunks of 5 (the tail one of 3) gives every bound that
    matters (the spec bound; pre-activation bounds of neurons that may be active) as in
    one pass: with input splitting, and with ReLU splits under a parent's bounds (of a box
    holding them all, or of each sub-domain before its splits)."""
    import torch

    from nnaudit.verify import bounds as bounds_mod

    low, lo, hi = _acas_boxes(23, 1)
    x_lo, x_hi = torch.as_tensor(lo), torch.as_tensor(hi)
    kw: dict = {}
    if relu_split:
        rng = np.random.default_rng(2)
        kw["splits"] = [torch.as_tensor((rng.integers(-1, 2, (23, n.pre.size)) * (rng.random((23, 1)) < 0.3)).astype(np.int8))
                        for n in low.nodes]
        if relu_split == "root":
            kw["parent"] = bounds_mod.compute_bounds(low, x_lo.min(0, keepdim=True).values,
                                                     x_hi.max(0, keepdim=True).values)
            kw["intermediate"] = "none"
        else:
            kw["parent"] = bounds_mod.compute_bounds(low, x_lo, x_hi)
    c = torch.as_tensor(np.random.default_rng(3).normal(size=(2, low.output.size)))
    out = {}
    for chunk in (5, 10_000):
        monkeypatch.setattr(bounds_mod, "BOUND_CHUNK", chunk)
        with torch.no_grad():
            b = bounds_mod.compute_bounds(low, x_lo, x_hi, **kw)
            out[chunk] = (b, bounds_mod.spec_lower(low, b, c, torch.zeros(2, dtype=torch.float64)).lower.numpy())
    (b5, s5), (b1, s1) = out[5], out[10_000]
    assert np.allclose(s5, s1, rtol=0, atol=1e-9)
    assert np.array_equal(b5.feasible.numpy(), b1.feasible.numpy())
    for k in range(len(low.nodes)):
        may = b1.pre_hi[k].numpy() > 0
        assert np.array_equal(may, b5.pre_hi[k].numpy() > 0)
        for got, want in ((b5.pre_lo[k], b1.pre_lo[k]), (b5.pre_hi[k], b1.pre_hi[k])):
            assert np.allclose(got.numpy()[may], want.numpy()[may], rtol=0, atol=1e-9)


def test_a_layer_without_bound_rules_is_refused_by_name(tmp_path) -> None:
    """An op that is neither affine nor relaxable stops the verifier before any work, naming the
    layer and the non-linear ops it does support."""
    from dataclasses import replace

    from nnaudit.errors import SolverError
    from nnaudit.networks.ir import Layer

    class Softsign(Layer):
        kind = "softsign"

        def forward(self, x: np.ndarray) -> np.ndarray:
            return x / (1 + np.abs(x))

    net = _net("mlp", tmp_path, 0)
    i = next(i for i, layer in enumerate(net.layers) if layer.kind == "relu")
    old = net.layers[i]
    odd = replace(net, layers=net.layers[:i] + [Softsign(old.name, old.inputs, old.output)] + net.layers[i + 1:])
    with pytest.raises(SolverError, match=rf"{old.name!r} \(Softsign\).*maxpool, relu, sigmoid, tanh"):
        lower(odd)


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-60, 60), width=st.floats(0.0, 80.0), seed=st.integers(0, 1000))
def test_sigmoid_and_tanh_lines_enclose_the_function(op: str, lo: float, width: float, seed: int) -> None:
    """The relaxation's two lines hold at the ends, at dense samples and near the tangent points
    (where a line touches the curve), from narrow intervals to saturated ones."""
    import torch

    from nnaudit.networks.ops.activations import Sigmoid, Tanh

    layer = {"Sigmoid": Sigmoid, "Tanh": Tanh}[op]("a", ("x",), "y")
    f = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh}[op]
    lo_t = torch.tensor([[lo]], dtype=torch.float64)
    hi_t = lo_t + width
    k, b_lo, b_hi = layer.relax(lo_t, hi_t, in_shape=(1,))
    z = lo_t + width * torch.cat([torch.linspace(0, 1, 2001, dtype=torch.float64),
                                  torch.rand(500, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)])
    t = layer._tangent_at(k.clamp(min=1e-300))
    z = torch.cat([z[0], (t + torch.linspace(-1e-3, 1e-3, 21, dtype=torch.float64)).flatten(),
                   (-t + torch.linspace(-1e-3, 1e-3, 21, dtype=torch.float64)).flatten()]).clamp(lo, lo + width)
    g = f(z)
    assert torch.all(g >= k[0, 0] * z + b_lo[0, 0]) and torch.all(g <= k[0, 0] * z + b_hi[0, 0])
    assert float(k) >= 0


@pytest.mark.parametrize("act", ["Sigmoid", "Tanh"])
def test_sigmoid_and_tanh_linear_bounds_are_tighter_than_constants(act: str, tmp_path) -> None:
    """On a small box CROWN through the lines beats interval bounds (the constants it had before)."""
    net = load(verify_nets.mlp(tmp_path, 5, (3, 8, 8, 2), act=act))
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, (4, 3))
    lo, hi = centre - 0.05, centre + 0.05
    ilo, ihi = output_bounds(net, lo, hi, method="interval")
    clo, chi = output_bounds(net, lo, hi, method="crown")
    assert np.all(chi - clo <= ihi - ilo + 1e-12) and np.mean(chi - clo) < 0.8 * np.mean(ihi - ilo)
