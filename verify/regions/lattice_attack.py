"""A falsifier that respects the region's lattice: PGD, snapped to the grid, then coordinate search.

The ``attack`` route of :mod:`nnaudit.verify.regions.exact` for families too
large to enumerate.  A family member moves each value of the region to one of
its grid values ``clip(x0 + k * step)`` (:class:`~nnaudit.verify.regions.spec.Family`),
so a continuous adversarial example is not yet a counterexample:

1. **PGD** (Madry et al., 2018) on the margin ``logit_c - max_j logit_j``
   (and, for some starts, ``logit_c - logit_t`` for the classes ``t`` closest
   to ``c`` at the image: a targeted margin leads where the maximum's
   gradient keeps switching) over the family's continuous hull, from the
   image and random starts at once (float32 torch, :meth:`Network.to_torch`); after every step each
   start is snapped to the nearest grid values (and, with a budget, the
   least useful changes are undone until it fits);
2. **coordinate search** over step counts from the best snapped points:
   every member that changes one value of the current one is scored in one
   batch and the best taken, while the margin falls.

Whatever the torch margins say, a member is only returned after onnxruntime
confirms its class change on the original file (:meth:`RegionContext.confirm`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.result import RegionCounterexample
from nnaudit.verify.regions.spec import Family


@dataclass(frozen=True)
class LatticeConfig:
    """Settings of the lattice-aware falsifier."""

    starts: int = 16            # PGD starts at once: the image, then uniform random points of the hull
    targets: int = 3            # starts cycle through the untargeted margin and these top classes (0: untargeted only)
    pgd_steps: int = 30         # sign-gradient steps per start
    pgd_rate: float = 0.2       # PGD step, as a share of each value's range in the family
    refine: int = 3             # best snapped points refined by the coordinate search
    rounds: int = 64            # coordinate-search rounds per point (one value changed per round)
    chunk: int = 2048           # members scored per torch call


@dataclass(frozen=True)
class LatticeResult:
    """A confirmed counterexample (or None) and how many members were scored."""

    counterexample: RegionCounterexample | None
    tried: int
    how: str = ""


class _Scorer:
    """Float32 torch margins of flat members ``(B, n_in)`` and their gradients."""

    def __init__(self, ctx: RegionContext) -> None:
        import torch

        self.ctx = ctx
        self.model = ctx.network.to_torch(torch.get_default_device())
        self.tried = 0

    def margins(self, xs: np.ndarray, chunk: int) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(xs), chunk):
                out.append(self._margin(torch.as_tensor(xs[i:i + chunk], dtype=torch.float32)).cpu().numpy())
        self.tried += len(xs)
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def _margin(self, x: object, targets: object = None) -> object:
        """``logit_c - max_j logit_j``; with ``targets`` ``(B,)`` (class indices, -1: all others),
        row i's margin is against class ``targets[i]`` alone (never below the untargeted one)."""
        import torch

        y = self.model(x.reshape((len(x),) + self.ctx.input_shape)).reshape(len(x), -1)
        others = torch.cat([y[:, :self.ctx.label], y[:, self.ctx.label + 1:]], dim=1)
        worst = others.max(dim=1).values
        if targets is not None:
            picked = y.gather(1, targets.clamp(min=0)[:, None])[:, 0]
            worst = torch.where(targets >= 0, picked, worst)
        return y[:, self.ctx.label] - worst

    def targets(self, starts: int, count: int) -> np.ndarray:
        """Each start's target ``(starts,)``: -1 (untargeted), then the ``count`` classes
        scoring highest at the image after ``label``, in turn."""
        y = self.ctx.lowered.evaluate(self.ctx.x0[None])[0]
        order = [int(j) for j in np.argsort(-y) if j != self.ctx.label][:count]
        cycle = np.array([-1] + order, dtype=np.int64)
        return cycle[np.arange(starts) % len(cycle)]


def lattice_attack(ctx: RegionContext, fam: Family, config: LatticeConfig, deadline: float,
                   seed: int = 0) -> LatticeResult:
    """Search ``fam`` for a member onnxruntime classifies otherwise (see the module docstring)."""
    scorer = _Scorer(ctx)
    grid = _Grid(fam)
    idx, how = _pgd(scorer, fam, grid, config, deadline, np.random.default_rng(seed))
    margins = scorer.margins(fam.from_indices(idx), config.chunk)
    order = np.argsort(margins)
    cex = _confirm(ctx, fam, idx[order], margins[order])
    if cex is not None:
        return LatticeResult(cex, scorer.tried, how)
    for i in order[: config.refine]:
        if time.perf_counter() >= deadline:
            break
        cex = _coordinate_search(ctx, scorer, fam, idx[i], config, deadline)
        if cex is not None:
            return LatticeResult(cex, scorer.tried, "PGD snapped to the grid, then coordinate search")
    return LatticeResult(None, scorer.tried)


