"""Results of region safety: the verdict enum and frozen result dataclasses.

They serialise to the ``regions`` body of ``reports/SCHEMA.md`` in one place
(:meth:`RegionResult.to_dict`, :meth:`ImageResult.to_dict`) and read back
from it (``from_dict``) so that ``nnaudit regions --resume`` can continue an
interrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

#: the ways a verdict is reached (``route`` in the JSON)
ROUTES = ("bounds", "smt", "enumeration", "dlv", "attack")


class RegionVerdict(Enum):
    """SAFE: every member of the family keeps the class (proved);
    UNSAFE: a member that changes the class, confirmed by onnxruntime;
    UNKNOWN: neither within the time budget (``covered`` says what was done)."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RegionCounterexample:
    """A family member that changes the class according to onnxruntime.

    ``x``: flat float32-representable input (as float64) that onnxruntime ran
    on; ``pixels_changed``: flat indices where it differs from the image;
    norms are of ``x - x0``.
    """

    x: np.ndarray
    class_before: int
    class_after: int
    conf_before: float
    conf_after: float
    pixels_changed: tuple[int, ...]
    l0: int
    l2: float
    linf: float

    def to_dict(self) -> dict[str, Any]:
        return {"x": [float(v) for v in self.x], "class_before": self.class_before,
                "class_after": self.class_after, "conf_before": self.conf_before,
                "conf_after": self.conf_after, "pixels_changed": list(self.pixels_changed),
                "l0": self.l0, "l2": self.l2, "linf": self.linf}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegionCounterexample:
        return cls(np.asarray(d["x"], dtype=np.float64), int(d["class_before"]), int(d["class_after"]),
                   float(d["conf_before"]), float(d["conf_after"]), tuple(int(p) for p in d["pixels_changed"]),
                   int(d["l0"]), float(d["l2"]), float(d["linf"]))


@dataclass(frozen=True)
class RegionResult:
    """The verdict on one region by one method (``"exact"`` or ``"dlv"``).

    ``adversarial``: every confirmed adversarial input DLV collected (flat,
    possibly off the step grid; kept in memory for benchmarks, not in JSON);
    ``stats``: counters (z3 calls, members enumerated, ...); ``channels`` and
    ``image_pixels`` (``row * W + col``) say which pixels in which channels
    ``pixels`` (flat input indices) are (empty when the region had no layout).
    """

    id: int
    box: tuple[int, int, int, int]
    pixels: tuple[int, ...]
    method: str
    verdict: RegionVerdict
    route: str
    time_s: float
    covered: str | None = None
    counterexample: RegionCounterexample | None = None
    adversarial: tuple[np.ndarray, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    channels: tuple[int, ...] = ()
    image_pixels: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "box": list(self.box), "pixels": list(self.pixels), "method": self.method,
             "verdict": self.verdict.value, "route": self.route, "time_s": round(self.time_s, 6),
             "covered": self.covered,
             "counterexample": None if self.counterexample is None else self.counterexample.to_dict()}
        if self.channels:
            d.update(channels=list(self.channels), image_pixels=list(self.image_pixels))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegionResult:
        cex = d.get("counterexample")
        return cls(int(d["id"]), tuple(int(b) for b in d["box"]), tuple(int(p) for p in d["pixels"]),
                   str(d["method"]), RegionVerdict(d["verdict"]), str(d["route"]), float(d["time_s"]),
                   d.get("covered"), None if cex is None else RegionCounterexample.from_dict(cex),
                   channels=tuple(int(c) for c in d.get("channels") or ()),
                   image_pixels=tuple(int(p) for p in d.get("image_pixels") or ()))


@dataclass(frozen=True)
class ImageResult:
    """All region results of one image; ``skipped`` says why none were checked."""

    index: int
    label: int
    predicted: int
    shape: tuple[int, ...]
    x: np.ndarray
    regions: tuple[RegionResult, ...]
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"index": self.index, "label": self.label, "predicted": self.predicted, "shape": list(self.shape),
             "x": [float(v) for v in np.asarray(self.x).reshape(-1)],
             "regions": [r.to_dict() for r in self.regions]}
        if self.skipped is not None:
            d["skipped"] = self.skipped
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageResult:
        return cls(int(d["index"]), int(d["label"]), int(d["predicted"]), tuple(int(s) for s in d["shape"]),
                   np.asarray(d["x"], dtype=np.float64), tuple(RegionResult.from_dict(r) for r in d["regions"]),
                   d.get("skipped"))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{method: {verdict: count}}``."""
        out: dict[str, dict[str, int]] = {}
        for r in self.regions:
            out.setdefault(r.method, {v.value: 0 for v in RegionVerdict})[r.verdict.value] += 1
        return out
