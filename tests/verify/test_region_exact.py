"""SAFE verdicts never contradicted by brute force; every UNSAFE confirmed by
onnxruntime on the original file and a member of the family."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnaudit.verify.regions.api import RegionConfig, check_region
from nnaudit.verify.regions.check import make_context
from nnaudit.verify.regions.exact import ExactConfig
from nnaudit.verify.regions.result import RegionVerdict
from nnaudit.verify.regions.spec import ImageRegion, Manipulation
from zoo_cache import digits, zoo_net

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_force(net, x0: np.ndarray, pixels: list[int], manip: Manipulation) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Every member (independently of region_spec) and its float64 IR logits."""
    members = []
    for ks in itertools.product(range(-manip.steps, manip.steps + 1), repeat=len(pixels)):
        if manip.budget is not None:
            cost = sum((k != 0) if manip.budget_norm == "l0" else abs(k) for k in ks)
            if cost > manip.budget_units:
                continue
        x = x0.copy()
        x[pixels] = np.clip(x0[pixels] + np.array(ks) * manip.step, *manip.clip)
        members.append(x)
    xs = np.array(members)
    return xs, net.evaluate(xs.reshape((len(xs),) + tuple(net.input_shape))).reshape(len(xs), -1)


def check_against_brute_force(net, ort, x0, pixels, manip, config) -> RegionVerdict:  # noqa: ANN001
    ctx = make_context(net, x0, ort=ort)
    region = ImageRegion(0, (0, 0, 1, 1), tuple(sorted(pixels)))
    res = check_region(ctx, region, manip, "exact", config)
    xs, logits = brute_force(net, ctx.x0, sorted(pixels), manip)
    margin = logits[:, ctx.label] - np.delete(logits, ctx.label, axis=1).max(axis=1)
    if res.verdict is RegionVerdict.SAFE:
        assert margin.min() > 0, f"SAFE by {res.route} but a member has margin {margin.min()}"
    if res.verdict is RegionVerdict.UNSAFE:
        cex = res.counterexample
        assert ort.predict(cex.x.astype(np.float32).reshape((1,) + tuple(net.input_shape)))[0] == cex.class_after
        assert cex.class_after != ctx.label == cex.class_before
        assert np.abs(xs.astype(np.float32) - cex.x).max(axis=1).min() == 0.0, "not a member of the family"
        assert set(cex.pixels_changed) <= set(pixels) and cex.l0 == len(cex.pixels_changed)
    if margin.min() < -1e-4:   # the routes are complete: a clear counterexample must be found
        assert res.verdict is RegionVerdict.UNSAFE, res.covered
    return res.verdict


region_cases = dict(
    net=st.sampled_from(["digits-ffn", "digits-cnn"]),
    index=st.integers(0, 60),
    pixels=st.lists(st.integers(17, 46), min_size=2, max_size=4, unique=True),
    step=st.sampled_from([0.25, 0.5, 0.75]),
    steps=st.integers(1, 2),
    budget=st.sampled_from([None, ("l0", 1), ("l1", 0.4)]),
)


@SLOW
@given(**region_cases)
@example(net="digits-ffn", index=19, pixels=[25, 32, 42, 44], step=0.5, steps=2, budget=None)   # split proves it
@example(net="digits-cnn", index=13, pixels=[17, 20, 40, 44], step=0.25, steps=2, budget=None)  # split proves it
@example(net="digits-cnn", index=1, pixels=[27, 28, 35, 36], step=0.5, steps=2, budget=None)    # unsafe
@example(net="digits-ffn", index=5, pixels=[26, 27, 28, 29], step=0.75, steps=2, budget=("l0", 1))
def test_bounds_and_splitting_agree_with_enumeration(net: str, index: int, pixels: list[int], step: float,
                                                     steps: int, budget: tuple | None) -> None:
    network, ort = zoo_net(net)
    x, _ = digits()
    manip = Manipulation(step=step, steps=steps, budget_norm=budget and budget[0], budget=budget and budget[1])
    config = RegionConfig(timeout_per_region=60, exact=ExactConfig(attack=False, max_enumeration=0, smt=False,
                                                                   split_share=1.0, leaf_size=4, relu_split=False))
    check_against_brute_force(network, ort, x[index], pixels, manip, config)


