"""What one branch-and-bound run concluded for one (box, region) case."""

from __future__ import annotations

from dataclasses import dataclass, field

from nnaudit.verify.results import Counterexample, Verdict


@dataclass
class BabOutcome:
    """What branch and bound concluded for one (box, region) case."""

    status: Verdict                # HOLDS, VIOLATED, UNKNOWN or TIMEOUT
    counterexample: Counterexample | None = None
    subdomains: int = 0
    z3_calls: int = 0
    z3_time_s: float = 0.0
    phase_closed: int = 0          # sub-domains closed by their phase patterns' LPs
    shared: list[int] = field(default_factory=list)  # shared search: sub-domains bounded by each member
    message: str = ""
    progress: list[str] = field(default_factory=list)

