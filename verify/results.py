"""Verdicts and result records of the complete verifier.

One enum of states and frozen dataclasses that carry the counterexample and
the statistics; :meth:`VerifyResult.to_dict` produces one instance of the
``verify`` body of ``reports/SCHEMA.md`` and :meth:`VerifyResult.vnncomp`
the VNN-COMP result-file text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Verdict(Enum):
    """What the verifier concluded about a property."""

    HOLDS = "holds"          # proved: no input in the box reaches the unsafe region
    VIOLATED = "violated"    # a counterexample confirmed by onnxruntime
    UNKNOWN = "unknown"      # gave up (queue cap, solver unknown, unconfirmable candidate)
    TIMEOUT = "timeout"      # the deadline passed
    ERROR = "error"          # the instance could not be processed

    @property
    def vnncomp(self) -> str:
        """The VNN-COMP result word."""
        return {"holds": "unsat", "violated": "sat"}.get(self.value, self.value)

    @property
    def exit_code(self) -> int:
        """CLI exit code: 0 holds, 1 violated, 3 unknown/timeout, 2 error."""
        return {"holds": 0, "violated": 1, "error": 2}.get(self.value, 3)


@dataclass(frozen=True)
class Counterexample:
    """An input (float32 values, flat) and its onnxruntime output (flat)."""

    x: np.ndarray
    y: np.ndarray
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y],
                "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counterexample:
        """The inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["x"], dtype=np.float64), np.asarray(d["y"], dtype=np.float32),
                   tuple(int(s) for s in d["input_shape"]))


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of one (model, property) instance with timings and counts."""

    model: str
    prop: str
    verdict: Verdict
    time_s: float
    phases: dict[str, float] = field(default_factory=dict)
    subdomains: int = 0
    z3_calls: int = 0
    z3_time_s: float = 0.0
    counterexample: Counterexample | None = None
    message: str = ""
    phase_closed: int = 0          # sub-domains closed exactly by their ReLU phase patterns' LPs

    def to_dict(self) -> dict[str, Any]:
        """One entry of the ``instances`` list of the ``verify`` result body."""
        return {
            "model": self.model,
            "property": self.prop,
            "verdict": self.verdict.value,
            "time_s": round(self.time_s, 4),
            "phases": {k: round(v, 4) for k, v in self.phases.items()},
            "subdomains": self.subdomains,
            "z3_calls": self.z3_calls,
            "z3_time_s": round(self.z3_time_s, 4),
            "phase_closed": self.phase_closed,
            "counterexample": self.counterexample.to_dict() if self.counterexample is not None else None,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifyResult:
        """The inverse of :meth:`to_dict` (times as rounded there): an instance read back
        from a ``verify`` result, e.g. to resume a run."""
        cex = d.get("counterexample")
        return cls(str(d["model"]), str(d["property"]), Verdict(d["verdict"]), float(d["time_s"]),
                   {str(k): float(v) for k, v in (d.get("phases") or {}).items()}, int(d.get("subdomains", 0)),
                   int(d.get("z3_calls", 0)), float(d.get("z3_time_s", 0.0)),
                   None if cex is None else Counterexample.from_dict(cex), str(d.get("message", "")),
                   int(d.get("phase_closed", 0)))

    def vnncomp(self) -> str:
        """The VNN-COMP result file: the verdict word, then for sat the assignment."""
        lines = [self.verdict.vnncomp]
        if self.verdict is Verdict.VIOLATED and self.counterexample is not None:
            pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(self.counterexample.x)]
            pairs += [f"(Y_{i} {float(v)!r})" for i, v in enumerate(self.counterexample.y)]
            lines.append("(" + "\n ".join(pairs) + ")")
        return "\n".join(lines) + "\n"
