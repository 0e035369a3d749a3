"""Branch and bound on several processes that share their sub-domains.

One search loop keeps one core busy: its batches are too small for torch's
threads to pay (two threads bounded fewer sub-domains than one on mnist_fc
256x4).  This holds for ReLU splitting (wide inputs such as MNIST; 256x4 prop 11
eps .05: 17.9 s -> 16.5 s on two processes) and for input splitting (ACAS Xu 4_2
prop 2, the same 122 993 sub-domains: 151.6 s -> 82.4 s).  With ``workers >= 2``
(``--workers``, default all cores) the search starts here, and after ``share_after``
seconds (with a sub-domain queued for every worker; a shorter search ends here without paying for
processes that would mostly wait: mnist_fc 256x4 prop 8 eps 0.03, 985 sub-domains, took 3.4 s alone and
3.9 s shared from the start) the queue is dealt out to ``workers`` forked
processes, each running the same search on its share (one torch thread each).
A member whose queue runs dry waits at the :class:`Share`; a member with more
than two batches queued gives the older half of them to it while anyone waits
(the oldest sub-domains are the shallowest, so the largest pieces of work move).

Soundness: every sub-domain is in exactly one place at a time -- a member's queue,
a batch being bounded, or in transit through the share, and a chunk in transit is
counted (under the share's lock) from before it is put until after the member
that takes it is busy again.  So "no member busy and nothing in transit" is read
only when every sub-domain was closed, and only then do members answer "holds";
a member that stops for any other reason (a counterexample, the deadline, the
queue cap, an error) never marks itself idle, and the parent stops the others.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from nnaudit.verify.bab import BabConfig, BabOutcome, _Chunk, _Search, receive
from nnaudit.networks.lower import Lowered
from nnaudit.verify.spec import Box, Region

#: seconds an idle member waits for a chunk before looking at the clock and the others again
WAIT_S = 0.02


class Share:
    """Where the members of one shared search give and take sub-domains (see the module docstring)."""

    def __init__(self, ctx: Any, members: int) -> None:
        self.members = members
        self.chunks = ctx.Queue()
        self.lock = ctx.Lock()
        self.busy = ctx.Value("i", members, lock=False)     # members with work of their own
        self.transit = ctx.Value("i", 0, lock=False)        # chunks given and not yet taken
        self.done = ctx.Array("q", members, lock=False)     # per member: sub-domains bounded (for progress)
        self.left = ctx.Array("q", members, lock=False)     # per member: sub-domains queued

    def progress(self, report: Any, before: int) -> Any:
        """A progress callback that reports the whole search's counts (``before``: bounded before
        the members started)."""
        return lambda _done, _left: report(before + sum(self.done), sum(self.left))

    def offer(self, search: _Search, i: int) -> None:
        """After a batch of member ``i``: its counts, and the older half of its queue when a member
        waits and it has more than two batches queued."""
        self.done[i], self.left[i] = search.out.subdomains, search.pending
        if self.busy.value >= self.members or search.pending < 2 * search.batch_size:
            return
        goal, given, count = search.pending // 2, [], 0
        while search.queue and count < goal:
            given.append(search.queue.pop(0))
            count += len(given[-1])
        search.pending -= count
        self.left[i] = search.pending
        with self.lock:
            self.transit.value += 1
        self.chunks.put(_Chunk.join(given))

    def wait(self, search: _Search, i: int) -> str:
        """Member ``i``'s ``search`` ran dry: wait for a chunk (pushed onto its queue: "work"), for
        every member to run dry ("done"), or for the deadline ("timeout")."""
        self.left[i] = 0
        with self.lock:
            self.busy.value -= 1
        while True:
            try:
                chunk = self.chunks.get(timeout=WAIT_S)
            except queue_mod.Empty:
                chunk = None
            if chunk is not None:
                with self.lock:
                    self.transit.value -= 1
                    self.busy.value += 1
                search._push(chunk)
                return "work"
            with self.lock:
                if self.busy.value == 0 and self.transit.value == 0:
                    return "done"
            if time.monotonic() > search.deadline:
                return "timeout"


def applies(low: Lowered, config: BabConfig) -> bool:
    """A shared search: ``config.share``, at least two workers, and not already inside a worker
    process."""
    return config.share and config.workers >= 2 and not mp.current_process().daemon


def run_shared(low: Lowered, network: Any, ort: Any, box: Box, region: Region, config: BabConfig,
               deadline: float, progress: Any) -> BabOutcome:
    """Search here until every worker can have a sub-domain, then on ``config.workers`` processes."""
    members = config.workers
    search = _Search(low, network, ort, box, region, replace(config, workers=1), deadline, progress)
    out = search.run(until_pending=members, until_after=config.share_after)
    if out is not None:
        return out
    everything = _Chunk.join(search.queue)
    parts = [everything.take(np.arange(i, len(everything), members)) for i in range(members)]
    before = search.out
    ctx = mp.get_context("fork")
    share = Share(ctx, members)
    procs, conns = [], []
    try:
        for i in range(members):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_member, daemon=True, args=(send, search, parts[i], i, share))
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        outcomes = _collect(conns, deadline)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=1.0)
    return _merged(before, outcomes)


def _member(conn: Any, search: _Search, part: _Chunk, i: int, share: Share) -> None:
    """Member ``i`` of a shared search, in a forked process: its part of the queue, then what the
    share brings; sends its :class:`BabOutcome` (its own sub-domains and Z3 calls only)."""
    from nnaudit.networks.runtime import OnnxRuntimeModel

    try:
        torch.set_num_threads(1)
        search.ort = OnnxRuntimeModel(search.network.source)  # a forked onnxruntime session may hang
        n = share.members
        # one member runs the falsification rounds: the same share of its time, not of every core's
        search.cfg = replace(search.cfg, seed=search.cfg.seed + i, warm_bytes=search.cfg.warm_bytes // n,
                             refalsify_share=search.cfg.refalsify_share if i == 0 else 0.0)
        search.queue_cap = max(1, search.queue_cap // n)  # the memory cap holds for all members together
        report, search.progress = search.progress, None
        if report is not None and i == 0:
            search.progress = share.progress(report, search.out.subdomains)
        search.queue, search.pending = ([part] if len(part) else []), len(part)
        search.out = BabOutcome("unknown")
        out = search.loop(share=share, member=i)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as an undecided outcome
        out = BabOutcome("unknown", message=f"shared search member failed: {type(exc).__name__}: {exc}")
    conn.send(out)
    conn.close()


def _collect(conns: list[Any], deadline: float) -> list[BabOutcome]:
    """The members' outcomes: all of them, or up to the first that is not "holds" (a
    counterexample, or a member that stopped without closing its sub-domains, after
    which the others cannot answer "holds")."""
    from multiprocessing.connection import wait

    outcomes, waiting = [], list(conns)
    while waiting:
        ready = wait(waiting, timeout=max(0.0, deadline + 1.0 - time.monotonic()))
        if not ready:
            outcomes.append(BabOutcome("timeout", message="deadline reached"))
            return outcomes
        for conn in ready:
            waiting.remove(conn)
            out = receive(conn, "shared search")
            outcomes.append(out)
            if out.status != "holds":
                return outcomes
    return outcomes


def _merged(before: BabOutcome, outcomes: list[BabOutcome]) -> BabOutcome:
    """One outcome for the whole search: the first that is not "holds", else "holds" (every member
    answered it); counts summed over the start here and the members."""
    decisive = next((o for o in outcomes if o.status != "holds"), None)
    out = replace(decisive if decisive is not None else BabOutcome("holds"))
    out.progress = before.progress + out.progress
    out.subdomains = before.subdomains + sum(o.subdomains for o in outcomes)
    out.z3_calls = before.z3_calls + sum(o.z3_calls for o in outcomes)
    out.z3_time_s = before.z3_time_s + sum(o.z3_time_s for o in outcomes)
    out.phase_closed = before.phase_closed + sum(o.phase_closed for o in outcomes)
    out.shared = [o.subdomains for o in outcomes]
    return out
