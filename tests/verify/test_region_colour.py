"""Regions of colour images: a region is its pixels in every channel (or in one
channel each), on channels-first inputs and on channels-last ones read through a
leading Transpose; every SAFE verdict is confirmed by enumerating the region's
whole discrete family with onnxruntime, independently of the region code."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colour_nets import C, H, W, colour_model, colour_net
from nnaudit.errors import SpecError
from nnaudit.verify.regions.api import RegionConfig, check_region, resolve_regions
from nnaudit.verify.regions.check import make_context
from nnaudit.verify.regions.exact import ExactConfig
from nnaudit.verify.regions.layout import ImageLayout, RegionChannels, layout_of
from nnaudit.verify.regions.result import RegionVerdict
from nnaudit.verify.regions.spec import Manipulation

ALL, EACH = RegionChannels.ALL, RegionChannels.EACH
ROUTES = {
    "default": RegionConfig(timeout_per_region=60),
    "split": RegionConfig(timeout_per_region=60, exact=ExactConfig(attack=False, max_enumeration=0, smt=False,
                                                                   split_share=1.0, leaf_size=4, relu_split=False)),
    "smt": RegionConfig(timeout_per_region=60, exact=ExactConfig(bound_method="interval", attack=False,
                                                                 max_enumeration=0, split_share=0.0, relu_split=False)),
}


def expected_inputs(layout: ImageLayout, box: tuple[int, int, int, int], channels: list[int]) -> set[int]:
    """The flat input indices of a box's pixels in ``channels``, from NumPy's own reshape."""
    r0, c0, r1, c1 = box
    if layout.channels_first:
        idx = np.arange(layout.size).reshape(layout.channels, layout.height, layout.width)
        return set(idx[channels][:, r0:r1, c0:c1].ravel().tolist())
    idx = np.arange(layout.size).reshape(layout.height, layout.width, layout.channels)
    return set(idx[r0:r1, c0:c1][:, :, channels].ravel().tolist())


def brute_force(ort, shape, x0: np.ndarray, inputs: list[int], manip: Manipulation) -> np.ndarray:  # noqa: ANN001
    """onnxruntime's class of every member of the family (written here, not with the region code)."""
    members = []
    for ks in itertools.product(range(-manip.steps, manip.steps + 1), repeat=len(inputs)):
        x = x0.copy()
        x[inputs] = np.clip(x0[inputs] + np.array(ks) * manip.step, *manip.clip)
        members.append(x)
    xs = np.array(members)
    return ort.run(xs.astype(np.float32).reshape((len(xs),) + tuple(shape))).argmax(axis=1), xs


def test_the_layout_comes_from_the_model(tmp_path) -> None:  # noqa: ANN001
    from onnx_build import random_mlp, save

    from nnaudit.networks import load

    chw, _, _ = colour_net(0, str(tmp_path))
    hwc, _, _ = colour_net(0, str(tmp_path), channels_last=True)
    dense_hwc, _, _ = colour_net(0, str(tmp_path), dense=True, channels_last=True)
    assert layout_of(chw) == ImageLayout(3, 4, 4, True)
    assert layout_of(hwc) == layout_of(dense_hwc) == ImageLayout(3, 4, 4, False)  # (4, 4, 3): the shape alone says CHW
    assert ImageLayout.from_input_shape((4, 4, 3)) == ImageLayout(4, 4, 3, True)
    flat = load(save(random_mlp(np.random.default_rng(0), [48, 5, 3]), tmp_path / "flat.onnx"))
    with pytest.raises(SpecError, match="not a square image"):
        layout_of(flat)
    assert layout_of(flat, "3x4x4") == ImageLayout(3, 4, 4, True)
    assert layout_of(flat, "6x8") == ImageLayout(1, 6, 8)
    assert layout_of(flat, "8x2x3") == ImageLayout(3, 8, 2, False)   # H x W x C: last <= 4 < first
    odd = load(save(colour_model(0, perm=(0, 1, 3, 2)), tmp_path / "odd.onnx"))
    with pytest.raises(SpecError, match="cannot tell which axis holds the channels"):
        layout_of(odd)
    assert layout_of(odd, "3x4x4") == ImageLayout(3, 4, 4, True)
    with pytest.raises(SpecError, match="--image-shape 5x5 has 25 values but the network input"):
        layout_of(chw, "5x5")
    with pytest.raises(SpecError, match="expected --image-shape"):
        layout_of(chw, "3by16")


