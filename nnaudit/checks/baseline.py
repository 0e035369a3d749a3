"""Baselines: compare a check run with a previous one ("no worse than main").

A baseline is read through one small interface, :class:`Baseline`: a
description for messages and the ``checks`` entry of a check by name (with
its nested result document).  :func:`open_baseline` reads a previous
``check`` result JSON (``nnaudit check --json``, or the file ``nnaudit
baseline accept`` wrote).  :func:`compare` measures both runs with
:mod:`.metrics` and lists regressions (robust accuracy, or the fraction of
regions safe / properties holding, down by more than ``max_drop``; clean
accuracy down at all; a region or property that was safe/holds and now is
unsafe/violated) and improvements; :func:`apply` folds that into the
check's outcome: any regression fails the check, and the outcome records
the comparison for the JSON, JUnit and HTML outputs.

A baseline whose check was run with other settings (eps, grid, limit, ...)
is not comparable: that is an error naming the settings, never a silent pass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nnaudit.checks.metrics import Metrics, measure
from nnaudit.checks.outcome import CheckOutcome, Judgement, Status
from nnaudit.errors import ConfigError, NnauditError

#: settings that may differ between a run and its baseline (they do not change what is measured)
_FREE_SETTINGS = {"timeout_per_region", "timeout_s"}
_GOOD = {"safe", "holds"}
_BAD = {"unsafe", "violated"}
_EPS = 1e-12


class Baseline(Protocol):
    """What a baseline gives: a description and each check's previous entry."""

    description: str

    def entry(self, name: str) -> dict[str, Any] | None:
        """The ``checks`` entry of the check called ``name`` (None: not in the baseline)."""


@dataclass(frozen=True)
class JsonBaseline:
    """A previous ``check`` result document read from a file."""

    path: Path
    entries: dict[str, dict[str, Any]]

    @property
    def description(self) -> str:
        return str(self.path)

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)


def open_baseline(ref: str | os.PathLike[str]) -> Baseline:
    """The baseline at ``ref``: a ``check`` result JSON, or ``STORE.db@TAG`` (a results store,
    :mod:`.baseline_store`); ConfigError naming the file and the problem."""
    from nnaudit.checks.baseline_store import open_store_baseline, store_ref
    from nnaudit.reports.schema import read_result

    in_store = store_ref(ref)
    if in_store is not None:
        return open_store_baseline(*in_store)
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(f"baseline {path}: file not found; record one with "
                          f"`nnaudit check --json RESULT.json` then `nnaudit baseline accept RESULT.json --to {path}`")
    try:
        doc = read_result(path, kind="check")
    except NnauditError as exc:  # not JSON, not a check result, not of this schema
        raise ConfigError(f"baseline {path}: {exc}") from exc
    if doc.get("complete") is False:
        raise ConfigError(f"baseline {path}: the run it records did not finish (complete: false)")
    return JsonBaseline(path, {c["name"]: c for c in doc.get("checks") or []})


@dataclass(frozen=True)
class Comparison:
    """A check compared with its baseline entry."""

    baseline: str                          # where the baseline came from
    old: dict[str, Any] | None             # baseline metrics (Metrics.to_dict), None: no baseline entry
    new: dict[str, Any] | None             # this run's metrics
    regressions: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    note: str = ""                         # not comparable / no baseline entry
    history: tuple[dict[str, Any], ...] = ()  # a store baseline's earlier versions, then this run: model, metrics
    undecided: tuple[str, ...] = ()        # safe/holding in the baseline, unknown now

    def to_dict(self) -> dict[str, Any]:
        """The ``baseline`` of a ``check`` entry."""
        out = {"source": self.baseline, "old": self.old, "new": self.new, "regressions": list(self.regressions),
               "improvements": list(self.improvements), "note": self.note or None,
               "undecided": list(self.undecided)}
        if self.history:
            out["history"] = list(self.history)
        return out


