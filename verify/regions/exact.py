"""The exact routes of region safety, cheapest first.

For one image and region (a :class:`~nnaudit.verify.regions.spec.Family`):

1. **bounds**: sound CROWN bounds (:mod:`nnaudit.verify.bounds`) of
   ``logit_c - logit_j`` over the continuous hull of the family; if every
   lower bound is positive, every grid point keeps the class: SAFE.
2. **relu split, first slice** (families too large to enumerate): the complete
   verifier's ReLU-splitting search over the family's hull
   (:mod:`nnaudit.verify.regions.relu_bab`) for ``relu_first`` of the time, then
   paused with its queue kept; proving the hull proves the family, and a hull
   counterexample that is a member (a corner) is confirmed by onnxruntime.
3. **attack**: random members, then the lattice-aware falsifier of
   :mod:`nnaudit.verify.regions.lattice_attack` (PGD snapped to the grid,
   coordinate search over step counts) for ``attack_share`` of the time.
   Found members are UNSAFE only when onnxruntime confirms them.
   Then **enumeration**: every member within the budget
   (:mod:`nnaudit.verify.regions.members`) when there are at most
   ``max_enumeration``: SAFE when all keep the class on the float64 IR,
   UNSAFE on a confirmed member; else the **relu split** goes on (or starts)
   until ``relu_share`` of the time, then **bound splitting**: branch and bound
   over the discrete family (:mod:`nnaudit.verify.regions.discrete_bab`:
   alpha-CROWN on the hull, then sub-families bounded in batches on the
   region's cone, split on the value that loosens the bound most, leaves of
   at most ``leaf_size`` grid points enumerated), complete for the family,
   for ``split_share`` of the time.  ``stats["decided_by"]`` names the step.
4. **smt**: only when the time left covers encoding the network
   (:data:`SMT_TERM_S` per weight); one Z3 query over the discrete family (each value ``x_i`` is
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
from functools import partial
from typing import Any

import numpy as np

from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.result import RegionCounterexample, RegionVerdict
from nnaudit.verify.regions.spec import Family

log = logging.getLogger(__name__)

#: a bound must exceed this to prove ``logit_c > logit_j`` (absorbs float64 rounding)
BOUND_TOL = 1e-7
#: Z3 looks for members with margin <= this, so unsat proves every member's
#: margin exceeds it (robust to the last-bit difference between the exact
#: grid ``x0 + k*step`` and its float64 values)
SMT_TOL = 1e-6
#: seconds per network weight to build the Z3 encoding (measured 0.09-0.11 ms on a loaded 2-core machine:
#: 45 s for mnist-net_256x4, 27 s for cifar_base_kw); Z3 is skipped when the region's time cannot cover it
SMT_TERM_S = 1e-4
#: the least time worth giving Z3 once the encoding is built
SMT_MIN_SOLVE_S = 0.5


@dataclass(frozen=True)
class ExactConfig:
    """Settings of the exact routes."""

    bound_method: str = "crown"      # "crown" or "interval" bound propagation over the hull
    attack: bool = True              # try the discrete attack before enumeration / Z3
    attack_samples: int = 256        # random members evaluated by the attack
    attack_share: float = 0.15       # share of the remaining time for the lattice attack (PGD, coordinate search)
    max_enumeration: int = 200_000   # enumerate the family when it has at most this many members
    relu_split: bool = True          # ReLU-splitting branch and bound over the hull (relu_bab) before the discrete one
    relu_share: float = 0.92         # share of the remaining time for it (it ends early when the hull has a counterexample)
    relu_first: float = 0.3          # share of the remaining time the relu split runs before the attack (0: attack first)
    split_share: float = 0.9         # share of the remaining time for the discrete branch and bound before Z3
    split_batch: int = 64            # sub-families bounded at once
    leaf_size: int = 16              # sub-families this small are enumerated instead of split
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


def check_exact(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, *,
                bound: dict | None = None) -> tuple[Outcome, dict]:
    """Run the routes in order until one decides or the deadline passes.

    ``bound``: the hull bound already computed for this family in a batch
    (:meth:`nnaudit.verify.regions.batch.BatchBounds.stats`, with the same
    ``config.bound_method``); None: the bounds route computes it.
    Returns the deciding :class:`Outcome` (or an UNKNOWN one whose ``note``
    lists what every route covered) and counters.
    """
    notes: list[str] = []
    stats: dict = dict(bound or {})
    relu = _ReluState()
    routes = [_bounds]
    if config.relu_split and config.relu_first > 0:
        routes.append(partial(_relu_first, relu))
    if config.attack:
        routes.append(_attack)
    routes.append(_enumerate)
    if config.relu_split:
        routes.append(partial(_relu_split, relu))
    routes.append(_split)
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
    """SAFE when the CROWN (or interval) bound of every ``logit_c - logit_j`` over the family's hull is
    positive; the bound comes from a batch (``stats["bound_margin"]``) or is computed here, on the
    region's cone of influence (:func:`nnaudit.verify.regions.batch.hull_margins`)."""
    from nnaudit.verify.regions.batch import hull_margins

    if "bound_margin" not in stats:
        stats.update(hull_margins([ctx], [fam], method=config.bound_method).stats(0))
    worst = float(stats["bound_margin"])
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
    """Random members (float64 IR), then the lattice-aware falsifier
    (:mod:`nnaudit.verify.regions.lattice_attack`) for ``attack_share`` of the remaining time;
    UNSAFE only for a member onnxruntime confirms."""
    from nnaudit.verify.regions.lattice_attack import LatticeConfig, lattice_attack

    rng = np.random.default_rng(config.seed)
    radix = np.array([len(v) for v in fam.values])
    idx = rng.integers(0, radix, size=(config.attack_samples, len(radix)))
    if fam.budget is not None:
        idx = idx[fam.index_cost(idx) <= fam.budget]
    xs = fam.from_indices(idx)
    tried = len(xs)
    if tried:
        cex, _ = _confirm_sorted(ctx, xs, ctx.margins(xs))
        if cex is not None:
            stats.update(attack_tried=tried, decided_by="attack: random member")
            return Outcome(RegionVerdict.UNSAFE, "attack", "random member", cex)
    stop = time.perf_counter() + config.attack_share * (deadline - time.perf_counter())
    found = lattice_attack(ctx, fam, LatticeConfig(), stop, seed=config.seed)
    stats["attack_tried"] = tried + found.tried
    if found.counterexample is not None:
        stats["decided_by"] = f"attack: {found.how}"
        return Outcome(RegionVerdict.UNSAFE, "attack", found.how, found.counterexample)
    return Outcome(None, "attack", f"attack: {stats['attack_tried']} members tried, none confirmed unsafe")


