"""DLV's composed search: manipulations of several features along a path.

The paper's search tree (``searchTree`` / ``searchExhaustive`` of the DLV
code, Huang et al., CAV 2017): a node is an image; expanding it selects the
next features of layer ``k`` *on that image* (the most salient ones not yet
manipulated on the path), manipulates each along its ladder, maps every
manipulated activation back to the input (:func:`~.dlv_backmap.preimage`)
and runs the network.  Non-adversarial results become children, so the
features manipulated along a path compose: a depth-``d`` node carries the
manipulations of ``d`` rounds.  Nodes are expanded best-first by their class
margin (the paper orders its queue by the confidence of the original class
and keeps at most ``maxQueueSize`` nodes; here the queue holds at most
``DLVConfig.max_queue`` and each expansion keeps its ``branching`` children
with the lowest margins, the paper's ``numOfPointsAfterEachFeature``).

Every node is a member of the region's family (the nearest grid point of the
pre-image), so what the search composes is what the verdict may report.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
import numpy as np

from nnaudit.verify.regions import dlv_backmap as bm
from nnaudit.verify.regions.dlv_config import ExitWhen
from nnaudit.verify.regions.result import RegionCounterexample


@dataclass
class PathResult:
    """What a path search found: the first confirmed member, all confirmed inputs, counters."""

    member: RegionCounterexample | None = None
    found: list[np.ndarray] = field(default_factory=list)
    off_grid: int = 0
    expanded: int = 0
    deepest: int = 0
    manipulations: int = 0
    timed_out: bool = False


def path_search(search: bm.Search, deadline: float) -> PathResult:
    """Best-first search over sequences of feature manipulations from the image."""
    cfg = search.config
    out = PathResult()
    tie = itertools.count()
    root = search.ctx.x0.copy()
    queue: list[tuple[float, int, int, np.ndarray, frozenset[int]]] = [(np.inf, next(tie), 0, root, frozenset())]
    seen = {root.tobytes()}
    while queue and not out.timed_out:
        _, _, depth, x, used = heapq.heappop(queue)
        if time.perf_counter() >= deadline:
            out.timed_out = True
            break
        out.expanded += 1
        out.deepest = max(out.deepest, depth)
        children = _expand(search, bm.node_state(search, x, used), used, deadline, out)
        if out.member is not None and cfg.exit_when is ExitWhen.FIRST:
            break
        if depth + 1 > cfg.depth:
            continue
        kept = 0
        for margin, child, child_used in children:
            key = child.tobytes()
            if kept < cfg.branching and key not in seen:
                seen.add(key)
                kept += 1
                heapq.heappush(queue, (margin, next(tie), depth + 1, child, child_used))
        if len(queue) > cfg.max_queue:
            queue = heapq.nsmallest(cfg.max_queue, queue)
            heapq.heapify(queue)
    return out


def _expand(search: bm.Search, state: bm.NodeState, used: frozenset[int], deadline: float,
            out: PathResult) -> list[tuple[float, np.ndarray, frozenset[int]]]:
    """Manipulate every feature of the node; record adversarial inputs; return the
    children ``(margin, member, manipulated dims)`` sorted by margin."""
    n = bm.ladder(search)
    children: list[tuple[float, np.ndarray, frozenset[int]]] = []
    for feat in bm.features(search, state):
        xs = []
        for t in bm.points(search, state, feat, n):
            if time.perf_counter() >= deadline:
                out.timed_out = True
                break
            out.manipulations += 1
            x = bm.preimage(search, state, feat, t, n, deadline)
            if x is not None:
                search.stats["preimages"] += 1
                xs.append(x)
        if xs:
            _collect(search, xs, used | {int(j) for j in feat}, children, out)
        if out.timed_out or (out.member is not None and search.config.exit_when is ExitWhen.FIRST):
            break
    children.sort(key=lambda c: c[0])
    return children


def _collect(search: bm.Search, xs: list[np.ndarray], used: frozenset[int],
             children: list[tuple[float, np.ndarray, frozenset[int]]], out: PathResult) -> None:
    members, margins, hits = bm.run_candidates(search, xs)
    for member, margin, hit in zip(members, margins, hits):
        if hit is not None:
            cex, is_member = hit
            out.found.append(cex.x)
            out.off_grid += int(not is_member)
            if is_member and out.member is None:
                out.member = cex
        elif member is not None:
            children.append((float(margin), member, used))