@pytest.mark.parametrize("layout", [ImageLayout(3, 4, 4, True), ImageLayout(3, 4, 4, False), ImageLayout(3, 5, 7, True),
                                    ImageLayout(2, 6, 3, False), ImageLayout(1, 8, 8)])
@pytest.mark.parametrize("spec", ["2x2", "3x1", "patch:2", "patch:3", "whole", "mask"])
@pytest.mark.parametrize("channels", [ALL, EACH])
def test_a_region_covers_exactly_its_pixels_in_its_channels(layout: ImageLayout, spec: str,
                                                            channels: RegionChannels) -> None:
    if spec == "mask":
        masks = np.zeros((2, layout.height, layout.width), bool)
        masks[0, 0, 0] = masks[0, -1, 1] = masks[1, 1:3, 0] = True
        regions = resolve_regions(layout, masks, channels)
    else:
        regions = resolve_regions(layout, spec, channels)
    seen: Counter[int] = Counter()
    for region in regions:
        chans = list(region.channels)
        assert chans == (list(range(layout.channels)) if channels is ALL else [chans[0]])
        cells = [divmod(p, layout.width) for p in region.image_pixels]
        expected = set().union(*(expected_inputs(layout, (r, c, r + 1, c + 1), chans) for r, c in cells))
        assert set(region.pixels) == expected and len(region.pixels) == len(cells) * len(chans)
        if spec != "mask":   # a box region is exactly its box
            assert expected == expected_inputs(layout, region.box, chans)
        d = region.to_dict()
        assert d["channels"] == chans and d["image_pixels"] == sorted(d["image_pixels"])
        seen.update(region.pixels)
    if spec != "mask":       # grids and patches tile every input value once
        assert sorted(seen) == list(range(layout.size)) and set(seen.values()) == {1}
    if channels is EACH:
        assert len(regions) % layout.channels == 0


def test_grids_count_pixels_not_values() -> None:
    layout = ImageLayout(3, 32, 32, True)
    regions = resolve_regions(layout, "4x4")
    assert len(regions) == 16 and all(len(r.image_pixels) == 64 and len(r.pixels) == 192 for r in regions)
    assert len(resolve_regions(layout, "4x4", EACH)) == 48
    with pytest.raises(SpecError, match="does not fit an image of 32x32 pixels"):
        resolve_regions(layout, "33x1")


def check_one(net, ort, x0: np.ndarray, region, manip: Manipulation, config: RegionConfig) -> RegionVerdict:  # noqa: ANN001
    """``check_region`` against the brute force: SAFE only if every member keeps the class."""
    ctx = make_context(net, x0, ort=ort)
    res = check_region(ctx, region, manip, "exact", config)
    layout = layout_of(net)
    inputs = sorted(expected_inputs(layout, region.box, list(region.channels)))
    assert inputs == list(region.pixels)
    classes, xs = brute_force(ort, net.input_shape, ctx.x0, inputs, manip)
    logits = net.evaluate(xs.reshape((len(xs),) + tuple(net.input_shape))).reshape(len(xs), -1)
    margin = logits[:, ctx.label] - np.delete(logits, ctx.label, axis=1).max(axis=1)
    if res.verdict is RegionVerdict.SAFE:
        assert margin.min() > 0, f"SAFE by {res.route}, but a member has margin {margin.min()}"
        assert (classes == ctx.label).all() or np.abs(margin[classes != ctx.label]).max() < 1e-5
    if res.verdict is RegionVerdict.UNSAFE:
        cex = res.counterexample
        assert np.abs(xs.astype(np.float32) - cex.x).max(axis=1).min() == 0.0, "not a member of the family"
        assert set(cex.pixels_changed) <= set(inputs) and cex.class_after != ctx.label
    if margin.min() < -1e-4:
        assert res.verdict is RegionVerdict.UNSAFE, res.covered
    assert res.channels == region.channels and res.image_pixels == region.image_pixels
    return res.verdict


