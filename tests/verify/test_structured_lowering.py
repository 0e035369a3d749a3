"""Wide layers kept structured by the lowering (issue #27): implicit identities, reshapes passed
through, convolutions and average pools as convolutions.  Forced on small nets (``dense_bytes=0``),
the structured form computes what the network does, and its bounds are the dense form's and
contain sampled outputs (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conv_nets
import verify_nets
from nnaudit.networks import load
from nnaudit.networks.lower import Eye, _lower, lower
from nnaudit.networks.ops.conv import ConvMap
from nnaudit.verify.bounds import compute_bounds, output_bounds, spec_bounds

_S = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _structured(net):
    low = _lower(net, dense_bytes=0)
    kinds = {type(m) for form in [n.pre for n in low.nodes] + [low.output] for m in form.mats.values()}
    return low, kinds


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@_S
@given(seed=st.integers(0, 10_000), stride=st.sampled_from([1, 2]), pads=st.sampled_from([0, 1]),
       radius=st.floats(0.001, 0.5), method=st.sampled_from(["interval", "crown"]))
def test_structured_bounds_are_the_dense_ones_and_contain_samples(pool: str, seed: int, stride: int, pads: int,
                                                                  radius: float, method: str, tmp_path) -> None:
    net = load(conv_nets.small_conv(tmp_path, seed % 5, pool, stride, pads))
    low, kinds = _structured(net)
    assert ConvMap in kinds and (Eye in kinds or pool == "AveragePool")  # the pool reads the ReLUs by a ConvMap
    rng = np.random.default_rng(seed)
    d = 3
    centre = rng.uniform(-1, 1, (d,) + net.input_shape)
    lo, hi = centre - radius * rng.random(centre.shape), centre + radius * rng.random(centre.shape)
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((d, 48) + net.input_shape)
    pts[:, 0], pts[:, 1] = lo, hi
    flat = pts.reshape(d * 48, -1)
    y = net.evaluate(pts.reshape((-1,) + net.input_shape)).reshape(d, 48, -1)
    assert np.allclose(low.evaluate(flat).reshape(d, 48, -1), y, atol=1e-9)
    blo, bhi = output_bounds(low, lo, hi, method=method)
    dlo, dhi = output_bounds(lower(net), lo, hi, method=method)
    assert np.allclose(blo, dlo, atol=1e-8) and np.allclose(bhi, dhi, atol=1e-8)
    assert np.all(y >= blo[:, None] - 1e-9) and np.all(y <= bhi[:, None] + 1e-9)
    c, off = rng.normal(size=(2, net.output_size)), rng.normal(size=2)
    lb = spec_bounds(low, lo, hi, c, off, method=method, alpha_steps=3 if method == "crown" else 0)
    assert np.all(y @ c.T + off >= lb[:, None] - 1e-9)


def test_pairwise_refinement_through_a_convolution_map_matches_the_dense_one(tmp_path) -> None:
    """Refinement per (sub-domain, neuron) pair reads rows of ``M.T``; through a ConvMap they are
    computed by its transpose."""
    net = load(verify_nets.cnn(tmp_path, 1))
    low, _ = _structured(net)
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, (4, net.input_size))
    lo, hi = torch.as_tensor(centre - 0.3), torch.as_tensor(centre + 0.3)
    with torch.no_grad():
        a = compute_bounds(low, lo, hi, intermediate="backward")
        b = compute_bounds(lower(net), lo, hi, intermediate="backward")
    for k in range(len(low.nodes)):
        assert torch.allclose(a.pre_lo[k], b.pre_lo[k], atol=1e-8) and torch.allclose(a.pre_hi[k], b.pre_hi[k], atol=1e-8)


def test_wide_layers_are_never_densified(tmp_path) -> None:
    """The issue's net: its 23,328 ReLU outputs stay an implicit identity, no n x n matrix is made."""
    net = load(conv_nets.mnist_conv(tmp_path, 0, "AveragePool"))
    low = lower(net)
    sizes = [m.shape for form in [n.pre for n in low.nodes] + [low.output] for m in form.mats.values()
             if isinstance(m, np.ndarray)]
    assert all(r * c * 8 <= 64 << 20 for r, c in sizes), sizes
    x = np.random.default_rng(0).random((2, 784))
    assert np.allclose(low.evaluate(x), net.evaluate(x.reshape(2, 1, 28, 28)).reshape(2, -1), atol=1e-9)


