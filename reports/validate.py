"""Shape validation of result documents, per kind (reports/SCHEMA.md).

:func:`nnaudit.reports.schema.read_result` checks the header fields
(``schema``, ``version``, ``kind``); :func:`validate` then checks the whole
document against the shapes below so that the report never crashes half-way
on a malformed file and the error says where the problem is::

    run.json: $.results[2].eps: expected a number, got "x"

The shapes are small declarative objects (:class:`Obj`, :class:`ListOf`, ...)
rather than code per field.  Keys not listed are allowed (the format grows by
adding keys; see SCHEMA.md "Compatibility"), listed keys must have the listed
type, and keys in ``required`` must be present.  Flat pixel arrays are also
checked against their ``shape``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnaudit.errors import DataError


class ShapeError(DataError):
    """A result document does not have the documented shape."""


def _show(value: Any) -> str:
    """A short JSON rendering of ``value`` for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: int | float) -> bool:
    """A number a report can draw: no NaN or infinity, and an integer that fits a float."""
    return math.isfinite(value) if isinstance(value, float) else abs(value) <= sys.float_info.max


class Shape:
    """Base class: ``check(value, path, fail)`` calls ``fail(path, message)`` on a mismatch."""

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Scalar(Shape):
    """A JSON scalar: ``what`` is ``number``, ``integer``, ``string`` or ``boolean``."""

    what: str

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        ok = {
            "number": isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value),
            "integer": (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, float) and math.isfinite(value) and value.is_integer()),
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
        }[self.what]
        if not ok:
            article = "an" if self.what[0] in "aeiou" else "a"
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            finite = "finite " if numeric and self.what == "number" else ""
            fail(path, f"expected {article} {finite}{self.what}, got {_show(value)}")


@dataclass(frozen=True)
class Enum(Shape):
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        if value not in self.values:
            fail(path, f"expected one of {'|'.join(self.values)}, got {_show(value)}")


@dataclass(frozen=True)
class Nullable(Shape):
    """``inner`` or null."""

    inner: Shape

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        if value is not None:
            self.inner.check(value, path, fail)


@dataclass(frozen=True)
class Anything(Shape):
    """Any JSON value (free-form parts such as ``settings``)."""

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        return None


@dataclass(frozen=True)
class ListOf(Shape):
    """A list whose items all have shape ``item``; ``length`` fixes its length."""

    item: Shape
    length: int | None = None

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        if not isinstance(value, list):
            fail(path, f"expected a list, got {_show(value)}")
            return
        if self.length is not None and len(value) != self.length:
            fail(path, f"expected a list of {self.length} items, got {len(value)}")
        if isinstance(self.item, Scalar) and self.item.what == "number":
            # fast path for long pixel arrays: only plain finite numbers sum to a finite float
            if all(type(v) is float or type(v) is int for v in value) and _finite(sum(value)):
                return
            for i, v in enumerate(value):
                self.item.check(v, f"{path}[{i}]", fail)
            return
        for i, v in enumerate(value):
            self.item.check(v, f"{path}[{i}]", fail)


@dataclass(frozen=True)
class MapOf(Shape):
    """An object with free keys whose values all have shape ``value``."""

    value: Shape

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        if not isinstance(value, dict):
            fail(path, f"expected an object, got {_show(value)}")
            return
        for k, v in value.items():
            self.value.check(v, f"{path}.{k}", fail)


@dataclass(frozen=True)
class Obj(Shape):
    """An object with known keys; ``required`` must be present; others may be.

    ``extra`` runs after the key checks for cross-field rules (array length
    vs shape)."""

    keys: dict[str, Shape]
    required: tuple[str, ...] = ()
    extra: Callable[[dict[str, Any], str, Callable[[str, str], None]], None] | None = field(default=None)

    def check(self, value: Any, path: str, fail: Callable[[str, str], None]) -> None:
        if not isinstance(value, dict):
            fail(path, f"expected an object, got {_show(value)}")
            return
        for key in self.required:
            if key not in value:
                fail(path, f"missing required key {key!r}")
        for key, shape in self.keys.items():
            if key in value:
                shape.check(value[key], f"{path}.{key}", fail)
        if self.extra is not None:
            self.extra(value, path, fail)


def _flat_matches_shape(array_key: str, shape_key: str) -> Callable[[dict[str, Any], str, Callable[[str, str], None]], None]:
    """Cross-check: ``len(obj[array_key]) == prod(obj[shape_key])`` when both are present."""

    def rule(obj: dict[str, Any], path: str, fail: Callable[[str, str], None]) -> None:
        flat, shape = obj.get(array_key), obj.get(shape_key)
        if not isinstance(flat, list) or not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
            return
        expected = math.prod(shape)
        if len(flat) != expected:
            fail(f"{path}.{array_key}", f"expected {expected} numbers (shape {shape}), got {len(flat)}")

    return rule


