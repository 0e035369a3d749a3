"""The keys of a checks file: which kinds accept each key, and how its value is read.

:data:`KEYS` maps a key of a ``[[check]]`` or ``[defaults]`` table to the
kinds that accept it, the check field it sets and its converter.  A
converter returns the field value or raises :class:`Bad` ("expected ...,
got ..."); it may resolve paths relative to the checks file's folder (zoo
models and bundled data sets are kept as names).  :data:`REQUIRED` lists the
keys each kind must have.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnaudit.errors import ConfigError


class Bad(Exception):
    """A value of the wrong type or range; the message says what was expected."""


def show(value: Any) -> str:
    """``repr(value)``, shortened to 40 characters for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: set by :func:`nnaudit.config.load_checks` from the top-level key ``allow_outside_paths``
ALLOW_OUTSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_outside_paths", default=False)


def _inside(name: str, base: Path) -> Path:
    """``base / name`` resolved (symlinks, ..); Bad when it leaves ``base`` unless opted out."""
    if "\x00" in name:
        raise Bad(f"path {show(name)} contains a NUL character")
    path = (base / name).resolve()
    root = base.resolve()
    if not ALLOW_OUTSIDE.get() and path != root and root not in path.parents:
        raise Bad(f"path {show(name)} resolves outside the checks file's folder {root} "
                  f"(set allow_outside_paths = true at the top of the checks file to allow it)")
    return path


def _string(v: Any, base: Path) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Bad(f"expected a non-empty string, got {show(v)}")
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Bad(f"expected a finite number, got {show(v)}")
    return float(v)


def _positive(v: Any, base: Path) -> float:
    x = _number(v)
    if x <= 0:
        raise Bad(f"expected a number > 0, got {show(v)}")
    return x


def _fraction(v: Any, base: Path) -> float:
    x = _number(v)
    if not 0.0 <= x <= 1.0:
        raise Bad(f"expected a number in [0, 1], got {show(v)}")
    return x


def _integer(low: int) -> Callable[[Any, Path], int]:
    def convert(v: Any, base: Path) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise Bad(f"expected an integer >= {low}, got {show(v)}")
        return v

    return convert


def _boolean(v: Any, base: Path) -> bool:
    if not isinstance(v, bool):
        raise Bad(f"expected true or false, got {show(v)}")
    return v


def _eps(v: Any, base: Path) -> tuple[float, ...]:
    values = v if isinstance(v, list) else [v]
    if not values:
        raise Bad("expected a number or a non-empty list of numbers, got []")
    out = tuple(_number(x) for x in values)
    if any(x < 0 for x in out):
        raise Bad(f"expected numbers >= 0, got {show(v)}")
    return out


def _channels(*, positive: bool) -> Callable[[Any, Path], tuple[float, ...]]:
    """A number or a list of numbers, one per input channel (``mean``; ``std``: each > 0)."""

    def convert(v: Any, base: Path) -> tuple[float, ...]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise Bad("expected a number or a non-empty list of numbers (one per input channel), got []")
        out = tuple(_number(x) for x in values)
        if positive and any(x <= 0 for x in out):
            raise Bad(f"expected numbers > 0 (a standard deviation), got {show(v)}")
        return out

    return convert


def _pair(kind: Callable[[Any], Any], what: str) -> Callable[[Any, Path], tuple[Any, Any]]:
    def convert(v: Any, base: Path) -> tuple[Any, Any]:
        if not isinstance(v, list) or len(v) != 2:
            raise Bad(f"expected a list of two {what}, got {show(v)}")
        return kind(v[0]), kind(v[1])

    return convert


def _grid_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise Bad(f"expected integers >= 1, got {show(v)}")
    return v


def _bounds(v: Any, base: Path) -> tuple[float, float]:
    lo, hi = _pair(_number, "numbers")(v, base)
    if not lo < hi:
        raise Bad(f"expected [low, high] with low < high, got {show(v)}")
    return lo, hi


def _strings(v: Any, base: Path) -> tuple[str, ...]:
    values = v if isinstance(v, list) else [v]
    if not values or not all(isinstance(x, str) and x.strip() for x in values):
        raise Bad(f"expected a string or a non-empty list of strings, got {show(v)}")
    return tuple(values)


def _norm(v: Any, base: Path) -> str:
    from nnaudit.attacks.threat import Norm

    try:
        return Norm.parse(_string(v, base)).value
    except ConfigError:
        raise Bad(f"expected one of linf, l2, l1, l0, got {show(v)}") from None


def _attacks(v: Any, base: Path) -> tuple[str, ...]:
    from nnaudit.attacks.api import ATTACKS, canonical
    from nnaudit.attacks.autoattack import is_cascade

    names = _strings(v, base)
    try:
        if is_cascade(names):
            return ("autoattack",)
        return tuple(dict.fromkeys(canonical(n) for n in names))
    except ConfigError as exc:
        raise Bad(f"expected attack names from {', '.join(ATTACKS)} or \"autoattack\" alone, got {show(v)}"
                  + (f" ({exc})" if "alone" in str(exc) else "")) from None


def _version(v: Any, base: Path) -> str:
    if v not in ("standard", "plus", "rand"):
        raise Bad(f"expected \"standard\", \"plus\" or \"rand\", got {show(v)}")
    return v


