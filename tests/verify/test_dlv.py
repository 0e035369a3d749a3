"""DLV: pre-images really map to the manipulated activations, every reported
adversarial example is confirmed by onnxruntime, modes enumerate what they say."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from nnaudit.errors import SpecError
from nnaudit.verify.regions import dlv
from nnaudit.verify.regions.dlv import DLVConfig, check_dlv
from nnaudit.verify.regions.api import RegionConfig, check_image, check_region
from nnaudit.verify.regions.check import make_context
from nnaudit.verify.regions.result import RegionVerdict
from nnaudit.verify.regions.spec import ImageRegion, Manipulation, make_family
from zoo_cache import digits, zoo_net


def is_member32(fam, x: np.ndarray) -> bool:  # noqa: ANN001
    """Whether float32 ``x`` is the float32 image of a member of ``fam``."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    rest = np.setdiff1d(np.arange(x.size), fam.pixels)
    if not np.array_equal(x[rest], fam.x0[rest].astype(np.float32)):
        return False
    return all(x[p] in v.astype(np.float32) for p, v in zip(fam.pixels, fam.values))


@pytest.mark.parametrize("name", ["digits-ffn", "digits-cnn"])
def test_dlv_adversarial_examples_are_confirmed_by_onnxruntime(name: str) -> None:
    net, ort = zoo_net(name)
    x, y = digits()
    found = 0
    for i in (0, 1, 2, 3):
        if found:
            break
        res = check_image(net, x[i], int(y[i]), "2x2", Manipulation(step=0.2, steps=1), method="dlv", ort=ort,
                      config=RegionConfig(timeout_per_region=5))
        for r in res.regions:
            assert r.verdict is not RegionVerdict.SAFE          # never SAFE from a hidden-layer search
            for a in r.adversarial:
                assert ort.predict(a.astype(np.float32).reshape((1,) + tuple(net.input_shape)))[0] != y[i]
            if r.verdict is RegionVerdict.UNSAFE:
                found += 1
                cex = r.counterexample
                fam = make_family(x[i], r.pixels, Manipulation(step=0.2, steps=1))
                assert is_member32(fam, cex.x)
            else:
                assert "exhaustive only relative to this discretization" in r.covered
    assert found >= 1


def test_preimage_maps_to_the_manipulated_activations() -> None:
    net, ort = zoo_net("digits-ffn")
    x, _ = digits()
    ctx = make_context(net, x[1], ort=ort)
    manip = Manipulation(step=0.3, steps=2)
    fam = make_family(ctx.x0, range(16, 40), manip)
    search = dlv._prepare(ctx, fam, manip, DLVConfig(layer=1, num_features=2, feature_dims=2, mode="line"))
    feat = search.dims[1][:2]
    solved = 0
    for t in itertools.product(range(-2, 3), repeat=2):
        xp = dlv._preimage(search, 1, feat, t, 2, time.perf_counter() + 10)
        if xp is None:
            continue
        solved += 1
        lo, hi = fam.hull()
        assert np.all(xp >= lo - 1e-9) and np.all(xp <= hi + 1e-9)   # inside the input region
        node = ctx.lowered.nodes[0]
        act = node.apply(node.pre.evaluate([xp[None]]))[0]
        assert np.allclose(act[feat], dlv._target(search, 1, feat, t, 2), atol=1e-6)
    assert solved >= 3


@pytest.mark.parametrize("mode,count", [("corners", 4 * 4), ("line", 4 * 8), ("point", 4)])
def test_modes_enumerate_their_ladder_points(mode: str, count: int) -> None:
    net, ort = zoo_net("digits-cnn")
    x, _ = digits()
    ctx = make_context(net, x[2], ort=ort)
    manip = Manipulation(step=0.1, steps=1)
    fam = make_family(ctx.x0, range(24, 40), manip)
    out = check_dlv(ctx, fam, manip, DLVConfig(layer=1, num_features=4, feature_dims=2, mode=mode),
                    time.perf_counter() + 30)
    assert out.stats["manipulations_total"] == count


def test_layer0_single_feature_line_is_exhaustive_and_agrees_with_enumeration() -> None:
    net, ort = zoo_net("digits-ffn")
    x, _ = digits()
    manip = Manipulation(step=0.35, steps=2)
    cfg = RegionConfig(timeout_per_region=30, dlv=DLVConfig(layer=0, num_features=1, feature_dims=3, mode="line"))
    verdicts = set()
    for i, pixels in [(1, (27, 28, 35)), (2, (20, 21, 29)), (4, (43, 44, 51))]:
        ctx = make_context(net, x[i], ort=ort)
        r = check_region(ctx, ImageRegion(0, (0, 0, 1, 1), pixels), manip, "dlv", cfg)
        e = check_region(ctx, ImageRegion(0, (0, 0, 1, 1), pixels), manip, "exact", RegionConfig(timeout_per_region=30))
        assert r.verdict is e.verdict
        verdicts.add(r.verdict)
    assert RegionVerdict.UNKNOWN not in verdicts


def test_dlv_rejects_non_chain_networks_and_missing_layers(tmp_path) -> None:  # noqa: ANN001
    from onnx_build import random_mlp, save

    from nnaudit.networks import load

    path = save(random_mlp(np.random.default_rng(0), [4, 5, 3], act="Sigmoid"), tmp_path / "sig.onnx")
    net = load(path)
    with pytest.raises(SpecError, match="not a feed-forward chain"):
        check_image(net, np.full(4, 0.5, np.float32), None, "whole", Manipulation(step=0.1, steps=1), method="dlv")
    ffn, ort = zoo_net("digits-ffn")
    with pytest.raises(SpecError, match="layer 7 does not exist"):
        check_image(ffn, digits()[0][1], None, "4x4", Manipulation(), method="dlv", ort=ort,
                config=RegionConfig(dlv=DLVConfig(layer=7)))
    with pytest.raises(SpecError, match="mode"):
        DLVConfig(mode="diagonal")
