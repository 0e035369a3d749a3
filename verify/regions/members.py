"""Enumerating the members of a region family, budget included.

:meth:`Family.batches <nnaudit.verify.regions.spec.Family.batches>` walks
every grid point (the product of the value sets) and drops the ones over the
budget, which is hopeless when a small budget cuts a huge product down to a
few members (an L0 budget of 1 over a 768-value CIFAR region: ``3**768``
grid points, 1537 members).  :func:`member_indices` walks the budgeted
family directly: every member changes at most ``budget`` values (each
changed value costs at least 1 under both norms, since only the image's own
value has cost 0), so it enumerates the sets of changed values, then their
changed values, keeping the total cost within the budget.  Used by the
enumeration route of :mod:`nnaudit.verify.regions.exact`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from nnaudit.verify.regions.spec import Family


def zero_indices(fam: Family) -> np.ndarray:
    """Value indices ``(p,)`` of the image itself (step count 0 for every value)."""
    return np.array([int(np.flatnonzero(k == 0)[0]) for k in fam.ks], dtype=np.int64)


def count_text(n: int) -> str:
    """A member count for messages: exact up to 10**12, else ``~1.2e+366`` (no float overflow)."""
    if n < 10**12:
        return str(n)
    digits = str(n)
    return f"~{digits[0]}.{digits[1]}e+{len(digits) - 1}"


def member_indices(fam: Family, batch: int = 4096) -> Iterator[np.ndarray]:
    """Value indices ``(B, p)`` of every member of ``fam`` within its budget, in batches.

    Without a budget this is the mixed-radix order of :meth:`Family.batches`;
    with one, members come by number of changed values (the image first).
    The caller checks the size first (:meth:`Family.count`).
    """
    if fam.budget is None:
        radix = np.array([len(v) for v in fam.values], dtype=np.int64)
        from nnaudit.verify.regions.spec import mixed_radix

        for lo in range(0, fam.raw_count, batch):
            yield mixed_radix(np.arange(lo, min(lo + batch, fam.raw_count), dtype=np.int64), radix)
        return
    rows: list[np.ndarray] = []
    for row in _budgeted(fam):
        rows.append(row)
        if len(rows) == batch:
            yield np.array(rows)
            rows = []
    if rows:
        yield np.array(rows)


def _budgeted(fam: Family) -> Iterator[np.ndarray]:
    """Every member's value indices ``(p,)``, one at a time (budget ``fam.budget``)."""
    zero = zero_indices(fam)
    changes = [[(int(i), int(c)) for i, c in enumerate(cost) if c > 0] for cost in fam.costs]
    movable = [j for j, ch in enumerate(changes) if ch]
    budget = int(fam.budget or 0)
    for size in range(0, min(budget, len(movable)) + 1):
        for chosen in itertools.combinations(movable, size):
            for picks in itertools.product(*(changes[j] for j in chosen)):
                if sum(c for _, c in picks) <= budget:
                    row = zero.copy()
                    for j, (i, _) in zip(chosen, picks):
                        row[j] = i
                    yield row
