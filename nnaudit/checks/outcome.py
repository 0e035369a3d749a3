"""What a check concluded: a status enum, one frozen record per check, exit codes.

A check *passes* when its requirement is established, *fails* when a
confirmed counterexample (or a measured value) breaks it, is *inconclusive*
when the tools could not decide (unknown regions, a verifier timeout), and
is an *error* when it could not run (bad input discovered late, a crash).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(Enum):
    """The state of one check (the ``status`` of reports/SCHEMA.md ``check``)."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True)
class Judgement:
    """A requirement compared with a result.

    ``measured``: the number (or short text) the requirement was compared
    with; ``message``: one paragraph saying the requirement, the measured
    value and the worst counterexample; ``worst``: that counterexample as a
    dict (class before/after, norms) or None.
    """

    status: Status
    requirement: str
    measured: Any
    message: str
    worst: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckOutcome:
    """One check, run: its judgement, the full result document and timing."""

    name: str
    kind: str
    judgement: Judgement
    result: dict[str, Any] | None = None   # the nested full result document (reports/SCHEMA.md)
    time_s: float = 0.0
    source: str = ""                       # "nnaudit.toml, [[check]] #2 ('name')"
    comparison: dict[str, Any] | None = None  # against the baseline (baseline.Comparison.to_dict()), if any

    @property
    def status(self) -> Status:
        return self.judgement.status

    def to_dict(self) -> dict[str, Any]:
        """One entry of the ``checks`` list of the ``check`` result body."""
        from nnaudit.checks.metrics import measure

        j = self.judgement
        metrics = measure(self.kind, self.result)
        out = {"name": self.name, "kind": self.kind, "requirement": j.requirement, "measured": j.measured,
               "status": j.status.value, "message": j.message, "time_s": round(self.time_s, 3),
               "worst": j.worst, "metrics": metrics.to_dict() if metrics is not None else None, "result": self.result}
        if self.comparison is not None:
            out["baseline"] = self.comparison
        return out


@dataclass(frozen=True)
class ExitPolicy:
    """How statuses map to the exit code of ``nnaudit check``."""

    unknown_is_failure: bool = False  # inconclusive checks exit 1 instead of 3
    codes: dict[Status, int] = field(default_factory=lambda: {
        Status.PASSED: 0, Status.FAILED: 1, Status.INCONCLUSIVE: 3, Status.ERROR: 2})

    def code(self, statuses: Iterable[Status]) -> int:
        """2 if any error, else 1 if any failure, else 3 if any inconclusive, else 0."""
        seen = set(statuses)
        if self.unknown_is_failure and Status.INCONCLUSIVE in seen:
            seen = (seen - {Status.INCONCLUSIVE}) | {Status.FAILED}
        for status in (Status.ERROR, Status.FAILED, Status.INCONCLUSIVE):
            if status in seen:
                return self.codes[status]
        return 0