def _options(v: Any, base: Path) -> dict[str, dict[str, Any]]:
    from nnaudit.attacks.api import ATTACKS, canonical

    if not isinstance(v, dict) or not all(isinstance(o, dict) for o in v.values()):
        raise Bad(f"expected a table of per-attack tables, e.g. {{ pgd = {{ steps = 20 }} }}, got {show(v)}")
    try:
        return {canonical(k): dict(o) for k, o in v.items()}
    except ConfigError:
        raise Bad(f"expected attack names from {', '.join(ATTACKS)} as keys, got {show(list(v))}") from None


def _budget_norm(v: Any, base: Path) -> str:
    if v not in ("l0", "l1"):
        raise Bad(f"expected \"l0\" or \"l1\", got {show(v)}")
    return v


def _method(v: Any, base: Path) -> str:
    if v not in ("exact", "dlv", "both"):
        raise Bad(f"expected \"exact\", \"dlv\" or \"both\", got {show(v)}")
    return v


def _expect(v: Any, base: Path) -> str:
    if v not in ("holds", "violated"):
        raise Bad(f"expected \"holds\" or \"violated\", got {show(v)}")
    return v


def _model(v: Any, base: Path) -> Path:
    from nnaudit.errors import ModelLoadError
    from nnaudit.networks import zoo

    name = _string(v, base)
    if name in zoo.names():
        try:
            return zoo.path(name)
        except ModelLoadError as exc:
            raise Bad(str(exc)) from None
    path = _inside(name, base)
    if not path.is_file():
        raise Bad(f"model file {path} not found (expected a path relative to the checks file "
                   f"or a zoo name: {', '.join(zoo.names())})")
    return path


def _data(v: Any, base: Path) -> str:
    from nnaudit.networks.datasets import BUNDLED

    name = _string(v, base)
    if name in BUNDLED:
        return name
    path = _inside(name, base)
    if not path.is_file():
        raise Bad(f"data file {path} not found (expected an .npz relative to the checks file "
                   f"or a bundled name: {', '.join(BUNDLED)})")
    return str(path)


def _properties(v: Any, base: Path) -> tuple[Path, ...]:
    out = []
    for name in _strings(v, base):
        path = _inside(name, base)
        if not path.is_file():
            raise Bad(f"property file {path} not found (expected a .vnnlib path relative to the checks file)")
        out.append(path)
    return tuple(out)


def _baseline(v: Any, base: Path) -> Path:
    """A previous check result (JSON) or ``STORE.db@TAG`` to compare with; it need not exist yet
    (``nnaudit baseline accept`` records it)."""
    return _inside(_string(v, base), base)


_ALL = ("attack", "regions", "verify")
_IMAGES = ("attack", "regions")
#: key in the file -> (kinds accepting it, field name, converter)
KEYS: dict[str, tuple[tuple[str, ...], str, Callable[[Any, Path], Any]]] = {
    "model": (_ALL, "model", _model),
    "device": (_ALL, "device", _string),
    "seed": (_ALL, "seed", _integer(0)),
    "unknown_is_failure": (_ALL, "unknown_is_failure", _boolean),
    "mean": (_ALL, "mean", _channels(positive=False)),
    "std": (_ALL, "std", _channels(positive=True)),
    "data": (_IMAGES, "data", _data),
    "limit": (_IMAGES, "limit", _integer(1)),
    "eps": (("attack",), "eps", _eps),
    "norm": (("attack",), "norm", _norm),
    "attacks": (("attack",), "attacks", _attacks),
    "bounds": (("attack",), "bounds", _bounds),
    "options": (("attack",), "options", _options),
    "version": (("attack",), "version", _version),
    "targeted": (("attack",), "targeted", _boolean),
    "target_classes": (("attack",), "target_classes", _integer(1)),
    "min_robust_accuracy": (("attack",), "min_robust_accuracy", _fraction),
    "min_clean_accuracy": (("attack",), "min_clean_accuracy", _fraction),
    "grid": (("regions",), "grid", _pair(_grid_int, "integers >= 1")),
    "patch": (("regions",), "patch", _integer(1)),
    "step": (("regions",), "step", _positive),
    "steps": (("regions",), "steps", _integer(1)),
    "budget": (("regions",), "budget", _positive),
    "budget_norm": (("regions",), "budget_norm", _budget_norm),
    "method": (("regions",), "method", _method),
    "timeout": (("regions", "verify"), "timeout", _positive),
    "max_unsafe_regions": (("regions",), "max_unsafe_regions", _integer(0)),
    "property": (("verify",), "properties", _properties),
    "expect": (("verify",), "expect", _expect),
    "baseline": (_ALL, "baseline", _baseline),
    "max_drop": (_ALL, "max_drop", _fraction),
}
REQUIRED = {
    "attack": ("model", "data", "eps"),
    "regions": ("model", "data", "max_unsafe_regions"),
    "verify": ("model", "property"),
}
DEFAULTABLE = tuple(k for k in KEYS if k not in ("model", "property"))


def _store(v: Any, base: Path) -> Path:
    """The campaign results store (SQLite), relative to the checks file's folder; it need not exist yet."""
    return _inside(_string(v, base), base)


#: [defaults] keys for the whole run, not per check: attack and regions checks run as campaigns
#: (``nnaudit check --store/--scheduler/--workers`` override them); key -> converter
CAMPAIGN_KEYS: dict[str, Callable[[Any, Path], Any]] = {
    "store": _store,
    "scheduler": _string,
    "workers": _integer(1),
}
