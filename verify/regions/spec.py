"""Image regions and the discretized manipulation family of region safety.

This is the specification half of :mod:`nnaudit.verify.regions.api` (the
question DLV asks, Huang et al., CAV 2017): for an image ``x0`` and a region
``R`` of its pixels, the *family* is every image obtained by moving each value
in ``R`` by ``k * step`` with ``k`` in ``-steps .. steps``, clipped to the
valid input range, optionally within an L1 or L0 budget over ``R``; every
other value stays fixed.

Semantics, stated once and used by every route (bounds, Z3, enumeration,
DLV):

- the value of a pixel value ``i`` of ``R`` is ``clip(x0_i + k_i * step)``
  computed in float64, ``k_i`` an integer in ``[-steps, steps]``;
- the L1 budget ``b`` keeps members with ``sum_i |k_i| * step <= b``, the L0
  budget keeps members with at most ``b`` changed values; since several
  ``k`` can clip to the same value, a value counts with its smallest ``|k|``
  (:attr:`Family.costs`).

Regions (:class:`ImageRegion`) and the image layout live in
:mod:`nnaudit.verify.regions.layout` (re-exported here); each region lists
the flat indices of the input values it covers, which is all a family needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.errors import SpecError
from nnaudit.verify.regions.layout import (ImageLayout, ImageRegion, RegionChannels, grid_regions,  # noqa: F401
                                          mask_regions, parse_grid, patch_regions, whole_image)

BUDGET_NORMS = ("l1", "l0")


@dataclass(frozen=True)
class Manipulation:
    """The manipulation family (see the module docstring)."""

    step: float = 0.05                               # size of one step, in input units
    steps: int = 2                                   # n: each value moves by k*step, k in -n..n
    clip: tuple[float, float] | None = (0.0, 1.0)    # valid input range (None: no clipping)
    budget_norm: str | None = None                   # "l1" or "l0" budget over the region, or None
    budget: float | None = None                      # L1: sum |k|*step <= budget; L0: changed values <= budget

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and self.step > 0):
            raise SpecError(f"manipulation: expected step > 0, got {self.step}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise SpecError(f"manipulation: expected steps >= 1 (an integer), got {self.steps}")
        if self.clip is not None:
            lo, hi = self.clip
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise SpecError(f"manipulation: expected clip range low < high, got {self.clip}")
        if (self.budget_norm is None) != (self.budget is None):
            raise SpecError("manipulation: give both budget_norm ('l1' or 'l0') and budget, or neither")
        if self.budget_norm is not None and self.budget_norm not in BUDGET_NORMS:
            raise SpecError(f"manipulation: expected budget norm 'l1' or 'l0', got {self.budget_norm!r}")
        if self.budget is not None and not self.budget >= 0:
            raise SpecError(f"manipulation: expected budget >= 0, got {self.budget}")

    @property
    def budget_units(self) -> int | None:
        """The budget as an integer bound on the summed costs (None: no budget)."""
        if self.budget is None:
            return None
        if self.budget_norm == "l0":
            return int(math.floor(self.budget + 1e-9))
        return int(math.floor(self.budget / self.step + 1e-9))

    def to_dict(self) -> dict[str, Any]:
        """The ``manipulation`` object of the regions result."""
        budget = None if self.budget is None else {"norm": self.budget_norm, "value": self.budget}
        return {"step": self.step, "steps": int(self.steps), "budget": budget,
                "clip": None if self.clip is None else [float(self.clip[0]), float(self.clip[1])]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manipulation:
        budget = d.get("budget")
        clip = d.get("clip")
        return cls(step=float(d["step"]), steps=int(d["steps"]),
                   clip=None if clip is None else (float(clip[0]), float(clip[1])),
                   budget_norm=None if budget is None else budget["norm"],
                   budget=None if budget is None else float(budget["value"]))


# -- the family of one image and region ---------------------------------------
@dataclass(frozen=True)
class Family:
    """The discretized manipulations of ``x0`` over ``pixels``.

    ``values[i]``: float64 distinct values pixel ``pixels[i]`` can take
    (ascending); ``ks[i]``: the signed step count of each value with the
    smallest ``|k|``; ``costs[i]``: its budget cost (``|k|`` for L1, 0/1 for
    L0, ``|k|`` when there is no budget).
    """

    x0: np.ndarray                  # (n_in,) float64, the image flattened
    pixels: np.ndarray              # (p,) int64 flat indices of the region
    values: tuple[np.ndarray, ...]
    ks: tuple[np.ndarray, ...]
    costs: tuple[np.ndarray, ...]
    budget: int | None              # bound on the summed costs, None: no budget
    budget_norm: str | None = None  # "l1" or "l0" (how costs were computed)
    step: float = 0.0               # the manipulation step (values on the grid are x0 + k*step)

    @property
    def raw_count(self) -> int:
        """Members ignoring the budget: the product of the value counts."""
        return math.prod(len(v) for v in self.values)

    def count(self) -> int:
        """Exact number of members (budget included), by dynamic programming."""
        if self.budget is None:
            return self.raw_count
        ways = np.zeros(self.budget + 1, dtype=object)
        ways[0] = 1
        for c in self.costs:
            new = np.zeros_like(ways)
            for cost in c:
                if cost <= self.budget:
                    new[cost:] += ways[: self.budget + 1 - cost]
            ways = new
        return int(ways.sum())

    def hull(self) -> tuple[np.ndarray, np.ndarray]:
        """The continuous hull of the family: flat float64 ``(n_in,)`` lower and upper."""
        lo, hi = self.x0.copy(), self.x0.copy()
        lo[self.pixels] = [v[0] for v in self.values]
        hi[self.pixels] = [v[-1] for v in self.values]
        return lo, hi

    def from_indices(self, idx: np.ndarray) -> np.ndarray:
        """Members ``(B, n_in)`` from value indices ``(B, p)``."""
        x = np.broadcast_to(self.x0, (len(idx), self.x0.size)).copy()
        for j, v in enumerate(self.values):
            x[:, self.pixels[j]] = v[idx[:, j]]
        return x

    def from_ks(self, ks: Sequence[int]) -> np.ndarray:
        """The member ``(n_in,)`` with signed step counts ``ks`` (one per pixel)."""
        idx = np.array([[int(np.flatnonzero(kk == int(k))[0]) for kk, k in zip(self.ks, ks)]])
        return self.from_indices(idx)[0]

    def index_cost(self, idx: np.ndarray) -> np.ndarray:
        """Summed cost ``(B,)`` of members given by value indices ``(B, p)``."""
        total = np.zeros(len(idx), dtype=np.int64)
        for j, c in enumerate(self.costs):
            total += c[idx[:, j]]
        return total

    def batches(self, batch: int = 4096, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """All members in mixed-radix order from ordinal ``start``: yields
        ``(next_ordinal, members (B, n_in))``; budget-violating ones dropped."""
        radix = np.array([len(v) for v in self.values], dtype=np.int64)
        total = self.raw_count
        for lo in range(start, total, batch):
            ords = np.arange(lo, min(lo + batch, total), dtype=np.int64)
            idx = mixed_radix(ords, radix)
            if self.budget is not None:
                idx = idx[self.index_cost(idx) <= self.budget]
            yield int(ords[-1]) + 1, self.from_indices(idx)

    def contains(self, x: np.ndarray) -> bool:
        """Whether flat ``x`` is a member (exact float64 comparison)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        others = np.ones(x.size, dtype=bool)
        others[self.pixels] = False
        if not np.array_equal(x[others], self.x0[others]):
            return False
        total = 0
        for j, v in enumerate(self.values):
            hit = np.flatnonzero(v == x[self.pixels[j]])
            if len(hit) == 0:
                return False
            total += int(self.costs[j][hit[0]])
        return self.budget is None or total <= self.budget

    def snap(self, x: np.ndarray) -> np.ndarray:
        """The member nearest to flat ``x`` value by value (budget ignored)."""
        out = self.x0.copy()
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        for j, v in enumerate(self.values):
            out[self.pixels[j]] = v[int(np.argmin(np.abs(v - x[self.pixels[j]])))]
        return out


