"""Progress of a long check, shown so that a CI log is never silent.

On a terminal a progress bar; without one (a CI runner) a line every
``every`` seconds, ``[digits-regions] 120/400 regions, 3 unsafe, 31 s, eta 40 s``;
with ``--quiet`` nothing.  :class:`Progress` is made once per run and
hands each check a :class:`Ticker`; the clock is a parameter so tests count
lines without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ProgressMode(Enum):
    """How progress is shown."""

    BAR = "bar"       # a progress bar (stderr is a terminal)
    LOG = "log"       # a line every few seconds (CI logs)
    QUIET = "quiet"   # nothing (--quiet)


@dataclass
class Ticker:
    """Progress of one check: ``advance(n)`` as work is done, ``close()`` at the end."""

    label: str
    total: int
    unit: str
    write: Callable[[str], None]
    every: float = 5.0
    clock: Callable[[], float] = time.monotonic
    heartbeat: bool = False          # also write from a timer thread, so one slow step is not silent
    flag: str = ""                   # what ``advance``'s ``flagged`` counts (e.g. "unsafe"); shown when set
    done: int = field(default=0, init=False)       # units of work done
    flagged: int = field(default=0, init=False)    # of those, how many were flagged
    started: float = field(default=0.0, init=False)
    last: float = field(default=0.0, init=False)    # when the last line was written
    lines: int = field(default=0, init=False)       # lines written
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.started = self.last = self.clock()
        if self.heartbeat and self.every > 0:
            threading.Thread(target=self._beat, name=f"progress {self.label}", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every / 2):
            self._maybe_write()

    def _maybe_write(self) -> None:
        with self._lock:
            now = self.clock()
            if now - self.last >= self.every and not self._stop.is_set():
                self.last = now
                self.lines += 1
                self.write(self.line())

    def line(self) -> str:
        """``[label] done/total unit, elapsed, eta``."""
        spent = self.clock() - self.started
        eta = (f", eta {spent / self.done * (self.total - self.done):.0f} s"
               if 0 < self.done < self.total else "")
        flagged = f", {self.flagged} {self.flag}" if self.flag else ""
        return f"[{self.label}] {self.done}/{self.total} {self.unit}{flagged}, {spent:.0f} s{eta}"

    def advance(self, n: int = 1, flagged: int = 0) -> None:
        self.done = min(self.total, self.done + n)
        self.flagged += flagged
        self._maybe_write()

    def close(self) -> None:
        """Stop the heartbeat; a log shows the final count only when it showed progress before."""
        self._stop.set()
        if self.lines:
            self.write(self.line())


class _BarTicker(Ticker):
    """A click progress bar on stderr."""

    bar: Any = None

    def __post_init__(self) -> None:
        import sys

        import click

        super().__post_init__()
        self.bar = click.progressbar(length=max(self.total, 1), label=self.label, file=sys.stderr)
        self.bar.__enter__()

    def advance(self, n: int = 1, flagged: int = 0) -> None:
        self.done = min(self.total, self.done + n)
        self.flagged += flagged
        self.bar.update(n)

    def close(self) -> None:
        self.bar.__exit__(None, None, None)


@dataclass(frozen=True)
class Progress:
    """Makes the ticker of each check for the chosen mode."""

    mode: ProgressMode = ProgressMode.QUIET
    write: Callable[[str], None] = print
    every: float = 5.0                                # seconds between log lines
    clock: Callable[[], float] = time.monotonic
    heartbeat: bool = False                           # log lines also while one step takes long (a thread)

    def start(self, label: str, total: int, unit: str, flag: str = "") -> Ticker | None:
        """A ticker for ``total`` ``unit`` of work, counting ``flag`` ones too when given (None when quiet)."""
        if self.mode is ProgressMode.QUIET or total <= 0:
            return None
        if self.mode is ProgressMode.BAR:
            return _BarTicker(label, total, unit, self.write, self.every, self.clock, flag=flag)
        return Ticker(label, total, unit, self.write, self.every, self.clock, self.heartbeat, flag)

    @staticmethod
    def choose(*, quiet: bool, tty: bool) -> ProgressMode:
        """QUIET with ``--quiet``, a bar on a terminal, log lines otherwise."""
        return ProgressMode.QUIET if quiet else ProgressMode.BAR if tty else ProgressMode.LOG
