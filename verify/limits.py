"""The resource limits of one verification run: its deadline and its memory budget.

One :class:`Limits` object is handed down explicitly (engine -> branch and bound -> bounds), never
kept globally.  Long computations call :meth:`Limits.check_time` between chunks small enough to stop
within a fraction of a second, and :meth:`Limits.need` *before* a large allocation (a dense edge
matrix, backward substitution's coefficient tensors, a batch of sub-domains), so that exceeding the
budget ends the run as "unknown: memory budget" instead of the kernel's out-of-memory killer ending
the process.  :meth:`Limits.check_rss` watches the resident memory of the process and of its worker
processes between bound batches, for what the estimates do not see.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

GIB = 1 << 30
#: the default budget: min(8 GiB, this share of the physical memory)
DEFAULT_SHARE = 0.6
#: the part of the budget one tensor of a bound computation may take (several live at once)
TENSOR_SHARE = 0.125
#: allocations below this part of the budget are not checked against the resident memory one by one
SMALL_SHARE = 1 / 64


class OutOfTime(Exception):
    """The deadline passed inside a computation; the run ends as a timeout."""


class OutOfMemoryBudget(Exception):
    """A computation would exceed the memory budget; the run ends as unknown ("memory budget")."""


def physical_memory() -> int:
    """Bytes of physical memory of this machine (8 GiB when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def default_max_memory() -> int:
    """The default memory budget: min(8 GiB, 60 % of physical memory)."""
    return int(min(8 * GIB, DEFAULT_SHARE * physical_memory()))


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of process ``pid`` (``/proc/<pid>/status`` VmRSS; 0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def tree_rss_bytes() -> int:
    """Resident memory of this process and of its live child processes (forked workers)."""
    import multiprocessing as mp

    return rss_bytes() + sum(rss_bytes(p.pid) for p in mp.active_children() if p.pid is not None)


@dataclass(frozen=True)
class Limits:
    """A deadline (``time.monotonic()`` seconds, None: none) and a memory budget in bytes."""

    deadline: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"expected a positive memory budget, got {self.max_bytes} bytes")
        if self.deadline is not None and not math.isfinite(self.deadline):
            raise ValueError(f"expected a finite deadline, got {self.deadline}")

    def left(self) -> float:
        """Seconds to the deadline (inf without one)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def check_time(self) -> None:
        """Raise :class:`OutOfTime` once the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime("deadline reached")

    def tensor_bytes(self) -> int | None:
        """Bytes one tensor of a bound computation may take (None: unlimited)."""
        return None if self.max_bytes is None else int(self.max_bytes * TENSOR_SHARE)

    def need(self, nbytes: float, what: str) -> None:
        """Raise :class:`OutOfMemoryBudget` when ``nbytes`` more, on top of the resident memory now,
        would exceed the budget; ``what`` names the allocation in the message."""
        if self.max_bytes is None or nbytes < self.max_bytes * SMALL_SHARE:
            return  # small: the resident-memory check between batches covers it, without reading /proc
        have = rss_bytes()
        if nbytes + have > self.max_bytes:
            raise OutOfMemoryBudget(f"{what} needs {_gib(nbytes)} with {_gib(have)} in use, over the memory "
                                    f"budget of {_gib(self.max_bytes)} (--max-memory)")

    def check_rss(self) -> None:
        """Raise :class:`OutOfMemoryBudget` when this process and its workers already hold more than the budget."""
        if self.max_bytes is None:
            return
        have = tree_rss_bytes()
        if have > self.max_bytes:
            raise OutOfMemoryBudget(f"{_gib(have)} resident, over the memory budget of {_gib(self.max_bytes)} "
                                    "(--max-memory)")

    def rows_fitting(self, per_row: float, want: int) -> int:
        """How many of ``want`` rows of ``per_row`` bytes each one tensor may hold (at least 1;
        :meth:`need` refuses a row that does not fit at all)."""
        cap = self.tensor_bytes()
        if cap is None or per_row <= 0:
            return max(1, want)
        return max(1, min(want, int(cap // per_row)))


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"