@SLOW
@given(**region_cases)
def test_default_routes_agree_with_enumeration(net: str, index: int, pixels: list[int], step: float,
                                               steps: int, budget: tuple | None) -> None:
    network, ort = zoo_net(net)
    x, _ = digits()
    manip = Manipulation(step=step, steps=steps, budget_norm=budget and budget[0], budget=budget and budget[1])
    check_against_brute_force(network, ort, x[index], pixels, manip, RegionConfig(timeout_per_region=60))


@functools.cache
def tiny_mlp(seed: int, tmp: str):  # noqa: ANN201
    from onnx_build import random_mlp, save

    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    path = save(random_mlp(np.random.default_rng(seed), [4, 6, 6, 3]), __import__("pathlib").Path(tmp) / f"m{seed}.onnx")
    return load(path), OnnxRuntimeModel(path)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 4), x0=st.lists(st.floats(0, 1, width=32), min_size=4, max_size=4),
       pixels=st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
       step=st.sampled_from([0.1, 0.3]), budget=st.sampled_from([None, ("l1", 0.3)]))
def test_z3_route_agrees_with_enumeration(tmp_path_factory, seed: int, x0: list[float], pixels: list[int],  # noqa: ANN001
                                          step: float, budget: tuple | None) -> None:
    net, ort = tiny_mlp(seed, str(tmp_path_factory.getbasetemp()))
    manip = Manipulation(step=step, steps=2, budget_norm=budget and budget[0], budget=budget and budget[1])
    config = RegionConfig(timeout_per_region=30, exact=ExactConfig(
        bound_method="interval", attack=False, max_enumeration=0, split_share=0.0, relu_split=False))
    check_against_brute_force(net, ort, np.array(x0, dtype=np.float32), pixels, manip, config)


def test_unsafe_region_is_found_and_confirmed() -> None:
    network, ort = zoo_net("digits-ffn")
    x, y = digits()
    i = next(i for i in range(50) if network.predict(x[i:i + 1])[0] == y[i])
    ctx = make_context(network, x[i], ort=ort)
    region = ImageRegion(0, (0, 0, 8, 8), tuple(range(64)))
    res = check_region(ctx, region, Manipulation(step=0.3, steps=2), "exact", RegionConfig(timeout_per_region=20))
    assert res.verdict is RegionVerdict.UNSAFE and res.route in ("attack", "enumeration", "smt")
    assert ort.predict(res.counterexample.x.reshape(1, 64).astype(np.float32))[0] != y[i]
    d = res.to_dict()
    assert set(d) == {"id", "box", "pixels", "method", "verdict", "route", "time_s", "covered", "counterexample"}
    assert set(d["counterexample"]) == {"x", "class_before", "class_after", "conf_before", "conf_after",
                                        "pixels_changed", "l0", "l2", "linf"}


def test_timeout_gives_unknown_with_coverage() -> None:
    network, ort = zoo_net("digits-cnn")
    x, _ = digits()
    ctx = make_context(network, x[1], ort=ort)
    region = ImageRegion(0, (0, 0, 8, 8), tuple(range(64)))
    res = check_region(ctx, region, Manipulation(step=0.02, steps=1), "exact",
                       RegionConfig(timeout_per_region=0.0))
    assert res.verdict is RegionVerdict.UNKNOWN and res.covered
    pytest.importorskip("z3")


