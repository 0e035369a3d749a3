"""Batched hull bounds of regions (:mod:`nnaudit.verify.regions.batch`): equal to one-at-a-time
``spec_bounds`` over the full network, the same verdicts as the per-region path, and every SAFE
confirmed by enumerating the family."""

from __future__ import annotations

import functools
import time
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from nnaudit.verify.bounds import spec_bounds
from nnaudit.verify.regions.api import RegionConfig, check_image
from nnaudit.verify.regions.batch import hull_margins, spec_matrix
from nnaudit.verify.regions.check import make_context
from nnaudit.verify.regions.exact import ExactConfig, check_exact
from nnaudit.verify.regions.spec import ImageRegion, Manipulation, make_family
from onnx_build import make_model, random_mlp, save

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0, 1.2 / np.sqrt(max(1, np.prod(shape[1:]))), shape).astype(np.float32)


def conv_model(seed: int, act: str = "Relu"):  # noqa: ANN201
    """Conv 3x3 -> act -> Conv 3x3 stride 2 -> act -> Gemm -> act -> Gemm on (1, 1, 10, 10): sparse cones."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "c1", "d1"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node(act, ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "c2", "d2"], ["b"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node(act, ["b"], ["br"]),
             helper.make_node("Flatten", ["br"], ["f"]),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
             helper.make_node(act, ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], transB=1)]
    inits = {"c1": _w(rng, 2, 1, 3, 3), "d1": rng.normal(0, 0.1, 2).astype(np.float32),
             "c2": _w(rng, 3, 2, 3, 3), "d2": rng.normal(0, 0.1, 3).astype(np.float32),
             "w1": _w(rng, 8, 48), "b1": rng.normal(0, 0.1, 8).astype(np.float32),
             "w2": _w(rng, 3, 8), "b2": rng.normal(0, 0.1, 3).astype(np.float32)}
    return make_model(nodes, ("x", [1, 1, 10, 10]), ("y", [1, 3]), inits)


@functools.cache
def net_of(kind: str, seed: int, tmp: str):  # noqa: ANN201
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    if kind == "mlp":
        model = random_mlp(np.random.default_rng(seed), [100, 12, 10, 3])
    else:
        model = conv_model(seed, "Sigmoid" if kind == "sigmoid-conv" else "Relu")
    path = save(model, Path(tmp) / f"{kind}{seed}.onnx")
    return load(path), OnnxRuntimeModel(path)


def one_at_a_time(ctx, fam, method: str = "crown") -> float:  # noqa: ANN001
    """Today's per-region bound: ``spec_bounds`` over the full network and the family's hull."""
    lo, hi = fam.hull()
    c = spec_matrix(ctx.network.output_size, ctx.label)
    return float(spec_bounds(ctx.lowered, lo[None], hi[None], c, np.zeros(len(c)), method=method)[0].min())


@SETTINGS
@given(kind=st.sampled_from(["conv", "mlp", "sigmoid-conv"]), seed=st.integers(0, 3), images=st.integers(1, 3),
       data=st.data(), step=st.sampled_from([0.02, 0.1, 0.3]), steps=st.integers(1, 2),
       method=st.sampled_from(["crown", "interval"]), chunk=st.sampled_from([1, 2, 32]))
def test_batched_bounds_equal_one_at_a_time(tmp_path_factory, kind: str, seed: int, images: int, data, step: float,  # noqa: ANN001
                                            steps: int, method: str, chunk: int) -> None:
    net, ort = net_of(kind, seed, str(tmp_path_factory.getbasetemp()))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    ctxs = [make_context(net, rng.uniform(0, 1, 100).astype(np.float32), ort=ort) for _ in range(images)]
    regions = data.draw(st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=12, unique=True),
                                 min_size=1, max_size=3))
    manip = Manipulation(step=step, steps=steps)
    pairs = [(ctx, make_family(ctx.x0, np.array(sorted(r)), manip)) for r in regions for ctx in ctxs]
    want = np.array([one_at_a_time(ctx, fam, method) for ctx, fam in pairs])
    for mode in ("cone", "full"):
        got = hull_margins([p[0] for p in pairs], [p[1] for p in pairs], method=method, chunk=chunk, mode=mode)
        np.testing.assert_allclose(got.margins, want, rtol=1e-9, atol=1e-9)
        sets = [tuple(sorted(r)) for r in regions]           # one cone per pixel set, its boxes in chunks
        cone_passes = sum(-(-sets.count(p) * images // chunk) for p in set(sets))
        assert got.passes == (cone_passes if mode == "cone" else -(-len(pairs) // chunk))


def test_cone_is_smaller_than_the_network(tmp_path: Path) -> None:
    from nnaudit.verify.regions.batch import image_activations, region_cone

    net, ort = net_of("conv", 0, str(tmp_path))
    ctx = make_context(net, np.full(100, 0.5, dtype=np.float32), ort=ort)
    cone = region_cone(ctx.lowered, np.array([0, 1, 10, 11]), [image_activations(ctx)])
    assert cone.input_size == 5 and [n.size for n in cone.nodes] == [2 * 9, 3 * 4, 8]   # 3x3 then 2x2 positions
    np.testing.assert_allclose(cone.evaluate(np.r_[ctx.x0[[0, 1, 10, 11]], 1.0][None]),
                               ctx.lowered.evaluate(ctx.x0[None]), atol=1e-12)


def reference_results(net, ort, x, regions, manip, config):  # noqa: ANN001, ANN201
    """The per-region path with today's bound (full-network ``spec_bounds``), verdict and route per region."""
    ctx = make_context(net, x, ort=ort)
    out = []
    for r in regions:
        fam = make_family(ctx.x0, np.asarray(r.pixels), manip)
        res, _ = check_exact(ctx, fam, config.exact, time.perf_counter() + config.timeout_per_region,
                             bound={"bound_margin": one_at_a_time(ctx, fam, config.exact.bound_method)})
        out.append((res.verdict, res.route))
    return out