def _num(v: float) -> str:
    return f"{v:.4g}"


def _robust_name(kind: str, key: str) -> str:
    return {"safe": "fraction of regions safe", "holds": "fraction of properties holding"}.get(
        key, f"robust accuracy at {key}")


def compare(kind: str, old_doc: dict[str, Any], new_doc: dict[str, Any], *, max_drop: float = 0.0,
            source: str = "baseline") -> Comparison:
    """Regressions, improvements and undecided items of ``new_doc`` against ``old_doc`` (nested
    result documents of ``kind``).  A region/property that was safe/held and is now unknown (a
    timeout) is *undecided*, not a regression, and a drop of the fraction safe/holding that such
    items alone explain is undecided too: the check becomes inconclusive, never passed."""
    old, new = measure(kind, old_doc), measure(kind, new_doc)
    assert old is not None and new is not None  # both are result documents of a known kind
    worse: list[str] = []
    better: list[str] = []
    opened = sorted(k for k, v in new.items.items() if v not in _GOOD | _BAD and old.items.get(k) in _GOOD)
    slack = len(opened) / len(new.items) if new.items and kind != "attack" else 0.0
    for key in [k for k in new.robust if k in old.robust]:
        a, b = old.robust[key], new.robust[key]
        name = _robust_name(kind, key)
        if a - (b + slack) > max_drop + _EPS:
            worse.append(f"{name} {_num(a)} -> {_num(b)} (drop {_num(a - b)} > max_drop {max_drop:g})"
                         + _samples(old, new, key))
        elif b > a + _EPS:
            better.append(f"{name} {_num(a)} -> {_num(b)}")
    _clean_changes(kind, old, new, worse, better)
    what = "region" if kind == "regions" else "property"
    good = "safe" if kind == "regions" else "holding"
    flipped = sorted(k for k, v in new.items.items() if v in _BAD and old.items.get(k) in _GOOD)
    fixed = sorted(k for k, v in new.items.items() if v in _GOOD and old.items.get(k) in _BAD)
    if flipped and kind != "attack":
        worse.append(f"{len(flipped)} {what}(s) no longer {good}: " + _listed(flipped, old, new))
    if fixed and kind != "attack":
        better.append(f"{len(fixed)} now {good}: " + _listed(fixed, old, new))
    undecided = (f"{len(opened)} {what}(s) {good} in the baseline now undecided (raise the timeout): "
                 + _listed(opened, old, new),) if opened and kind != "attack" else ()
    return Comparison(source, old.to_dict(), new.to_dict(), tuple(worse), tuple(better), undecided=undecided)


def _clean_changes(kind: str, old: Metrics, new: Metrics, worse: list[str], better: list[str]) -> None:
    """Clean accuracy (regions: fraction of images classified correctly): any drop is a regression."""
    if old.clean_accuracy is None or new.clean_accuracy is None:
        return
    a, b = old.clean_accuracy, new.clean_accuracy
    name = "clean accuracy" if kind == "attack" else "fraction of images classified correctly"
    if b < a - _EPS:
        worse.append(f"{name} {_num(a)} -> {_num(b)}")
    elif b > a + _EPS:
        better.append(f"{name} {_num(a)} -> {_num(b)}")


