"""How a run is recorded: its result document, written as the work goes, and resumed from its file.

Every kind of run (:mod:`nnaudit.runs.verify`, :mod:`~nnaudit.runs.regions`,
:mod:`~nnaudit.runs.attack`) opens its document here: the shared header of
:func:`nnaudit.reports.schema.new_result` and the kind's body.  With a JSON
path the document is written atomically after every step of work
(``complete: false``) and once more at the end (``complete: true``), so a
crash or Ctrl-C leaves a valid, resumable file.  With ``resume`` an existing
file at that path is continued when it records the same run -- same model
(sha256), settings and seeds; anything else is a ConfigError naming what
differs -- and the kind keeps the work it holds; a missing file starts afresh.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nnaudit.errors import ConfigError


@dataclass(frozen=True)
class Record:
    """The document's header where the caller sets it, and where the document goes."""

    settings: dict[str, Any] | None = None         # the document's settings (None: the kind's own)
    seeds: dict[str, Any] | None = None            # the document's seeds (None: the kind's own)
    device: str | None = None                      # recorded in the environment (None: the run's device or cpu)
    command: str | None = None                     # how to reproduce the run (None: this process's command line)
    data: str | None = None                        # the data's name, where the kind's settings record it
    json_path: str | os.PathLike[str] | None = None  # written after every step of work
    resume: bool = False                           # continue the run recorded at json_path

    def filled(self, *, settings: dict[str, Any], seeds: dict[str, Any], device: str | None = None) -> Record:
        """This record with a kind's own settings, seeds and device where it leaves them unset."""
        return replace(self, settings=settings if self.settings is None else self.settings,
                       seeds=seeds if self.seeds is None else self.seeds, device=self.device or device)


def open_document(kind: str, network: Any, record: Record, *, body: dict[str, Any],
                  match: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's document, and the saved document to continue (None: nothing to resume).

    ``record`` has the kind's own header values filled in (:meth:`Record.filled`);
    ``body`` holds the kind's keys, empty; a saved document must also agree on
    the body values of ``match``.  The settings also record the network's
    input normalisation (``mean``, ``std``), if it has one.  A resumed document
    keeps the saved start time; its work is the kind's to take from the saved document.
    """
    from nnaudit.reports.schema import new_result, read_result

    norm = getattr(network, "normalisation", None)
    settings = {**(record.settings or {}), **(norm.to_dict() if norm is not None else {})}
    doc = new_result(kind, network=network, settings=settings, seeds=record.seeds, device=record.device,
                     command=record.command)
    doc.update(body)
    path = record.json_path
    if not (record.resume and path is not None and Path(path).exists()):
        return doc, None
    saved = read_result(path, kind=kind)
    same_run(Path(path), saved, doc, match=match or {})
    doc["started"] = saved.get("started", doc["started"])
    return doc, saved


def same_run(path: Path, saved: dict[str, Any], doc: dict[str, Any], *, match: Mapping[str, Any]) -> None:
    """Raise ConfigError unless ``saved`` (read from ``path``) records the run of ``doc``:
    same model sha256, settings and seeds, and the body values of ``match``."""
    from nnaudit.reports.schema import plain

    have, want = (saved.get("model") or {}).get("sha256"), (doc.get("model") or {}).get("sha256")
    if have != want:
        raise ConfigError(f"{path}: cannot resume: it was made with a model of sha256 {str(have)[:12]}…, "
                          f"this model is {str(want)[:12]}…")
    old, now = saved.get("settings") or {}, plain(doc["settings"])
    diff = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
    if diff:
        raise ConfigError(f"{path}: cannot resume: settings differ in {_cap(', '.join(diff))} "
                          f"(file: {_cap([old.get(k) for k in diff])}, now: {_cap([now.get(k) for k in diff])})")
    for key, value in {"seeds": doc["seeds"], **match}.items():
        if saved.get(key) != plain(value):
            raise ConfigError(f"{path}: cannot resume: {key} differ (file: {_cap(saved.get(key))}, "
                              f"now: {_cap(plain(value))})")


def _cap(value: Any, limit: int = 120) -> str:
    """``value`` as text, at most ``limit`` characters (a list of 10^4 image indices stays one short line)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def save(doc: dict[str, Any], record: Record) -> None:
    """Write the unfinished document to ``record.json_path`` (if any), marked ``complete: false``."""
    from nnaudit.reports.schema import write_json

    if record.json_path is not None:
        write_json(dict(doc, complete=False), record.json_path)


def finish(doc: dict[str, Any], record: Record) -> dict[str, Any]:
    """Stamp the document complete, write it to ``record.json_path`` (if any) and return it."""
    from nnaudit.reports.schema import finish as stamp, write_json

    stamp(doc, complete=True)
    if record.json_path is not None:
        write_json(doc, record.json_path)
    return doc
