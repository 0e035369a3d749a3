"""One branch-and-bound search over the sub-domains of one (box, region) case.

A sub-domain is an input box plus, for high-dimensional inputs, fixed ReLU phases.  Batches of
them are bounded (:mod:`nnaudit.verify.bounds`); a disjunct of the unsafe region is closed on a
sub-domain once one of its rows has a positive lower bound (deep ones: also by an LP over
combinations of its rows), and a sub-domain whose disjuncts are all closed, or whose splits
contradict each other, is dropped.  Each remaining one is probed for a counterexample (its
centre and the box vertex minimising the worst linear bound) and then decided by Z3
(:mod:`~nnaudit.verify.bab.leaves`) or split in two (:mod:`~nnaudit.verify.bab.branching`).

Z3 gets a sub-domain with at most ``z3_max_unstable`` unstable ReLUs, or one split
``z3_max_depth`` times.  Below ``z3_final_depth`` the deep ones are probes
(``z3_probe_timeout``): one that runs out is split on instead, and the depth at which the
search calls Z3 rises by ``z3_depth_step`` (Z3 spends seconds on a deep ACAS Xu leaf that a few
more splits close by bounds).  ReLU splitting probes too, on sub-domains with at most
``z3_probe_unstable_relu`` unstable ReLUs.  With input splitting, a deep sub-domain with at most
``phase_max_unstable`` unstable ReLUs is first offered to :mod:`nnaudit.verify.phases`, which
closes it exactly where it is safe by one small LP per phase pattern.

Zero wrong answers: HOLDS needs every sub-domain closed by a bound above a small positive
tolerance, by such an LP or by a Z3 unsat; VIOLATED needs an onnxruntime-confirmed
counterexample; anything else is UNKNOWN or TIMEOUT.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from enum import Enum
from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Lowered
from nnaudit.verify.bab.branching import Brancher
from nnaudit.verify.bab.closing import close_refuted, unstable_counts
from nnaudit.verify.disjunct_rows import worst_rows
from nnaudit.verify.bab.config import BabConfig, relu_splitting, root_alpha_steps
from nnaudit.verify.bab.leaves import LeafResult, LeafTask, LeafWorkers, decide_leaf, search_near
from nnaudit.verify.bab.outcome import BabOutcome
from nnaudit.verify.bab.queue import Chunk, SubdomainQueue
from nnaudit.verify.bab.refalsify import Refalsifier
from nnaudit.verify.bounds import Intermediate, LayerBounds, SpecBound, compute_bounds, spec_lower
from nnaudit.verify.falsify import confirm
from nnaudit.verify.limits import Limits, OutOfMemoryBudget, OutOfTime
from nnaudit.verify.phases import applies as phases_apply
from nnaudit.verify.phases import closes_by_phases
from nnaudit.verify.results import Verdict
from nnaudit.verify.rowpack import spec_lower_open
from nnaudit.verify.smt import SmtStatus
from nnaudit.verify.spec import Box, Region


class Waited(Enum):
    """What a member of a shared search waited for when its queue ran dry."""

    WORK = "work"          # sub-domains from another member, now in its queue
    DONE = "done"          # every member ran dry with nothing in transit
    TIMEOUT = "timeout"    # the deadline passed


class Search:
    """State of one branch-and-bound run."""

    def __init__(self, low: Lowered, network: Any, ort: Any, box: Box, region: Region,
                 config: BabConfig, deadline: float, progress: Any) -> None:
        self.low, self.network, self.ort, self.box, self.region = low, network, ort, box, region
        self.cfg, self.deadline, self.progress = config, deadline, progress
        c, d, owner = region.stacked()
        self.c, self.d, self.owner = torch.as_tensor(c), torch.as_tensor(d), torch.as_tensor(owner)
        self.n_disj = len(region.disjuncts)
        self.multi_row = any(len(d) > 1 for _, d in region.disjuncts)
        self.phases_exact = phases_apply(low)
        self.relu_mode = relu_splitting(low, config)
        self.out = BabOutcome(Verdict.UNKNOWN)
        n_relu = sum(n.pre.size for n in low.nodes) if self.relu_mode else 0
        # per queued sub-domain: its box (float64), open disjuncts (bool), depth (int64), phases (int8)
        domain_bytes = 16 * low.input_size + self.n_disj + 8 + n_relu
        self.queue = SubdomainQueue(min(config.max_domains, max(1, config.max_queue_bytes // domain_bytes)),
                                    domain_bytes)
        self.brancher = Brancher(low, self.c, self.d, config, self.relu_mode)
        self.refalsifier = Refalsifier(config.refalsify_share, config.refalsify_after, config.seed)
        self.unknown_leaves = 0
        self.workers: LeafWorkers | None = None   # Z3 leaves on worker processes (workers >= 2), once needed
        self.root: LayerBounds | None = None      # ReLU splitting: the whole box's bounds
        self.started = time.monotonic()
        # raised when a Z3 probe runs out of time
        self.z3_depth = config.z3_max_depth_relu if self.relu_mode else config.z3_max_depth
        self.batch_s = 0.0  # seconds the last batch's bounds took (not counting the root's, bounded once)
        self.limits = Limits(deadline, config.max_memory)

    def member(self, part: Chunk, index: int, members: int, ort: Any, progress: Any) -> Search:
        """This search, as member ``index`` of ``members`` processes that share its sub-domains
        (:mod:`~nnaudit.verify.bab.sharing`), with ``part`` of its queue, its own onnxruntime
        session ``ort`` and ``progress`` callback, and a fresh outcome.  The members split the
        memory caps; member 0 alone runs the falsification rounds (the same share of its time,
        not of every core's), and each has its own seed."""
        budget = None if self.cfg.max_memory is None else self.cfg.max_memory // members
        cfg = replace(self.cfg, seed=self.cfg.seed + index, warm_bytes=self.cfg.warm_bytes // members,
                      refalsify_share=self.cfg.refalsify_share if index == 0 else 0.0, max_memory=budget)
        out = copy.copy(self)
        out.cfg, out.ort, out.progress = cfg, ort, progress
        out.limits = Limits(self.deadline, budget)
        out.out = BabOutcome(Verdict.UNKNOWN)
        out.queue = SubdomainQueue(max(1, self.queue.cap // members), self.queue.domain_bytes)
        out.queue.push(part)
        out.brancher = Brancher(self.low, self.c, self.d, cfg, self.relu_mode)
        out.refalsifier = replace(self.refalsifier, share=cfg.refalsify_share, seed=cfg.seed)
        return out

    @property
    def batch_size(self) -> int:
        """Sub-domains bounded per batch (ReLU splitting: fewer where the memory budget needs it; a
        sub-domain's alpha-beta pass holds some 8 tensors of its rows times every source's values)."""
        if not self.relu_mode:
            return self.cfg.batch
        return self.limits.rows_fitting(64 * self.c.shape[0] * sum(self.low.source_sizes()), self.cfg.batch_relu)

    @property
    def in_flight(self) -> int:
        """Z3 leaves submitted to the workers and not yet handled."""
        return 0 if self.workers is None else len(self.workers)

    # -- main loop ----------------------------------------------------------
    def run(self, until_pending: int = 0, until_after: float = 0.0) -> BabOutcome | None:
        """Search from the whole box.  ``until_pending > 0``: return None (the queue kept) once
        that many sub-domains are queued, the search has run ``until_after`` seconds and no Z3
        leaf is in flight, for a shared search to hand them out."""
        if any(len(d) == 0 for _, d in self.region.disjuncts):
            return self._finish(Verdict.UNKNOWN, "a disjunct has no output constraint: every input is unsafe, "
                                                 "but no counterexample was confirmed by onnxruntime")
        first = Chunk(self.box.lower[None].copy(), self.box.upper[None].copy(),
                      np.ones((1, self.n_disj), bool), np.zeros(1, np.int64), self._no_splits(1))
        self.queue.push(first)
        return self.loop(until_pending=until_pending, until_after=until_after)

    def loop(self, share: Any = None, member: int = 0, until_pending: int = 0,
             until_after: float = 0.0) -> BabOutcome | None:
        """Bound the queued sub-domains (and what they split into) until decided.

        ``share`` (a :class:`~nnaudit.verify.bab.sharing.Share`): this search is member
        ``member`` of a shared search; it gives sub-domains to idle members, and when its own
        queue runs dry it waits for theirs.  HOLDS then means that every member's ran dry.
        A bound computation stopped by the deadline or the memory budget ends it as a timeout or
        as unknown ("memory budget")."""
        try:
            return self._loop(share, member, until_pending, until_after)
        except OutOfTime:
            return self._finish(Verdict.TIMEOUT, "deadline reached")
        except (OutOfMemoryBudget, MemoryError) as exc:
            return self._finish(Verdict.UNKNOWN, f"memory budget: {exc}")
        finally:
            if self.workers is not None:
                self.workers.close()
                self.workers = None

    def _loop(self, share: Any, member: int, until_pending: int, until_after: float) -> BabOutcome | None:
        """:meth:`loop`'s body."""
        while True:
            if not self.queue and not self.in_flight:
                if share is None:
                    break
                waited = share.wait(self, member)
                if waited is Waited.DONE:
                    break
                if waited is Waited.TIMEOUT:
                    return self._finish(Verdict.TIMEOUT, "deadline reached")
                continue
            # a batch whose bounds cannot end by the deadline is not started (a wide
            # network's batch takes up to a second, and its answer would come after it)
            if time.monotonic() + self.batch_s > self.deadline:
                return self._finish(Verdict.TIMEOUT, "deadline reached")
            self.limits.check_rss()
            if self._collect() or self._refalsify():
                return self.out
            if not self.queue:
                time.sleep(0.01)
                continue
            if self._step(self.queue.pop(self.batch_size)):
                return self.out
            if (until_pending and self.queue.pending >= until_pending and not self.in_flight
                    and time.monotonic() - self.started >= until_after):
                return None
            if share is not None:
                share.offer(self, member)
        if self.unknown_leaves:
            return self._finish(Verdict.UNKNOWN, f"{self.unknown_leaves} sub-domain(s) left undecided by Z3")
        return self._finish(Verdict.HOLDS, "")

    def _refalsify(self) -> bool:
        """A falsification round when its share of the time allows; True when it confirmed a
        counterexample (stored in the outcome)."""
        found = self.refalsifier.round(self.network, self.ort, self.box, self.region, self.started, self.deadline)
        if found is None:
            return False
        self.out.counterexample = found
        self._finish(Verdict.VIOLATED,
                     f"counterexample found by falsification round {self.refalsifier.rounds} during the search")
        return True

    def _finish(self, status: Verdict, message: str) -> BabOutcome:
        self.out.status, self.out.message = status, message
        return self.out

    def _no_splits(self, k: int) -> list[np.ndarray] | None:
        if not self.relu_mode:
            return None
        return [np.zeros((k, n.pre.size), np.int8) for n in self.low.nodes]

    # -- one batch ------------------------------------------------------------
    def _step(self, chunk: Chunk) -> bool:
        """Bound, probe, and dispatch one batch; True when the search is over."""
        self.out.subdomains += len(chunk)
        splits = None if chunk.splits is None else [torch.as_tensor(s) for s in chunk.splits]
        b, sb, lbs = self._bound(chunk, splits)
        alive = close_refuted(chunk, b, sb, lbs, self.owner.cpu().numpy(), self.cfg.prove_tol,
                              lp_depth=self.cfg.lp_depth if self.multi_row else None)
        if not alive.any():
            return False
        idx = np.flatnonzero(alive)
        worst_row = worst_rows(lbs, chunk.open, self.owner.cpu().numpy())
        if self._probe(chunk, idx, sb.a_in.detach().cpu().numpy(), worst_row):
            return True
        unstable = unstable_counts(self.low, b, splits)
        if not self.relu_mode and self.cfg.phase_max_unstable > 0 and self.phases_exact:
            idx = self._close_by_phases(chunk, b, idx, unstable)
        rest = self._to_z3(chunk, b, idx, unstable)
        if rest is None:
            return True
        if len(rest):
            children = self.brancher.split(chunk.take(rest), sb, b, rest, worst_row[rest], self.queue.pending)
            if self.relu_mode and self.n_disj > 1:  # batches of alike open counts pack into fewer rows (rowpack)
                children = children.take(np.argsort(children.open.sum(axis=1), kind="stable"))
            self.queue.push(children)
            if self.queue.over_cap:
                self._finish(Verdict.UNKNOWN, self.queue.cap_message())
                return True
        self._report()
        return False

    def _bound(self, chunk: Chunk, splits: list[torch.Tensor] | None) -> tuple[LayerBounds, SpecBound, np.ndarray]:
        """The batch's node bounds, its property rows' bounds and their lower values ``(k, rows)``.

        ReLU splitting reuses the whole box's intermediate bounds (they hold in every
        sub-domain), tightened by the splits, and optimises slopes and the splits' multipliers
        (alpha-beta-CROWN) from the parent's (``chunk.warm``)."""
        started, at_root = time.monotonic(), self.relu_mode and self.root is None
        x_lo, x_hi = torch.as_tensor(chunk.lo), torch.as_tensor(chunk.hi)
        with torch.no_grad():
            if self.relu_mode:
                if self.root is None:
                    self.root = compute_bounds(self.low, torch.as_tensor(self.box.lower[None]),
                                               torch.as_tensor(self.box.upper[None]),
                                               alpha_steps=root_alpha_steps(self.low, self.cfg), limits=self.limits)
                b = compute_bounds(self.low, x_lo, x_hi, splits=splits, parent=self.root,
                                   intermediate=Intermediate.NONE, limits=self.limits)
            else:
                b = compute_bounds(self.low, x_lo, x_hi, splits=splits, intermediate=self.cfg.intermediate,
                                   limits=self.limits)
            steps = self.cfg.relu_alpha_steps if self.relu_mode else self.cfg.alpha_steps
            if self.deadline - time.monotonic() < 2.0:
                steps = 0  # an optimised batch can take a second on wide layers: keep the deadline
            if steps:
                init = None if chunk.warm is None else \
                    {g: {k: torch.as_tensor(v) for k, v in part.items()} for g, part in chunk.warm.items()}
                with torch.enable_grad():
                    sb = self._spec(chunk, b, alpha_steps=steps, record=True, splits=splits, init=init)
            else:
                sb = self._spec(chunk, b, record=self.relu_mode)
        lbs = sb.lower.detach().cpu().numpy()
        self.batch_s = 0.0 if at_root else time.monotonic() - started
        return b, sb, lbs

    def _spec(self, chunk: Chunk, b: LayerBounds, **kw: Any) -> SpecBound:
        """The property rows' lower bounds over the batch: with ReLU splitting, only the rows of
        each sub-domain's open disjuncts (:mod:`~nnaudit.verify.rowpack`; the others are refuted
        already, and come back +inf)."""
        self.limits.check_time()
        if self.relu_mode:
            return spec_lower_open(self.low, b, self.c, self.d, chunk.open[:, self.owner.cpu().numpy()],
                                   limits=self.limits, **kw)
        return spec_lower(self.low, b, self.c, self.d, limits=self.limits, **kw)

    def _probe(self, chunk: Chunk, idx: np.ndarray, a_in: np.ndarray, rows: np.ndarray) -> bool:
        """Check centres and bound-minimising vertices; True when a counterexample is confirmed.

        Each distinct candidate is evaluated once, in the order of first appearance: with ReLU
        splitting every sub-domain keeps the whole box, so a batch's centres are one point and
        its vertices a handful (on a CIFAR-10 region's hull, evaluating all 1,024 candidates of a
        512-sub-domain batch took 18 % of the search; finding them by ``np.unique(axis=0)``, which
        sorts the rows, took 10 % of an oval21 search: they are keyed by their bytes)."""
        a = a_in[idx, rows[idx]]
        vertex = np.where(a > 0, chunk.lo[idx], chunk.hi[idx])
        centre = (chunk.lo[idx] + chunk.hi[idx]) / 2
        points = np.ascontiguousarray(np.concatenate([vertex, centre]))
        seen = {p.tobytes(): i for i, p in reversed(list(enumerate(points)))}  # each point's first index
        first = np.sort(np.fromiter(seen.values(), dtype=np.int64, count=len(seen)))
        cand = points[first]
        shape = tuple(self.network.input_shape)
        hit = self.region.margin(self.low.evaluate(cand)) <= 1e-6
        hits = cand[hit]
        if len(hits) == 0:
            return False
        found = confirm(self.ort, self.box, self.region, hits[:16], shape)
        if found is None:
            return False
        self.out.counterexample = found
        depths = np.concatenate([chunk.depth[idx], chunk.depth[idx]])[first[hit]][:16]
        self._finish(Verdict.VIOLATED, "counterexample at the centre or bound-minimising vertex of a sub-domain "
                                       f"{_depths(depths)} of the search")
        return True

    def _close_by_phases(self, chunk: Chunk, b: LayerBounds, idx: np.ndarray, unstable: np.ndarray) -> np.ndarray:
        """Close the deep sub-domains of ``idx`` with few unstable ReLUs by their phase
        patterns (:func:`~nnaudit.verify.phases.closes_by_phases`); returns the rest."""
        cfg = self.cfg
        tried = idx[(chunk.depth[idx] >= cfg.phase_depth) & (unstable[idx] <= cfg.phase_max_unstable)]
        closed = []
        for i in tried:
            if time.monotonic() > self.deadline:
                break
            pre = [(b.pre_lo[k][i].cpu().numpy(), b.pre_hi[k][i].cpu().numpy()) for k in range(len(self.low.nodes))]
            if closes_by_phases(self.low, self.region, chunk.lo[i], chunk.hi[i], pre, np.flatnonzero(chunk.open[i]),
                                cfg.prove_tol, cfg.phase_max_unstable):
                chunk.open[i] = False
                closed.append(i)
        self.out.phase_closed += len(closed)
        return np.setdiff1d(idx, np.asarray(closed, np.int64))

    # -- Z3 leaves ----------------------------------------------------------------
    def _to_z3(self, chunk: Chunk, b: LayerBounds, idx: np.ndarray, unstable: np.ndarray) -> np.ndarray | None:
        """Send the sub-domains of ``idx`` that are Z3's (few unstable ReLUs, or deep enough for a
        probe) to Z3; returns the others, to be split (None: the search is over)."""
        limit = self.cfg.z3_max_unstable_relu if self.relu_mode else self.cfg.z3_max_unstable
        small = unstable <= limit
        at_depth = chunk.depth >= self.z3_depth
        if self.relu_mode:
            at_depth &= unstable <= self.cfg.z3_probe_unstable_relu
        to_z3 = small | at_depth
        deferred = []
        for i in idx[to_z3[idx]]:
            if time.monotonic() > self.deadline:
                self._finish(Verdict.TIMEOUT, "deadline reached")
                return None
            if not small[i] and chunk.depth[i] < self.z3_depth:  # a probe ran out meanwhile: split instead
                deferred.append(i)
                continue
            if self._leaf(chunk, b, i, probe=not small[i]):
                return None
        return np.sort(np.concatenate([idx[~to_z3[idx]], np.asarray(deferred, np.int64)]))

    def _leaf(self, chunk: Chunk, b: LayerBounds, i: int, probe: bool = False) -> bool:
        """Decide one sub-domain with Z3 (here or in a worker); True when the search is over.
        ``probe``: it goes to Z3 for its depth, not for being small (see :meth:`_probing`)."""
        pre = [(b.pre_lo[k][i].cpu().numpy().copy(), b.pre_hi[k][i].cpu().numpy().copy()) for k in range(len(self.low.nodes))]
        splits = None if chunk.splits is None else [s[i].copy() for s in chunk.splits]
        task = LeafTask(chunk.lo[i].copy(), chunk.hi[i].copy(), pre, splits,
                        np.flatnonzero(chunk.open[i]), 0.0, 0.0, int(chunk.depth[i]), probe)
        return self._submit(task)

    def _probing(self, task: LeafTask) -> bool:
        """Whether a Z3 call on ``task`` is a probe: the search sent it for its depth (not for
        few unstable ReLUs: those are Z3's to decide), and it is not yet at the final depth."""
        return task.probe and task.depth < self.cfg.z3_final_depth

    def _time_limit(self, task: LeafTask) -> float:
        remaining = max(self.deadline - time.monotonic(), 0.0)
        cap = self.cfg.z3_probe_timeout if self._probing(task) else self.cfg.z3_leaf_timeout
        return min(cap, remaining)

    def _submit(self, task: LeafTask) -> bool:
        task.timeout_s = self._time_limit(task)
        self.out.z3_calls += 1
        if self.cfg.workers <= 1:
            return self._handle(task, decide_leaf(self.low, self.region, task))
        if self.workers is None:
            self.workers = LeafWorkers(self.low, self.region, self.cfg.workers)
        # back-pressure: at most two leaves per worker in flight, so that a leaf's time limit
        # (set above) is not spent waiting in the workers' queue and that queue stays small
        while len(self.workers) >= 2 * self.cfg.workers:
            if time.monotonic() > self.deadline:
                self._finish(Verdict.TIMEOUT, "deadline reached")
                return True
            if self._collect():
                return True
            time.sleep(0.005)
        task.timeout_s = self._time_limit(task)
        self.workers.submit(task)
        return False

    def _collect(self) -> bool:
        """Handle the Z3 leaves the workers answered; True when the search is over.  (Handling
        one may submit another: a retry with slack.)"""
        if self.workers is None:
            return False
        for task, result in self.workers.finished():
            if self._handle(task, result):
                return True
        return False

    def _handle(self, task: LeafTask, res: LeafResult) -> bool:
        self.out.z3_time_s += res.time_s
        if res.status is SmtStatus.UNSAT:
            return False
        if res.status is SmtStatus.SAT:
            return self._on_model(task, res.values)
        if self._probing(task) and self.deadline - time.monotonic() > 0.5:
            self._split_on(task)
            return False
        self.unknown_leaves += 1
        return False

    def _on_model(self, task: LeafTask, x: np.ndarray) -> bool:
        """Z3 found ``x`` in leaf ``task``: a counterexample once onnxruntime confirms it (or a point
        near it); else, once, a retry that asks for a violation by a clear margin."""
        found = confirm(self.ort, self.box, self.region, x[None], tuple(self.network.input_shape))
        how = "Z3's model"
        if found is None:
            found = search_near(self.network, self.ort, self.box, Box(task.lo, task.hi), self.region, x)
            how = "a search near Z3's model (rounding defeated the model itself)"
        if found is not None:
            self.out.counterexample = found
            self._finish(Verdict.VIOLATED, f"counterexample from {how} of a sub-domain at depth {task.depth}")
            return True
        if task.slack == 0.0:  # rounding defeated the model
            return self._submit(replace(task, slack=1e-5))
        self.unknown_leaves += 1
        return False

    def _split_on(self, task: LeafTask) -> None:
        """A Z3 probe ran out of time: the sub-domain goes back to be split, and the
        search calls Z3 ``z3_depth_step`` splits deeper from now on."""
        self.z3_depth = max(self.z3_depth, min(task.depth + self.cfg.z3_depth_step, self.cfg.z3_final_depth))
        open_ = np.zeros((1, self.n_disj), bool)
        open_[0, task.open] = True
        splits = None if task.splits is None else [s[None].copy() for s in task.splits]
        self.queue.push(Chunk(task.lo[None].copy(), task.hi[None].copy(), open_, np.array([task.depth], np.int64),
                              splits))

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.out.subdomains, self.queue.pending + self.in_flight)


def _depths(depths: np.ndarray) -> str:
    """``at depth 7`` or ``at depths 7-9``: where in the search tree some candidates came from."""
    lo, hi = int(depths.min()), int(depths.max())
    return f"at depth {lo}" if lo == hi else f"at depths {lo}-{hi}"