def _enumerate(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    """Every member within the budget (:func:`~nnaudit.verify.regions.members.member_indices`)
    when there are at most ``max_enumeration``; the deadline is checked between batches."""
    from nnaudit.verify.regions.members import count_text, member_indices

    total = fam.count()   # budget included; an exact Python int, possibly huge
    if total > config.max_enumeration:
        return Outcome(None, "enumeration",
                       f"enumeration: skipped ({count_text(total)} members > {config.max_enumeration})")
    probe = time.perf_counter()
    ctx.margins(np.broadcast_to(fam.x0, (16, fam.x0.size)))
    per_member = max(1e-9, (time.perf_counter() - probe) / 16)
    batch = int(min(config.enum_batch, max(16, 0.25 / per_member)))   # about a quarter second per batch
    seen, unconfirmed = 0, 0
    for idx in member_indices(fam, batch):
        if time.perf_counter() >= deadline:
            stats["enumerated"] = seen
            return Outcome(None, "enumeration", f"enumeration: {seen} of {total} members checked, none unsafe")
        xs = fam.from_indices(idx)
        seen += len(xs)
        cex, n_bad = _confirm_sorted(ctx, xs, ctx.margins(xs))
        if cex is not None:
            return Outcome(RegionVerdict.UNSAFE, "enumeration", f"{seen} members enumerated", cex)
        unconfirmed += n_bad
    stats["enumerated"] = seen
    if unconfirmed:
        return Outcome(RegionVerdict.UNKNOWN, "enumeration",
                       f"enumeration: {unconfirmed} member(s) change the class on the float64 IR but not in "
                       "onnxruntime (a near-tie); neither safe nor a confirmed counterexample")
    return Outcome(RegionVerdict.SAFE, "enumeration", f"all {seen} members enumerated")


@dataclass
class _ReluState:
    """The relu-split search of one region while it is paused (between :func:`_relu_first` and
    :func:`_relu_split`), or how its first slice ended undecided."""

    split: Any = None
    ended: str = ""      # how the first slice's search ended, when it did without a verdict


def _relu_first(relu: _ReluState, ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float,
                stats: dict) -> Outcome:
    """The relu split's first slice, before the attack: ``relu_first`` of the time left, on families
    too large to enumerate.  Most regions the split proves need a few hundred sub-domains, and on an
    unsafe one it soon bounds a sub-domain whose corner is a counterexample (CIFAR-10 cells at step
    0.05: 0.2-0.5 s, against 0.8 s for the attack); the attack then runs on the others.  The search
    is paused, not stopped: :func:`_relu_split` goes on with its queue."""
    from nnaudit.verify.regions.relu_bab import ReluSplit

    if fam.count() <= config.max_enumeration:
        return Outcome(None, "bounds", "")
    now = time.perf_counter()
    relu.split = ReluSplit(ctx, fam, now + config.relu_share * (deadline - now))
    res = relu.split.run(pause=now + config.relu_first * (deadline - now))
    if res is None:
        return Outcome(None, "bounds", "")
    relu.split, relu.ended = None, res.message
    out = _relu_outcome(res, stats, "relu split (first)")
    return out if out.verdict is not None else Outcome(None, "bounds", "")


def _relu_split(relu: _ReluState, ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float,
                stats: dict) -> Outcome:
    """ReLU-splitting branch and bound over the family's hull (:mod:`nnaudit.verify.regions.relu_bab`)
    for ``relu_share`` of the remaining time (the paused search of :func:`_relu_first` goes on until
    its own stop instead): SAFE when it proves the hull."""
    from nnaudit.verify.regions.relu_bab import ReluSplit

    if relu.split is None:
        if relu.ended:         # the first slice's search ended undecided
            return Outcome(None, "bounds", relu.ended)
        now = time.perf_counter()
        relu.split = ReluSplit(ctx, fam, now + config.relu_share * (deadline - now))
    res = relu.split.run()
    assert res is not None
    return _relu_outcome(res, stats, "relu split")


def _relu_outcome(res: Any, stats: dict, name: str) -> Outcome:
    """The route's outcome from a :class:`~nnaudit.verify.regions.relu_bab.ReluBabResult`."""
    stats["relu_subdomains"] = res.subdomains
    if res.safe:
        stats["decided_by"] = name
        return Outcome(RegionVerdict.SAFE, "bounds", res.message)
    if res.counterexample is not None:
        stats["decided_by"] = f"{name} (counterexample)"
        return Outcome(RegionVerdict.UNSAFE, "attack", res.message, res.counterexample)
    return Outcome(None, "bounds", res.message)


def _split(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    """Branch and bound over the discrete family (:mod:`nnaudit.verify.regions.discrete_bab`)
    for ``split_share`` of the remaining time."""
    from nnaudit.verify.regions.discrete_bab import DiscreteBabConfig, discrete_bab

    stop = time.perf_counter() + config.split_share * (deadline - time.perf_counter())
    res = discrete_bab(ctx, fam, DiscreteBabConfig(batch=config.split_batch, leaf_size=config.leaf_size,
                                           bound_method=config.bound_method), stop)
    stats.update(split_proved=res.proved, split_enumerated=res.enumerated)
    done = f"{res.proved} sub-families proved by bounds, {res.enumerated} members enumerated"
    if res.counterexample is not None:
        stats["decided_by"] = "discrete branch and bound (leaf)"
        return Outcome(RegionVerdict.UNSAFE, "enumeration", "bound splitting, leaf enumeration", res.counterexample)
    if res.unconfirmed and not res.left:
        return Outcome(RegionVerdict.UNKNOWN, "enumeration",
                       f"bound splitting: {res.unconfirmed} member(s) change the class on the float64 IR but not "
                       "in onnxruntime (a near-tie); neither safe nor a confirmed counterexample")
    if not res.safe:
        return Outcome(None, "bounds", f"bound splitting: {done}, {res.left} sub-families left")
    stats["decided_by"] = "discrete branch and bound"
    return Outcome(RegionVerdict.SAFE, "bounds" if res.enumerated == 0 else "enumeration", f"bound splitting: {done}")


def _smt(ctx: RegionContext, fam: Family, config: ExactConfig, deadline: float, stats: dict) -> Outcome:
    import z3

    from nnaudit.verify.encode import encode_network
    from nnaudit.verify.smt import SmtStatus, real, solve

    left, build = deadline - time.perf_counter(), _encoding_cost_s(ctx.lowered)
    if left < build + SMT_MIN_SOLVE_S:
        return Outcome(None, "smt", f"z3: skipped ({left:.1f}s left, encoding the network takes about {build:.1f}s)")
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
    if time.perf_counter() >= deadline:
        return Outcome(None, "smt", "z3: the time ran out while encoding the network")
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



def _encoding_cost_s(lowered: Any) -> float:
    """A pessimistic estimate of the seconds :func:`~nnaudit.verify.encode.encode_network` takes
    (one Z3 term per non-zero weight, :data:`SMT_TERM_S` each)."""
    nnz = sum(int(np.count_nonzero(m)) for node in lowered.nodes for m in node.pre.mats.values())
    return SMT_TERM_S * (nnz + sum(int(np.count_nonzero(m)) for m in lowered.output.mats.values()))


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