def random_image(seed: int) -> np.ndarray:
    """A (3, 4, 4) image in [0, 1] with some values at the clip bounds."""
    rng = np.random.default_rng(seed)
    x = rng.random((C, H, W))
    x[rng.random((C, H, W)) < 0.2] = 0.0
    x[rng.random((C, H, W)) < 0.1] = 1.0
    return x.astype(np.float32)


# (regions, channels): families of 3, 6 and 4 values, small enough to enumerate
SPECS = [("4x4", ALL), ("4x2", ALL), ("2x2", EACH), ("patch:2", EACH)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 5), dense=st.booleans(), channels_last=st.booleans(), image=st.integers(0, 10**6),
       spec=st.sampled_from(SPECS), pick=st.integers(0, 10**6), step=st.sampled_from([0.05, 0.2, 0.5]),
       steps=st.integers(1, 2), route=st.sampled_from(sorted(ROUTES)))
def test_safe_verdicts_on_colour_regions_survive_enumeration(tmp_path_factory, seed: int, dense: bool,  # noqa: ANN001
                                                             channels_last: bool, image: int, spec: tuple, pick: int,
                                                             step: float, steps: int, route: str) -> None:
    net, ort, _ = colour_net(seed, str(tmp_path_factory.getbasetemp()), dense=dense, channels_last=channels_last)
    regions = resolve_regions(layout_of(net), spec[0], spec[1])
    if spec[1] is ALL and spec[0] == "4x2":
        regions = regions[: 4]
    x0 = random_image(image)
    x = x0.transpose(1, 2, 0) if channels_last else x0
    check_one(net, ort, x, regions[pick % len(regions)], Manipulation(step=step, steps=steps), ROUTES[route])


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_proves_and_refutes_colour_regions_soundly(tmp_path, route: str) -> None:  # noqa: ANN001
    """Not vacuous: over fixed nets and images, both verdicts occur and all agree with enumeration."""
    verdicts: Counter[RegionVerdict] = Counter()
    for seed, channels_last in ((1, False), (2, True)):
        net, ort, _ = colour_net(seed, str(tmp_path), channels_last=channels_last)
        x0 = random_image(seed)
        x = x0.transpose(1, 2, 0) if channels_last else x0
        for step in (0.1, 0.6):
            for region in resolve_regions(layout_of(net), "2x2", EACH)[::2]:
                verdicts[check_one(net, ort, x, region, Manipulation(step=step, steps=1), ROUTES[route])] += 1
    assert verdicts[RegionVerdict.SAFE] > 0 and verdicts[RegionVerdict.UNSAFE] > 0, verdicts


def test_channels_last_regions_are_the_same_pixels_as_channels_first(tmp_path) -> None:  # noqa: ANN001
    """The same weights read (C, H, W) directly or (H, W, C) through a Transpose: every region
    (the same pixels and channels) gets the same verdict on the same image."""
    chw, chw_ort, _ = colour_net(3, str(tmp_path))
    hwc, hwc_ort, _ = colour_net(3, str(tmp_path), channels_last=True)
    x0 = random_image(7)
    manip, config = Manipulation(step=0.3, steps=1), RegionConfig(timeout_per_region=60)
    for spec, channels in (("4x4", ALL), ("2x2", EACH)):
        a = resolve_regions(layout_of(chw), spec, channels)
        b = resolve_regions(layout_of(hwc), spec, channels)
        assert [(r.box, r.channels, r.image_pixels) for r in a] == [(r.box, r.channels, r.image_pixels) for r in b]
        for ra, rb in zip(a, b):
            va = check_region(make_context(chw, x0, ort=chw_ort), ra, manip, "exact", config).verdict
            vb = check_region(make_context(hwc, x0.transpose(1, 2, 0), ort=hwc_ort), rb, manip, "exact", config).verdict
            assert va == vb, (spec, ra.id)
