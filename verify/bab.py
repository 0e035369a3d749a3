"""Branch and bound over sub-domains, with Z3 deciding the small leaves.

Step 3 of the pipeline.  A sub-domain is an input box plus, for
high-dimensional inputs, fixed ReLU phases.  Sub-domains are bounded in
batches (:mod:`nnaudit.verify.bounds`); a disjunct of the unsafe region is
closed on a sub-domain once one of its rows has a positive lower bound, and
a sub-domain whose disjuncts are all closed (or whose splits contradict each
other) is dropped.  Each remaining one is probed for a counterexample (its
centre and the box vertex minimising the worst linear bound) and then either
decided exactly by Z3 (:mod:`nnaudit.verify.encode`) when it is small, or
split in two.

Branching heuristics (documented choices):

- input splitting when the network has at most ``input_split_dims`` inputs
  (ACAS Xu has 5): split the dimension whose narrowing raises the lower bound
  of the most promising row of the worst open disjunct fastest: ``(d lb /
  d lo_i - d lb / d hi_i) * width_i``, by autograd through the bounds
  (``split_score="gradient"``; fresh every ``gradient_every`` depths, a
  parent's reused in between).  The older "smear" score ``|a_i| * width_i``
  (``a``: that row's input coefficient in its final linear bound) sees only
  the last linear bound, not how a wide input loosens the intermediate ReLU
  relaxations: on ACAS Xu 3_3 prop 2 it split one input 35 times and another
  3 times, and its search took 606 356 sub-domains (436 s; timeout with a
  balancing rule off) where the gradient's took 39 177 (52.8 s); the gradient's
  choice matched the best of the 2n trial splits (below) on 70-100% of the
  sub-domains measured, the smear score's on 28-56%.  Measured on 4_2 prop 2
  (123k-153k sub-domains): gradients at every depth 155.7 s, every 5th 93.4
  s, every 8th 90.5 s.  Optionally (``trial_split``) the dimension whose two
  halves bound best, which costs 2n extra bounds per split (3_6 prop 1:
  timeout at 60 s with it, 12 s with the smear score);
- ReLU splitting otherwise: split the unstable neuron maximising
  ``w(lambda_j) * (-l_j u_j / (u_j - l_j))``, its coefficient in that same
  bound (weighted: ``-lambda`` when negative, ``POSITIVE_WEIGHT * lambda``
  when positive) times the height of its triangle relaxation (BaBSR-like).  The
  intermediate bounds are those of the whole box, tightened once by
  alpha-CROWN (``root_alpha_steps``) and per sub-domain by the splits; each
  batch's final bound is alpha-beta-CROWN (``relu_alpha_steps``): Lagrange
  multipliers of the split constraints ``s_j z_j >= 0`` enter the bound, so a
  sub-domain whose splits leave no unsafe input can be closed.  Each output
  row has its own slopes; children start from their parent's last slopes and
  multipliers (a warm start, memory-capped by ``warm_bytes``), and ``lambda``
  above is read from the optimised bound, not from plain CROWN's.  Measured on
  mnist_fc 256x4 prop 3 eps 0.05 (holds): 3667 sub-domains before, 1207 with
  the row slopes and warm starts, 475 with the optimised ``lambda``, 127 with
  its weighting below;
- a sub-domain goes to Z3 when it has at most ``z3_max_unstable`` unstable
  ReLUs or was split ``z3_max_depth`` times.  With input splitting, such a
  call is a probe (``z3_probe_timeout``) until ``z3_final_depth``: Z3 decides
  thin slivers of tiny networks at once, but on ACAS Xu it spent seconds on
  each depth-40 leaf with a single unstable ReLU (1_1 prop 5: 25 leaves ran
  out the 60 s), where further splitting closes them by bounds in 4 s.  So a
  probe that runs out sends its sub-domain back to be split, and raises the
  depth at which the search calls Z3 by ``z3_depth_step``.  ReLU splitting
  probes too (``z3_max_depth_relu``), on sub-domains with at most
  ``z3_probe_unstable_relu`` unstable ReLUs: its intermediate bounds do not
  tighten with the splits, so on a 2-input 8-8 network the tree of ReLU
  phases grew to 9000 sub-domains without an answer in 30 s, where Z3 on
  the depth-10 sub-domains answers in 9 s; wide networks (MNIST) never have
  that few unstable ReLUs, and their encodings take longer than a probe.

With input splitting, a sub-domain at least ``phase_depth`` deep with at
most ``phase_max_unstable`` unstable ReLUs is first offered to
:mod:`nnaudit.verify.phases`, which closes it exactly where it is safe by one
small LP per phase pattern (a certificate re-checked like any bound); what it
cannot close goes on as before.  Z3 on such a leaf of ACAS Xu took 1.4-3.6 s
(its encoding alone 1.1 s, more than a probe's time), the patterns ~4 ms.

Falsification goes on during the search: after ``refalsify_after`` seconds,
rounds of random sampling and PGD with fresh seeds take up to
``refalsify_share`` of the time (one seed's falsification is luck: ACAS 1_5
prop 2's counterexample is found by 4 of 30 seeds of the larger round).

Zero wrong answers: "holds" needs every sub-domain closed by a bound that
exceeds a small positive tolerance or by a Z3 unsat; "violated" needs an
onnxruntime-confirmed counterexample; anything else is unknown or timeout.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from nnaudit.verify.bounds import LayerBounds, SpecBound, compute_bounds, spec_lower
from nnaudit.verify.falsify import FalsifyConfig, confirm, falsify
from nnaudit.networks.lower import Lowered
from nnaudit.verify.phases import applies as phases_apply
from nnaudit.verify.phases import closes_by_phases, combination_closes
from nnaudit.verify.results import Counterexample
from nnaudit.verify.rowpack import spec_lower_open
from nnaudit.verify.spec import Box, Region

log = logging.getLogger(__name__)

#: the falsification rounds during the search, smallest first; later rounds repeat the last
REFALSIFY_ROUNDS = (FalsifyConfig(samples=1024, pgd_starts=32, pgd_steps=60),
                    FalsifyConfig(samples=4096, pgd_starts=64, pgd_steps=100),
                    FalsifyConfig(samples=10_000, pgd_starts=128, pgd_steps=150),
                    FalsifyConfig(samples=20_000, pgd_starts=256, pgd_steps=200))
#: a round's cost over the previous, smaller one's (an upper estimate, to keep the share)
REFALSIFY_GROWTH = 3.0
#: ReLU scores: weight of a positive coefficient (the neuron's optimised lower line) against a
#: negative one (the triangle's upper line, whose whole height the split removes).  mnist_fc
#: 256x4 prop 3 eps 0.05: 475 sub-domains with weight 1 (|lambda|), 127 with 0.5, 239 with 0.25,
#: 1409 with ~0; 256x6 prop 7 eps 0.03 holds in 8 s with 0.5 or 0.25, 22 s with 1
POSITIVE_WEIGHT = 0.5


@dataclass(frozen=True)
class BabConfig:
    """Settings of branch and bound."""

    batch: int = 512               # sub-domains bounded per torch call (input splitting)
    batch_relu: int = 48           # the same for ReLU splitting (wide layers: memory and time per call)
    max_domains: int = 300_000     # queue cap; past it the answer is unknown (memory stays bounded) ...
    max_queue_bytes: int = 2 << 30  # ... and the same cap in bytes of queued boxes, phases and depths (a ReLU-split
                                    # MNIST sub-domain carries 14 KB; warm starts have their own cap, warm_bytes)
    input_split_dims: int = 32     # split inputs when the network has at most this many, else ReLUs
    z3_max_unstable: int = -1      # input splitting: a sub-domain with at most this many unstable ReLUs goes to Z3
    z3_max_unstable_relu: int = 0  # ReLU splitting: the same threshold
    z3_max_depth: int = 40         # input splitting: any sub-domain split this many times also goes to Z3 ...
    z3_max_depth_relu: int = 10    # ReLU splitting: the same depth (probes too), for sub-domains with at most
    z3_probe_unstable_relu: int = 16  # this many unstable ReLUs (a wide network's encoding outlives a probe's time)
    z3_probe_timeout: float = 1.0  # ... for this long while shallower than z3_final_depth; when Z3 runs out of it,
    z3_depth_step: int = 20        # the sub-domain is split on instead, and the search's Z3 depth rises by this
    z3_final_depth: int = 120      # input splitting: from this depth on, Z3 gets z3_leaf_timeout
    z3_leaf_timeout: float = 60.0  # cap of one Z3 call (also capped by the deadline)
    workers: int = 1               # processes deciding Z3 leaves (1: in this process)
    alpha_steps: int = 0           # input splitting: > 0: alpha-CROWN iterations per batch
    root_alpha_steps: int = 20     # ReLU splitting: > 0: alpha-CROWN iterations for each node's bounds on the whole box
    relu_alpha_steps: int = 10     # ReLU splitting: > 0: alpha-beta-CROWN iterations per batch (betas: the split constraints)
    prove_tol: float = 1e-7        # a bound proves a row only when above this (absorbs rounding)
    split_score: str = "gradient"  # input splitting: "gradient" (see _Search._sensitivities) or "smear" (|a_i| * width_i)
    gradient_every: int = 5        # ... fresh gradients every this many depths (in between, the parent's are reused)
    trial_split: bool = False      # input splitting: pick the dimension whose two halves bound best (bounds 2n children
                                   # per split; measured 10x slower per sub-domain on ACAS Xu, so off by default)
    lp_depth: int = 30             # from this depth on, close multi-row disjuncts by an LP over row combinations
    phase_depth: int = 30          # input splitting: from this depth on, a sub-domain with at most phase_max_unstable
    phase_max_unstable: int = 6    # unstable ReLUs is closed, where it can be, by an LP per phase pattern (0: off)
    relu_intermediate: str = "none"  # ReLU splitting: the same (bounds of the whole box, tightened by the splits)
    split_balance: float = 0.0     # input splitting: split the relatively widest dimension when it is this many times
                                   # wider than the chosen one (0: off)
    portfolio: bool = False        # input splitting, workers >= 2: race two split heuristics in parallel processes
                                   # instead of sharing one search (see run_bab)
    share: bool = True             # workers >= 2: one search on that many processes (verify/sharing.py) ...
    share_after: float = 4.0       # ... from this many seconds into the search on
    intermediate: str = "auto"     # input splitting: how pre-activation bounds are computed (see bounds.compute_bounds)
    refalsify_share: float = 0.1   # share of the search's time spent on renewed falsification rounds (0: none)
    refalsify_after: float = 2.0   # seconds of search before the first round (quick instances pay nothing)
    seed: int = 0                  # seed of the renewed rounds (portfolio and shared-search members get different ones)
    warm_bytes: int = 1 << 30      # ReLU splitting: memory for the queue's warm starts (beyond it, children start cold)

    def __post_init__(self) -> None:
        from nnaudit.errors import ConfigError

        if self.split_score not in ("gradient", "smear"):
            raise ConfigError(f"branch and bound: expected split_score 'gradient' or 'smear', got {self.split_score!r}")
        if self.gradient_every < 1:
            raise ConfigError(f"branch and bound: expected gradient_every >= 1, got {self.gradient_every}")


@dataclass
class BabOutcome:
    """What branch and bound concluded for one (box, region) case."""

    status: str                    # "holds", "violated", "unknown", "timeout"
    counterexample: Counterexample | None = None
    subdomains: int = 0
    z3_calls: int = 0
    z3_time_s: float = 0.0
    phase_closed: int = 0          # sub-domains closed by their phase patterns' LPs
    shared: list[int] = field(default_factory=list)  # shared search: sub-domains bounded by each member
    message: str = ""
    progress: list[str] = field(default_factory=list)


@dataclass
class _Chunk:
    """A batch of sub-domains (NumPy, first axis = sub-domain)."""

    lo: np.ndarray                       # (k, n_in)
    hi: np.ndarray                       # (k, n_in)
    open: np.ndarray                     # (k, J) disjuncts not yet closed
    depth: np.ndarray                    # (k,)
    splits: list[np.ndarray] | None      # per ReLU-capable node (k, size) int8, or None for input splitting
    warm: dict[str, dict[int, np.ndarray]] | None = None  # ReLU splitting: the parent's optimised slopes and
                                                         # multipliers (float16, as SpecBound.state), or None
    sens: np.ndarray | None = None       # input splitting, gradient scores: (k, n_in) the parent's bound's response
                                         # to each width (see _Search._sensitivities), or None

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, idx: np.ndarray) -> _Chunk:
        sp = None if self.splits is None else [s[idx] for s in self.splits]
        warm = None if self.warm is None else {g: {k: v[idx] for k, v in part.items()} for g, part in self.warm.items()}
        return _Chunk(self.lo[idx], self.hi[idx], self.open[idx], self.depth[idx], sp, warm,
                      None if self.sens is None else self.sens[idx])

    @staticmethod
    def join(chunks: list[_Chunk]) -> _Chunk:
        sp = None if chunks[0].splits is None else [np.concatenate(p) for p in zip(*(c.splits for c in chunks))]
        sens = None
        if any(c.sens is not None for c in chunks):
            sens = np.concatenate([np.full(c.lo.shape, np.nan) if c.sens is None else c.sens for c in chunks])
        return _Chunk(*(np.concatenate([getattr(c, f) for c in chunks]) for f in ("lo", "hi", "open", "depth")), sp,
                      _join_warm(chunks), sens)


def _join_warm(chunks: list[_Chunk]) -> dict[str, dict[int, np.ndarray]] | None:
    """The warm starts of ``chunks`` in one; a chunk without one (or without a node's
    multipliers) contributes NaN, which :func:`~nnaudit.verify.bounds.spec_lower` reads as
    "start from the default"."""
    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    for c in chunks:
        for g, part in (c.warm or {}).items():
            for k, v in part.items():
                shapes[(g, k)] = v.shape[1:]
    if not shapes:
        return None
    warm: dict[str, dict[int, np.ndarray]] = {"alpha": {}, "beta": {}}
    for (g, k), shape in shapes.items():
        warm[g][k] = np.concatenate([(c.warm or {}).get(g, {}).get(k, np.full((len(c),) + shape, np.nan, np.float16))
                                     for c in chunks])
    return warm


class _Search:
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
        self.out = BabOutcome("unknown")
        self.queue: list[_Chunk] = []
        self.pending = 0
        n_relu = sum(n.pre.size for n in low.nodes) if self.relu_mode else 0
        # per queued sub-domain: its box (float64), open disjuncts (bool), depth (int64), phases (int8)
        self.domain_bytes = 16 * low.input_size + self.n_disj + 8 + n_relu
        self.queue_cap = min(config.max_domains, max(1, config.max_queue_bytes // self.domain_bytes))
        self.unknown_leaves = 0
        self.pool: Any = None
        self.root: LayerBounds | None = None
        self.futures: list[Any] = []
        self.started = time.monotonic()
        # raised when a Z3 probe runs out of time
        self.z3_depth = config.z3_max_depth_relu if self.relu_mode else config.z3_max_depth
        self.refalsify_spent = 0.0
        self.refalsify_rounds = 0
        self.refalsify_last = 0.0  # seconds the last round took
        self.batch_s = 0.0  # seconds the last batch's bounds took (not counting the root's, bounded once)

    # -- main loop ----------------------------------------------------------
    def run(self, until_pending: int = 0, until_after: float = 0.0) -> BabOutcome | None:
        """Search from the whole box.  ``until_pending > 0``: return None (the queue kept) once
        that many sub-domains are queued, the search has run ``until_after`` seconds and no Z3
        leaf is in flight, for a shared search (:mod:`~nnaudit.verify.sharing`) to hand them out."""
        empty_disj = [j for j, (_, d) in enumerate(self.region.disjuncts) if len(d) == 0]
        if empty_disj:
            return self._finish("unknown", "a disjunct has no output constraint: every input is unsafe, "
                                           "but no counterexample was confirmed by onnxruntime")
        first = _Chunk(self.box.lower[None].copy(), self.box.upper[None].copy(),
                       np.ones((1, self.n_disj), bool), np.zeros(1, np.int64), self._no_splits(1))
        self._push(first)
        return self.loop(until_pending=until_pending, until_after=until_after)

    def loop(self, share: Any = None, member: int = 0, until_pending: int = 0,
             until_after: float = 0.0) -> BabOutcome | None:
        """Bound the queued sub-domains (and what they split into) until decided.

        ``share`` (a :class:`~nnaudit.verify.sharing.Share`): this search is one member of
        a shared search; it gives sub-domains to idle members, and when its own queue runs
        dry it waits for theirs (``member``: its index there).  "holds" then means that every
        member's queue ran dry."""
        try:
            while True:
                if not self.queue and not self.futures:
                    if share is None:
                        break
                    waited = share.wait(self, member)
                    if waited == "done":
                        break
                    if waited == "timeout":
                        return self._finish("timeout", "deadline reached")
                    continue
                # a batch whose bounds cannot end by the deadline is not started (a wide
                # network's batch takes up to a second, and its answer would come after it)
                if time.monotonic() + self.batch_s > self.deadline:
                    return self._finish("timeout", "deadline reached")
                if self._collect() or self._refalsify():
                    return self.out
                if not self.queue:
                    time.sleep(0.01)
                    continue
                if self._step(self._pop()):
                    return self.out
                if (until_pending and self.pending >= until_pending and not self.futures
                        and time.monotonic() - self.started >= until_after):
                    return None
                if share is not None:
                    share.offer(self, member)
            if self.unknown_leaves:
                return self._finish("unknown", f"{self.unknown_leaves} sub-domain(s) left undecided by Z3")
            return self._finish("holds", "")
        finally:
            if self.pool is not None:
                self.pool.terminate()
                self.pool = None

    def _refalsify(self) -> bool:
        """A falsification round with a fresh seed when its share of the time allows; True when
        it confirmed a counterexample (stored in the outcome).

        Rounds grow (:data:`REFALSIFY_ROUNDS`) and a round starts only when its predicted cost
        (the last round's, times the growth) fits in the share: the largest round costs 0.24 s
        on ACAS Xu but 4 s on mnist_fc 256x6, where the first, smallest one costs 0.26 s."""
        cfg = self.cfg
        now = time.monotonic()
        elapsed = now - self.started
        k = min(self.refalsify_rounds, len(REFALSIFY_ROUNDS) - 1)
        grows = 0 < self.refalsify_rounds < len(REFALSIFY_ROUNDS)  # this round is larger than the last
        predicted = self.refalsify_last * (REFALSIFY_GROWTH if grows else 1.0)
        if (cfg.refalsify_share <= 0 or elapsed < cfg.refalsify_after
                or self.refalsify_spent + predicted > cfg.refalsify_share * elapsed):
            return False
        if self.deadline - now < max(2.0, 2 * predicted):  # a round's PGD does not look at the clock
            return False
        self.refalsify_rounds += 1
        seed = 1_000 * (cfg.seed + 1) + self.refalsify_rounds
        found = falsify(self.network, self.ort, self.box, self.region, replace(REFALSIFY_ROUNDS[k], seed=seed),
                        self.deadline)
        self.refalsify_last = time.monotonic() - now
        self.refalsify_spent += self.refalsify_last
        if found is None:
            return False
        self.out.counterexample = found
        self._finish("violated", f"counterexample found by falsification round {self.refalsify_rounds} during the search")
        return True

    def _finish(self, status: str, message: str) -> BabOutcome:
        self.out.status, self.out.message = status, message
        return self.out

    def _no_splits(self, k: int) -> list[np.ndarray] | None:
        if not self.relu_mode:
            return None
        return [np.zeros((k, n.pre.size), np.int8) for n in self.low.nodes]

    def _push(self, chunk: _Chunk) -> None:
        if len(chunk):
            self.queue.append(chunk)
            self.pending += len(chunk)

    @property
    def batch_size(self) -> int:
        """Sub-domains bounded per batch."""
        return self.cfg.batch_relu if self.relu_mode else self.cfg.batch

    def _pop(self) -> _Chunk:
        taken, count = [], 0
        size = self.batch_size
        while self.queue and count < size:
            chunk = self.queue.pop()
            room = size - count
            if len(chunk) > room:
                idx = np.arange(len(chunk))
                self.queue.append(chunk.take(idx[room:]))
                chunk = chunk.take(idx[:room])
            taken.append(chunk)
            count += len(chunk)
        self.pending -= count
        return _Chunk.join(taken)

    # -- one batch ------------------------------------------------------------
    def _step(self, chunk: _Chunk) -> bool:
        """Bound, probe, and dispatch one batch; True when the search is over."""
        self.out.subdomains += len(chunk)
        started, at_root = time.monotonic(), self.relu_mode and self.root is None
        x_lo, x_hi = torch.as_tensor(chunk.lo), torch.as_tensor(chunk.hi)
        splits = None if chunk.splits is None else [torch.as_tensor(s) for s in chunk.splits]
        with torch.no_grad():
            if self.relu_mode:
                # intermediate bounds of the whole box hold in every sub-domain: reuse them, tightened by the splits
                if self.root is None:
                    self.root = compute_bounds(self.low, torch.as_tensor(self.box.lower[None]),
                                               torch.as_tensor(self.box.upper[None]),
                                               alpha_steps=self.cfg.root_alpha_steps)
                b = compute_bounds(self.low, x_lo, x_hi, splits=splits, parent=self.root, intermediate=self.cfg.relu_intermediate)
            else:
                b = compute_bounds(self.low, x_lo, x_hi, splits=splits, intermediate=self.cfg.intermediate)
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
        lbs = sb.lower.detach().numpy()
        self.batch_s = 0.0 if at_root else time.monotonic() - started
        proved = lbs > self.cfg.prove_tol
        closed = np.zeros_like(chunk.open)
        for j in range(self.n_disj):
            closed[:, j] = proved[:, self.owner.numpy() == j].any(axis=1)
        chunk.open &= ~closed
        alive = b.feasible.numpy() & chunk.open.any(axis=1)
        deep = np.flatnonzero(alive & (chunk.depth >= self.cfg.lp_depth))
        if len(deep) and self.multi_row:
            self._lp_close(chunk, deep, sb.lin_lower.detach().numpy(), sb.a_in.detach().numpy())
            alive = b.feasible.numpy() & chunk.open.any(axis=1)
        if not alive.any():
            return False
        idx = np.flatnonzero(alive)
        worst_row = self._worst_rows(lbs, chunk.open)
        if self._probe(chunk, idx, sb.a_in.detach().numpy(), worst_row):
            return True
        unstable = self._unstable(b, splits)
        if not self.relu_mode and self.cfg.phase_max_unstable > 0 and self.phases_exact:
            idx = self._close_by_phases(chunk, b, idx, unstable)
        limit = self.cfg.z3_max_unstable_relu if self.relu_mode else self.cfg.z3_max_unstable
        small = unstable <= limit
        at_depth = chunk.depth >= self.z3_depth
        if self.relu_mode:
            at_depth &= unstable <= self.cfg.z3_probe_unstable_relu
        to_z3 = small | at_depth
        deferred = []
        for i in idx[to_z3[idx]]:
            if time.monotonic() > self.deadline:
                self._finish("timeout", "deadline reached")
                return True
            if not small[i] and chunk.depth[i] < self.z3_depth:  # a probe ran out meanwhile: split instead
                deferred.append(i)
                continue
            if self._leaf(chunk, b, i, probe=not small[i]):
                return True
        rest = np.sort(np.concatenate([idx[~to_z3[idx]], np.asarray(deferred, np.int64)]))
        if len(rest):
            children = self._split(chunk.take(rest), sb, b, rest, worst_row[rest], lbs[rest, worst_row[rest]])
            if self.relu_mode and self.n_disj > 1:  # batches of alike open counts pack into fewer rows (rowpack)
                children = children.take(np.argsort(children.open.sum(axis=1), kind="stable"))
            self._push(children)
            if self.pending > self.queue_cap:
                self._finish("unknown", f"more than {self.queue_cap} open sub-domains (queue cap: "
                                        f"{self.queue_cap * self.domain_bytes / 2 ** 20:.0f} MiB)")
                return True
        self._report()
        return False

    def _spec(self, chunk: _Chunk, b: LayerBounds, **kw: Any) -> SpecBound:
        """The property rows' lower bounds over the batch: with ReLU splitting, only the rows of
        each sub-domain's open disjuncts (:mod:`~nnaudit.verify.rowpack`; the others are refuted
        already, and come back +inf)."""
        if self.relu_mode:
            return spec_lower_open(self.low, b, self.c, self.d, chunk.open[:, self.owner.numpy()], **kw)
        return spec_lower(self.low, b, self.c, self.d, **kw)

    def _lp_close(self, chunk: _Chunk, idx: np.ndarray, lin: np.ndarray, a_in: np.ndarray) -> None:
        """Close a disjunct when a convex combination of its rows' linear lower
        bounds ``a_i x + c_i`` is positive on the whole box (see :func:`combination_closes`).
        ``lin``: the minima of those linear bounds over the box (``SpecBound.lin_lower``,
        not the best bound ``lower``, whose excess over it no linear form backs)."""
        owner = self.owner.numpy()
        for j in range(self.n_disj):
            rows = np.flatnonzero(owner == j)
            cand = idx[chunk.open[idx, j]] if len(rows) >= 2 else idx[:0]
            if len(cand) == 0:
                continue
            lo, hi = chunk.lo[cand], chunk.hi[cand]
            a = a_in[cand][:, rows]                                                  # (P, R, n)
            c = lin[cand][:, rows] - (np.maximum(a, 0) * lo[:, None] + np.minimum(a, 0) * hi[:, None]).sum(-1)
            chunk.open[cand[combination_closes(a, c, lo, hi, self.cfg.prove_tol)], j] = False

    def _worst_rows(self, lbs: np.ndarray, open_: np.ndarray) -> np.ndarray:
        """Per sub-domain, the best row of its worst open disjunct."""
        owner = self.owner.numpy()
        best_per_disj = np.full(open_.shape, np.inf)
        best_row = np.zeros(open_.shape, np.int64)
        for j in range(self.n_disj):
            rows = np.flatnonzero(owner == j)
            k = lbs[:, rows].argmax(axis=1)
            best_row[:, j] = rows[k]
            best_per_disj[:, j] = np.where(open_[:, j], lbs[np.arange(len(lbs)), rows[k]], np.inf)
        worst = best_per_disj.argmin(axis=1)
        return best_row[np.arange(len(lbs)), worst]

    def _probe(self, chunk: _Chunk, idx: np.ndarray, a_in: np.ndarray, rows: np.ndarray) -> bool:
        """Check centres and bound-minimising vertices; True when a counterexample is confirmed."""
        a = a_in[idx, rows[idx]]
        vertex = np.where(a > 0, chunk.lo[idx], chunk.hi[idx])
        centre = (chunk.lo[idx] + chunk.hi[idx]) / 2
        cand = np.concatenate([vertex, centre])
        shape = tuple(self.network.input_shape)
        hit = self.region.margin(self.low.evaluate(cand)) <= 1e-6
        hits = cand[hit]
        if len(hits) == 0:
            return False
        found = confirm(self.ort, self.box, self.region, hits[:16], shape)
        if found is None:
            return False
        self.out.counterexample = found
        depths = np.concatenate([chunk.depth[idx], chunk.depth[idx]])[hit][:16]
        self._finish("violated", "counterexample at the centre or bound-minimising vertex of a sub-domain "
                                 f"{_depths(depths)} of the search")
        return True

    def _close_by_phases(self, chunk: _Chunk, b: LayerBounds, idx: np.ndarray, unstable: np.ndarray) -> np.ndarray:
        """Close the deep sub-domains of ``idx`` with few unstable ReLUs by their phase
        patterns (:func:`~nnaudit.verify.phases.closes_by_phases`); returns the rest."""
        cfg = self.cfg
        tried = idx[(chunk.depth[idx] >= cfg.phase_depth) & (unstable[idx] <= cfg.phase_max_unstable)]
        closed = []
        for i in tried:
            if time.monotonic() > self.deadline:
                break
            pre = [(b.pre_lo[k][i].numpy(), b.pre_hi[k][i].numpy()) for k in range(len(self.low.nodes))]
            if closes_by_phases(self.low, self.region, chunk.lo[i], chunk.hi[i], pre, np.flatnonzero(chunk.open[i]),
                                cfg.prove_tol, cfg.phase_max_unstable):
                chunk.open[i] = False
                closed.append(i)
        self.out.phase_closed += len(closed)
        return np.setdiff1d(idx, np.asarray(closed, np.int64))

    def _unstable(self, b: LayerBounds, splits: list[torch.Tensor] | None) -> np.ndarray:
        count = torch.zeros(b.x_lo.shape[0], dtype=torch.int64)
        for k, node in enumerate(self.low.nodes):
            if node.kind == "relu":
                u = (b.pre_lo[k] < 0) & (b.pre_hi[k] > 0)
                if splits is not None:
                    u &= splits[k] == 0
                count += u.sum(dim=1)
        return count.numpy()

    # -- splitting --------------------------------------------------------------
    def _split(self, sub: _Chunk, sb: Any, b: LayerBounds, idx: np.ndarray, rows: np.ndarray,
               parent_lb: np.ndarray) -> _Chunk:
        if self.relu_mode:
            sub.warm = self._warm_start(sb, idx)
        left, right = sub.take(np.arange(len(sub))), sub.take(np.arange(len(sub)))
        left.depth = left.depth + 1
        right.depth = right.depth + 1
        if not self.relu_mode:
            a = np.abs(sb.a_in.detach().numpy()[idx, rows])
            width = sub.hi - sub.lo
            score = a * width
            score = np.where(score.max(axis=1, keepdims=True) > 0, score, width)
            if self.cfg.split_score == "gradient":  # the smear score stands where no width moves the bound
                sens = self._sensitivities(sub, rows)
                left.sens = right.sens = sens
                gains = sens * width
                score = np.where(gains.max(axis=1, keepdims=True) > 0, gains, score)
            if self.cfg.trial_split and sub.lo.shape[1] <= 8:
                score = self._trial_scores(sub, rows, score, parent_lb)
            dim = self._balance(sub, score.argmax(axis=1))
            mid = (sub.lo[np.arange(len(sub)), dim] + sub.hi[np.arange(len(sub)), dim]) / 2
            left.hi = left.hi.copy()
            right.lo = right.lo.copy()
            left.hi[np.arange(len(sub)), dim] = mid
            right.lo[np.arange(len(sub)), dim] = mid
        else:
            node_k, neuron = self._pick_relu(sb, b, idx, rows, sub.splits)
            left.splits = [s.copy() for s in sub.splits]
            right.splits = [s.copy() for s in sub.splits]
            r = np.arange(len(sub))
            for k in set(node_k.tolist()):
                m = node_k == k
                left.splits[k][r[m], neuron[m]] = 1
                right.splits[k][r[m], neuron[m]] = -1
        return _Chunk.join([left, right])

    def _sensitivities(self, sub: _Chunk, rows: np.ndarray) -> np.ndarray:
        """Per sub-domain and input dimension, how fast narrowing that dimension raises
        the lower bound of the sub-domain's row ``rows`` (its worst open disjunct's best
        row): ``d lb / d lo_i - d lb / d hi_i``, by autograd through a second bound pass
        (the one that decided the sub-domains runs without gradients: these are only
        needed for the ones split).  Unlike the smear score of the final linear bound, it
        sees how a width loosens the intermediate ReLU relaxations.  Every
        ``gradient_every``-th depth; in between, a sub-domain reuses its parent's.  ``(D, n)``."""
        fresh = np.ones(len(sub), bool) if sub.sens is None else \
            (sub.depth % self.cfg.gradient_every == 0) | np.isnan(sub.sens).any(axis=1)
        sens = np.array(sub.sens, dtype=np.float64) if sub.sens is not None else np.zeros(sub.lo.shape)
        idx = np.flatnonzero(fresh)
        if len(idx) == 0:
            return sens
        x_lo = torch.tensor(sub.lo[idx], requires_grad=True)
        x_hi = torch.tensor(sub.hi[idx], requires_grad=True)
        with torch.enable_grad():
            b = compute_bounds(self.low, x_lo, x_hi, intermediate=self.cfg.intermediate)
            lower = spec_lower(self.low, b, self.c, self.d).lower
            picked = lower[torch.arange(len(idx)), torch.as_tensor(rows[idx])]
            g_lo, g_hi = torch.autograd.grad(picked.sum(), (x_lo, x_hi), allow_unused=True)
        g_lo = torch.zeros_like(x_lo) if g_lo is None else g_lo
        g_hi = torch.zeros_like(x_hi) if g_hi is None else g_hi
        sens[idx] = (g_lo - g_hi).detach().numpy()
        return sens

    def _warm_start(self, sb: Any, idx: np.ndarray) -> dict[str, dict[int, np.ndarray]] | None:
        """The optimised slopes and multipliers of sub-domains ``idx``, to start their
        children's optimisation from (float16: ~37 KB per sub-domain on mnist_fc
        256x4); None once the queue's warm starts would pass ``warm_bytes``."""
        if sb.state is None:
            return None
        warm = {g: {k: v[idx].numpy().astype(np.float16) for k, v in part.items()} for g, part in sb.state.items()}
        per_domain = sum(v[0].nbytes for part in warm.values() for v in part.values())
        if (self.pending + 2 * len(idx)) * per_domain > self.cfg.warm_bytes:
            return None
        return warm

    def _balance(self, sub: _Chunk, dim: np.ndarray) -> np.ndarray:
        """Overrule a chosen dimension when another one is ``split_balance``
        times wider relative to the whole box: the smear score only sees the
        final linear bound, not how a wide dimension loosens the ReLU
        relaxations, and can split the same dimensions forever (ACAS Xu 1_1
        prop 3 split three inputs to 1e-6 of their width and never the other two)."""
        if self.cfg.split_balance <= 0:
            return dim
        full = self.box.upper - self.box.lower
        rel = np.where(full > 0, (sub.hi - sub.lo) / np.where(full > 0, full, 1.0), 0.0)
        r = np.arange(len(sub))
        widest = rel.argmax(axis=1)
        return np.where(rel[r, widest] > self.cfg.split_balance * rel[r, dim], widest, dim)

    def _trial_scores(self, sub: _Chunk, rows: np.ndarray, smear: np.ndarray, parent_lb: np.ndarray) -> np.ndarray:
        """Score each input dimension by the worse of the two halves' bounds on
        the domain's worst row (ties broken by the smear score).

        CROWN is not monotone in the box, so a split may not improve the bound
        at all: dimensions narrower than 1% of the widest are never tried, and
        where no split improves on the parent's bound the smear score decides."""
        k, n = sub.lo.shape
        scores = np.empty((k, n))
        step = max(1, self.cfg.batch // (2 * n))
        for start in range(0, k, step):
            part = slice(start, min(k, start + step))
            lo, hi = sub.lo[part], sub.hi[part]
            m = len(lo)
            los = np.repeat(lo[:, None], 2 * n, axis=1)
            his = np.repeat(hi[:, None], 2 * n, axis=1)
            mid = (lo + hi) / 2
            for j in range(n):
                his[:, 2 * j, j] = mid[:, j]
                los[:, 2 * j + 1, j] = mid[:, j]
            with torch.no_grad():
                b = compute_bounds(self.low, torch.as_tensor(los.reshape(-1, n)), torch.as_tensor(his.reshape(-1, n)),
                                   intermediate=self.cfg.intermediate)
                lb = spec_lower(self.low, b, self.c, self.d).lower.numpy().reshape(m, 2 * n, -1)
            val = lb[np.arange(m), :, rows[part]].reshape(m, n, 2).min(axis=2)
            scores[part] = val
        width = sub.hi - sub.lo
        scores = np.where(width >= 0.01 * width.max(axis=1, keepdims=True), np.nan_to_num(scores, nan=-np.inf), -np.inf)
        best = scores.max(axis=1, keepdims=True)
        tie = np.isclose(scores, best, rtol=0, atol=1e-12)
        ranked = np.where(tie, 1.0 + smear / (smear.max(axis=1, keepdims=True) + 1e-300), scores - best)
        no_gain = best[:, 0] <= parent_lb + 1e-12
        return np.where(no_gain[:, None], smear, ranked)

    def _pick_relu(self, sb: Any, b: LayerBounds, idx: np.ndarray, rows: np.ndarray,
                   splits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The ReLU to split in each sub-domain ``idx``: (node index, neuron) arrays.

        The best BaBSR-like score (see the module docstring) wins.  Filtered smart
        branching (bounding both children of the 8 best candidates with the
        parent's slopes and keeping the best worse child) took 3.4x as many
        sub-domains on mnist_fc 256x4 prop 3 eps 0.05: it favours last-layer
        ReLUs, whose split helps this bound at once and later splits least.
        Measured again with one backward pass per child (the parent's slopes
        and multipliers, every open row, the new split's multiplier 0) and
        three ways to rank a candidate by its children: the better child
        (alpha-beta-CROWN's choice for mnist_fc), the worse one, the sum of
        both below 0.  256x4 prop 11 eps 0.05 (3825 sub-domains, 23.8 s with
        this score): timeout at 60 s / 8575 / 4431 (one row only); every row,
        by the sum: 256x6 prop 7 eps 0.03 597 -> timeout, 256x4 prop 3 eps
        0.05 127 -> 587, prop 8 eps 0.03 985 -> 1319.  Yet better candidates
        exist: on 42 open sub-domains of 256x4 props 0 and 14 eps 0.05, the
        best of the 16 best-scored candidates by their children's real
        (optimised) bounds closed 40 children where this score's pick closed
        17; one-pass estimates of the children do not find them, and bounding
        the children of several candidates for real costs that many times
        the work per split."""
        scores, where = [], []
        for k, node in enumerate(self.low.nodes):
            coeff = sb.node_coeffs[k] if k < len(sb.node_coeffs) else None
            if node.kind != "relu" or coeff is None:
                continue
            lo, hi = b.pre_lo[k].numpy()[idx], b.pre_hi[k].numpy()[idx]
            raw = coeff.detach().numpy()[idx, rows]
            lam = np.maximum(-raw, 0) + POSITIVE_WEIGHT * np.maximum(raw, 0)
            unstable = (lo < 0) & (hi > 0) & (splits[k] == 0)
            height = np.where(unstable, -lo * hi / np.maximum(hi - lo, 1e-300), 0.0)
            scores.append(np.where(unstable, lam * height + 1e-12 * height, -1.0))
            where.append(np.stack([np.full(lo.shape[1], k), np.arange(lo.shape[1])]))
        score = np.concatenate(scores, axis=1)
        place = np.concatenate(where, axis=1)                                    # (2, N): node, neuron
        best = score.argmax(axis=1)
        return place[0, best], place[1, best]

    # -- Z3 leaves ----------------------------------------------------------------
    def _leaf(self, chunk: _Chunk, b: LayerBounds, i: int, probe: bool = False) -> bool:
        """Decide one sub-domain with Z3 (here or in a worker); True when the search is over.
        ``probe``: it goes to Z3 for its depth, not for being small (see :meth:`_probing`)."""
        pre = [(b.pre_lo[k][i].numpy().copy(), b.pre_hi[k][i].numpy().copy()) for k in range(len(self.low.nodes))]
        splits = None if chunk.splits is None else [s[i].copy() for s in chunk.splits]
        task = _LeafTask(chunk.lo[i].copy(), chunk.hi[i].copy(), pre, splits,
                         np.flatnonzero(chunk.open[i]), 0.0, 0.0, int(chunk.depth[i]), probe)
        return self._submit(task)

    def _probing(self, task: _LeafTask) -> bool:
        """Whether a Z3 call on ``task`` is a probe: the search sent it for its depth (not for
        few unstable ReLUs: those are Z3's to decide), and it is not yet at the final depth."""
        return task.probe and task.depth < self.cfg.z3_final_depth

    def _time_limit(self, task: _LeafTask) -> float:
        remaining = max(self.deadline - time.monotonic(), 0.0)
        cap = self.cfg.z3_probe_timeout if self._probing(task) else self.cfg.z3_leaf_timeout
        return min(cap, remaining)

    def _submit(self, task: _LeafTask) -> bool:
        task.timeout_s = self._time_limit(task)
        self.out.z3_calls += 1
        if self.cfg.workers <= 1:
            return self._handle(task, decide_leaf((self.low, self.region), task))
        if self.pool is None:
            global _WORKER_CONTEXT
            _WORKER_CONTEXT = (self.low, self.region)
            self.pool = mp.get_context("fork").Pool(self.cfg.workers)
        # back-pressure: at most two leaves per worker in flight, so that a leaf's time limit
        # (set above) is not spent waiting in the pool's queue and the queue stays small
        while len(self.futures) >= 2 * self.cfg.workers:
            if time.monotonic() > self.deadline:
                self._finish("timeout", "deadline reached")
                return True
            if self._collect():
                return True
            time.sleep(0.005)
        task.timeout_s = self._time_limit(task)
        self.futures.append((task, self.pool.apply_async(_decide_in_worker, (task,))))
        return False

    def _collect(self) -> bool:
        """Handle the finished Z3 leaves; True when the search is over.  Handling a
        leaf may submit another (a retry with slack), so the list is updated first."""
        finished = [item for item in self.futures if item[1].ready()]
        self.futures = [item for item in self.futures if not any(item is f for f in finished)]
        for task, fut in finished:
            if self._handle(task, fut.get()):
                return True
        return False

    def _handle(self, task: _LeafTask, res: tuple[str, np.ndarray | None, float]) -> bool:
        status, x, spent = res
        self.out.z3_time_s += spent
        if status == "unsat":
            return False
        if status == "sat":
            box = Box(task.lo, task.hi)
            found = confirm(self.ort, self.box, self.region, x[None], tuple(self.network.input_shape))
            how = "Z3's model"
            if found is None:
                found = _search_near(self.network, self.ort, self.box, box, self.region, x)
                how = "a search near Z3's model (rounding defeated the model itself)"
            if found is not None:
                self.out.counterexample = found
                self._finish("violated", f"counterexample from {how} of a sub-domain at depth {task.depth}")
                return True
            if task.slack == 0.0:
                # rounding defeated the model: ask for a violation by a clear margin
                slack_task = _LeafTask(task.lo, task.hi, task.pre, task.splits, task.open, task.timeout_s, 1e-5,
                                       task.depth, task.probe)
                return self._submit(slack_task)
        elif self._probing(task) and self.deadline - time.monotonic() > 0.5:
            self._split_on(task)
            return False
        self.unknown_leaves += 1
        return False

    def _split_on(self, task: _LeafTask) -> None:
        """A Z3 probe ran out of time: the sub-domain goes back to be split, and the
        search calls Z3 ``z3_depth_step`` splits deeper from now on."""
        self.z3_depth = max(self.z3_depth, min(task.depth + self.cfg.z3_depth_step, self.cfg.z3_final_depth))
        open_ = np.zeros((1, self.n_disj), bool)
        open_[0, task.open] = True
        splits = None if task.splits is None else [s[None].copy() for s in task.splits]
        self._push(_Chunk(task.lo[None].copy(), task.hi[None].copy(), open_, np.array([task.depth], np.int64), splits))

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.out.subdomains, self.pending + len(self.futures))


@dataclass
class _LeafTask:
    lo: np.ndarray
    hi: np.ndarray
    pre: list[tuple[np.ndarray, np.ndarray]]
    splits: list[np.ndarray] | None
    open: np.ndarray
    timeout_s: float
    slack: float
    depth: int = 0
    probe: bool = False


_WORKER_CONTEXT: Any = None


def _decide_in_worker(task: _LeafTask) -> tuple[str, np.ndarray | None, float]:
    return decide_leaf(_WORKER_CONTEXT, task)


def decide_leaf(context: tuple[Lowered, Region], task: _LeafTask) -> tuple[str, np.ndarray | None, float]:
    """Z3 on one sub-domain: is some input of the box (with the ReLU phases)
    in an open disjunct of the unsafe region (by at least ``task.slack``)?
    Returns (status, input values when sat, seconds)."""
    import z3

    from nnaudit.verify.encode import encode_lowered
    from nnaudit.verify.smt import real, solve

    low, region = context
    start = time.perf_counter()
    xs = [z3.Real(f"x{i}") for i in range(low.input_size)]
    cons = [c for i, x in enumerate(xs) for c in (x >= real(task.lo[i]), x <= real(task.hi[i]))]
    enc, ys = encode_lowered(low, xs, task.pre, task.splits)
    cons += enc
    disj = []
    for j in task.open:
        c, d = region.disjuncts[int(j)]
        rows = [z3.Sum([real(w) * ys[k] for k, w in enumerate(c[r]) if w != 0] or [z3.RealVal(0)]) + real(d[r])
                <= real(-task.slack) for r in range(len(d))]
        disj.append(z3.And(rows))
    cons.append(z3.Or(disj))
    left = task.timeout_s - (time.perf_counter() - start)
    out = solve(cons, timeout_s=left, values_of=xs)
    return out.status, out.values, time.perf_counter() - start


def _depths(depths: np.ndarray) -> str:
    """``at depth 7`` or ``at depths 7-9``: where in the search tree some candidates came from."""
    lo, hi = int(depths.min()), int(depths.max())
    return f"at depth {lo}" if lo == hi else f"at depths {lo}-{hi}"


def _search_near(network: Any, ort: Any, box: Box, leaf: Box, region: Region, x: np.ndarray) -> Counterexample | None:
    """Rounding defeated a solver model: PGD on the margin in a small box around it."""
    try:
        from nnaudit.networks.box_search import minimize_in_box
    except (ImportError, AttributeError):
        return None
    from nnaudit.verify.falsify import torch_margin

    shape = tuple(network.input_shape)
    rad = 1e-3 * np.maximum(leaf.upper - leaf.lower, 1e-6)
    lo = np.maximum(leaf.lower, x - rad).reshape((1,) + shape)
    hi = np.minimum(leaf.upper, x + rad).reshape((1,) + shape)
    model, margin = network.to_torch(), torch_margin(region)
    with torch.enable_grad():
        xb, _ = minimize_in_box(lambda t: margin(model(t)), lo, hi, steps=30, restarts=1, x_init=x.reshape((1,) + shape),
                                stop_below=-1e-5)
    return confirm(ort, box, region, xb.reshape(1, -1), shape)


def run_bab(low: Lowered, network: Any, ort: Any, box: Box, region: Region, config: BabConfig,
            deadline: float, progress: Any = None) -> BabOutcome:
    """Branch and bound on one (box, region) case until decided, capped or out of time.

    With at least two workers and ``config.share``, one search runs on that many
    processes that share their sub-domains (:mod:`~nnaudit.verify.sharing`).
    With input splitting and ``config.portfolio`` instead, two searches that
    differ in their split heuristic (the gradient score; the smear score
    overruled by ``split_balance``) race in parallel processes and the first
    decisive answer wins; both are sound, so either answer stands.  Before the
    gradient score, the portfolio raced the plain and the balanced smear score,
    neither of which dominated (ACAS Xu at 40-60 s: 2_2 prop 1 and 1_1 prop 3
    timed out plain and took 2-5 s balanced; 1_1 prop 5 and 1_9 prop 7 the
    reverse); the gradient score beat both on every hard ACAS Xu instance
    measured, so both cores now go to one search (4_2 prop 2: 151.6 s on one
    process, 82.4 s on two sharing).
    """
    from nnaudit.verify import sharing

    if _portfolio_applies(low, config):
        return _run_portfolio(low, network, box, region, config, deadline, progress)
    if sharing.applies(low, config):
        return sharing.run_shared(low, network, ort, box, region, config, deadline, progress)
    return _Search(low, network, ort, box, region, config, deadline, progress).run()


def relu_splitting(low: Lowered, config: BabConfig) -> bool:
    """Whether the search splits ReLUs (more inputs than ``input_split_dims`` and some ReLU) rather than inputs."""
    return low.input_size > config.input_split_dims and any(n.kind == "relu" for n in low.nodes)


def _portfolio_applies(low: Lowered, config: BabConfig) -> bool:
    return config.portfolio and config.workers >= 2 and not relu_splitting(low, config) and not mp.current_process().daemon


def _run_portfolio(low: Lowered, network: Any, box: Box, region: Region, config: BabConfig,
                   deadline: float, progress: Any) -> BabOutcome:
    """Run the portfolio members and return the first decisive outcome (see :func:`run_bab`)."""
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    members = [replace(config, split_score="gradient", split_balance=0.0, workers=1, seed=config.seed),
               replace(config, split_score="smear", split_balance=config.split_balance or 64.0, workers=1,
                       seed=config.seed + 1)]
    procs, conns = [], []
    try:
        for i, cfg in enumerate(members):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_portfolio_member, daemon=True,
                               args=(send, low, network, box, region, cfg, deadline, progress if i == 0 else None,
                                     max(1, torch.get_num_threads() // len(members))))
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        outcomes: list[BabOutcome] = []
        waiting = list(conns)
        while waiting:
            ready = wait(waiting, timeout=max(0.0, deadline + 0.25 - time.monotonic()))
            if not ready:
                break
            for conn in ready:
                waiting.remove(conn)
                out = receive(conn, "portfolio")
                if out.status in ("holds", "violated"):
                    return out
                outcomes.append(out)
        if len(outcomes) < len(members) or any(o.status == "timeout" for o in outcomes):
            return BabOutcome("timeout", message="deadline reached", subdomains=sum(o.subdomains for o in outcomes),
                              phase_closed=sum(o.phase_closed for o in outcomes))
        return BabOutcome("unknown", message="; ".join(o.message for o in outcomes),
                          subdomains=sum(o.subdomains for o in outcomes),
                          z3_calls=sum(o.z3_calls for o in outcomes), z3_time_s=sum(o.z3_time_s for o in outcomes),
                          phase_closed=sum(o.phase_closed for o in outcomes))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=1.0)


def receive(conn: Any, who: str) -> BabOutcome:
    """The :class:`BabOutcome` a member process sent on ``conn``; "unknown" when it died without one."""
    try:
        return conn.recv()
    except EOFError:
        return BabOutcome("unknown", message=f"a {who} member died without an answer")


def _portfolio_member(conn: Any, low: Lowered, network: Any, box: Box, region: Region, config: BabConfig,
                      deadline: float, progress: Any, threads: int = 1) -> None:
    """One portfolio search in a forked process; sends its :class:`BabOutcome`."""
    from nnaudit.networks.runtime import OnnxRuntimeModel

    try:
        # the members share the cores: each gets its share of torch threads instead of inheriting all
        torch.set_num_threads(threads)
        ort = OnnxRuntimeModel(network.source)  # its own session: a forked onnxruntime session may hang
        out = _Search(low, network, ort, box, region, config, deadline, progress).run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as an undecided outcome
        out = BabOutcome("unknown", message=f"portfolio member failed: {type(exc).__name__}: {exc}")
    conn.send(out)
    conn.close()
