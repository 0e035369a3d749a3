"""Writing properties as VNN-LIB, so nobody has to write VNN-LIB by hand.

:func:`to_vnnlib` turns a :class:`~nnaudit.verify.spec.Property` (from
:func:`~nnaudit.verify.spec.robustness_property`, :func:`local_robustness_property`
or the parser) into the VNN-LIB subset :mod:`nnaudit.verify.vnnlib` reads;
:func:`write_vnnlib` writes it to a file.  Numbers are written with Python's
shortest round-tripping ``repr``, so parsing the text gives the same boxes and
output constraints bit for bit (tested with Hypothesis).

A one-case property is written the VNN-COMP way: one ``(assert (<= X_i hi))``
/ ``(assert (>= X_i lo))`` per bound, then the unsafe region as
``(assert (or (and ROW ...) ...))`` with each row ``C y + d <= 0`` as
``(<= (+ (* c Y_j) ... d) 0)``.  Several cases (or a disjunct without rows)
become one ``(assert (or (and BOX ROWS) ...))``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnaudit.errors import SpecError
from nnaudit.verify.spec import Box, Property, linear_property


def _n(v: float) -> str:
    return repr(float(v))


def _box_atoms(box: Box) -> list[str]:
    return [atom for i, (lo, hi) in enumerate(zip(box.lower, box.upper))
            for atom in (f"(>= X_{i} {_n(lo)})", f"(<= X_{i} {_n(hi)})")]


def _row(c: np.ndarray, d: float) -> str:
    terms = [f"(* {_n(v)} Y_{j})" for j, v in enumerate(c) if v != 0.0]
    return f"(<= (+ {' '.join(terms)} {_n(d)}) 0.0)" if terms else f"(<= {_n(d)} 0.0)"


def _rows(c: np.ndarray, d: np.ndarray) -> list[str]:
    return [_row(c[r], float(d[r])) for r in range(len(d))]


def to_vnnlib(prop: Property) -> str:
    """The VNN-LIB text of ``prop`` (see the module docstring for its layout)."""
    if not prop.cases:
        raise SpecError(f"{prop.name}: a property without cases cannot be written")
    n_in, n_out = prop.input_size, max(region.num_outputs for _, region in prop.cases)
    if n_out == 0:
        raise SpecError(f"{prop.name}: the unsafe region names no outputs; the number of outputs is unknown")
    lines = [f"; {prop.name}: written by nnaudit", *(f"(declare-const X_{i} Real)" for i in range(n_in)),
             *(f"(declare-const Y_{j} Real)" for j in range(n_out))]
    box, region = prop.cases[0]
    if len(prop.cases) == 1 and region.disjuncts and all(len(d) for _, d in region.disjuncts):
        lines += [f"(assert {atom})" for atom in _box_atoms(box)]
        lines.append(_or([" ".join(_rows(c, d)) for c, d in region.disjuncts]))
    else:
        lines.append(_or([" ".join(_box_atoms(b) + _rows(c, d)) for b, r in prop.cases for c, d in r.disjuncts]))
    return "\n".join(lines) + "\n"


def _or(conjunctions: Sequence[str]) -> str:
    if not conjunctions:
        raise SpecError("a property case without a disjunct cannot be written (its unsafe region is empty)")
    return "(assert (or\n" + "\n".join(f"  (and {c})" for c in conjunctions) + "\n))"


def write_vnnlib(prop: Property, path: str | os.PathLike[str]) -> Path:
    """Write ``prop`` as VNN-LIB to ``path`` (folders made as needed); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(to_vnnlib(prop), encoding="utf-8")
    return target


def local_robustness_property(x: np.ndarray, eps: float, label: int, num_classes: int, *,
                              target: int | None = None, clip: tuple[float, float] | None = (0.0, 1.0),
                              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                              channels: int = 1, name: str = "robustness") -> Property:
    """"Every input within ``eps`` (L-inf) of ``x`` is classified ``label``" (or, with ``target``,
    "never scores ``target`` at least as high as ``label``").

    ``x``: one sample, any shape, flattened channels first; the box is ``x +- eps`` clipped to
    ``clip``; with ``mean``/``std`` (one value or one per channel of ``channels``) the box is mapped
    to the model's input, ``(pixel - mean) / std``, for a model that expects normalised inputs.
    """
    if not (np.isfinite(eps) and eps >= 0):
        raise SpecError(f"eps: expected a finite number >= 0, got {eps}")
    if not 0 <= label < num_classes:
        raise SpecError(f"label {label} is outside 0..{num_classes - 1}")
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    lo, hi = flat - eps, flat + eps
    if clip is not None:
        lo, hi = np.clip(lo, clip[0], clip[1]), np.clip(hi, clip[0], clip[1])
    if mean is not None or std is not None:
        m, s = _per_value(mean or (0.0,), flat.size, channels), _per_value(std or (1.0,), flat.size, channels)
        if np.any(s <= 0):
            raise SpecError(f"std: expected numbers > 0, got {list(std or ())}")
        lo, hi = (lo - m) / s, (hi - m) / s
    if target is None:
        from nnaudit.verify.spec import robustness_property

        return robustness_property(lo, hi, label, num_classes, name=name)
    if not 0 <= target < num_classes or target == label:
        raise SpecError(f"target {target}: expected a class in 0..{num_classes - 1} other than the label {label}")
    c = np.zeros((1, num_classes))
    c[0, label], c[0, target] = 1.0, -1.0
    return linear_property(lo, hi, [(c, np.zeros(1))], name=name)


def _per_value(values: Sequence[float], size: int, channels: int) -> np.ndarray:
    """One value or one per channel, spread over ``size`` values laid out channels first."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 1:
        return np.full(size, v[0])
    if v.size != channels or size % channels:
        raise SpecError(f"mean/std: expected 1 or {channels} values (one per channel), got {v.size}")
    return np.repeat(v, size // channels)


__all__ = ["local_robustness_property", "to_vnnlib", "write_vnnlib"]
