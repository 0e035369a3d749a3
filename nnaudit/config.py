"""The checks file: declarative robustness requirements for CI.

A checks file is ``nnaudit.toml`` (or the ``[tool.nnaudit]`` table of a
``pyproject.toml``) with an optional ``[defaults]`` table and one
``[[check]]`` table per check::

    [defaults]
    device = "cpu"
    timeout = 30          # seconds per verification / regions run

    [[check]]
    name = "digits-ffn-pgd"
    kind = "attack"       # attack | regions | verify
    model = "digits-ffn"  # a bundled zoo name or a path relative to this file
    data = "digits"       # a bundled data set or an .npz relative to this file
    limit = 50            # the first 50 samples
    attacks = ["fgsm", "pgd"]
    eps = [0.02]
    min_robust_accuracy = 0.8

:func:`load_checks` reads, type-checks and resolves the whole file (unknown
keys, wrong types, missing files, unknown zoo/data/attack names) and raises
one :class:`~nnaudit.errors.ConfigError` listing every problem with the file
and the key, before any check runs.  Each check becomes a frozen dataclass
(:class:`AttackCheck`, :class:`RegionsCheck`, :class:`VerifyCheck`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nnaudit.errors import ConfigError

CONFIG_NAMES = ("nnaudit.toml", "pyproject.toml")


@dataclass(frozen=True)
class CheckBase:
    """Keys every check has."""

    name: str                        # test id and table row; unique in the file
    model: Path                      # the ONNX file (zoo names resolved)
    source: str = ""                 # "path/nnaudit.toml: [[check]] #2 ('name')" for messages
    device: str = "cpu"              # cpu, cuda, cuda:N or auto (attacks)
    seed: int = 0                    # random seed of attacks / falsification
    unknown_is_failure: bool = False  # an inconclusive result counts as a failure

    kind: ClassVar[str] = ""

    @property
    def requirement(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class AttackCheck(CheckBase):
    """Robust accuracy under adversarial attacks must stay above a floor."""

    data: str = "digits"                       # bundled name or resolved .npz path
    limit: int | None = None                   # use the first N samples
    eps: tuple[float, ...] = (0.1,)            # radii; the requirement holds at every one
    norm: str = "linf"                         # linf, l2 or l0
    attacks: tuple[str, ...] = ("pgd",)        # registry names (nnaudit.attacks.ATTACKS)
    bounds: tuple[float, float] = (0.0, 1.0)   # valid input range
    options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per-attack overrides
    min_robust_accuracy: float | None = None   # worst case over attacks, at every eps
    min_clean_accuracy: float | None = None    # onnxruntime accuracy on the clean samples

    kind: ClassVar[str] = "attack"

    @property
    def requirement(self) -> str:
        parts = []
        if self.min_robust_accuracy is not None:
            parts.append(f"min_robust_accuracy >= {self.min_robust_accuracy:g}")
        if self.min_clean_accuracy is not None:
            parts.append(f"min_clean_accuracy >= {self.min_clean_accuracy:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class RegionsCheck(CheckBase):
    """At most ``max_unsafe_regions`` image regions may be unsafe (DLV)."""

    data: str = "digits"                        # bundled name or resolved .npz path
    limit: int | None = 1                       # images checked
    grid: tuple[int, int] | None = (4, 4)       # region grid (rows, cols)
    patch: int | None = None                    # square sliding patch (side) instead of a grid
    step: float = 0.1                           # manipulation step per pixel
    steps: int = 1                              # steps each way
    budget: float | None = None                 # budget over the region (None: none)
    budget_norm: str = "l0"                     # l0: values changed; l1: summed change
    method: str = "exact"                       # exact, dlv or both
    timeout: float = 10.0                       # seconds per region and method
    max_unsafe_regions: int = 0                 # requirement

    kind: ClassVar[str] = "regions"

    @property
    def requirement(self) -> str:
        return f"max_unsafe_regions <= {self.max_unsafe_regions}"


@dataclass(frozen=True)
class VerifyCheck(CheckBase):
    """Every VNN-LIB property must end with the expected verdict."""

    properties: tuple[Path, ...] = ()           # .vnnlib files
    timeout: float = 60.0                       # seconds per property
    expect: str = "holds"                       # holds or violated

    kind: ClassVar[str] = "verify"

    @property
    def requirement(self) -> str:
        return f"expect = {self.expect}"


Check = AttackCheck | RegionsCheck | VerifyCheck
KINDS: dict[str, type[CheckBase]] = {"attack": AttackCheck, "regions": RegionsCheck, "verify": VerifyCheck}


@dataclass(frozen=True)
class ChecksFile:
    """A loaded checks file: where it is and its checks, in file order."""

    path: Path
    checks: tuple[Check, ...]


# ------------------------------------------------------------------ key table
# key -> (kinds that accept it, converter).  A converter returns the field
# value or raises _Bad("expected ..."); it may resolve paths (base dir given).


class _Bad(Exception):
    """A value of the wrong type or range; the message says what was expected."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string(v: Any, base: Path) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"expected a non-empty string, got {_show(v)}")
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"expected a finite number, got {_show(v)}")
    return float(v)


