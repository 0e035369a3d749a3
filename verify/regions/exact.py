"""The exact routes of region safety, cheapest first.

For one image and region (a :class:`~nnaudit.verify.regions.spec.Family`):

1. **bounds**: sound CROWN bounds (:mod:`nnaudit.verify.bounds`) of
   ``logit_c - logit_j`` over the continuous hull of the family; if every
   lower bound is positive, every grid point keeps the class: SAFE.
2. **attack**: a discrete search for a counterexample (random members, then
   steepest descent of the IR margin changing one value at a time).
   Found members are UNSAFE only when onnxruntime confirms them.
3. **enumeration**: every member when there are at most
   ``max_enumeration``: SAFE when all keep the class on the float64 IR,
   UNSAFE on a confirmed member; else **bound splitting**: branch and bound
   over the discrete family (sub-families split on their widest value range,
   each hull bounded by CROWN, sub-families of at most ``leaf_size`` members
   enumerated), complete for the family, for a share of the time.
4. **smt**: one Z3 query over the discrete family (each value ``x_i`` is
   one of its clipped grid values ``clip(x0_i + k_i * step)``, a disjunction
   of equalities, with its step cost for the budget, a linear constraint; the
   network encoded exactly by
   :func:`nnaudit.verify.encode.encode_network`) asking for a member whose
   class is not ``c``; unsat is SAFE, complete for the family.

A member the IR or Z3 calls unsafe but onnxruntime does not (float32 vs
exact arithmetic at a near-tie) is never reported as UNSAFE: Z3 blocks it and
searches again; enumeration ends UNKNOWN and says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.result import RegionCounterexample, RegionVerdict
from nnaudit.verify.regions.spec import Family, box_indices, box_size

log = logging.getLogger(__name__)

#: a bound must exceed this to prove ``logit_c > logit_j`` (absorbs float64 rounding)
BOUND_TOL = 1e-7
#: Z3 looks for members with margin <= this, so unsat proves every member's
#: margin exceeds it (robust to the last-bit difference between the exact
#: grid ``x0 + k*step`` and its float64 values)
SMT_TOL = 1e-6


@dataclass(frozen=True)
class ExactConfig:
    """Settings of the exact routes."""

    bound_method: str = "crown"      # "crown" or "interval" bound propagation over the hull
    attack: bool = True              # try the discrete attack before enumeration / Z3
    attack_samples: int = 256        # random members evaluated by the attack
    attack_restarts: int = 2         # steepest-descent starts (the image, then random members)
    max_enumeration: int = 200_000   # enumerate the family when it has at most this many members
    split_share: float = 0.5         # share of the remaining time for bound splitting before Z3
    split_batch: int = 64            # sub-families bounded at once
    leaf_size: int = 256             # sub-families this small are enumerated instead of split
    enum_batch: int = 8192           # members evaluated per batch
    smt: bool = True                 # use Z3 when enumeration is too large
    smt_retries: int = 3             # re-queries after a Z3 model onnxruntime does not confirm
    seed: int = 0                    # seed of the attack's random members


@dataclass(frozen=True)
class Outcome:
    """What one route concluded (``verdict`` None: go on to the next route)."""

    verdict: RegionVerdict | None
    route: str
    note: str
    counterexample: RegionCounterexample | None = None


def check_exact(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float) -> tuple[Outcome, dict]:
    """Run the routes in order until one decides or the deadline passes.

    Returns the deciding :class:`Outcome` (or an UNKNOWN one whose ``note``
    lists what every route covered) and counters.
    """
    notes: list[str] = []
    stats: dict = {}
    routes = [_bounds]
    if config.attack:
        routes.append(_attack)
    routes += [_enumerate, _split]
    if config.smt:
        routes.append(_smt)
    for route in routes:
        if time.perf_counter() >= deadline:
            notes.append("time budget spent")
            break
        out = route(ctx, fam, config, deadline, stats)
        if out.verdict is not None:
            return out, stats
        notes.append(out.note)
    return Outcome(RegionVerdict.UNKNOWN, "smt" if config.smt else "enumeration", "; ".join(n for n in notes if n)), stats


def _bounds(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    from nnaudit.verify.bounds import spec_bounds

    n_out = ctx.network.output_size
    others = [j for j in range(n_out) if j != ctx.label]
    c = np.zeros((len(others), n_out))
    c[:, ctx.label] = 1.0
    c[np.arange(len(others)), others] = -1.0
    lo, hi = fam.hull()
    low = spec_bounds(ctx.lowered, lo[None], hi[None], c, np.zeros(len(others)), method=config.bound_method)[0]
    worst = float(low.min())
    stats["bound_margin"] = worst
    if worst > BOUND_TOL:
        return Outcome(RegionVerdict.SAFE, "bounds", f"{config.bound_method} bounds over the hull: margin >= {worst:.4g}")
    return Outcome(None, "bounds", f"bounds: not proved over the hull (margin lower bound {worst:.3g})")


def _confirm_sorted(ctx: RegionContext, xs: np.ndarray, margins: np.ndarray) -> tuple[RegionCounterexample | None, int]:
    """Confirm the IR-unsafe members (margin <= 0), most negative first."""
    bad = np.flatnonzero(margins <= 0)
    if len(bad) == 0:
        return None, 0
    order = bad[np.argsort(margins[bad])]
    return ctx.confirm(xs[order]), len(bad)


def _attack(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    rng = np.random.default_rng(config.seed)
    p = len(fam.pixels)
    radix = np.array([len(v) for v in fam.values])
    idx = rng.integers(0, radix, size=(config.attack_samples, p))
    if fam.budget is not None:
        idx = idx[fam.index_cost(idx) <= fam.budget]
    xs = fam.from_indices(idx)
    tried = len(xs)
    if tried:
        cex, _ = _confirm_sorted(ctx, xs, ctx.margins(xs))
        if cex is not None:
            return Outcome(RegionVerdict.UNSAFE, "attack", "random member", cex)
    zero = np.array([[int(np.flatnonzero(k == 0)[0]) for k in fam.ks]])
    starts = [zero[0]] + [idx[i] for i in range(min(config.attack_restarts - 1, len(idx)))]
    for start in starts:
        cur = start.copy()
        cur_m = float(ctx.margins(fam.from_indices(cur[None]))[0])
        for _ in range(int(radix.sum())):
            if time.perf_counter() >= deadline:
                break
            neigh = np.repeat(cur[None], int(radix.sum()), axis=0)
            col = np.repeat(np.arange(p), radix)
            neigh[np.arange(len(neigh)), col] = np.concatenate([np.arange(r) for r in radix])
            if fam.budget is not None:
                neigh = neigh[fam.index_cost(neigh) <= fam.budget]
            if len(neigh) == 0:
                break
            m = ctx.margins(fam.from_indices(neigh))
            tried += len(neigh)
            best = int(np.argmin(m))
            if m[best] >= cur_m:
                break
            cur, cur_m = neigh[best], float(m[best])
            if cur_m <= 0:
                cex = ctx.confirm(fam.from_indices(cur[None]))
                if cex is not None:
                    return Outcome(RegionVerdict.UNSAFE, "attack", "steepest descent", cex)
                break
    stats["attack_tried"] = tried
    return Outcome(None, "attack", f"attack: {tried} members tried, none confirmed unsafe")


def _enumerate(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    total = fam.raw_count
    if total > config.max_enumeration:
        return Outcome(None, "enumeration", f"enumeration: skipped ({total:.3g} grid points > {config.max_enumeration})")
    done, seen, unconfirmed = 0, 0, 0
    for done, xs in fam.batches(config.enum_batch):
        seen += len(xs)
        if len(xs):
            cex, n_bad = _confirm_sorted(ctx, xs, ctx.margins(xs))
            if cex is not None:
                return Outcome(RegionVerdict.UNSAFE, "enumeration", f"{seen} members enumerated", cex)
            unconfirmed += n_bad
        if time.perf_counter() >= deadline and done < total:
            stats["enumerated"] = seen
            return Outcome(None, "enumeration", f"enumeration: {done} of {total} grid points checked, none unsafe")
    stats["enumerated"] = seen
    if unconfirmed:
        return Outcome(RegionVerdict.UNKNOWN, "enumeration",
                       f"enumeration: {unconfirmed} member(s) change the class on the float64 IR but not in "
                       "onnxruntime (a near-tie); neither safe nor a confirmed counterexample")
    return Outcome(RegionVerdict.SAFE, "enumeration", f"all {seen} members enumerated")


def _split(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    """Branch and bound over the discrete family: bound each sub-family's hull
    (batched CROWN), split unproved ones on the value with the widest range,
    enumerate sub-families of at most ``leaf_size`` members."""
    from nnaudit.verify.bounds import spec_bounds

    stop = time.perf_counter() + config.split_share * (deadline - time.perf_counter())
    n_out = ctx.network.output_size
    others = [j for j in range(n_out) if j != ctx.label]
    c = np.zeros((len(others), n_out))
    c[:, ctx.label] = 1.0
    c[np.arange(len(others)), others] = -1.0
    radix = np.array([len(v) for v in fam.values])
    queue = [(np.zeros(len(radix), dtype=np.int64), radix - 1)]   # inclusive index ranges per value
    proved = enumerated = unconfirmed = 0
    while queue:
        if time.perf_counter() >= stop:
            stats.update(split_proved=proved, split_enumerated=enumerated)
            return Outcome(None, "bounds", f"bound splitting: {proved} sub-families proved, {enumerated} members "
                           f"enumerated, {len(queue)} sub-families left")
        batch, queue = queue[: config.split_batch], queue[config.split_batch:]
        lo = np.broadcast_to(fam.x0, (len(batch), fam.x0.size)).copy()
        hi = lo.copy()
        for d, (a, b) in enumerate(batch):
            lo[d, fam.pixels] = [v[i] for v, i in zip(fam.values, a)]
            hi[d, fam.pixels] = [v[i] for v, i in zip(fam.values, b)]
        ok = spec_bounds(ctx.lowered, lo, hi, c, np.zeros(len(others)), method=config.bound_method).min(axis=1) > BOUND_TOL
        proved += int(ok.sum())
        for d in np.flatnonzero(~ok):
            a, b = batch[d]
            if box_size(a, b) <= config.leaf_size:   # exact int: an int64 product could wrap
                idx = box_indices(a, b)
                if fam.budget is not None:
                    idx = idx[fam.index_cost(idx) <= fam.budget]
                xs = fam.from_indices(idx)
                enumerated += len(xs)
                if len(xs):
                    cex, n_bad = _confirm_sorted(ctx, xs, ctx.margins(xs))
                    if cex is not None:
                        return Outcome(RegionVerdict.UNSAFE, "enumeration", "bound splitting, leaf enumeration", cex)
                    unconfirmed += n_bad
                continue
            width = np.array([v[j] - v[i] for v, i, j in zip(fam.values, a, b)])
            p = int(np.argmax(width))
            mid = (a[p] + b[p]) // 2
            b1, a2 = b.copy(), a.copy()
            b1[p], a2[p] = mid, mid + 1
            queue += [(a, b1), (a2, b)]
    stats.update(split_proved=proved, split_enumerated=enumerated)
    if unconfirmed:
        return Outcome(RegionVerdict.UNKNOWN, "enumeration",
                       f"bound splitting: {unconfirmed} member(s) change the class on the float64 IR but not in "
                       "onnxruntime (a near-tie); neither safe nor a confirmed counterexample")
    route = "bounds" if enumerated == 0 else "enumeration"
    return Outcome(RegionVerdict.SAFE, route, f"bound splitting: {proved} sub-families proved by bounds, "
                   f"{enumerated} members enumerated")


def _smt(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    import z3

    from nnaudit.verify.encode import encode_network
    from nnaudit.verify.smt import SmtStatus, real, solve

    xs = [z3.Real(f"x{j}") for j in range(len(fam.pixels))]
    x_vars = [real(v) for v in fam.x0]
    cons, costs = [], []
    for j in range(len(fam.pixels)):
        x_vars[int(fam.pixels[j])] = xs[j]
        pixel_cons, cost = _pixel_grid(fam, j, xs[j])
        cons += pixel_cons
        costs.append(cost)
    if fam.budget is not None:
        cons.append(z3.Sum(costs) <= fam.budget)
    lo, hi = fam.hull()
    shape = tuple(ctx.network.input_shape)
    net_cons, outs = encode_network(ctx.network, x_vars, lower=lo.reshape(shape), upper=hi.reshape(shape))
    cons += net_cons
    tol = real(SMT_TOL)
    cons.append(z3.Or([outs[j] >= outs[ctx.label] - tol for j in range(len(outs)) if j != ctx.label]))
    calls, z3_time = 0, 0.0
    box = [c for j, vals in enumerate(fam.values) for c in (xs[j] >= real(vals[0]), xs[j] <= real(vals[-1]))]
    hull = solve(net_cons + box + [cons[-1]], timeout_s=(deadline - time.perf_counter()) / 2, logic="QF_LRA")
    calls, z3_time = 1, hull.time_s
    stats.update(z3_calls=calls, z3_time_s=z3_time)
    if hull.status is SmtStatus.UNSAT:
        return Outcome(RegionVerdict.SAFE, "smt", "z3: no point of the continuous hull changes the class")
    for blocked in range(config.smt_retries + 1):
        res = solve(cons, timeout_s=deadline - time.perf_counter(), values_of=xs)   # integers and reals
        calls, z3_time = calls + 1, z3_time + res.time_s
        stats.update(z3_calls=calls, z3_time_s=z3_time)
        if res.status is SmtStatus.UNSAT and blocked:
            return Outcome(RegionVerdict.UNKNOWN, "smt",
                           f"z3: {blocked} member(s) have margin <= {SMT_TOL:g} in exact arithmetic but keep the "
                           "class in onnxruntime (near-ties); all other members keep the class")
        if res.status is SmtStatus.UNSAT:
            return Outcome(RegionVerdict.SAFE, "smt", f"z3: no member changes the class ({calls} call(s))")
        if res.status is SmtStatus.UNKNOWN:
            return Outcome(None, "smt", f"z3: unknown after {z3_time:.1f}s ({res.reason or 'timeout'})")
        found = _nearest_indices(fam, res.values)
        cex = ctx.confirm(fam.from_indices(found[None]))
        if cex is not None:
            return Outcome(RegionVerdict.UNSAFE, "smt", "z3 model", cex)
        log.info("z3 member %s not confirmed by onnxruntime; blocking it", found)
        cons.append(_block(fam, xs, found))
    return Outcome(RegionVerdict.UNKNOWN, "smt",
                   f"z3 found {config.smt_retries + 1} member(s) that change the class in exact arithmetic but "
                   "not in onnxruntime (near-ties); neither safe nor a confirmed counterexample")



def _nearest_indices(fam: Family, values: np.ndarray) -> np.ndarray:
    """Value indices ``(p,)`` of a Z3 model (its values are exactly family values; nearest absorbs printing)."""
    return np.array([int(np.argmin(np.abs(v - x))) for v, x in zip(fam.values, values)], dtype=np.int64)


def _pixel_grid(fam: Family, j: int, xj: Any) -> tuple[list[Any], Any]:
    """Constraints tying value ``j`` to its grid, and its budget cost.

    On-grid values are ``x0 + k*step`` with an integer ``k`` in a range (one
    linear equality, which Z3 solves far faster than a disjunction of
    values); clip values off that grid are extra disjuncts.
    """
    import z3

    from nnaudit.verify.smt import real

    x0 = fam.x0[fam.pixels[j]]
    vals, kk, cc = fam.values[j], fam.ks[j], fam.costs[j]
    on = np.array([v == x0 + k * fam.step for v, k in zip(vals, kk)])
    k = z3.Int(f"k{j}")
    if not on.any() or set(kk[on].tolist()) != set(range(int(kk[on].min()), int(kk[on].max()) + 1)):
        cost = z3.Int(f"c{j}")       # no contiguous grid: one disjunct per value
        return [z3.Or([z3.And(xj == real(v), cost == int(c)) for v, c in zip(vals, cc)])], cost
    a, b = int(kk[on].min()), int(kk[on].max())
    l0 = fam.budget_norm == "l0"
    grid = [k >= a, k <= b, xj == real(x0) + k * real(fam.step)]
    grid_cost = z3.If(k == 0, 0, 1) if l0 else z3.If(k >= 0, k, -k)
    if on.all():
        return grid, grid_cost
    cost = z3.Int(f"c{j}")
    options = [z3.And(*grid, cost == grid_cost)]
    options += [z3.And(xj == real(v), cost == int(c)) for v, c in zip(vals[~on], cc[~on])]
    return [z3.Or(options)], cost


def _block(fam: Family, xs: list[Any], found: np.ndarray) -> Any:
    """A clause excluding the member with value indices ``found`` (by a margin
    of half the gap to the neighbouring values, so the last-bit difference
    between exact grid values and their float64 copies cannot matter)."""
    import z3

    from nnaudit.verify.smt import real

    out = []
    for j, (x, i) in enumerate(zip(xs, found)):
        vals = fam.values[j]
        if len(vals) < 2:
            continue
        eps = float(np.diff(vals).min()) / 2
        out += [x < real(vals[i] - eps), x > real(vals[i] + eps)]
    return z3.Or(out) if out else z3.BoolVal(False)
