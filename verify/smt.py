"""The one boundary to Z3: every solver call of nnaudit goes through :func:`solve`.

It sets the timeout, maps Z3's sat/unsat/unknown to :class:`SmtOutcome`, and
converts the model of a sat answer to NumPy floats.  The rest of the code
builds constraints (see :mod:`nnaudit.verify.encode`) and never touches
``z3.Solver`` directly.  Z3 is imported here and in the encoder only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from nnaudit.errors import SolverError
from nnaudit.networks.z3terms import real

__all__ = ["SmtOutcome", "SmtStatus", "real", "solve", "to_float"]

log = logging.getLogger(__name__)


class SmtStatus(Enum):
    """Z3's answer to one query."""

    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"      # timeout, resource limit, incompleteness


@dataclass(frozen=True)
class SmtOutcome:
    """Result of one query.

    ``status``: Z3's answer; ``values``: float64 ``(len(values_of),)`` model
    values when sat, else None; ``time_s``: wall time of the check;
    ``reason``: Z3's reason when unknown.
    """

    status: SmtStatus
    values: np.ndarray | None
    time_s: float
    reason: str = ""


def solve(constraints: Sequence[Any], *, timeout_s: float, values_of: Sequence[Any] | None = None,
          logic: str | None = None) -> SmtOutcome:
    """Decide the conjunction of ``constraints`` within ``timeout_s`` seconds.

    ``values_of``: expressions whose model values are returned when sat
    (model completion on, so unconstrained variables get a value).  ``logic``
    optionally names an SMT-LIB logic (e.g. ``"QF_LRA"``); by default Z3 picks.
    """
    if timeout_s <= 0:
        return SmtOutcome(SmtStatus.UNKNOWN, None, 0.0, "no time left")
    solver = z3.SolverFor(logic) if logic else z3.Solver()
    solver.set("timeout", max(1, int(timeout_s * 1000)))
    solver.add(*constraints)
    start = time.perf_counter()
    try:
        answer = solver.check()
    except z3.Z3Exception as exc:
        raise SolverError(f"z3 failed on a query of {len(constraints)} constraints: {exc}") from exc
    elapsed = time.perf_counter() - start
    if answer == z3.unsat:
        return SmtOutcome(SmtStatus.UNSAT, None, elapsed)
    if answer == z3.unknown:
        reason = solver.reason_unknown()
        log.debug("z3 unknown after %.2fs: %s", elapsed, reason)
        return SmtOutcome(SmtStatus.UNKNOWN, None, elapsed, reason)
    model = solver.model()
    values = np.array([to_float(model.eval(e, model_completion=True)) for e in (values_of or [])], dtype=np.float64)
    return SmtOutcome(SmtStatus.SAT, values, elapsed)


def to_float(value: Any) -> float:
    """A Z3 numeral (int, rational, algebraic) as the nearest float."""
    if z3.is_int_value(value):
        return float(value.as_long())
    if z3.is_rational_value(value):
        return float(Fraction(value.numerator_as_long(), value.denominator_as_long()))
    if z3.is_algebraic_value(value):
        return float(Fraction(value.approx(30).as_fraction()))
    raise SolverError(f"z3 model value {value} is not a number")
