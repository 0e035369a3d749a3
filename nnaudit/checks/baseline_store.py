"""Baselines kept in the SQLite results store (:mod:`nnaudit.reports.store`), with their history.

``nnaudit baseline accept RESULT.json --store results.db [--tag main]`` records
every check of a check result as one row of the store: kind ``check``, key
``check:TAG:NAME``, the check's model sha256, the hash of the check's
settings, the check's entry (with its nested result) as the row's result.
Rows are never overwritten, so accepting the checks of each new model version
builds a history.  ``--baseline results.db@TAG`` (or ``@SHA``: a model's
sha256 or unique prefix, or the path it was read from) reads them back
through :class:`StoreBaseline`, the same small interface as a JSON baseline
(:class:`nnaudit.checks.baseline.Baseline`), plus :meth:`StoreBaseline.history`
for the report's trend plot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnaudit.errors import ConfigError

#: a store reference ``PATH@WHICH``: PATH ends with one of these
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DEFAULT_TAG = "baseline"


def store_ref(ref: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(store path, tag or model)`` of ``STORE.db@WHICH`` (also ``STORE.db``: the default tag); None otherwise."""
    text = os.fspath(ref)
    path, _, which = text.rpartition("@") if "@" in text else (text, "", DEFAULT_TAG)
    if not path.endswith(STORE_SUFFIXES):
        return None
    return Path(path), which or DEFAULT_TAG


def _key(tag: str, name: str) -> str:
    return f"check:{tag}:{name}"


def record(store_path: str | os.PathLike[str], doc: dict[str, Any], *, tag: str = DEFAULT_TAG) -> int:
    """Record the checks of the ``check`` document ``doc`` under ``tag``; returns how many rows were new."""
    from nnaudit.reports.store import JobStatus, ResultStore, StoredJob

    if not tag or ":" in tag or "@" in tag:
        raise ConfigError(f"--tag: expected a name without ':' or '@', got {tag!r}")
    jobs = []
    with ResultStore(store_path) as store:
        for entry in doc.get("checks") or []:
            nested = entry.get("result")
            if not isinstance(nested, dict):
                continue
            model = nested.get("model") or {}
            sha = str(model.get("sha256") or "unknown")
            store.add_model(sha, str(model.get("path") or model.get("file") or ""))
            digest = store.add_settings("check", {"name": entry["name"], "kind": entry.get("kind"),
                                                  "settings": nested.get("settings") or {}})
            jobs.append(StoredJob(sha, digest, _key(tag, entry["name"]), "check", JobStatus.OK, result=entry))
        return store.put_many(jobs)


@dataclass(frozen=True)
class StoreBaseline:
    """The checks recorded under a tag (or for a model) in a results store: the latest row per check."""

    path: Path
    which: str
    rows: dict[str, list[dict[str, Any]]]   # check name -> its recorded entries, oldest first

    @property
    def description(self) -> str:
        return f"{self.path}@{self.which}"

    def entry(self, name: str) -> dict[str, Any] | None:
        rows = self.rows.get(name)
        return rows[-1] if rows else None

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded entry of the check, oldest first (one per model version accepted)."""
        return list(self.rows.get(name, []))


def open_store_baseline(path: Path, which: str) -> StoreBaseline:
    """The baseline ``which`` (a tag, else a model) of the store at ``path``; ConfigError naming the problem."""
    from nnaudit.reports.store import JobStatus, ResultStore

    if not path.is_file():
        raise ConfigError(f"baseline {path}: results store not found; record one with "
                          f"`nnaudit baseline accept RESULT.json --store {path} --tag {which}`")
    with ResultStore(path) as store:
        rows = [r for r in store.iter(kind="check") if r.status is JobStatus.OK and r.result]
        tagged = [r for r in rows if r.key.startswith(_key(which, ""))]
        if not tagged:
            sha = store.model_matching(which)  # ConfigError listing the stored models when none matches
            tagged = [r for r in rows if r.model_sha256 == sha]
    if not tagged:
        raise ConfigError(f"baseline {path}@{which}: no check results recorded for it")
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in tagged:  # rows come in the order they were stored
        grouped.setdefault(str(row.result["name"]), []).append(row.result)
    return StoreBaseline(path, which, grouped)