def mixed_radix(ords: np.ndarray, radix: np.ndarray) -> np.ndarray:
    """The digits ``(B, p)`` of ordinals ``(B,)`` in the mixed radix ``radix`` ``(p,)``,
    the last digit fastest (the order of ``itertools.product``); any ``p``."""
    radix = np.asarray(radix, dtype=np.int64)
    idx = np.empty((len(ords), len(radix)), dtype=np.int64)
    rest = np.asarray(ords, dtype=np.int64).copy()
    for j in range(len(radix) - 1, -1, -1):
        idx[:, j] = rest % radix[j]
        rest //= radix[j]
    return idx


def box_size(a: np.ndarray, b: np.ndarray) -> int:
    """Members of the index box ``a <= idx <= b`` (inclusive), as an exact Python int (no int64 overflow)."""
    return math.prod(int(j) - int(i) + 1 for i, j in zip(a, b))


def box_indices(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Every value-index vector ``(n, p)`` of the box ``a <= idx <= b`` (inclusive), in
    row-major order (the last value fastest, as ``np.meshgrid(..., indexing="ij")``),
    with no limit on the number of values ``p``; ``n`` (:func:`box_size`) must be small."""
    a = np.asarray(a, dtype=np.int64)
    return a + mixed_radix(np.arange(box_size(a, b), dtype=np.int64), np.asarray(b, dtype=np.int64) - a + 1)


#: most steps each way without a clip range (each value of a region gets 2 * steps + 1 grid values)
MAX_UNCLIPPED_STEPS = 100_000


def _reach(manip: Manipulation) -> int:
    """The step counts that matter: with a clip range, no more than it takes to cross it (every
    further step clips to a value a smaller one already reached), so ``steps = 10**9`` costs what
    ``ceil((high - low) / step) + 1`` does; without one, ``steps`` (refused past :data:`MAX_UNCLIPPED_STEPS`)."""
    if manip.clip is None:
        if manip.steps > MAX_UNCLIPPED_STEPS:
            raise SpecError(f"manipulation: steps {manip.steps} without a clip range gives each value more than "
                            f"{2 * MAX_UNCLIPPED_STEPS + 1} grid values; set a clip range or fewer steps")
        return int(manip.steps)
    lo, hi = manip.clip
    return int(min(manip.steps, math.ceil((hi - lo) / manip.step) + 1))


def make_family(x0: np.ndarray, pixels: Sequence[int], manip: Manipulation) -> Family:
    """The family of ``x0`` (any shape, flattened) over ``pixels``."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    pix = np.asarray(sorted(set(int(p) for p in pixels)), dtype=np.int64)
    if len(pix) == 0 or pix[0] < 0 or pix[-1] >= x0.size:
        raise SpecError(f"regions: region pixels must be non-empty flat indices in [0, {x0.size}), got {list(pixels)[:8]}")
    if manip.clip is not None:
        lo, hi = manip.clip
        bad = np.flatnonzero((x0[pix] < lo) | (x0[pix] > hi))
        if len(bad):
            raise SpecError(f"regions: input value {x0[pix[bad[0]]]!r} at index {int(pix[bad[0]])} lies outside "
                            f"the clip range [{lo}, {hi}]; set the clip range to the data's valid range")
    values, ks, costs = [], [], []
    k_all = np.arange(-_reach(manip), _reach(manip) + 1)
    order = np.argsort(np.abs(k_all), kind="stable")  # smallest |k| first, then -k before +k
    for i in pix:
        raw = x0[i] + k_all * manip.step
        if manip.clip is not None:
            raw = np.clip(raw, manip.clip[0], manip.clip[1])
        seen: dict[float, int] = {}
        for o in order:
            seen.setdefault(float(raw[o]), int(k_all[o]))
        vals = np.array(sorted(seen), dtype=np.float64)
        kk = np.array([seen[float(v)] for v in vals], dtype=np.int64)
        cost = (kk != 0).astype(np.int64) if manip.budget_norm == "l0" else np.abs(kk)
        values.append(vals)
        ks.append(kk)
        costs.append(cost)
    return Family(x0, pix, tuple(values), tuple(ks), tuple(costs), manip.budget_units, manip.budget_norm, manip.step)