@pytest.mark.parametrize("kernel,strides,pads,dilations", [
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 3), (2, 1), (0, 1, 2, 0), (1, 2)),
    ((4, 4), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((3, 2), (3, 2), (2, 0, 0, 1), (2, 1)),
])
def test_a_convolution_map_is_its_dense_matrix_both_ways(kernel, strides, pads, dilations) -> None:
    """``x @ M``, ``a @ M.T``, ``|M|``, ``M+``, ``M-`` and columns of a ConvMap against the dense
    matrix NumPy's convolution gives, with asymmetric pads, strides and dilations (the transpose
    crops the padding and fills the rows no window reaches)."""
    from nnaudit.networks.ir import Layer
    from nnaudit.networks.ops.conv import Conv
    from nnaudit.networks.ops.spatial import Window2d

    rng = np.random.default_rng(sum(kernel) + sum(pads))
    layer = Conv("c", ("x",), "y", rng.normal(size=(4, 3) + kernel), rng.normal(size=4),
                 Window2d(kernel, strides, pads, dilations))
    in_shape = (1, 3, 9, 8)
    out_shape = layer.forward(np.zeros(in_shape)).shape
    (dense,), bias = Layer.linear_form(layer, [in_shape], out_shape)  # the generic probe, independent of ConvMap
    (m,), bias_m = layer.linear_map([in_shape], out_shape)
    assert np.allclose(bias_m, bias)
    x, a = rng.normal(size=(5, dense.shape[0])), rng.normal(size=(5, dense.shape[1]))
    assert np.allclose(x @ m, x @ dense) and np.allclose(a @ m.T, a @ dense.T)
    for part, ref in ((m.abs(), np.abs(dense)), (m.pos(), np.maximum(dense, 0)), (m.neg(), np.minimum(dense, 0))):
        assert np.allclose(x @ part, x @ ref) and np.allclose(a @ part.T, a @ ref.T)
    assert np.allclose(m.column(7), dense[:, 7])
    xt = torch.as_tensor(x[None])  # torch tensors with leading batch dims, as the bounds use them
    assert torch.allclose(xt @ m, torch.as_tensor(x @ dense)[None])


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 0, 1, 1)])
def test_an_average_pool_map_is_its_dense_matrix_both_ways(count_include_pad: bool, pads) -> None:
    from nnaudit.networks.ir import Layer
    from nnaudit.networks.ops.pool import AveragePool
    from nnaudit.networks.ops.spatial import Window2d

    layer = AveragePool("a", ("x",), "y", Window2d((3, 2), (2, 1), pads, (1, 1)), count_include_pad)
    in_shape = (1, 3, 7, 8)
    out_shape = layer.forward(np.zeros(in_shape)).shape
    (dense,), _ = Layer.linear_form(layer, [in_shape], out_shape)
    (m,), _ = layer.linear_map([in_shape], out_shape)
    rng = np.random.default_rng(0)
    x, a = rng.normal(size=(4, dense.shape[0])), rng.normal(size=(4, dense.shape[1]))
    assert np.allclose(x @ m, x @ dense) and np.allclose(a @ m.T, a @ dense.T)
    assert np.allclose(x @ m.abs(), x @ np.abs(dense)) and np.allclose(a @ m.neg().T, 0.0)


def test_each_threshold_has_its_own_cached_lowering(tmp_path) -> None:
    net = load(verify_nets.cnn(tmp_path, 0))
    dense, compact = lower(net), lower(net, structured_bytes=0)
    assert lower(net) is dense and lower(net, structured_bytes=0) is compact and compact is not dense
    assert all(isinstance(m, np.ndarray) for n in dense.nodes for m in n.pre.mats.values())
    assert any(isinstance(m, ConvMap) for n in compact.nodes for m in n.pre.mats.values())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.01, 0.05, 0.15, 0.4]))
def test_the_verifier_on_convolutions_kept_as_convolutions_agrees_with_the_dense_one_and_samples(
        seed: int, eps: float, tmp_path) -> None:
    """The complete verifier with every convolution a ConvMap (ReLU splitting, phase closing and Z3
    leaves read it): the dense lowering's verdict, "holds" never contradicted by 4,000 sampled
    points of the box, "violated" confirmed by onnxruntime on the file."""
    from nnaudit.verify.engine import VerifyConfig, counterexample_ok, verify_property
    from nnaudit.verify.results import Verdict

    path, x, label, prop = verify_nets.cnn_case(tmp_path, seed, eps)
    verdicts = {}
    for structured in (0, 64 << 20):
        res = verify_property(load(path), prop, config=VerifyConfig(timeout_s=6, structured_bytes=structured))
        verdicts[structured] = res.verdict
        if res.verdict is Verdict.VIOLATED:
            assert counterexample_ok(path, prop, res.counterexample.x)
    decided = {Verdict.HOLDS, Verdict.VIOLATED}
    if verdicts[0] in decided and verdicts[64 << 20] in decided:
        assert verdicts[0] is verdicts[64 << 20]
    assert not (verdicts[0] is Verdict.HOLDS and verify_nets.sampled_violation(path, x, eps, label, seed))