@pytest.mark.parametrize("kind,seed,step,steps", [("conv", 0, 0.05, 1), ("conv", 1, 0.2, 2), ("mlp", 2, 0.1, 2),
                                                  ("sigmoid-conv", 3, 0.2, 1)])
def test_batched_verdicts_equal_per_region_path(tmp_path: Path, kind: str, seed: int, step: float, steps: int) -> None:
    net, ort = net_of(kind, seed, str(tmp_path))
    x = np.random.default_rng(seed).uniform(0, 1, 100).astype(np.float32)
    manip = Manipulation(step=step, steps=steps)
    config = RegionConfig(timeout_per_region=60, exact=ExactConfig(attack=False, smt=False))   # tiny: enumerated
    got = check_image(net, x, None, "5x5", manip, config=config, ort=ort)
    regions = [ImageRegion(r.id, r.box, r.pixels) for r in got.regions]
    want = reference_results(net, ort, x, regions, manip, config)
    assert [(r.verdict, r.route) for r in got.regions] == want
    assert len(got.regions) == 25 and any(r.route == "bounds" for r in got.regions)
    for r in got.regions:
        assert r.time_s > 0


@SETTINGS
@given(kind=st.sampled_from(["conv", "mlp"]), seed=st.integers(0, 3), data=st.data(),
       step=st.sampled_from([0.05, 0.15, 0.4]), steps=st.integers(1, 2))
def test_batched_safe_is_confirmed_by_enumeration(tmp_path_factory, kind: str, seed: int, data, step: float,  # noqa: ANN001
                                                  steps: int) -> None:
    net, ort = net_of(kind, seed, str(tmp_path_factory.getbasetemp()))
    x0 = np.random.default_rng(data.draw(st.integers(0, 2**16))).uniform(0, 1, 100).astype(np.float32)
    ctx = make_context(net, x0, ort=ort)
    manip = Manipulation(step=step, steps=steps)
    regions = data.draw(st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True),
                                 min_size=1, max_size=4))
    fams = [make_family(ctx.x0, np.array(sorted(r)), manip) for r in regions]
    got = hull_margins([ctx] * len(fams), fams, mode="cone")
    for fam, margin in zip(fams, got.margins):
        if margin <= 1e-7:
            continue
        members = []
        for vals in itertools.product(*fam.values):
            m = ctx.x0.copy()
            m[fam.pixels] = vals
            members.append(m)
        assert ctx.margins(np.array(members)).min() > 0, "SAFE by the batched bound, but a member changes the class"


def test_hull_margins_rejects_bad_arguments(tmp_path: Path) -> None:
    net, ort = net_of("conv", 0, str(tmp_path))
    ctx = make_context(net, np.full(100, 0.5, dtype=np.float32), ort=ort)
    fam = make_family(ctx.x0, np.array([3]), Manipulation(step=0.1, steps=1))
    with pytest.raises(ValueError, match="one context per family"):
        hull_margins([ctx, ctx], [fam])
    with pytest.raises(ValueError, match="mode"):
        hull_margins([ctx], [fam], mode="fast")
    with pytest.raises(ValueError, match="elementwise"):
        maxpool = make_context(*net_of_maxpool(tmp_path), np.full(36, 0.5, dtype=np.float32))
        hull_margins([maxpool], [make_family(maxpool.x0, np.array([3]), Manipulation(step=0.1, steps=1))], mode="cone")
    assert hull_margins([], []).passes == 0


def net_of_maxpool(tmp: Path):  # noqa: ANN201
    from verify_nets import cnn

    from nnaudit.networks import load

    path = cnn(tmp, 0)
    return (load(path),)


def test_maxpool_network_is_bounded_whole(tmp_path: Path) -> None:
    (net,) = net_of_maxpool(tmp_path)
    ctx = make_context(net, np.random.default_rng(0).uniform(0, 1, 36).astype(np.float32))
    fams = [make_family(ctx.x0, np.array(p), Manipulation(step=0.1, steps=2)) for p in ([0, 1], [7], [20, 21, 26])]
    got = hull_margins([ctx] * 3, fams)
    assert got.mode == "full" and got.passes == 1
    np.testing.assert_allclose(got.margins, [one_at_a_time(ctx, f) for f in fams], rtol=1e-9, atol=1e-9)
    assert set(got.stats(0)) >= {"bound_margin", "bound_batch", "bound_chunk", "bound_passes", "bound_share_s"}


def test_bound_mode_says_beforehand_what_hull_margins_does(tmp_path: Path) -> None:
    from nnaudit.verify.regions.api import BOUND_BATCH, bound_batching
    from nnaudit.verify.regions.batch import bound_mode

    conv, ort = net_of("conv", 0, str(tmp_path))
    (maxpool,) = net_of_maxpool(tmp_path)
    for net, x, want in ((conv, np.full(100, 0.5, dtype=np.float32), "cone"),
                         (maxpool, np.full(36, 0.5, dtype=np.float32), "full")):
        ctx = make_context(net, x)
        fam = make_family(ctx.x0, np.array([3]), Manipulation(step=0.1, steps=1))
        assert bound_mode(ctx.lowered) == hull_margins([ctx], [fam]).mode == want
        assert bound_batching(net, "both") == {"chunk": BOUND_BATCH, "mode": want}
    assert bound_mode(make_context(conv, np.full(100, 0.5, dtype=np.float32)).lowered, "full") == "full"
    assert bound_batching(conv, "dlv") is None
