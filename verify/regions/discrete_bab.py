"""Branch and bound over a region's discrete family: the ``split`` step of the exact routes.

A sub-family is a box of value indices, ``a[j] <= idx[j] <= b[j]`` for each
value ``j`` of the region (its members are the grid points in it, within the
budget).  Its continuous hull is bounded by CROWN (:mod:`nnaudit.verify.bounds`):
if ``logit_c - logit_j`` has a positive lower bound for every ``j``, every
member of the sub-family keeps the class.  Otherwise the sub-family is split
in two on one value's index range, or, once it has at most ``leaf_size``
members, enumerated exactly (float64 IR margins; a member that changes the
class there is reported only once onnxruntime confirms it).

What makes it fast enough for CIFAR-sized regions:

- networks of elementwise nodes are bounded on the region's cone of influence
  (:mod:`nnaudit.verify.regions.batch`: the region's values and one carrier
  input instead of the whole image), ``batch`` sub-families per call, each
  intersected with the bounds of the whole family's hull (computed once);
  ``intermediate="none"`` keeps those root pre-activation bounds (one
  backward pass of the specification per sub-family, cheapest), the default
  ``"backward"`` recomputes them per sub-family (tighter: on mnist-net_256x4
  a 7x7 cell at step 0.2 is proved in 19 sub-families, not open after 15 000);
- alpha-CROWN on the whole family's hull first, as many steps as half the
  time allows (it closes small negative CROWN margins on CIFAR cells);
- the value split is the one whose range contributes most to the bound's
  looseness, ``|a_in[r, j]| * (hi_j - lo_j)`` over the unproved rows ``r``
  (the input coefficients of the linear bound), not simply the widest;
- with a budget, a sub-family whose cheapest member is over it is dropped.

The result is SAFE only when every sub-family is proved or enumerated
without a float64 violation; a violation onnxruntime does not confirm (a
near-tie) leaves it undecided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nnaudit.verify.bounds import BoundMethod, Intermediate
from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.result import RegionCounterexample
from nnaudit.verify.regions.spec import Family, box_indices, box_size

#: a bound must exceed this to prove ``logit_c > logit_j`` (absorbs float64 rounding)
BOUND_TOL = 1e-7


@dataclass(frozen=True)
class DiscreteBabConfig:
    """Settings of the discrete branch and bound."""

    batch: int = 64                  # sub-families bounded per call
    leaf_size: int = 16              # sub-families with at most this many grid points are enumerated
    root_alpha_steps: int = 20       # alpha-CROWN steps on the whole family's hull first (0: none)
    intermediate: Intermediate = Intermediate.BACKWARD  # sub-families' pre-activation bounds: BACKWARD (CROWN, within the root's) or NONE (the root's); the value as a string also works
    bound_method: BoundMethod = BoundMethod.CROWN       # CROWN or INTERVAL over each sub-family's hull; the value as a string also works


@dataclass(frozen=True)
class DiscreteBabResult:
    """``safe``: every sub-family proved or enumerated; ``counterexample``: confirmed by
    onnxruntime; neither: ``left`` sub-families remained at the deadline, or ``unconfirmed``
    float64 violations onnxruntime did not confirm."""

    safe: bool
    counterexample: RegionCounterexample | None
    proved: int
    enumerated: int
    left: int
    unconfirmed: int


class _Boxes:
    """The specification rows, the root bounds and the batched bounding of index boxes."""

    def __init__(self, ctx: RegionContext, fam: Family, method: BoundMethod,
                 intermediate: Intermediate = Intermediate.BACKWARD) -> None:
        import torch

        from nnaudit.verify.bounds import compute_bounds

        n_out = ctx.network.output_size
        others = [j for j in range(n_out) if j != ctx.label]
        c = np.zeros((len(others), n_out))
        c[:, ctx.label] = 1.0
        c[np.arange(len(others)), others] = -1.0
        self.c, self.fam, self.low, self.method = torch.as_tensor(c), fam, ctx.lowered, method
        self.intermediate = intermediate
        self.cone = _use_cone(ctx.lowered)
        if self.cone:   # inputs: the region's values, then the image's carrier (fixed at 1)
            from nnaudit.verify.regions.batch import image_activations, region_cone

            self.low = region_cone(ctx.lowered, np.asarray(fam.pixels, dtype=np.int64), [image_activations(ctx)])
        radix = np.array([len(v) for v in fam.values], dtype=np.int64)
        lo, hi = (h[0] for h in self.hull([(np.zeros(len(radix), dtype=np.int64), radix - 1)]))
        start = time.perf_counter()
        with torch.no_grad():
            self.root = compute_bounds(self.low, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]), method=method)
        self.root_s = time.perf_counter() - start

    def root_alpha(self, steps: int) -> bool:
        """Whether alpha-CROWN (lower ReLU slopes optimised for the specification, ``steps``
        steps) proves the whole family's hull, over the root pre-activation bounds."""
        import torch

        from nnaudit.verify.bounds import spec_lower

        res = spec_lower(self.low, self.root, self.c, torch.zeros(self.c.shape[0], dtype=torch.float64),
                         method=self.method, alpha_steps=steps)
        return bool(res.lower.detach().min() > BOUND_TOL)

    def hull(self, boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """The hulls ``(D, n_in)`` of index boxes (on the cone: ``(D, p + 1)``)."""
        fam = self.fam
        lo = np.array([[v[i] for v, i in zip(fam.values, a)] for a, _ in boxes])
        hi = np.array([[v[i] for v, i in zip(fam.values, b)] for _, b in boxes])
        if self.cone:
            one = np.ones((len(boxes), 1))
            return np.hstack([lo, one]), np.hstack([hi, one])
        full_lo = np.broadcast_to(fam.x0, (len(boxes), fam.x0.size)).copy()
        full_hi = full_lo.copy()
        full_lo[:, fam.pixels], full_hi[:, fam.pixels] = lo, hi
        return full_lo, full_hi

    def columns(self) -> np.ndarray:
        """The input columns of the region's values."""
        return np.arange(len(self.fam.pixels)) if self.cone else np.asarray(self.fam.pixels)

    def bound(self, boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower bounds ``(D, r)``, split scores ``(D, p)`` and the hull widths of ``boxes``."""
        import torch

        from nnaudit.verify.bounds import compute_bounds, spec_lower

        lo, hi = self.hull(boxes)
        with torch.no_grad():
            b = compute_bounds(self.low, torch.as_tensor(lo), torch.as_tensor(hi), method=self.method,
                               parent=self.root, intermediate=self.intermediate)
            res = spec_lower(self.low, b, self.c, torch.zeros(self.c.shape[0], dtype=torch.float64),
                             method=self.method)
        lower = res.lower.cpu().numpy()
        cols = self.columns()
        width = (hi - lo)[:, cols]
        coef = np.abs(res.a_in.cpu().numpy()[:, :, cols])                  # (D, r, p)
        coef = np.where((lower <= BOUND_TOL)[:, :, None], coef, 0.0).max(axis=1)
        return lower, coef * width, width


def discrete_bab(ctx: RegionContext, fam: Family, config: DiscreteBabConfig, stop: float) -> DiscreteBabResult:
    """Decide ``fam`` by branch and bound until ``stop`` (a ``time.perf_counter`` time)."""
    radix = np.array([len(v) for v in fam.values], dtype=np.int64)
    stack = [(np.zeros(len(radix), dtype=np.int64), radix - 1)]
    if time.perf_counter() >= stop:
        return DiscreteBabResult(False, None, 0, 0, 1, 0)
    method = BoundMethod(config.bound_method)
    boxes = _Boxes(ctx, fam, method, Intermediate(config.intermediate))
    if config.root_alpha_steps and method is BoundMethod.CROWN and box_size(*stack[0]) > config.leaf_size \
            and _alpha_proves(boxes, config.root_alpha_steps, stop):
        return DiscreteBabResult(True, None, 1, 0, 0, 0)
    proved = enumerated = unconfirmed = 0
    size, per_box = 1, 0.0       # the first batch is one box, to time it; later ones fit the time left
    while stack:
        now = time.perf_counter()
        if now >= stop:
            return DiscreteBabResult(False, None, proved, enumerated, len(stack), unconfirmed)
        if per_box > 0:
            size = int(min(config.batch, max(1, (stop - now) / per_box)))
        batch, stack = stack[-size:], stack[:-size]
        batch = [box for box in batch if fam.budget is None or _cheapest(fam, *box) <= fam.budget]
        if not batch:
            continue
        lower, score, width = boxes.bound(batch)
        per_box = (time.perf_counter() - now) / len(batch)
        ok = lower.min(axis=1) > BOUND_TOL
        proved += int(ok.sum())
        for d in np.flatnonzero(~ok):
            a, b = batch[d]
            if box_size(a, b) <= config.leaf_size:
                cex, n, bad = _enumerate_leaf(ctx, fam, a, b)
                if cex is not None:
                    return DiscreteBabResult(False, cex, proved, enumerated + n, len(stack), unconfirmed)
                enumerated, unconfirmed = enumerated + n, unconfirmed + bad
                continue
            stack += _halves(a, b, score[d], width[d])
    return DiscreteBabResult(unconfirmed == 0, None, proved, enumerated, 0, unconfirmed)


def _alpha_proves(boxes: _Boxes, steps: int, stop: float) -> bool:
    """alpha-CROWN on the whole family's hull (worth it on a large family, where splitting is slow):
    one step, timed, then as many more as half the time left allows (up to ``steps``)."""
    start = time.perf_counter()
    if start + 2 * boxes.root_s >= stop:
        return False
    if boxes.root_alpha(1):
        return True
    now = time.perf_counter()
    more = min(steps, int(0.5 * (stop - now) / max(now - start, 1e-6)))
    return more >= 2 and boxes.root_alpha(more)


def _use_cone(lowered: object) -> bool:
    """Whether to bound on the region's cone of influence (:mod:`nnaudit.verify.regions.batch`:
    networks of elementwise nodes with more inputs than its full-network threshold)."""
    from nnaudit.verify.regions.batch import ELEMENTWISE, FULL_INPUTS

    return all(n.kind in ELEMENTWISE for n in lowered.nodes) and lowered.input_size > FULL_INPUTS


def _cheapest(fam: Family, a: np.ndarray, b: np.ndarray) -> int:
    """The smallest budget cost of a grid point of the box (0 without a budget)."""
    if fam.budget is None:
        return 0
    return int(sum(int(c[i:j + 1].min()) for c, i, j in zip(fam.costs, a, b)))


def _halves(a: np.ndarray, b: np.ndarray, score: np.ndarray, width: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The box split in two on the value with the highest score (the widest if no score is positive)."""
    splittable = b > a
    key = np.where(splittable, score, -1.0)
    if not (key > 0).any():
        key = np.where(splittable, width, -1.0)
    p = int(np.argmax(key))
    mid = (a[p] + b[p]) // 2
    b1, a2 = b.copy(), a.copy()
    b1[p], a2[p] = mid, mid + 1
    return [(a, b1), (a2, b)]


def _enumerate_leaf(ctx: RegionContext, fam: Family, a: np.ndarray,
                    b: np.ndarray) -> tuple[RegionCounterexample | None, int, int]:
    """Every member of a small box on the float64 IR: ``(confirmed counterexample, members,
    float64 violations onnxruntime did not confirm)``."""
    idx = box_indices(a, b)
    if fam.budget is not None:
        idx = idx[fam.index_cost(idx) <= fam.budget]
    if len(idx) == 0:
        return None, 0, 0
    xs = fam.from_indices(idx)
    margins = ctx.margins(xs)
    bad = np.flatnonzero(margins <= 0)
    if len(bad) == 0:
        return None, len(xs), 0
    cex = ctx.confirm(xs[bad[np.argsort(margins[bad])]])
    return cex, len(xs), 0 if cex is not None else len(bad)
