"""PGD's bookkeeping: the rows a restart works on, the restarts in flight, the best point per sample.

:mod:`~nnaudit.attacks.projected_gradient` runs its loop over these.  A
:class:`Rows` is what a restart needs of some samples of the attacked batch
(their numbers, clean inputs, criterion and L-inf box); a :class:`Flight` is
the iterates of every restart running now, side by side in one batch
(oldest restart first), so that one forward and one backward pass serve them
all; :class:`Best` holds, per sample, the iterate kept so far.  All tensors
are ``(b, *input_shape)`` or ``(b,)`` on the attack's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnaudit.attacks.criteria import Criterion


@dataclass(frozen=True)
class Rows:
    """Some rows of the batch: their numbers in it, criterion, clean inputs and L-inf box.

    The integers (row numbers, labels, targets) are stacked in one tensor and
    the floats (clean inputs, the box's bounds) in another, so dropping done
    rows costs two copies whatever the threat model and criterion.
    """

    keys: torch.Tensor  # (2, b) int64: row numbers in the attacked batch, labels; (3, b): and targets
    data: torch.Tensor  # (3, b, *shape): clean inputs, box lower, box upper (L-inf); (1, b, *shape): clean inputs
    crit: Criterion  # views of keys

    @staticmethod
    def of(x: torch.Tensor, crit: Criterion, box: tuple[torch.Tensor, torch.Tensor] | None) -> Rows:
        """All rows of the batch ``x`` ``(B, *shape)``; ``box`` is :func:`~nnaudit.attacks.geometry.box` of ``x``."""
        keys = [torch.arange(len(x), device=x.device), crit.labels] + ([] if crit.targets is None else [crit.targets])
        return Rows.stacked(torch.stack(keys), x[None] if box is None else torch.stack((x, box[0], box[1])))

    @staticmethod
    def stacked(keys: torch.Tensor, data: torch.Tensor) -> Rows:
        """Rows from their stacked integers and floats."""
        return Rows(keys, data, Criterion(keys[1], keys[2] if len(keys) == 3 else None))

    @property
    def idx(self) -> torch.Tensor:
        """``(b,)`` int64 row numbers in the attacked batch."""
        return self.keys[0]

    @property
    def x(self) -> torch.Tensor:
        """``(b, *shape)`` clean inputs."""
        return self.data[0]

    @property
    def box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The L-inf box ``(lower, upper)``, each ``(b, *shape)``; None for other norms."""
        return None if len(self.data) == 1 else (self.data[1], self.data[2])

    def take(self, keep: torch.Tensor) -> Rows:
        """The rows ``keep`` (int64 positions in this subset)."""
        return Rows.stacked(self.keys.index_select(1, keep), self.data.index_select(1, keep))

    def narrow(self, start: int, length: int) -> Rows:
        """Rows ``start`` to ``start + length`` (views, no copy)."""
        return Rows.stacked(self.keys.narrow(1, start, length), self.data.narrow(1, start, length))

    def cat(self, other: Rows) -> Rows:
        """These rows, then ``other``'s."""
        return Rows.stacked(torch.cat((self.keys, other.keys), dim=1), torch.cat((self.data, other.data), dim=1))


@dataclass
class Segment:
    """One running restart's part of a :class:`Flight`."""

    length: int  # its rows still in the batch
    done: int = 0  # steps it has taken


@dataclass
class Flight:
    """The iterates of every restart running now, in one batch: segment after
    segment, oldest restart first (so segments end in the order they lie)."""

    rows: Rows | None = None  # all segments' rows, in order
    adv: torch.Tensor | None = None  # (n, *shape) their iterates
    segments: list[Segment] = field(default_factory=list)

    def __len__(self) -> int:
        return 0 if self.adv is None else len(self.adv)

    def launch(self, rows: Rows, adv: torch.Tensor) -> None:
        """Add a restart on ``rows`` from the iterates ``adv``, behind the running ones."""
        if self.rows is None or self.adv is None:
            self.rows, self.adv = rows, adv
        else:
            self.rows, self.adv = self.rows.cat(rows), torch.cat((self.adv, adv))
        self.segments.append(Segment(len(adv)))

    def remaining(self, steps: int) -> int:
        """Gradients the running restarts still need if no row of them leaves early."""
        return sum(s.length * (steps - s.done) for s in self.segments)

    def parts(self) -> list[tuple[int, Segment]]:
        """``(first row, segment)`` per segment."""
        out, start = [], 0
        for seg in self.segments:
            out.append((start, seg))
            start += seg.length
        return out

    def take(self, keep: torch.Tensor) -> None:
        """Keep the rows ``keep`` (ascending int64 positions) of every segment, and their iterates."""
        assert self.rows is not None and self.adv is not None
        if len(self.segments) == 1:
            self.segments[0].length = len(keep)
        else:
            ends = torch.tensor([start + seg.length for start, seg in self.parts()], device=keep.device)
            kept = torch.searchsorted(keep, ends).tolist()
            for seg, before, upto in zip(self.segments, [0] + kept[:-1], kept):
                seg.length = upto - before
        self.rows, self.adv = self.rows.take(keep), self.adv.index_select(0, keep)
        self.segments = [s for s in self.segments if s.length > 0]
        if not self.segments:
            self.clear()

    def pop_first(self) -> tuple[Rows, torch.Tensor]:
        """Remove the oldest segment; returns its rows and iterates."""
        assert self.rows is not None and self.adv is not None
        n = self.segments.pop(0).length
        rows, adv = self.rows.narrow(0, n), self.adv.narrow(0, 0, n)
        left = len(self.adv) - n
        if left == 0:
            self.clear()
        else:
            self.rows, self.adv = self.rows.narrow(n, left), self.adv.narrow(0, n, left)
        return rows, adv

    def clear(self) -> None:
        self.rows, self.adv, self.segments = None, None, []


@dataclass(frozen=True)
class Best:
    """Per sample of the batch: the iterate kept so far and its margin (inf: none yet)."""

    adv: torch.Tensor  # (B, *shape)
    margin: torch.Tensor  # (B,); -inf: a first success kept under early stop; +inf: none yet, or not computed

    def keep_better(self, adv: torch.Tensor, logits: torch.Tensor, candidate: torch.Tensor | None, rows: Rows) -> None:
        """Store the ``candidate`` rows (bool mask; None: all) of ``adv`` whose margin beats the kept one (in place)."""
        idx, crit, logits, adv = rows.idx, rows.crit, logits.detach(), adv.detach()
        if candidate is not None:
            pick = torch.nonzero(candidate)[:, 0]
            idx, crit = idx.index_select(0, pick), crit.subset(pick)
            logits, adv = logits.index_select(0, pick), adv.index_select(0, pick)
        margin = crit.margin(logits)
        better = torch.nonzero(margin < self.margin.index_select(0, idx))[:, 0]
        if len(better):
            at = idx.index_select(0, better)
            self.adv.index_copy_(0, at, adv.index_select(0, better))
            self.margin.index_copy_(0, at, margin.index_select(0, better))

    def store_rows(self, adv: torch.Tensor, pick: torch.Tensor, rows: Rows) -> None:
        """Store the ``pick`` rows (bool mask) of ``adv`` unconditionally (margin stays +inf)."""
        at = torch.nonzero(pick)[:, 0]
        self.adv.index_copy_(0, rows.idx.index_select(0, at), adv.detach().index_select(0, at))

    def store(self, adv: torch.Tensor, rows: Rows) -> None:
        """Store ``adv`` for all ``rows`` unconditionally (their margin is not computed: stays +inf)."""
        self.adv.index_copy_(0, rows.idx, adv.detach())

    def keep_first(self, adv: torch.Tensor, pick: torch.Tensor, rows: Rows) -> None:
        """Store the adversarial iterates at positions ``pick`` (int64) of rows that are done with
        them (early stop).

        Their margin is recorded as -inf: adversarial, and never compared again
        (a done row's later iterates are never looked at and it is not
        restarted), which saves computing it for every first success.
        """
        at = rows.idx.index_select(0, pick)
        self.adv.index_copy_(0, at, adv.detach().index_select(0, pick))
        self.margin.index_fill_(0, at, float("-inf"))

    def done(self, idx: torch.Tensor) -> torch.Tensor:
        """Which of the samples ``idx`` are done (a first success kept), ``(b,)`` bool."""
        return self.margin.index_select(0, idx) == float("-inf")
