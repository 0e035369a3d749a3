"""Falsification during branch and bound: rounds of random sampling and PGD with fresh seeds,
within a share of the search's time.

One seed's falsification is luck (ACAS Xu 1_5 prop 2's counterexample is found by 4 of 30
seeds of the larger round), so rounds go on while the search runs: after ``refalsify_after``
seconds, growing rounds (:data:`ROUNDS`) take up to ``refalsify_share`` of its time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from nnaudit.verify.falsify import FalsifyConfig, falsify
from nnaudit.verify.results import Counterexample
from nnaudit.verify.spec import Box, Region

#: the falsification rounds during the search, smallest first; later rounds repeat the last
ROUNDS = (FalsifyConfig(samples=1024, pgd_starts=32, pgd_steps=60),
          FalsifyConfig(samples=4096, pgd_starts=64, pgd_steps=100),
          FalsifyConfig(samples=10_000, pgd_starts=128, pgd_steps=150),
          FalsifyConfig(samples=20_000, pgd_starts=256, pgd_steps=200))
#: a round's cost over the previous, smaller one's (an upper estimate, to keep the share)
GROWTH = 3.0


@dataclass
class Refalsifier:
    """The rounds of one search: ``share`` of its time from ``after`` seconds on, seeds from ``seed``."""

    share: float
    after: float
    seed: int
    rounds: int = 0        # rounds run so far
    spent: float = 0.0     # their seconds
    last: float = 0.0      # seconds the last round took

    def round(self, network: Any, ort: Any, box: Box, region: Region, started: float,
              deadline: float) -> Counterexample | None:
        """A round when its share of the time allows (None otherwise, or when it found nothing).

        A round starts only when its predicted cost (the last round's, times the growth) fits in
        the share: the largest round costs 0.24 s on ACAS Xu but 4 s on mnist_fc 256x6, where the
        first, smallest one costs 0.26 s."""
        now = time.monotonic()
        elapsed = now - started
        k = min(self.rounds, len(ROUNDS) - 1)
        grows = 0 < self.rounds < len(ROUNDS)  # this round is larger than the last
        predicted = self.last * (GROWTH if grows else 1.0)
        if self.share <= 0 or elapsed < self.after or self.spent + predicted > self.share * elapsed:
            return None
        if deadline - now < max(2.0, 2 * predicted):  # a round's PGD does not look at the clock
            return None
        self.rounds += 1
        found = falsify(network, ort, box, region, replace(ROUNDS[k], seed=1_000 * (self.seed + 1) + self.rounds),
                        deadline)
        self.last = time.monotonic() - now
        self.spent += self.last
        return found