def _listed(keys: list[str], old: Metrics, new: Metrics, most: int = 8) -> str:
    shown = ", ".join(f"{k} ({old.items[k]} -> {new.items[k]})" for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _samples(old: Metrics, new: Metrics, key: str, most: int = 6) -> str:
    """For attacks: the samples broken now that were not in the baseline."""
    now = sorted(int(k.split()[1]) for k, v in new.items.items() if k.endswith(f" at {key}") and k not in old.items)
    if not now:
        return ""
    shown = ", ".join(map(str, now[:most])) + (f" and {len(now) - most} more" if len(now) > most else "")
    return f"; newly broken: sample(s) {shown}"


def comparable(old_doc: dict[str, Any], new_doc: dict[str, Any]) -> list[str]:
    """The settings (other than timeouts) in which the two nested result documents differ."""
    a, b = _settings(old_doc), _settings(new_doc)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _settings(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in (doc.get("settings") or {}).items() if k not in _FREE_SETTINGS}
    if isinstance(out.get("properties"), list):  # absolute paths differ between checkouts: compare names
        out["properties"] = [Path(str(p)).name for p in out["properties"]]
    return out


def apply(outcome: CheckOutcome, baseline: Baseline, *, max_drop: float = 0.0) -> CheckOutcome:
    """``outcome`` judged against ``baseline`` too: any regression fails it; the comparison is recorded."""
    entry = baseline.entry(outcome.name)
    old_doc = (entry or {}).get("result")
    new_doc = outcome.result
    j = outcome.judgement
    if new_doc is None:
        return outcome
    if not isinstance(old_doc, dict):
        note = "no result of this check in the baseline (a new check?): nothing compared"
        return _with(outcome, j, Comparison(baseline.description, None, _metrics(outcome), note=note))
    differ = comparable(old_doc, new_doc)
    if differ:
        old_s, new_s = _settings(old_doc), _settings(new_doc)
        note = (f"not comparable with the baseline {baseline.description}: settings differ in "
                + "; ".join(f"{k} (baseline {old_s.get(k)!r}, now {new_s.get(k)!r})" for k in differ)
                + "; record a new baseline with `nnaudit baseline accept`")
        judgement = Judgement(Status.ERROR, j.requirement, j.measured, note, j.worst)
        return _with(outcome, judgement, Comparison(baseline.description, None, _metrics(outcome), note=note))
    comp = compare(outcome.kind, old_doc, new_doc, max_drop=max_drop, source=baseline.description)
    comp = dataclasses.replace(comp, history=_history(outcome, baseline))
    return _with(outcome, _judged(j, comp), comp)


def _history(outcome: CheckOutcome, baseline: Baseline) -> tuple[dict[str, Any], ...]:
    """(model, metrics) of each version a store baseline recorded for this check, then of this run."""
    entries = getattr(baseline, "history", lambda name: [])(outcome.name)
    if not entries:
        return ()
    points = []
    for entry in [*entries, outcome.to_dict()]:
        nested = entry.get("result") or {}
        m = measure(outcome.kind, nested)
        if m is not None and not comparable(nested, outcome.result or {}):
            points.append({"model": str((nested.get("model") or {}).get("sha256") or "")[:12], **m.to_dict()})
    return tuple(points)


def _judged(j: Judgement, comp: Comparison) -> Judgement:
    """The judgement with the comparison's verdict and summary."""
    if comp.regressions:
        text = f"regression against the baseline {comp.baseline}: " + "; ".join(comp.regressions) + "."
        status = j.status if j.status is Status.ERROR else Status.FAILED
        return dataclasses.replace(j, status=status, message=f"{text} Requirement: {j.message}")
    if comp.undecided and j.status is Status.PASSED:
        return dataclasses.replace(j, status=Status.INCONCLUSIVE, message=f"{j.message.rstrip('.')}. Against the "
                                   f"baseline {comp.baseline}: " + "; ".join(comp.undecided) + ".")
    if comp.improvements:
        return dataclasses.replace(j, message=f"{j.message.rstrip('.')}. Improved against the baseline {comp.baseline}: "
                                              + "; ".join(comp.improvements) + ".")
    return dataclasses.replace(j, message=f"{j.message.rstrip('.')}. No change against the baseline {comp.baseline}.")


def _metrics(outcome: CheckOutcome) -> dict[str, Any] | None:
    m = measure(outcome.kind, outcome.result)
    return m.to_dict() if m is not None else None


def _with(outcome: CheckOutcome, judgement: Judgement, comp: Comparison) -> CheckOutcome:
    return dataclasses.replace(outcome, judgement=judgement, comparison=comp.to_dict())