def _positive(v: Any, base: Path) -> float:
    x = _number(v)
    if x <= 0:
        raise _Bad(f"expected a number > 0, got {_show(v)}")
    return x


def _fraction(v: Any, base: Path) -> float:
    x = _number(v)
    if not 0.0 <= x <= 1.0:
        raise _Bad(f"expected a number in [0, 1], got {_show(v)}")
    return x


def _integer(low: int) -> Callable[[Any, Path], int]:
    def convert(v: Any, base: Path) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise _Bad(f"expected an integer >= {low}, got {_show(v)}")
        return v

    return convert


def _boolean(v: Any, base: Path) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {_show(v)}")
    return v


def _eps(v: Any, base: Path) -> tuple[float, ...]:
    values = v if isinstance(v, list) else [v]
    if not values:
        raise _Bad("expected a number or a non-empty list of numbers, got []")
    out = tuple(_number(x) for x in values)
    if any(x < 0 for x in out):
        raise _Bad(f"expected numbers >= 0, got {_show(v)}")
    return out


def _pair(kind: Callable[[Any], Any], what: str) -> Callable[[Any, Path], tuple[Any, Any]]:
    def convert(v: Any, base: Path) -> tuple[Any, Any]:
        if not isinstance(v, list) or len(v) != 2:
            raise _Bad(f"expected a list of two {what}, got {_show(v)}")
        return kind(v[0]), kind(v[1])

    return convert


def _grid_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _Bad(f"expected integers >= 1, got {_show(v)}")
    return v


def _bounds(v: Any, base: Path) -> tuple[float, float]:
    lo, hi = _pair(_number, "numbers")(v, base)
    if not lo < hi:
        raise _Bad(f"expected [low, high] with low < high, got {_show(v)}")
    return lo, hi


def _strings(v: Any, base: Path) -> tuple[str, ...]:
    values = v if isinstance(v, list) else [v]
    if not values or not all(isinstance(x, str) and x.strip() for x in values):
        raise _Bad(f"expected a string or a non-empty list of strings, got {_show(v)}")
    return tuple(values)


def _norm(v: Any, base: Path) -> str:
    from nnaudit.attacks.threat import Norm

    try:
        return Norm.parse(_string(v, base)).value
    except ConfigError:
        raise _Bad(f"expected one of linf, l2, l0, got {_show(v)}") from None


def _attacks(v: Any, base: Path) -> tuple[str, ...]:
    from nnaudit.attacks.api import ATTACKS, canonical

    names = _strings(v, base)
    try:
        return tuple(dict.fromkeys(canonical(n) for n in names))
    except ConfigError:
        raise _Bad(f"expected attack names from {', '.join(ATTACKS)}, got {_show(v)}") from None


def _options(v: Any, base: Path) -> dict[str, dict[str, Any]]:
    from nnaudit.attacks.api import ATTACKS, canonical

    if not isinstance(v, dict) or not all(isinstance(o, dict) for o in v.values()):
        raise _Bad(f"expected a table of per-attack tables, e.g. {{ pgd = {{ steps = 20 }} }}, got {_show(v)}")
    try:
        return {canonical(k): dict(o) for k, o in v.items()}
    except ConfigError:
        raise _Bad(f"expected attack names from {', '.join(ATTACKS)} as keys, got {_show(list(v))}") from None


