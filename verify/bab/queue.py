"""The queue of open sub-domains: batches of them (:class:`Chunk`), kept last in, first out
(the deepest first, so the queue stays small) under a cap on their count and memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """A batch of sub-domains (NumPy, first axis = sub-domain)."""

    lo: np.ndarray                       # (k, n_in)
    hi: np.ndarray                       # (k, n_in)
    open: np.ndarray                     # (k, J) disjuncts not yet closed
    depth: np.ndarray                    # (k,)
    splits: list[np.ndarray] | None      # per ReLU-capable node (k, size) int8, or None for input splitting
    warm: dict[str, dict[int, np.ndarray]] | None = None  # ReLU splitting: the parent's optimised slopes and
                                                         # multipliers (float16, as SpecBound.state), or None
    sens: np.ndarray | None = None       # input splitting, gradient scores: (k, n_in) the parent's bound's response
                                         # to each width (see branching.sensitivities), or None

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, idx: np.ndarray) -> Chunk:
        sp = None if self.splits is None else [s[idx] for s in self.splits]
        warm = None if self.warm is None else {g: {k: v[idx] for k, v in part.items()} for g, part in self.warm.items()}
        return Chunk(self.lo[idx], self.hi[idx], self.open[idx], self.depth[idx], sp, warm,
                     None if self.sens is None else self.sens[idx])

    @staticmethod
    def join(chunks: list[Chunk]) -> Chunk:
        sp = None if chunks[0].splits is None else [np.concatenate(p) for p in zip(*(c.splits for c in chunks))]
        sens = None
        if any(c.sens is not None for c in chunks):
            sens = np.concatenate([np.full(c.lo.shape, np.nan) if c.sens is None else c.sens for c in chunks])
        return Chunk(*(np.concatenate([getattr(c, f) for c in chunks]) for f in ("lo", "hi", "open", "depth")), sp,
                     _join_warm(chunks), sens)


def _join_warm(chunks: list[Chunk]) -> dict[str, dict[int, np.ndarray]] | None:
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


class SubdomainQueue:
    """Open sub-domains waiting to be bounded, at most ``cap`` of them (``domain_bytes`` each)."""

    def __init__(self, cap: int, domain_bytes: int) -> None:
        self.chunks: list[Chunk] = []
        self.pending = 0                   # sub-domains queued
        self.cap, self.domain_bytes = cap, domain_bytes

    def __bool__(self) -> bool:
        return bool(self.chunks)

    @property
    def over_cap(self) -> bool:
        return self.pending > self.cap

    def cap_message(self) -> str:
        return f"more than {self.cap} open sub-domains (queue cap: {self.cap * self.domain_bytes / 2 ** 20:.0f} MiB)"

    def push(self, chunk: Chunk) -> None:
        if len(chunk):
            self.chunks.append(chunk)
            self.pending += len(chunk)

    def pop(self, size: int) -> Chunk:
        """The newest ``size`` sub-domains (fewer when fewer are queued) as one chunk."""
        taken, count = [], 0
        while self.chunks and count < size:
            chunk = self.chunks.pop()
            room = size - count
            if len(chunk) > room:
                idx = np.arange(len(chunk))
                self.chunks.append(chunk.take(idx[room:]))
                chunk = chunk.take(idx[:room])
            taken.append(chunk)
            count += len(chunk)
        self.pending -= count
        return Chunk.join(taken)

    def pop_oldest(self, goal: int) -> Chunk:
        """The oldest whole chunks, up to at least ``goal`` sub-domains (the shallowest: the largest
        pieces of work), as one chunk."""
        given, count = [], 0
        while self.chunks and count < goal:
            given.append(self.chunks.pop(0))
            count += len(given[-1])
        self.pending -= count
        return Chunk.join(given)

    def pop_all(self) -> Chunk:
        """Every queued sub-domain as one chunk."""
        everything = Chunk.join(self.chunks)
        self.chunks, self.pending = [], 0
        return everything