def test_misclassified_images_are_skipped_and_results_round_trip() -> None:
    from nnaudit.verify.regions import check_image
    from nnaudit.verify.regions.result import ImageResult

    network, ort = zoo_net("digits-ffn")
    x, y = digits()
    pred = ort.predict(x[:60])
    wrong = int(np.flatnonzero(pred != y[:60])[0])
    res = check_image(network, x[wrong], int(y[wrong]), "4x4", Manipulation(), ort=ort)
    assert res.regions == () and "misclassified" in res.skipped and res.predicted == pred[wrong]
    right = int(np.flatnonzero(pred == y[:60])[0])
    res = check_image(network, x[right], int(y[right]), "2x2", Manipulation(step=0.3, steps=2), ort=ort, method="both",
                  config=RegionConfig(timeout_per_region=5))
    assert [(r.id, r.method) for r in res.regions] == [(i, m) for i in range(4) for m in ("exact", "dlv")]
    back = ImageResult.from_dict(res.to_dict())
    assert back.to_dict() == res.to_dict()


def test_z3_members_onnxruntime_rejects_are_never_safe(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """If onnxruntime disagreed with every Z3 model, the region may not end SAFE."""
    from nnaudit.verify.regions.check import RegionContext

    net, ort = tiny_mlp(1, str(tmp_path))
    x0 = np.array([0.2, 0.9, 0.4, 0.6], dtype=np.float32)
    manip = Manipulation(step=0.5, steps=2)
    config = RegionConfig(timeout_per_region=30, exact=ExactConfig(
        bound_method="interval", attack=False, max_enumeration=0, split_share=0.0, smt_retries=1, relu_split=False))
    ctx = make_context(net, x0, ort=ort)
    xs, logits = brute_force(net, ctx.x0, [0, 1, 2, 3], manip)
    if (logits.argmax(axis=1) == ctx.label).all():
        pytest.skip("this random network keeps the class on the whole family")
    monkeypatch.setattr(RegionContext, "confirm", lambda self, xs, limit=32: None)
    res = check_region(ctx, ImageRegion(0, (0, 0, 2, 2), (0, 1, 2, 3)), manip, "exact", config)
    assert res.verdict is RegionVerdict.UNKNOWN and "onnxruntime" in res.covered


def test_bound_splitting_enumerates_leaves_over_many_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: leaves over more than 32 values (a 7x7 MNIST cell) were built with
    np.meshgrid, which stops at 32 dimensions.  With the bounds made useless, the
    split route must enumerate the leaf and agree with brute force."""
    import dataclasses

    from nnaudit.verify.regions import discrete_bab, exact
    from nnaudit.verify.regions.spec import make_family

    network, ort = zoo_net("digits-ffn")
    x, _ = digits()
    ctx = make_context(network, x[0], ort=ort)
    pixels = list(range(8, 57))                                          # 49 values
    fam = make_family(ctx.x0, pixels, Manipulation(step=0.25, steps=1))
    keep = {3: None, 20: None, 40: None}                                 # these move; the others stay at x0
    narrow = [v if j in keep else v[k == 0] for j, (v, k) in enumerate(zip(fam.values, fam.ks))]
    fam = dataclasses.replace(fam, values=tuple(narrow),
                              ks=tuple(k if j in keep else k[k == 0] for j, k in enumerate(fam.ks)),
                              costs=tuple(c if j in keep else c[:1] * 0 for j, c in enumerate(fam.costs)))
    def useless(self, boxes):  # noqa: ANN001, ANN202
        lo, hi = self.hull(boxes)
        width = (hi - lo)[:, self.columns()]
        return np.full((len(boxes), 9), -1.0), np.zeros_like(width), width

    monkeypatch.setattr(discrete_bab._Boxes, "bound", useless)
    monkeypatch.setattr(discrete_bab._Boxes, "root_alpha", lambda self, steps: False)
    stats: dict = {}
    config = ExactConfig(leaf_size=64)
    out = exact._split(ctx, fam, config, __import__("time").perf_counter() + 60, stats)
    members = np.concatenate([xs for _, xs in fam.batches()])
    margins = ctx.margins(members)
    assert stats["split_enumerated"] == len(members) == fam.raw_count >= 8
    assert out.verdict is (RegionVerdict.SAFE if margins.min() > 0 else RegionVerdict.UNSAFE)
