"""The relu-split route of region safety (:mod:`nnaudit.verify.regions.relu_bab`): every SAFE is
checked against exhaustive enumeration of the family and against points sampled from its hull
(what the route proves), every UNSAFE is a member onnxruntime confirms; on the real CIFAR-10
network it decides cells the single hull bound leaves open."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.verify.regions.api import RegionConfig
from nnaudit.verify.regions.check import make_context
from nnaudit.verify.regions.exact import ExactConfig, check_exact
from nnaudit.verify.regions.relu_bab import ReluSplit, relu_bab
from nnaudit.verify.regions.result import RegionVerdict
from nnaudit.verify.regions.spec import Manipulation, make_family
from test_region_batch import net_of
from test_region_exact import check_against_brute_force
from test_region_hard import brute_members as members
from zoo_cache import digits, zoo_net

DATA = Path(__file__).resolve().parents[1] / "data" / "cifar10"


def _drawn_family(tmp_path_factory, kind: str, seed: int, data, step: float, steps: int):  # noqa: ANN001, ANN202
    """A random image for a small net of ``kind`` and a drawn region of up to 6 of its 100 inputs:
    (network, onnxruntime session, the generator that drew the image, context, pixels, manipulation, family)."""
    net, ort = net_of(kind, seed, str(tmp_path_factory.getbasetemp()))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    ctx = make_context(net, rng.uniform(0, 1, 100).astype(np.float32), ort=ort)
    pixels = sorted(data.draw(st.lists(st.integers(0, 99), min_size=1, max_size=6, unique=True)))
    manip = Manipulation(step=step, steps=steps)
    return net, ort, rng, ctx, pixels, manip, make_family(ctx.x0, np.array(pixels), manip)


def margins(ctx, xs: np.ndarray) -> np.ndarray:  # noqa: ANN001
    y = ctx.lowered.evaluate(xs)
    return y[:, ctx.label] - np.delete(y, ctx.label, axis=1).max(axis=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conv", "mlp", "sigmoid-conv"]), seed=st.integers(0, 3), data=st.data(),
       step=st.sampled_from([0.05, 0.15, 0.3]), steps=st.integers(1, 2))
def test_relu_split_agrees_with_enumeration(tmp_path_factory, kind: str, seed: int, data, step: float,  # noqa: ANN001
                                            steps: int) -> None:
    net, ort, rng, ctx, pixels, manip, fam = _drawn_family(tmp_path_factory, kind, seed, data, step, steps)
    res = relu_bab(ctx, fam, time.perf_counter() + 20)
    xs = members(ctx.x0, pixels, manip)
    if res.safe:
        assert res.counterexample is None
        assert margins(ctx, xs).min() > 0, "SAFE but a member changes the class"
        lo, hi = fam.hull()
        hull = rng.uniform(lo, hi, size=(2000, lo.size))
        assert margins(ctx, hull).min() > 0, "the hull was proved but a point of it changes the class"
    if res.counterexample is not None:
        cex = res.counterexample
        assert not res.safe
        assert np.abs(xs.astype(np.float32) - cex.x).max(axis=1).min() == 0.0, "not a member of the family"
        assert ort.predict(cex.x.astype(np.float32).reshape((1,) + tuple(net.input_shape)))[0] == cex.class_after
        assert cex.class_after != ctx.label
    if margins(ctx, xs).min() > 1e-3 and len(pixels) <= 2 and kind != "sigmoid-conv":
        # a clearly safe family of one or two values: the hull of so few is proved by splitting
        assert res.safe or margins(ctx, rng.uniform(*fam.hull(), size=(4000, 100))).min() <= 0, res.message


def cifar():  # noqa: ANN201
    from nnaudit.networks import load
    from nnaudit.networks.normalise import Normalisation
    from nnaudit.networks.runtime import reference

    net = load(DATA / "cifar_base_kw.onnx", normalisation=Normalisation((0.485, 0.456, 0.406), (0.225,)))
    return net, reference(net), np.load(DATA / "cifar10_test_3.npz")["x"]


def cell(ctx, r: int, c: int) -> np.ndarray:  # noqa: ANN001
    """The flat inputs of the 8x8 cell (r, c) of a 3x32x32 image, across its channels."""
    return np.arange(ctx.x0.size).reshape(3, 32, 32)[:, 8 * r:8 * r + 8, 8 * c:8 * c + 8].ravel()


def test_relu_split_decides_cifar_cells_the_hull_bound_leaves_open() -> None:
    net, ort, x = cifar()
    ctx = make_context(net, x[0], ort=ort)
    manip = Manipulation(step=0.05, steps=2)
    decided, tried = 0, 0
    no_relu = ExactConfig(attack=False, max_enumeration=0, relu_split=False, split_share=0.0, smt=False)
    with_relu = ExactConfig(attack=False, max_enumeration=0, relu_share=1.0, split_share=0.0, smt=False)
    for r, c in [(1, 3), (2, 0)]:        # cells of image 0 that the hull bound does not prove
        fam = make_family(ctx.x0, cell(ctx, r, c), manip)
        before, _ = check_exact(ctx, fam, no_relu, time.perf_counter() + 30)
        assert before.verdict is not RegionVerdict.SAFE
        after, stats = check_exact(ctx, fam, with_relu, time.perf_counter() + 60)
        tried += 1
        if after.verdict is RegionVerdict.SAFE:
            assert stats["decided_by"].startswith("relu split") and stats["relu_subdomains"] > 1
            decided += 1
        if after.verdict is RegionVerdict.UNSAFE:
            cex = after.counterexample
            assert ort.predict(cex.x.astype(np.float32).reshape(1, 3, 32, 32))[0] == cex.class_after != ctx.label
            decided += 1
    assert decided == 2, f"relu split decided {decided} of {tried} cells"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conv", "mlp"]), seed=st.integers(0, 3), data=st.data(),
       step=st.sampled_from([0.05, 0.15, 0.3]), steps=st.integers(1, 2))
def test_paused_relu_split_agrees_with_enumeration_and_with_one_go(tmp_path_factory, kind: str, seed: int,  # noqa: ANN001
                                                                   data, step: float, steps: int) -> None:
    """A search paused after its first batch and resumed (the relu-first slice, then the rest)
    never proves a family with an unsafe member, and decides as the search run in one go does."""
    net, ort, rng, ctx, pixels, manip, fam = _drawn_family(tmp_path_factory, kind, seed, data, step, steps)
    split = ReluSplit(ctx, fam, time.perf_counter() + 20)
    res = split.run(pause=time.perf_counter())          # pauses after the first batch, unless decided by it
    if res is None:
        res = split.run()
    assert res is not None
    once = relu_bab(ctx, fam, time.perf_counter() + 20)
    xs = members(ctx.x0, pixels, manip)
    if res.safe:
        assert margins(ctx, xs).min() > 0, "SAFE after a pause but a member changes the class"
    if res.counterexample is not None:
        assert res.counterexample.class_after != ctx.label
        assert np.abs(xs.astype(np.float32) - res.counterexample.x).max(axis=1).min() == 0.0
    if "timeout" not in res.message + once.message:
        assert res.safe == once.safe, (res.message, once.message)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(net=st.sampled_from(["digits-ffn", "digits-cnn"]), index=st.integers(0, 60),
       pixels=st.lists(st.integers(17, 46), min_size=2, max_size=4, unique=True),
       step=st.sampled_from([0.25, 0.5, 0.75]), steps=st.integers(1, 2), first=st.sampled_from([0.01, 0.3, 1.0]))
def test_relu_first_routes_agree_with_enumeration(net: str, index: int, pixels: list[int], step: float, steps: int,
                                                  first: float) -> None:
    """The default routes with the relu-first slice in play (no enumeration route, so families of
    any size take it): SAFE never contradicted, UNSAFE confirmed, clear counterexamples found."""
    network, ort = zoo_net(net)
    x, _ = digits()
    config = RegionConfig(timeout_per_region=60, exact=ExactConfig(max_enumeration=0, relu_first=first, smt=False))
    check_against_brute_force(network, ort, x[index], pixels, Manipulation(step=step, steps=steps), config)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=st.sampled_from(["digits-ffn", "digits-cnn"]), index=st.integers(0, 60), step=st.sampled_from([0.25, 0.5]),
       bank=st.sampled_from([0.5, 2.0]))
def test_time_bank_keeps_region_order_and_verdicts_agree_with_enumeration(net: str, index: int, step: float,
                                                                          bank: float) -> None:
    """With a time bank the regions run hardest-last, but results come in region order, every SAFE
    holds for every member (brute force), every UNSAFE is confirmed, and the settings say so."""
    from nnaudit.verify.regions import check_image

    from test_region_exact import brute_force

    network, ort = zoo_net(net)
    x, _ = digits()
    label = int(ort.predict(x[index:index + 1])[0])
    manip = Manipulation(step=step, steps=1)
    config = RegionConfig(timeout_per_region=5, bank=bank, exact=ExactConfig(max_enumeration=0, smt=False))
    res = check_image(network, x[index], label, "4x4", manip, ort=ort, config=config)
    assert [r.id for r in res.regions] == list(range(16))
    for r in res.regions:
        xs, logits = brute_force(network, x[index].ravel().astype(np.float64), sorted(r.pixels), manip)
        margin = logits[:, label] - np.delete(logits, label, axis=1).max(axis=1)
        if r.verdict is RegionVerdict.SAFE:
            assert margin.min() > 0, f"region {r.id}: SAFE by {r.route} but a member has margin {margin.min()}"
        if r.verdict is RegionVerdict.UNSAFE:
            cex = r.counterexample
            assert ort.predict(cex.x.astype(np.float32).reshape((1,) + tuple(network.input_shape)))[0] == cex.class_after
            assert cex.class_after != label
    assert config.to_dict()["bank"] == bank and "bank" not in RegionConfig().to_dict()
