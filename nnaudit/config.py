"""The checks file: declarative robustness requirements for CI.

A checks file is ``nnaudit.toml`` (or the ``[tool.nnaudit]`` table of a
``pyproject.toml``) with an optional ``[defaults]`` table and one
``[[check]]`` table per check::

    [defaults]
    device = "cpu"
    timeout = 30          # seconds per verification / regions run
    store = "results.db"  # optional: attack and regions checks run as campaigns, resumable from this store

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
(:class:`AttackCheck`, :class:`RegionsCheck`, :class:`VerifyCheck`, defined in
:mod:`nnaudit.checks.kinds` and importable from here); the table of keys and
their converters is :mod:`nnaudit.checks.keys`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnaudit.checks.keys import ALLOW_OUTSIDE, CAMPAIGN_KEYS, DEFAULTABLE, KEYS, REQUIRED, Bad, show
from nnaudit.checks.kinds import KINDS, AttackCheck, Check, CheckBase, RegionsCheck, VerifyCheck
from nnaudit.errors import ConfigError

__all__ = ["CONFIG_NAMES", "KEYS", "KINDS", "REQUIRED", "AttackCheck", "Check", "CheckBase", "ChecksFile",
           "RegionsCheck", "VerifyCheck", "find_config", "has_nnaudit_table", "load_checks"]

CONFIG_NAMES = ("nnaudit.toml", "pyproject.toml")


@dataclass(frozen=True)
class ChecksFile:
    """A loaded checks file: where it is and its checks, in file order."""

    path: Path
    checks: tuple[Check, ...]
    campaign: dict[str, Any] = field(default_factory=dict)  # [defaults] store/scheduler/workers (CAMPAIGN_KEYS)


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
    allow = table.get("allow_outside_paths", False)
    if not isinstance(allow, bool):
        problems.append(f"{path}: key 'allow_outside_paths': expected true or false, got {show(allow)}")
    token = ALLOW_OUTSIDE.set(allow is True)
    try:
        return _load(path, table, problems)
    finally:
        ALLOW_OUTSIDE.reset(token)


def _load(path: Path, table: dict[str, Any], problems: list[str]) -> ChecksFile:
    defaults = _defaults(table.get("defaults", {}), path, problems)
    campaign = {k: defaults.pop(k) for k in CAMPAIGN_KEYS if k in defaults}
    raw_checks = table.get("check", [])
    for key in table:
        if key not in ("defaults", "check", "allow_outside_paths"):
            problems.append(f"{path}: key {key!r}: unknown key; expected [defaults] and [[check]] tables")
    if not isinstance(raw_checks, list) or not all(isinstance(c, dict) for c in raw_checks):
        problems.append(f"{path}: key 'check': expected [[check]] tables, got {show(raw_checks)}")
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
    return ChecksFile(path, tuple(checks), campaign)


def _read_table(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: checks file not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file: {exc}") from exc
    except RecursionError as exc:  # tomllib is recursive: arrays or tables nested thousands deep
        raise ConfigError(f"{path}: not a valid TOML file: arrays or tables nested too deep") from exc
    if path.name == "pyproject.toml":
        table = doc.get("tool", {}).get("nnaudit")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: no [tool.nnaudit] table")
        return table
    return doc


def _defaults(raw: Any, path: Path, problems: list[str]) -> dict[str, Any]:
    where = f"{path}: [defaults]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {show(raw)}")
        return {}
    out = {}
    for key, value in raw.items():
        if key not in DEFAULTABLE and key not in CAMPAIGN_KEYS:
            problems.append(f"{where}, key {key!r}: unknown key; expected one of "
                            f"{', '.join(DEFAULTABLE + tuple(CAMPAIGN_KEYS))}")
            continue
        try:
            out[key] = (CAMPAIGN_KEYS.get(key) or KEYS[key][2])(value, path.parent)
        except Bad as bad:
            problems.append(f"{where}, key {key!r}: {bad}")
    return out


def _check(raw: dict[str, Any], defaults: dict[str, Any], path: Path, i: int,
           problems: list[str]) -> Check | None:
    name = raw.get("name")
    where = f"{path}: [[check]] #{i + 1}" + (f" ({name!r})" if isinstance(name, str) else "")
    before = len(problems)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}, key 'name': expected a non-empty string, got {show(name)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}, key 'kind': expected one of {', '.join(KINDS)}, got {show(kind)}")
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
        except Bad as bad:
            problems.append(f"{where}, key {key!r}: {bad}")
    for key in REQUIRED[kind]:
        if key not in raw and KEYS[key][1] not in fields:
            problems.append(f"{where}: missing required key {key!r}")
    if kind == "attack" and fields.get("min_robust_accuracy") is None and fields.get("min_clean_accuracy") is None:
        problems.append(f"{where}: missing a requirement; expected min_robust_accuracy and/or min_clean_accuracy")
    if kind == "regions" and "grid" in raw and "patch" in raw:
        problems.append(f"{where}, key 'patch': give either grid or patch, not both")
    if kind == "attack" and isinstance(fields.get("options"), dict):
        from nnaudit.attacks.autoattack import run_names  # autoattack runs its cascade's attacks

        extra = set(fields["options"]) - set(run_names(fields.get("attacks", ("pgd",)), fields.get("version", "standard")))
        if extra:
            problems.append(f"{where}, key 'options': options for attacks that are not run: {', '.join(sorted(extra))}")
    if len(problems) > before:
        return None
    return KINDS[kind](name=name, source=where, **fields)