class _Grid:
    """The family's value sets as padded arrays, for snapping many points at once."""

    def __init__(self, fam: Family) -> None:
        width = max(len(v) for v in fam.values)
        self.values = np.full((len(fam.values), width), np.inf)
        for j, v in enumerate(fam.values):
            self.values[j, : len(v)] = v
        self.cost = np.zeros_like(self.values, dtype=np.int64)
        for j, c in enumerate(fam.costs):
            self.cost[j, : len(c)] = c
        self.zero = np.array([int(np.flatnonzero(k == 0)[0]) for k in fam.ks], dtype=np.int64)
        self.lo = np.array([v[0] for v in fam.values])
        self.hi = np.array([v[-1] for v in fam.values])

    def snap(self, z: np.ndarray, gain: np.ndarray, budget: int | None) -> np.ndarray:
        """Value indices ``(B, p)`` nearest to region values ``z`` ``(B, p)``; with a budget,
        changes with the least ``gain`` ``(B, p)`` are undone until the cost fits."""
        idx = np.abs(self.values[None] - z[..., None]).argmin(axis=2)
        if budget is None:
            return idx
        rows = np.arange(len(idx))[:, None]
        cost = self.cost[np.arange(idx.shape[1])[None], idx]
        order = np.argsort(-np.where(cost > 0, gain, -np.inf), axis=1)   # most useful changes first
        kept = np.cumsum(cost[rows, order], axis=1) <= budget
        drop = np.zeros_like(kept)
        drop[rows, order] = ~kept
        return np.where(drop, self.zero[None], idx)


def _pgd(scorer: _Scorer, fam: Family, grid: _Grid, config: LatticeConfig, deadline: float,
         rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Sign-gradient descent of the margin over the hull; returns the snapped points
    ``(B, p)`` of every step (value indices) and a description."""
    import torch

    lo, hi = grid.lo, grid.hi
    z = rng.uniform(lo, hi, size=(config.starts, len(lo)))
    z[0] = fam.x0[fam.pixels]
    rate = config.pgd_rate * (hi - lo)
    base = torch.as_tensor(np.broadcast_to(fam.x0, (config.starts, fam.x0.size)).copy(), dtype=torch.float32)
    pix = torch.as_tensor(fam.pixels)
    targets = torch.as_tensor(scorer.targets(config.starts, config.targets))
    found = [grid.snap(z, np.zeros_like(z), fam.budget)]
    for _ in range(config.pgd_steps):
        if time.perf_counter() >= deadline:
            break
        zt = torch.as_tensor(z, dtype=torch.float32).requires_grad_(True)
        x = base.index_copy(1, pix, zt)
        m = scorer._margin(x, targets)
        grad, = torch.autograd.grad(m.sum(), zt)
        g = grad.cpu().numpy().astype(np.float64)
        scorer.tried += len(z)
        z = np.clip(z - rate * np.sign(g), lo, hi)
        gain = np.abs(g * (z - fam.x0[fam.pixels]))
        found.append(grid.snap(z, gain, fam.budget))
    return np.unique(np.concatenate(found), axis=0), "PGD snapped to the grid"


def _confirm(ctx: RegionContext, fam: Family, idx: np.ndarray, margins: np.ndarray) -> RegionCounterexample | None:
    """onnxruntime on the members with a non-positive torch margin, most negative first."""
    bad = idx[margins <= 0]
    return ctx.confirm(fam.from_indices(bad)) if len(bad) else None


def _coordinate_search(ctx: RegionContext, scorer: _Scorer, fam: Family, start: np.ndarray,
                       config: LatticeConfig, deadline: float) -> RegionCounterexample | None:
    """Greedy descent over step counts from value indices ``start`` ``(p,)``: each round scores
    every member changing one value and moves to the best while the margin falls."""
    radix = np.array([len(v) for v in fam.values])
    col = np.repeat(np.arange(len(radix)), radix)
    val = np.concatenate([np.arange(r) for r in radix])
    cur = start.copy()
    cur_m = float(scorer.margins(fam.from_indices(cur[None]), config.chunk)[0])
    for _ in range(config.rounds):
        if time.perf_counter() >= deadline:
            return None
        neigh = np.repeat(cur[None], len(col), axis=0)
        neigh[np.arange(len(col)), col] = val
        if fam.budget is not None:
            neigh = neigh[fam.index_cost(neigh) <= fam.budget]
        if len(neigh) == 0:
            return None
        m = scorer.margins(fam.from_indices(neigh), config.chunk)
        order = np.argsort(m)[:8]
        if m[order[0]] <= 0:
            cex = _confirm(ctx, fam, neigh[order], m[order])
            if cex is not None:
                return cex
        if m[order[0]] >= cur_m:
            return None
        cur, cur_m = neigh[order[0]], float(m[order[0]])
    return None
