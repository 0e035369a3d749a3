"""PGD's bookkeeping: rows, the restarts in flight side by side, the best point per sample."""

from __future__ import annotations

import torch

from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.iterates import Best, Flight, Rows
from nnaudit.attacks.projected_gradient import _first_per_sample


def _rows(n: int, targeted: bool = False) -> Rows:
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    labels = torch.arange(n) % 4
    crit = Criterion(labels, (labels + 1) % 4 if targeted else None)
    return Rows.of(x, crit, (x - 0.5, x + 0.5))


def test_rows_keep_their_fields_together() -> None:
    rows = _rows(6, targeted=True)
    part = rows.take(torch.tensor([1, 4]))
    assert part.idx.tolist() == [1, 4] and part.crit.labels.tolist() == [1, 0] and part.crit.targets.tolist() == [2, 1]
    torch.testing.assert_close(part.x, rows.x[[1, 4]])
    torch.testing.assert_close(part.box[1] - part.box[0], torch.ones(2, 3))
    both = rows.narrow(0, 2).cat(rows.narrow(5, 1))
    assert both.idx.tolist() == [0, 1, 5] and both.crit.labels.tolist() == [0, 1, 1]
    assert Rows.of(rows.x, Criterion(rows.crit.labels), None).box is None


def test_flight_drops_rows_per_segment_and_ends_the_oldest_first() -> None:
    rows = _rows(5)
    flight = Flight()
    flight.launch(rows, rows.x.clone())  # restart 0: samples 0-4
    flight.segments[0].done = 3
    later = rows.take(torch.tensor([1, 3, 4]))
    flight.launch(later, later.x + 100)  # restart 1 beside it: samples 1, 3, 4
    assert len(flight) == 8 and flight.remaining(10) == 5 * 7 + 3 * 10
    flight.take(torch.tensor([0, 2, 3, 6, 7]))  # keeps samples 0, 2, 3 of restart 0 and 3, 4 of restart 1
    assert [s.length for s in flight.segments] == [3, 2]
    assert flight.rows.idx.tolist() == [0, 2, 3, 3, 4]
    first, adv = flight.pop_first()
    assert first.idx.tolist() == [0, 2, 3] and adv[:, 0].tolist() == [0.0, 6.0, 9.0]
    assert flight.rows.idx.tolist() == [3, 4] and flight.adv[:, 0].tolist() == [109.0, 112.0]
    flight.take(torch.tensor([], dtype=torch.int64))
    assert len(flight) == 0 and not flight.segments


def test_a_sample_broken_by_two_restarts_at_once_keeps_the_older_ones_iterate() -> None:
    idx = torch.tensor([0, 2, 5, 2, 5, 7])  # restart 0 on samples 0, 2, 5; restart 1 on 2, 5, 7
    pick = torch.tensor([1, 3, 4, 5])
    assert _first_per_sample(pick, idx, 8).tolist() == [1, 4, 5]


def test_best_keeps_first_successes_and_better_finals() -> None:
    rows = _rows(4)
    best = Best(rows.x.clone(), torch.full((4,), float("inf")))
    best.keep_first(rows.x + 1, torch.tensor([2]), rows)
    assert best.done(rows.idx).tolist() == [False, False, True, False]
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 9.0, 0], [0, 0, 0, -1.0]])
    best.keep_better(rows.x + 2, logits, None, rows)  # sample 2 is done: its -inf is never beaten
    assert best.margin.tolist() == [5.0, 1.0, float("-inf"), -1.0]
    assert best.adv[:, 0].tolist() == [2.0, 5.0, 7.0, 11.0]
