"""Z3 terms the ops' exact encodings need (``Layer.z3_encode``).

Kept beside the IR so that the ops do not import the verifier: the solver
gateway (:mod:`nnaudit.verify.smt`) builds on this, not the other way round.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any


def real(value: float) -> Any:
    """The exact rational value of a float as a Z3 real constant."""
    import z3

    frac = Fraction(float(value))
    return z3.RealVal(f"{frac.numerator}/{frac.denominator}") if frac.denominator != 1 else z3.RealVal(frac.numerator)