def _both(*rules: Callable[[dict[str, Any], str, Callable[[str, str], None]], None]) -> Callable[[dict[str, Any], str, Callable[[str, str], None]], None]:
    def rule(obj: dict[str, Any], path: str, fail: Callable[[str, str], None]) -> None:
        for r in rules:
            r(obj, path, fail)

    return rule


NUM, INT, STR, BOOL = Scalar("number"), Scalar("integer"), Scalar("string"), Scalar("boolean")
NUMS, INTS, STRS = ListOf(NUM), ListOf(INT), ListOf(STR)
ANY = Anything()
OPT_NUM, OPT_INT, OPT_STR = Nullable(NUM), Nullable(INT), Nullable(STR)

# ---------------------------------------------------------------- header

MODEL = Obj({"file": OPT_STR, "path": OPT_STR, "sha256": OPT_STR, "input_shape": Nullable(INTS),
             "output_shape": Nullable(INTS), "num_params": OPT_INT, "layers": Nullable(STRS)})

ENVIRONMENT = Obj({"versions": MapOf(OPT_STR), "python": OPT_STR, "machine": ANY, "device": ANY})

HEADER = {
    "command": STR, "model": Nullable(MODEL), "settings": MapOf(ANY), "seeds": MapOf(ANY),
    "environment": ENVIRONMENT, "started": OPT_STR, "finished": OPT_STR, "complete": BOOL,
}
HEADER_REQUIRED = ("command", "settings", "complete")

# ---------------------------------------------------------------- attack

ATTACK_RESULT = Obj({
    "eps": NUM,
    "robust_accuracy": MapOf(OPT_NUM),
    "success_rate": MapOf(OPT_NUM),
    "median_perturbation": MapOf(Nullable(MapOf(OPT_NUM))),
    "time_s": MapOf(OPT_NUM),
    "mismatches": MapOf(OPT_INT),
    "broken": MapOf(INTS),
}, required=("eps", "robust_accuracy"))

ATTACK_EXAMPLE = Obj({
    "index": INT, "eps": NUM, "attack": STR, "label": INT, "pred_clean": INT, "pred_adv": INT,
    "conf_clean": OPT_NUM, "conf_adv": OPT_NUM, "norms": MapOf(OPT_NUM), "shape": INTS, "x": NUMS, "x_adv": NUMS,
}, required=("eps", "attack", "label", "pred_clean", "pred_adv", "shape", "x", "x_adv"),
    extra=_both(_flat_matches_shape("x", "shape"), _flat_matches_shape("x_adv", "shape")))

ATTACK = {
    "num_samples": INT, "clean_accuracy": OPT_NUM, "norm": STR, "eps": NUMS, "attacks": STRS,
    "results": ListOf(ATTACK_RESULT), "examples": ListOf(ATTACK_EXAMPLE),
}
ATTACK_REQUIRED = ("num_samples", "clean_accuracy", "norm", "eps", "attacks", "results")

# ---------------------------------------------------------------- verify

VERIFY_VERDICTS = ("holds", "violated", "unknown", "timeout", "error")
COUNTEREXAMPLE = Obj({"x": NUMS, "y": NUMS, "input_shape": Nullable(INTS)}, required=("x", "y"),
                     extra=_flat_matches_shape("x", "input_shape"))
INSTANCE = Obj({
    "model": STR, "property": STR, "verdict": Enum(VERIFY_VERDICTS), "time_s": OPT_NUM,
    "phases": MapOf(OPT_NUM), "subdomains": OPT_INT, "z3_calls": OPT_INT, "z3_time_s": OPT_NUM,
    "phase_closed": OPT_INT, "counterexample": Nullable(COUNTEREXAMPLE), "message": OPT_STR,
}, required=("model", "property", "verdict"))
VERIFY = {"instances": ListOf(INSTANCE)}
VERIFY_REQUIRED = ("instances",)

# ---------------------------------------------------------------- regions

REGION_VERDICTS = ("safe", "unsafe", "unknown")
REGION_COUNTEREXAMPLE = Obj({
    "x": NUMS, "class_before": INT, "class_after": INT, "conf_before": OPT_NUM, "conf_after": OPT_NUM,
    "pixels_changed": INTS, "l0": OPT_NUM, "l2": OPT_NUM, "linf": OPT_NUM,
}, required=("x", "class_before", "class_after"))
REGION = Obj({
    "id": INT, "box": Nullable(ListOf(INT, length=4)), "pixels": INTS, "method": OPT_STR,
    "verdict": Enum(REGION_VERDICTS), "route": OPT_STR, "time_s": OPT_NUM, "covered": ANY,
    "counterexample": Nullable(REGION_COUNTEREXAMPLE), "channels": INTS, "image_pixels": INTS,
}, required=("id", "verdict"))


def _region_counterexample_length(image: dict[str, Any], path: str, fail: Callable[[str, str], None]) -> None:
    x = image.get("x")
    if not isinstance(x, list) or not isinstance(image.get("regions"), list):
        return
    for i, region in enumerate(image["regions"]):
        cx = region.get("counterexample") if isinstance(region, dict) else None
        if isinstance(cx, dict) and isinstance(cx.get("x"), list) and len(cx["x"]) != len(x):
            fail(f"{path}.regions[{i}].counterexample.x",
                 f"expected {len(x)} numbers (the image's size), got {len(cx['x'])}")


