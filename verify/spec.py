"""Properties: an input box and an unsafe output region.

A property *holds* when no input in the box produces an output in the unsafe
region; it is *violated* by a counterexample input whose output (computed by
onnxruntime on the original file) lies in that region.  The unsafe region is
a disjunction of conjunctions of linear constraints on the flattened output
``y``: disjunct ``j`` is ``C_j @ y + d_j <= 0`` (every row).  This is the form
VNN-LIB files take (see :mod:`nnaudit.verify.vnnlib`); :func:`robustness_property`
builds the usual "class stays c" property programmatically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnaudit.errors import SpecError


@dataclass(frozen=True)
class Box:
    """An axis-aligned input box; ``lower``/``upper`` flat float64 ``(n_in,)``."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.upper, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise SpecError(f"box bounds differ in size: lower has {lo.size} values, upper {hi.size}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise SpecError("box bounds must be finite")
        if np.any(lo > hi):
            i = int(np.argmax(lo > hi))
            raise SpecError(f"empty box: lower[{i}] = {lo[i]} > upper[{i}] = {hi[i]}")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def size(self) -> int:
        return int(self.lower.size)

    def contains(self, x: np.ndarray) -> np.ndarray:
        """``(B,)`` mask of the flattened points ``(B, n_in)`` inside the box."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return np.all((x >= self.lower) & (x <= self.upper), axis=1)

    def float32_gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(empty, below, above)`` ``(n_in,)``: the dimensions whose interval holds no float32 value
        (an input fixed at a decimal such as 0.1), and the float32 neighbours on either side of it."""
        lo32, hi32 = self.lower.astype(np.float32), self.upper.astype(np.float32)
        up = np.where(lo32.astype(np.float64) < self.lower, np.nextafter(lo32, np.float32(np.inf)), lo32)
        down = np.where(hi32.astype(np.float64) > self.upper, np.nextafter(hi32, np.float32(-np.inf)), hi32)
        return up.astype(np.float64) > down.astype(np.float64), down.astype(np.float64), up.astype(np.float64)

    def contains_float32(self, x: np.ndarray) -> np.ndarray:
        """``(B,)`` mask of float32 inputs ``(B, n_in)`` the file can be given for points of the box: inside
        it, except that on a dimension whose interval holds no float32 value, the two float32 values
        around it (the input's float32 rounding) count as inside."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        empty, below, above = self.float32_gaps()
        lo, hi = np.where(empty, below, self.lower), np.where(empty, above, self.upper)
        return np.all((x >= lo) & (x <= hi), axis=1)


@dataclass(frozen=True)
class Region:
    """Unsafe output region: OR over ``disjuncts`` of AND over rows of ``C y + d <= 0``.

    Each disjunct is ``(C, d)`` with ``C`` ``(r, n_out)`` and ``d`` ``(r,)``; a
    disjunct with no rows is the whole output space.
    """

    disjuncts: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def num_outputs(self) -> int:
        return int(self.disjuncts[0][0].shape[1]) if self.disjuncts else 0

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows ``C (R, n_out)``, ``d (R,)`` and the disjunct of each row ``(R,)``."""
        cs = [c for c, _ in self.disjuncts]
        ds = [d for _, d in self.disjuncts]
        owner = np.concatenate([np.full(len(d), j) for j, d in enumerate(ds)]) if ds else np.zeros(0, int)
        return np.concatenate(cs, axis=0), np.concatenate(ds), owner.astype(np.int64)

    def margin(self, y: np.ndarray) -> np.ndarray:
        """``(B,)`` safety margin of outputs ``(B, n_out)``: > 0 safe, <= 0 in the region.

        ``min_j max_i (C_j y + d_j)_i``: each disjunct is avoided when one of its
        rows is positive.
        """
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        per = [np.max(y @ c.T + d, axis=1) if len(d) else np.full(len(y), -np.inf) for c, d in self.disjuncts]
        return np.min(np.stack(per, axis=1), axis=1)

    def contains(self, y: np.ndarray) -> np.ndarray:
        """``(B,)`` mask of outputs in the unsafe region."""
        return self.margin(y) <= 0


@dataclass(frozen=True)
class Property:
    """A list of (input box, unsafe region) cases; it holds when every case does."""

    cases: tuple[tuple[Box, Region], ...]
    name: str = "property"

    @property
    def input_size(self) -> int:
        return self.cases[0][0].size

    @property
    def output_size(self) -> int:
        return self.cases[0][1].num_outputs

    def check_network(self, input_size: int, output_size: int, where: str = "") -> None:
        """Raise :class:`SpecError` when the property does not fit the network's sizes."""
        for box, region in self.cases:
            if box.size != input_size:
                raise SpecError(f"{where or self.name}: the property has {box.size} inputs, the network {input_size}")
            if region.num_outputs not in (0, output_size):
                raise SpecError(f"{where or self.name}: the property has {region.num_outputs} outputs, the network {output_size}")


def robustness_property(lower: np.ndarray, upper: np.ndarray, label: int, num_classes: int,
                        *, name: str = "robustness") -> Property:
    """"Every input in the box is classified ``label``" (arg-max stays).

    Unsafe region: some other class ``k`` scores at least as high,
    ``y_label - y_k <= 0``, one disjunct per ``k``.
    """
    if not 0 <= label < num_classes:
        raise SpecError(f"label {label} is outside 0..{num_classes - 1}")
    disjuncts = []
    for k in range(num_classes):
        if k == label:
            continue
        c = np.zeros((1, num_classes))
        c[0, label], c[0, k] = 1.0, -1.0
        disjuncts.append((c, np.zeros(1)))
    return Property(((Box(lower, upper), Region(tuple(disjuncts))),), name)


def linear_property(lower: np.ndarray, upper: np.ndarray, disjuncts: list[tuple[np.ndarray, np.ndarray]],
                    *, name: str = "linear") -> Property:
    """A box and an unsafe region given as ``[(C_j, d_j), ...]`` (``C_j y + d_j <= 0``)."""
    parts = tuple((np.atleast_2d(np.asarray(c, dtype=np.float64)), np.asarray(d, dtype=np.float64).reshape(-1))
                  for c, d in disjuncts)
    for c, d in parts:
        if c.shape[0] != d.shape[0]:
            raise SpecError(f"constraint matrix has {c.shape[0]} rows but offset has {d.shape[0]} values")
    return Property(((Box(lower, upper), Region(parts)),), name)
