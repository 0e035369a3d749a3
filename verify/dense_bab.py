"""The dense route: input-splitting branch and bound in NumPy, for small fully connected ReLU networks.

ACAS Xu's quick instances are decided in a fraction of a second, less than torch takes to
import.  For a network that :func:`~nnaudit.networks.dense.dense_chain` takes (at most 16
inputs and 2,000 ReLUs, a plain chain of dense maps and ReLUs) whose chain onnxruntime
confirms on the property's boxes, each (box, region) case is

1. falsified: random points, the box's centre and corners, then sign-gradient descent on
   the margin of each disjunct of the unsafe region in turn (:func:`falsify_dense`);
2. searched: batches of boxes are bounded (:mod:`nnaudit.verify.dense_bounds`: forward
   symbolic intermediate bounds refined by backward substitution, CROWN on the property's
   rows; a box's bounds never below its parent's); a disjunct is closed on a box once one of
   its rows has a lower bound above ``prove_tol``; each open box's centre and bound-minimising
   vertex are tried, and it is halved on the dimension whose halves' cheap bounds (no
   refinement) gain most (strong branching, :func:`_pick_dims`); the halves those cheap
   bounds close are not pushed.

Every candidate becomes a counterexample only after onnxruntime on the original file puts
its output in the unsafe region (:func:`~nnaudit.verify.falsify.confirm`, on the input
rounded to float32 inside the box).  HOLDS needs every box of every case closed by a bound;
past the depth cap, the queue cap or the deadline the route ends undecided, and under
:attr:`Route.AUTO` the engine hands the property to the torch route with the time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from nnaudit.networks.dense import DenseChain, DenseLimits, agrees_with_runtime, dense_chain, single_threaded_blas
from nnaudit.verify.dense_bounds import bound_rows
from nnaudit.verify.disjunct_rows import worst_rows
from nnaudit.verify.falsify import confirm
from nnaudit.verify.results import Counterexample, Verdict
from nnaudit.verify.spec import Box, Property, Region


#: strong branching's weight of the halves' mean gain against the worse half's (see :func:`_pick_dims`).
#: ACAS Xu boxes (the smear score alone / min only / this): 4_5 prop 10 over 19,000 / 233 / 215;
#: 3_3 prop 9 3,689 / 3,039 / 2,905; a random 4-8-3 network whose bound one half of a box made
#: worse (its cheap bound below the box's): over 398,000 in 20 s with min only / 19
MEAN_WEIGHT = 0.3
#: strong branching tries only dimensions at least this fraction of the box's widest (see :func:`_pick_dims`)
NARROW = 0.01


class Route(str, Enum):
    """Which route of the verifier decides a property."""

    AUTO = "auto"     # the dense route first where it applies (a slice of the time), then the torch route
    TORCH = "torch"   # the torch route only (branch and bound with Z3 leaves; any network)
    DENSE = "dense"   # the dense route only: unknown where it does not apply (benchmarks and tests)


@dataclass(frozen=True)
class DenseConfig:
    """Settings of the dense route."""

    share: float = 0.25          # Route.AUTO: the dense route's share of the timeout ...
    max_s: float = 2.0           # ... and at most this many seconds (then the torch route, with the rest)
    batch: int = 64              # boxes bounded per NumPy pass (OpenBLAS's threads slow larger passes down)
    max_depth: int = 60          # a box split this many times ends the route undecided (Z3's work)
    lp_depth: int = 30           # from this depth on, close multi-row disjuncts by an LP over row combinations
    max_domains: int = 200_000   # queued boxes at most (then undecided)
    prove_tol: float = 1e-7      # a row's bound closes its disjunct only above this (as BabConfig.prove_tol)
    samples: int = 512           # falsification: uniform random points per box ...
    pgd_starts: int = 16         # ... sign-gradient runs ...
    pgd_steps: int = 30          # ... of this many steps each
    seed: int = 0                # seed of the falsification
    limits: DenseLimits = field(default_factory=DenseLimits)  # which networks the route takes


@dataclass
class DenseOutcome:
    """What the dense route concluded for a whole property."""

    status: Verdict                            # HOLDS, VIOLATED, UNKNOWN or TIMEOUT
    counterexample: Counterexample | None = None
    subdomains: int = 0                        # boxes bounded (strong branching's cheap bounds not counted)
    message: str = ""
    falsify_s: float = 0.0
    search_s: float = 0.0


def applies(network: Any, spec: Property, ort: Any, config: DenseConfig,
            max_bytes: int | None = None) -> DenseChain | None:
    """The chain of ``network`` when the dense route may decide ``spec`` on it: the network is a
    small ReLU chain (:func:`~nnaudit.networks.dense.dense_chain`), onnxruntime agrees with the
    chain on every case's box, and every disjunct of every region has a row; else None."""
    chain = dense_chain(network, config.limits, max_bytes)
    if chain is None:
        return None
    for box, region in spec.cases:
        if not region.disjuncts or any(len(d) == 0 for _, d in region.disjuncts):
            return None
        if not agrees_with_runtime(chain, ort, box.lower, box.upper, tuple(network.input_shape), seed=config.seed):
            return None
    return chain