IMAGE = Obj({
    "index": INT, "label": OPT_INT, "predicted": OPT_INT, "shape": INTS, "x": NUMS, "regions": ListOf(REGION),
    "skipped": OPT_STR,
}, required=("shape", "x", "regions"),
    extra=_both(_flat_matches_shape("x", "shape"), _region_counterexample_length))
REGIONS = {"manipulation": ANY, "grid": Nullable(INTS), "patch": ANY, "methods": Nullable(STRS),
           "region_channels": Nullable(Enum(("all", "each"))),
           "bounds": Nullable(Obj({"chunk": INT, "mode": Nullable(Enum(("cone", "full")))})), "images": ListOf(IMAGE)}
REGIONS_REQUIRED = ("images",)

# ---------------------------------------------------------------- adapt

METRICS = MapOf(OPT_NUM)
POINTS = ListOf(NUMS)
PCA = Obj({"source": POINTS, "target": POINTS}, required=("source", "target"))
BOUNDARY = Obj({
    "grid_x": NUMS, "grid_y": NUMS, "dann": ListOf(INTS), "source_only": Nullable(ListOf(INTS)),
    "source": Obj({"x": POINTS, "y": INTS}, required=("x",)), "target": Obj({"x": POINTS}, required=("x",)),
}, required=("grid_x", "grid_y", "dann"))
EPOCH = Obj({"epoch": INT, "dann": METRICS, "source_only": Nullable(METRICS)}, required=("epoch", "dann"))
ADAPT = {
    "task": STR, "device": OPT_STR, "epochs": ListOf(EPOCH),
    "final": Nullable(Obj({"dann": METRICS, "source_only": Nullable(METRICS)}, required=("dann",))),
    "features": Nullable(Obj({"pca": Nullable(Obj({"before": Nullable(PCA), "after": Nullable(PCA)}))})),
    "decision_boundary": Nullable(BOUNDARY),
    "export": Nullable(Obj({"path": OPT_STR, "max_abs_error": OPT_NUM})),
}
ADAPT_REQUIRED = ("task", "epochs")

# ---------------------------------------------------------------- check

CHECK_STATUSES = ("passed", "failed", "inconclusive", "error")
CHECK = Obj({
    "name": STR, "kind": STR, "requirement": OPT_STR, "measured": ANY, "status": Enum(CHECK_STATUSES),
    "message": OPT_STR, "result": Nullable(MapOf(ANY)),
}, required=("name", "status"))
CHECKS = {"checks": ListOf(CHECK)}
CHECKS_REQUIRED = ("checks",)

BODIES: dict[str, tuple[dict[str, Shape], tuple[str, ...]]] = {
    "attack": (ATTACK, ATTACK_REQUIRED),
    "verify": (VERIFY, VERIFY_REQUIRED),
    "regions": (REGIONS, REGIONS_REQUIRED),
    "adapt": (ADAPT, ADAPT_REQUIRED),
    "check": (CHECKS, CHECKS_REQUIRED),
}


def document_shape(kind: str, *, complete: bool = True) -> Obj:
    """The full document shape of ``kind`` (header and body).

    An interrupted run (``complete`` false) may lack body keys that are only
    written at the end, so only the header keys are required then."""
    body, required = BODIES[kind]
    return Obj({**HEADER, **body}, required=HEADER_REQUIRED + (required if complete else ()))


def problems(doc: dict[str, Any], *, limit: int = 10) -> list[str]:
    """Every shape problem of ``doc`` (at most ``limit``) as ``"$.path: message"``."""
    found: list[str] = []

    def fail(path: str, message: str) -> None:
        if len(found) < limit:
            found.append(f"{path}: {message}")

    kind = doc.get("kind")
    if kind not in BODIES:
        return [f"$.kind: expected one of {'|'.join(BODIES)}, got {_show(kind)}"]
    complete = doc.get("complete") is not False
    document_shape(kind, complete=complete).check(doc, "$", fail)
    if kind == "check":
        _nested_results(doc, fail)
    return found


def _nested_results(doc: dict[str, Any], fail: Callable[[str, str], None]) -> None:
    """A check's nested ``result`` that is a full result document is validated too."""
    for i, check in enumerate(doc.get("checks") or []):
        nested = check.get("result") if isinstance(check, dict) else None
        if isinstance(nested, dict) and "schema" in nested:
            for problem in problems(nested):
                where, _, message = problem.partition(": ")
                fail(f"$.checks[{i}].result{where[1:]}", message)


def validate(doc: dict[str, Any], source: str = "<result>") -> dict[str, Any]:
    """Return ``doc`` if it has the documented shape, else raise :class:`ShapeError`
    naming ``source`` and the JSON path of the first problem (and how many more)."""
    found = problems(doc)
    if found:
        more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
        raise ShapeError(f"{source}: {found[0]}{more}")
    return doc
