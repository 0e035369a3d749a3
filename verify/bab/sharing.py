"""Branch and bound on several processes that share their sub-domains.

One search loop keeps one core busy: its batches are too small for torch's threads to pay.
With ``workers >= 2`` the search starts here, and after ``share_after`` seconds (with a
sub-domain queued for every worker; a shorter search ends here without paying for processes
that would mostly wait) the queue is dealt out to ``workers`` forked processes, each running
the same search on its share (one torch thread each).  A member whose queue runs dry waits at
the :class:`Share`; a member with more than two batches queued gives the older half of them to
it while anyone waits (the oldest sub-domains are the shallowest, so the largest pieces of work
move).  Measurements: ``docs/verifier.md``.

Soundness: every sub-domain is in exactly one place at a time -- a member's queue, a batch
being bounded, or in transit through the share, and a chunk in transit is counted (under the
share's lock) from before it is put until after the member that takes it is busy again.  So
"no member busy and nothing in transit" is read only when every sub-domain was closed, and only
then do members answer HOLDS; a member that stops for any other reason (a counterexample, the
deadline, the queue cap, an error) never marks itself idle, and the parent stops the others.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Lowered
from nnaudit.verify.bab.config import BabConfig
from nnaudit.verify.bab.outcome import BabOutcome
from nnaudit.verify.bab.queue import Chunk
from nnaudit.verify.bab.search import Search, Waited
from nnaudit.verify.results import Verdict
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

    def offer(self, search: Search, i: int) -> None:
        """After a batch of member ``i``: its counts, and the older half of its queue when a member
        waits and it has more than two batches queued."""
        self.done[i], self.left[i] = search.out.subdomains, search.queue.pending
        if self.busy.value >= self.members or search.queue.pending < 2 * search.batch_size:
            return
        given = search.queue.pop_oldest(search.queue.pending // 2)
        self.left[i] = search.queue.pending
        with self.lock:
            self.transit.value += 1
        self.chunks.put(given)

    def wait(self, search: Search, i: int) -> Waited:
        """Member ``i``'s ``search`` ran dry: wait for a chunk (pushed onto its queue), for every
        member to run dry, or for the deadline."""
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
                search.queue.push(chunk)
                return Waited.WORK
            with self.lock:
                if self.busy.value == 0 and self.transit.value == 0:
                    return Waited.DONE
            if time.monotonic() > search.deadline:
                return Waited.TIMEOUT


#: seconds past the deadline the members have to send their outcomes (they stop at it) before being killed
MEMBER_SLACK_S = 0.3


def applies(config: BabConfig) -> bool:
    """A shared search: ``config.share``, at least two workers, and not already inside a worker
    process."""
    return config.share and config.workers >= 2 and not mp.current_process().daemon


def run_shared(low: Lowered, network: Any, ort: Any, box: Box, region: Region, config: BabConfig,
               deadline: float, progress: Any) -> BabOutcome:
    """Search here until every worker can have a sub-domain, then on ``config.workers`` processes."""
    members = config.workers
    search = Search(low, network, ort, box, region, replace(config, workers=1), deadline, progress)
    out = search.run(until_pending=members, until_after=config.share_after)
    if out is not None:
        return out
    everything = search.queue.pop_all()
    parts = [everything.take(np.arange(i, len(everything), members)) for i in range(members)]
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
    return _merged(search.out, outcomes)


def _member(conn: Any, search: Search, part: Chunk, i: int, share: Share) -> None:
    """Member ``i`` of a shared search, in a forked process: its part of the queue, then what the
    share brings; sends its :class:`BabOutcome` (its own sub-domains and Z3 calls only)."""
    from nnaudit.networks.runtime import reference

    try:
        torch.set_num_threads(1)
        ort = reference(search.network)  # a forked onnxruntime session may hang
        progress = None
        if search.progress is not None and i == 0:
            progress = share.progress(search.progress, search.out.subdomains)
        out = search.member(part, i, share.members, ort, progress).loop(share=share, member=i)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as an undecided outcome
        out = BabOutcome(Verdict.UNKNOWN, message=f"shared search member failed: {type(exc).__name__}: {exc}")
    conn.send(out)
    conn.close()


def _receive(conn: Any) -> BabOutcome:
    """The :class:`BabOutcome` a member sent on ``conn``; unknown when it died without one."""
    try:
        return conn.recv()
    except EOFError:
        return BabOutcome(Verdict.UNKNOWN, message="a shared search member died without an answer")


def _collect(conns: list[Any], deadline: float) -> list[BabOutcome]:
    """The members' outcomes: all of them, or up to the first that is not HOLDS (a
    counterexample, or a member that stopped without closing its sub-domains, after
    which the others cannot answer HOLDS)."""
    from multiprocessing.connection import wait

    outcomes, waiting = [], list(conns)
    while waiting:
        ready = wait(waiting, timeout=max(0.0, deadline + MEMBER_SLACK_S - time.monotonic()))
        if not ready:
            outcomes.append(BabOutcome(Verdict.TIMEOUT, message="deadline reached"))
            return outcomes
        for conn in ready:
            waiting.remove(conn)
            out = _receive(conn)
            outcomes.append(out)
            if out.status is not Verdict.HOLDS:
                return outcomes
    return outcomes


def _merged(before: BabOutcome, outcomes: list[BabOutcome]) -> BabOutcome:
    """One outcome for the whole search: the first that is not HOLDS, else HOLDS (every member
    answered it); counts summed over the start here and the members."""
    decisive = next((o for o in outcomes if o.status is not Verdict.HOLDS), None)
    out = replace(decisive if decisive is not None else BabOutcome(Verdict.HOLDS))
    out.progress = before.progress + out.progress
    out.subdomains = before.subdomains + sum(o.subdomains for o in outcomes)
    out.z3_calls = before.z3_calls + sum(o.z3_calls for o in outcomes)
    out.z3_time_s = before.z3_time_s + sum(o.z3_time_s for o in outcomes)
    out.phase_closed = before.phase_closed + sum(o.phase_closed for o in outcomes)
    out.shared = [o.subdomains for o in outcomes]
    return out
