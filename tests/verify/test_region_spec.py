"""Regions, layouts and the discretized manipulation family (closed-form checks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnaudit.errors import SpecError
from nnaudit.verify.regions.spec import (ImageLayout, Manipulation, grid_regions, make_family, mask_regions,
                                        parse_grid, patch_regions)


def test_family_values_clip_and_min_cost() -> None:
    fam = make_family(np.array([0.95, 0.5]), [0], Manipulation(step=0.1, steps=2))
    assert np.allclose(fam.values[0], [0.75, 0.85, 0.95, 1.0])
    assert list(fam.ks[0]) == [-2, -1, 0, 1]          # 1.0 is reached first with k = +1
    assert fam.count() == 4
    lo, hi = fam.hull()
    assert lo[0] == pytest.approx(0.75) and hi[0] == 1.0 and lo[1] == hi[1] == 0.5


@pytest.mark.parametrize("norm,budget", [("l1", 0.2), ("l0", 1), ("l1", 0.0)])
def test_budget_count_matches_brute_force(norm: str, budget: float) -> None:
    manip = Manipulation(step=0.1, steps=2, budget_norm=norm, budget=budget)
    fam = make_family(np.array([0.5, 0.05, 0.7]), [0, 1, 2], manip)
    brute = 0
    for ks in itertools.product(*fam.ks):
        cost = sum((k != 0) if norm == "l0" else abs(k) for k in ks)
        brute += cost <= fam.budget
    members = np.concatenate([xs for _, xs in fam.batches(7)])
    assert fam.count() == brute == len(members)
    assert all(fam.contains(m) for m in members)


def test_contains_and_snap() -> None:
    fam = make_family(np.array([0.2, 0.4]), [1], Manipulation(step=0.1, steps=1))
    assert fam.contains(np.array([0.2, 0.4 + 0.1])) and not fam.contains(np.array([0.2, 0.45]))
    assert not fam.contains(np.array([0.3, 0.4]))     # value outside the region changed
    snapped = fam.snap(np.array([0.9, 0.46]))
    assert fam.contains(snapped) and snapped[0] == 0.2 and snapped[1] == fam.values[0][2]


def test_grid_patch_mask_regions_cover_the_image() -> None:
    layout = ImageLayout.from_input_shape((64,))
    assert (layout.channels, layout.height, layout.width) == (1, 8, 8)
    for regs in (grid_regions(layout, 4, 4), patch_regions(layout, 3), grid_regions(layout, 3, 5)):
        pixels = sorted(p for r in regs for p in r.pixels)
        assert pixels == list(range(64))
    g = grid_regions(layout, 4, 4)
    assert g[0].box == (0, 0, 2, 2) and g[0].pixels == (0, 1, 8, 9)
    mask = np.zeros((8, 8), bool)
    mask[3, 4] = mask[5, 1] = True
    (m,) = mask_regions(layout, mask)
    assert m.pixels == (28, 41) and m.box == (3, 1, 6, 5)
    chw = ImageLayout.from_input_shape((3, 4, 4))
    assert grid_regions(chw, 2, 2)[0].pixels == (0, 1, 4, 5, 16, 17, 20, 21, 32, 33, 36, 37)


@pytest.mark.parametrize("kwargs", [dict(step=0.0), dict(steps=0), dict(clip=(1.0, 0.0)),
                                    dict(budget_norm="l2", budget=1.0), dict(budget_norm="l1")])
def test_bad_manipulations_are_rejected(kwargs: dict) -> None:
    with pytest.raises(SpecError):
        Manipulation(**kwargs)


def test_bad_regions_and_inputs_are_rejected() -> None:
    layout = ImageLayout.from_input_shape((1, 8, 8))
    with pytest.raises(SpecError, match="grid 9x1"):
        grid_regions(layout, 9, 1)
    with pytest.raises(SpecError, match="ROWSxCOLS"):
        parse_grid("four")
    with pytest.raises(SpecError, match="not a square"):
        ImageLayout.from_input_shape((5,))
    with pytest.raises(SpecError, match="outside the clip range"):
        make_family(np.array([2.0]), [0], Manipulation())


def test_manipulation_round_trip() -> None:
    m = Manipulation(step=0.1, steps=3, budget_norm="l0", budget=2)
    assert Manipulation.from_dict(m.to_dict()) == m
    assert m.to_dict() == {"step": 0.1, "steps": 3, "budget": {"norm": "l0", "value": 2}, "clip": [0.0, 1.0]}


def test_box_indices_keep_the_meshgrid_order_without_a_dimension_limit() -> None:
    from nnaudit.verify.regions.spec import box_indices, box_size

    a, b = np.array([0, 2, 1]), np.array([1, 4, 1])
    old = np.stack(np.meshgrid(*[np.arange(i, j + 1) for i, j in zip(a, b)], indexing="ij"), -1).reshape(-1, 3)
    assert np.array_equal(box_indices(a, b), old)
    assert box_indices(a, b).tolist() == [list(t) for t in itertools.product(range(0, 2), range(2, 5), range(1, 2))]
    a = np.zeros(49, dtype=np.int64)                         # 49 values: np.meshgrid stops at 32
    b = a.copy()
    b[[3, 20, 48]] = [1, 2, 1]
    idx = box_indices(a, b)
    assert idx.shape == (12, 49) and len({tuple(r) for r in idx}) == 12 and idx[-1].tolist() == b.tolist()
    assert box_size(np.zeros(49), np.full(49, 4)) == 5 ** 49  # exact; an int64 product would wrap


@given(x=st.floats(0, 1), step=st.sampled_from([0.05, 0.3, 0.7]), steps=st.integers(1, 40))
@settings(max_examples=40, deadline=None)
def test_steps_past_the_clip_range_change_nothing(x: float, step: float, steps: int) -> None:
    """``steps = 10**9`` within a clip range is the family of the fewest steps that cross it (and is
    built without allocating 10**9 step counts)."""
    x0 = np.array([x, 0.5])
    big = make_family(x0, [0], Manipulation(step=step, steps=10**9))
    small = make_family(x0, [0], Manipulation(step=step, steps=steps))
    if steps * step >= 1 + step:
        assert [v.tolist() for v in big.values] == [v.tolist() for v in small.values]
        assert [k.tolist() for k in big.ks] == [k.tolist() for k in small.ks]
    assert set(small.values[0].tolist()) <= set(big.values[0].tolist())
