"""The leaves of branch and bound that Z3 decides: one sub-domain each (:class:`LeafTask`),
decided here or on forked worker processes (:class:`LeafWorkers`).

A leaf is a sub-domain with few unstable ReLUs, or one split deep enough that the search
probes it with a short time limit (see :mod:`~nnaudit.verify.bab.search`).  Z3 answers whether some input of
its box (with its fixed ReLU phases) reaches an open disjunct of the unsafe region; a model is
a counterexample only once onnxruntime confirms it (:func:`search_near` looks around a model
that rounding defeated).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nnaudit.networks.box_search import minimize_in_box
from nnaudit.networks.lower import Lowered
from nnaudit.verify.falsify import confirm, torch_margin
from nnaudit.verify.results import Counterexample
from nnaudit.verify.smt import SmtStatus
from nnaudit.verify.spec import Box, Region


@dataclass
class LeafTask:
    """One sub-domain for Z3: its box, the pre-activation bounds, the ReLU phases fixed by splits
    (ReLU splitting) and the indices of its open disjuncts."""

    lo: np.ndarray                             # (n_in,)
    hi: np.ndarray                             # (n_in,)
    pre: list[tuple[np.ndarray, np.ndarray]]   # per node: (lower, upper) of its pre-activations
    splits: list[np.ndarray] | None            # per node: phases in {-1, 0, +1}, or None
    open: np.ndarray                           # indices of the open disjuncts
    timeout_s: float                           # Z3's time limit
    slack: float                               # a violation must exceed this margin
    depth: int = 0                             # splits that led to the sub-domain
    probe: bool = False                        # sent for its depth, not for few unstable ReLUs


@dataclass(frozen=True)
class LeafResult:
    """Z3's answer on one leaf: the input it found when SAT, and the seconds spent."""

    status: SmtStatus
    values: np.ndarray | None
    time_s: float


def decide_leaf(low: Lowered, region: Region, task: LeafTask) -> LeafResult:
    """Z3 on one sub-domain: is some input of the box (with the ReLU phases) in an open
    disjunct of the unsafe region (by at least ``task.slack``)?"""
    import z3

    from nnaudit.verify.encode import encode_lowered
    from nnaudit.verify.smt import real, solve

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
    return LeafResult(out.status, out.values, time.perf_counter() - start)


class LeafWorkers:
    """Leaves decided on ``workers`` forked processes, which inherit the network and the region
    at the fork (only the tasks and the answers travel)."""

    def __init__(self, low: Lowered, region: Region, workers: int) -> None:
        ctx = mp.get_context("fork")
        self.low, self.region = low, region
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self.waiting: dict[int, LeafTask] = {}     # submitted, not yet answered
        self.submitted = 0
        self.procs = [ctx.Process(target=self._serve, daemon=True) for _ in range(workers)]
        for proc in self.procs:
            proc.start()

    def __len__(self) -> int:
        return len(self.waiting)

    def _serve(self) -> None:
        """One worker process: decide the tasks it takes until it is stopped."""
        while True:
            key, task = self.tasks.get()
            try:
                result: LeafResult | Exception = decide_leaf(self.low, self.region, task)
            except Exception as exc:  # noqa: BLE001 - raised again in the search's process
                result = exc
            self.results.put((key, result))

    def submit(self, task: LeafTask) -> None:
        self.waiting[self.submitted] = task
        self.tasks.put((self.submitted, task))
        self.submitted += 1

    def finished(self) -> list[tuple[LeafTask, LeafResult]]:
        """The leaves answered since the last call, with their answers."""
        done = []
        while self.waiting:
            try:
                key, result = self.results.get_nowait()
            except queue_mod.Empty:
                break
            if isinstance(result, Exception):
                raise result
            done.append((self.waiting.pop(key), result))
        return done

    def close(self) -> None:
        """Stop the workers (leaves still in flight are dropped)."""
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.join(timeout=1.0)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


def search_near(network: Any, ort: Any, box: Box, leaf: Box, region: Region, x: np.ndarray) -> Counterexample | None:
    """Rounding defeated a solver model ``x`` of sub-domain ``leaf``: PGD on the margin in a small
    box around it, confirmed by onnxruntime."""
    shape = tuple(network.input_shape)
    rad = 1e-3 * np.maximum(leaf.upper - leaf.lower, 1e-6)
    lo = np.maximum(leaf.lower, x - rad).reshape((1,) + shape)
    hi = np.minimum(leaf.upper, x + rad).reshape((1,) + shape)
    device = torch.get_default_device()
    model, margin = network.to_torch(device), torch_margin(region)
    with torch.enable_grad():
        xb, _ = minimize_in_box(lambda t: margin(model(t)), lo, hi, steps=30, restarts=1, x_init=x.reshape((1,) + shape),
                                stop_below=-1e-5, device=device)
    return confirm(ort, box, region, xb.reshape(1, -1), shape)