def _budget_norm(v: Any, base: Path) -> str:
    if v not in ("l0", "l1"):
        raise _Bad(f"expected \"l0\" or \"l1\", got {_show(v)}")
    return v


def _method(v: Any, base: Path) -> str:
    if v not in ("exact", "dlv", "both"):
        raise _Bad(f"expected \"exact\", \"dlv\" or \"both\", got {_show(v)}")
    return v


def _expect(v: Any, base: Path) -> str:
    if v not in ("holds", "violated"):
        raise _Bad(f"expected \"holds\" or \"violated\", got {_show(v)}")
    return v


def _model(v: Any, base: Path) -> Path:
    from nnaudit.errors import ModelLoadError
    from nnaudit.networks import zoo

    name = _string(v, base)
    if name in zoo.names():
        try:
            return zoo.path(name)
        except ModelLoadError as exc:
            raise _Bad(str(exc)) from None
    path = (base / name).resolve()
    if not path.is_file():
        raise _Bad(f"model file {path} not found (expected a path relative to the checks file "
                   f"or a zoo name: {', '.join(zoo.names())})")
    return path


def _data(v: Any, base: Path) -> str:
    from nnaudit.networks.datasets import BUNDLED

    name = _string(v, base)
    if name in BUNDLED:
        return name
    path = (base / name).resolve()
    if not path.is_file():
        raise _Bad(f"data file {path} not found (expected an .npz relative to the checks file "
                   f"or a bundled name: {', '.join(BUNDLED)})")
    return str(path)


def _properties(v: Any, base: Path) -> tuple[Path, ...]:
    out = []
    for name in _strings(v, base):
        path = (base / name).resolve()
        if not path.is_file():
            raise _Bad(f"property file {path} not found (expected a .vnnlib path relative to the checks file)")
        out.append(path)
    return tuple(out)


_ALL = ("attack", "regions", "verify")
_IMAGES = ("attack", "regions")
#: key in the file -> (kinds accepting it, field name, converter)
KEYS: dict[str, tuple[tuple[str, ...], str, Callable[[Any, Path], Any]]] = {
    "model": (_ALL, "model", _model),
    "device": (_ALL, "device", _string),
    "seed": (_ALL, "seed", _integer(0)),
    "unknown_is_failure": (_ALL, "unknown_is_failure", _boolean),
    "data": (_IMAGES, "data", _data),
    "limit": (_IMAGES, "limit", _integer(1)),
    "eps": (("attack",), "eps", _eps),
    "norm": (("attack",), "norm", _norm),
    "attacks": (("attack",), "attacks", _attacks),
    "bounds": (("attack",), "bounds", _bounds),
    "options": (("attack",), "options", _options),
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
}
REQUIRED = {
    "attack": ("model", "data", "eps"),
    "regions": ("model", "data", "max_unsafe_regions"),
    "verify": ("model", "property"),
}
DEFAULTABLE = tuple(k for k in KEYS if k not in ("model", "property"))


# ------------------------------------------------------------------ loading


def find_config(start: Path | None = None) -> Path | None:
    """``nnaudit.toml`` in ``start`` (default: the working directory), else a
    ``pyproject.toml`` there with a ``[tool.nnaudit]`` table, else None."""
    folder = Path.cwd() if start is None else Path(start)
    toml = folder / "nnaudit.toml"
    if toml.is_file():
        return toml
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and has_nnaudit_table(pyproject):
        return pyproject
    return None