def decide_dense(chain: DenseChain, spec: Property, ort: Any, input_shape: tuple[int, ...], config: DenseConfig,
                 deadline: float, progress: Callable[[int, int], None] | None = None) -> DenseOutcome:
    """Decide ``spec`` on ``chain`` (from :func:`applies`) by the end of ``deadline``
    (``time.monotonic()`` seconds): falsification of every case first, then the search of each."""
    with single_threaded_blas():
        return _decide(chain, spec, ort, input_shape, config, deadline, progress)


def _decide(chain: DenseChain, spec: Property, ort: Any, input_shape: tuple[int, ...], config: DenseConfig,
            deadline: float, progress: Callable[[int, int], None] | None) -> DenseOutcome:
    """:func:`decide_dense`'s body."""
    out = DenseOutcome(Verdict.UNKNOWN)
    t = time.monotonic()
    for box, region in spec.cases:
        cex = falsify_dense(chain, ort, box, region, input_shape, config, deadline)
        if cex is not None:
            out.falsify_s = time.monotonic() - t
            return _ended(out, Verdict.VIOLATED, cex, "counterexample found by the dense route's falsification "
                                                      "(random points, corners and gradient descent on the margin)")
    out.falsify_s, t = time.monotonic() - t, time.monotonic()
    for i, (box, region) in enumerate(spec.cases):
        search = _Search(chain, region, ort, box, input_shape, config, deadline, progress)
        status, cex, message = search.run()
        out.subdomains += search.bounded
        if status is not Verdict.HOLDS:
            out.search_s = time.monotonic() - t
            prefix = f"case {i}: " if len(spec.cases) > 1 and status is not Verdict.VIOLATED else ""
            return _ended(out, status, cex, prefix + message)
    out.search_s = time.monotonic() - t
    return _ended(out, Verdict.HOLDS, None, "")


def _ended(out: DenseOutcome, status: Verdict, cex: Counterexample | None, message: str) -> DenseOutcome:
    out.status, out.counterexample, out.message = status, cex, message
    return out


# -- falsification ---------------------------------------------------------------
def falsify_dense(chain: DenseChain, ort: Any, box: Box, region: Region, input_shape: tuple[int, ...],
                  config: DenseConfig, deadline: float) -> Counterexample | None:
    """Random points, the centre and (up to 8 inputs) the corners of ``box``, then sign-gradient
    descent from the best of them; the first candidate onnxruntime confirms, or None."""
    rng = np.random.default_rng(config.seed)
    lo, hi = box.lower, box.upper
    n = box.size
    xs = [lo + (hi - lo) * rng.random((config.samples, n)), ((lo + hi) / 2)[None]]
    if n <= 8:
        corners = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1
        xs.append(np.where(corners == 1, hi, lo))
    xs = np.concatenate(xs)
    margins = region.margin(chain.evaluate(xs))
    order = np.argsort(margins, kind="stable")
    found = confirm(ort, box, region, xs[order[:8]][margins[order[:8]] <= 0], input_shape)
    if found is not None or config.pgd_starts <= 0 or time.monotonic() > deadline:
        return found
    starts = xs[order[:config.pgd_starts]]
    x = _descend(chain, region, box, starts, config, deadline)
    m = region.margin(chain.evaluate(x))
    best = np.argsort(m, kind="stable")[:8]
    return confirm(ort, box, region, x[best][m[best] <= 1e-6], input_shape)