def has_nnaudit_table(path: Path) -> bool:
    """A cheap text test: does this pyproject.toml mention ``[tool.nnaudit]``?"""
    try:
        return "[tool.nnaudit" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def load_checks(path: str | Path) -> ChecksFile:
    """Read, check and resolve the checks file at ``path``.

    Raises ConfigError naming the file and every bad key (all problems at
    once).  Model, data and property paths are resolved relative to the
    file's folder; zoo and bundled data names are kept as names.
    """
    path = Path(path)
    table = _read_table(path)
    problems: list[str] = []
    defaults = _defaults(table.get("defaults", {}), path, problems)
    raw_checks = table.get("check", [])
    for key in table:
        if key not in ("defaults", "check"):
            problems.append(f"{path}: key {key!r}: unknown key; expected [defaults] and [[check]] tables")
    if not isinstance(raw_checks, list) or not all(isinstance(c, dict) for c in raw_checks):
        problems.append(f"{path}: key 'check': expected [[check]] tables, got {_show(raw_checks)}")
        raw_checks = []
    if not raw_checks and not problems:
        problems.append(f"{path}: no checks; expected at least one [[check]] table")
    checks, names = [], set()
    for i, raw in enumerate(raw_checks):
        check = _check(raw, defaults, path, i, problems)
        if check is not None:
            if check.name in names:
                problems.append(f"{check.source}: key 'name': duplicate check name {check.name!r}")
            names.add(check.name)
            checks.append(check)
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems in the checks file:\n  " + "\n  ".join(problems))
    return ChecksFile(path, tuple(checks))


def _read_table(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: checks file not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file: {exc}") from exc
    if path.name == "pyproject.toml":
        table = doc.get("tool", {}).get("nnaudit")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: no [tool.nnaudit] table")
        return table
    return doc


def _defaults(raw: Any, path: Path, problems: list[str]) -> dict[str, Any]:
    where = f"{path}: [defaults]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {_show(raw)}")
        return {}
    out = {}
    for key, value in raw.items():
        if key not in DEFAULTABLE:
            problems.append(f"{where}, key {key!r}: unknown key; expected one of {', '.join(DEFAULTABLE)}")
            continue
        try:
            out[key] = KEYS[key][2](value, path.parent)
        except _Bad as bad:
            problems.append(f"{where}, key {key!r}: {bad}")
    return out


def _check(raw: dict[str, Any], defaults: dict[str, Any], path: Path, i: int,
           problems: list[str]) -> Check | None:
    name = raw.get("name")
    where = f"{path}: [[check]] #{i + 1}" + (f" ({name!r})" if isinstance(name, str) else "")
    before = len(problems)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}, key 'name': expected a non-empty string, got {_show(name)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}, key 'kind': expected one of {', '.join(KINDS)}, got {_show(kind)}")
        return None
    fields: dict[str, Any] = {k: v for k, v in defaults.items() if kind in KEYS[k][0]}
    fields = {KEYS[k][1]: v for k, v in fields.items()}
    accepted = sorted(k for k, (kinds, _, _) in KEYS.items() if kind in kinds)
    for key, value in raw.items():
        if key in ("name", "kind"):
            continue
        if key not in KEYS or kind not in KEYS[key][0]:
            problems.append(f"{where}, key {key!r}: unknown key for {kind} checks; "
                            f"expected one of name, kind, {', '.join(accepted)}")
            continue
        try:
            fields[KEYS[key][1]] = KEYS[key][2](value, path.parent)
        except _Bad as bad:
            problems.append(f"{where}, key {key!r}: {bad}")
    for key in REQUIRED[kind]:
        if key not in raw and KEYS[key][1] not in fields:
            problems.append(f"{where}: missing required key {key!r}")
    if kind == "attack" and fields.get("min_robust_accuracy") is None and fields.get("min_clean_accuracy") is None:
        problems.append(f"{where}: missing a requirement; expected min_robust_accuracy and/or min_clean_accuracy")
    if kind == "regions" and "grid" in raw and "patch" in raw:
        problems.append(f"{where}, key 'patch': give either grid or patch, not both")
    if kind == "attack" and isinstance(fields.get("options"), dict):
        extra = set(fields["options"]) - set(fields.get("attacks", ("pgd",)))
        if extra:
            problems.append(f"{where}, key 'options': options for attacks that are not run: {', '.join(sorted(extra))}")
    if len(problems) > before:
        return None
    return KINDS[kind](name=name, source=where, **fields)