def _descend(chain: DenseChain, region: Region, box: Box, x: np.ndarray, config: DenseConfig,
             deadline: float) -> np.ndarray:
    """Sign-gradient descent of each start on one disjunct's margin (start ``i``: disjunct
    ``i mod (J + 1)``, the last meaning the whole region's); returns the best point of each run."""
    c, d, owner = region.stacked()
    rows = chain.with_rows(c, d)
    n_disj = len(region.disjuncts)
    target = np.arange(len(x)) % (n_disj + 1)
    width = box.upper - box.lower
    best, best_m = x.copy(), np.full(len(x), np.inf)
    for step in range(config.pgd_steps):
        if time.monotonic() > deadline:
            break
        g, grad_row = _target_rows(rows, x, owner, n_disj, target)
        margin = _disjunct_margins(g, owner, n_disj).min(axis=1)
        better = margin < best_m
        best[better], best_m[better] = x[better], margin[better]
        if (best_m < -1e-4).any():
            break
        _, grad = rows.gradient(x, grad_row)
        size = width * 0.25 * (1 - step / config.pgd_steps) + 1e-12
        x = np.clip(x - size * np.sign(grad), box.lower, box.upper)
    return best


def _target_rows(rows: DenseChain, x: np.ndarray, owner: np.ndarray, n_disj: int,
                 target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' values ``(B, R)`` at ``x`` and, per point, the row whose value is its target's
    margin (the largest row of the target disjunct; for the whole region, of the lowest disjunct)."""
    g = rows.evaluate(x)
    per = _disjunct_margins(g, owner, n_disj)
    disj = np.where(target < n_disj, target, per.argmin(axis=1))
    masked = np.where(owner[None] == disj[:, None], g, -np.inf)
    return g, masked.argmax(axis=1)


def _disjunct_margins(g: np.ndarray, owner: np.ndarray, n_disj: int) -> np.ndarray:
    """``(B, J)``: per disjunct, the largest of its rows ``g`` ``(B, R)`` (> 0: the disjunct is avoided)."""
    return np.stack([g[:, owner == j].max(axis=1) for j in range(n_disj)], axis=1)


# -- the search --------------------------------------------------------------------
class _Search:
    """Branch and bound over boxes of one (box, region) case, deepest first."""

    def __init__(self, chain: DenseChain, region: Region, ort: Any, box: Box, input_shape: tuple[int, ...],
                 config: DenseConfig, deadline: float, progress: Callable[[int, int], None] | None) -> None:
        c, d, owner = region.stacked()
        self.chain, self.rows, self.owner = chain, chain.with_rows(c, d), owner
        self.region, self.ort, self.box, self.shape = region, ort, box, input_shape
        self.cfg, self.deadline, self.progress = config, deadline, progress
        self.n_disj = len(region.disjuncts)
        self.multi_row = any(len(d) > 1 for _, d in region.disjuncts)
        self.bounded = 0
        # LIFO stack of batches of boxes: lower and upper corners (k, n), open disjuncts (k, J), depths (k,)
        # and the rows' best lower bounds known so far (k, R): the parent's and the cheap ones of the box
        # itself (a box's bound may be below its parent's, which holds in it too)
        self.stack: list[tuple[np.ndarray, ...]] = [(box.lower[None].copy(), box.upper[None].copy(),
                                                     np.ones((1, self.n_disj), bool), np.zeros(1, int),
                                                     np.full((1, len(owner)), -np.inf))]
        self.pending = 1

    def run(self) -> tuple[Verdict, Counterexample | None, str]:
        """(verdict, counterexample, message) of this case."""
        while self.stack:
            if time.monotonic() > self.deadline:
                return Verdict.TIMEOUT, None, f"dense route: deadline reached after {self.bounded} sub-domains"
            ended = self._step(*self._pop())
            if ended is not None:
                return ended
            if self.progress is not None:
                self.progress(self.bounded, self.pending)
        return Verdict.HOLDS, None, ""

    def _pop(self) -> tuple[np.ndarray, ...]:
        """Up to ``batch`` boxes off the top of the stack."""
        top = self.stack.pop()
        k = self.cfg.batch
        if len(top[0]) > k:
            self.stack.append(tuple(part[:-k] for part in top))
            top = tuple(part[-k:] for part in top)
        self.pending -= len(top[0])
        return top

    def _step(self, lo: np.ndarray, hi: np.ndarray, open_: np.ndarray, depth: np.ndarray,
              floor: np.ndarray) -> tuple[Verdict, Counterexample | None, str] | None:
        """Bound, probe and split one batch; the case's end, or None to go on."""
        self.bounded += len(lo)
        rb = bound_rows(self.rows, lo, hi)
        lower = np.maximum(rb.lower, floor)
        open_ = self._close(open_, lower)
        self._close_by_combinations(open_, depth, rb, lo, hi)
        alive = np.flatnonzero(open_.any(axis=1))
        if len(alive) == 0:
            return None
        lo, hi, open_, depth, lower = lo[alive], hi[alive], open_[alive], depth[alive], lower[alive]
        a = rb.a_in[alive, worst_rows(lower, open_, self.owner)]           # (k, n)
        cex = self._probe(lo, hi, a)
        if cex is not None:
            return Verdict.VIOLATED, cex, f"counterexample at the centre or bound-minimising vertex of a " \
                                          f"sub-domain of the dense route's search (depth {int(depth.max())})"
        if int(depth.max()) >= self.cfg.max_depth:
            return Verdict.UNKNOWN, None, f"dense route: a sub-domain was split {self.cfg.max_depth} times"
        self._split(lo, hi, open_, depth, a, lower)
        if self.pending > self.cfg.max_domains:
            return Verdict.UNKNOWN, None, f"dense route: more than {self.cfg.max_domains} sub-domains queued"
        return None

    def _close(self, open_: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """``open_`` ``(k, J)`` less the disjuncts that a row's lower bound ``(k, R)`` above ``prove_tol`` closes."""
        proved = lower > self.cfg.prove_tol
        closed = np.stack([proved[:, self.owner == j].any(axis=1) for j in range(self.n_disj)], axis=1)
        return open_ & ~closed

    def _close_by_combinations(self, open_: np.ndarray, depth: np.ndarray, rb: Any, lo: np.ndarray,
                               hi: np.ndarray) -> None:
        """Close (in ``open_``) the open disjuncts of several rows of boxes at least ``lp_depth`` deep
        where a convex combination of the rows' linear lower bounds is positive on the whole box
        (:func:`~nnaudit.verify.phases.combination_closes`, an LP, as the torch route does): near
        where the rows swap places no one row's bound closes it, however small the box."""
        deep = np.flatnonzero((depth >= self.cfg.lp_depth) & open_.any(axis=1))
        if len(deep) == 0 or not self.multi_row:
            return
        from nnaudit.verify.phases import combination_closes

        for j in range(self.n_disj):
            rows = np.flatnonzero(self.owner == j)
            cand = deep[open_[deep, j]] if len(rows) >= 2 else deep[:0]
            if len(cand):
                closes = combination_closes(rb.a_in[cand][:, rows], rb.offset[cand][:, rows], lo[cand], hi[cand],
                                            self.cfg.prove_tol)
                open_[cand[closes], j] = False

    def _probe(self, lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> Counterexample | None:
        """The boxes' centres and the vertices minimising their worst rows' linear bounds: the first
        one onnxruntime confirms as a counterexample, or None."""
        cand = np.concatenate([np.where(a > 0, lo, hi), (lo + hi) / 2])
        hit = self.region.margin(self.chain.evaluate(cand)) <= 1e-6
        if not hit.any():
            return None
        return confirm(self.ort, self.box, self.region, cand[hit][:16], self.shape)

    def _split(self, lo: np.ndarray, hi: np.ndarray, open_: np.ndarray, depth: np.ndarray, a: np.ndarray,
               lower: np.ndarray) -> None:
        """Halve each box on the dimension whose halves' cheap bounds gain most on the box's bounds
        ``lower`` ``(k, R)``, and push the halves that those bounds leave open (see :func:`_pick_dims`)."""
        k, n = lo.shape
        c_lo, c_hi = _halves(lo, hi)                                        # (k * n * 2, n) each
        b_lo, b_hi = np.concatenate([c_lo, lo]), np.concatenate([c_hi, hi])
        cheap = np.concatenate([bound_rows(self.rows, b_lo[i:i + self.cfg.batch], b_hi[i:i + self.cfg.batch],
                                           refine=False).lower for i in range(0, len(b_lo), self.cfg.batch)])
        cheap, own = cheap[:-k], cheap[-k:]
        c_open = self._close(np.repeat(open_, 2 * n, axis=0), cheap)
        whole = _measure(own, open_, self.owner)
        halves = np.maximum(_measure(cheap, c_open, self.owner).reshape(k, n, 2), whole[:, None, None])
        dim = _pick_dims(halves, whole, hi - lo, a, self.cfg.prove_tol)
        cheap = np.maximum(cheap, np.repeat(lower, 2 * n, axis=0))
        c_open = self._close(c_open, cheap)
        pick = ((np.arange(k) * n + dim)[:, None] * 2 + np.arange(2)).reshape(-1)
        pick = pick[c_open[pick].any(axis=1)]
        if len(pick):
            self.stack.append((c_lo[pick], c_hi[pick], c_open[pick], depth[pick // (2 * n)] + 1, cheap[pick]))
            self.pending += len(pick)


def _halves(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both halves of each box ``(k, n)`` on each dimension: ``(k * n * 2, n)`` lower and upper
    corners, box-major, then dimension, then lower half first."""
    k, n = lo.shape
    mid = (lo + hi) / 2
    c_lo = np.repeat(lo[:, None, None], n, axis=1).repeat(2, axis=2)
    c_hi = np.repeat(hi[:, None, None], n, axis=1).repeat(2, axis=2)
    i = np.arange(n)
    c_hi[:, i, 0, i] = mid
    c_lo[:, i, 1, i] = mid
    return c_lo.reshape(-1, n), c_hi.reshape(-1, n)


def _pick_dims(halves: np.ndarray, whole: np.ndarray, width: np.ndarray, a: np.ndarray, tol: float) -> np.ndarray:
    """Per box, the dimension to halve ``(k,)``: strong branching on cheap bounds.  ``halves``
    ``(k, n, 2)`` and ``whole`` ``(k,)``: the halves' and the box's measures (:func:`_measure`) by the
    same cheap bounds, a half's never below the box's (they are not monotone); a dimension scores
    its halves' gains, each counted up to closing the half, mixed as ``(1 - w) * min + w * mean``
    (:data:`MEAN_WEIGHT`).  Where no dimension gains, the smear score ``|a_i| * width_i`` of the
    box's worst row ``a`` ``(k, n)``.  Dimensions under :data:`NARROW` of the widest are not tried."""
    base = np.minimum(whole, tol)[:, None, None]
    g = np.minimum(halves, tol) - base
    gain = (1 - MEAN_WEIGHT) * g.min(axis=2) + MEAN_WEIGHT * g.mean(axis=2)
    # a dimension far narrower than the widest gains only by the bounds' non-monotonicity: halving
    # it again and again (1e-7 wide beside 0.1) stalled a 3-input search for 250,000 sub-domains
    gain = np.where(width > NARROW * width.max(axis=1, keepdims=True), gain, -np.inf)
    smear = np.abs(a) * width
    smear = np.where(smear.max(axis=1, keepdims=True) > 0, smear, width)
    gains = gain.max(axis=1) > 1e-9 * (1 + np.abs(base[:, 0, 0]))
    return np.where(gains, gain.argmax(axis=1), smear.argmax(axis=1))


def _measure(lower: np.ndarray, open_: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per box, how far its bounds are from closing it ``(k,)``: the smallest, over its open
    disjuncts, of the largest lower bound of their rows (inf when none is open)."""
    per = [np.where(open_[:, j], lower[:, owner == j].max(axis=1), np.inf) for j in range(open_.shape[1])]
    return np.min(np.stack(per, axis=1), axis=1)
