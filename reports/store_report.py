"""Result documents rebuilt from the results store, so ``nnaudit report --store`` renders a campaign.

One document per (kind, settings) the store holds for a model: the rows'
results become the ``instances`` (verify) or ``images`` (regions) of a
document of that kind (reports/SCHEMA.md), its ``settings`` are the stored
ones, and rows of jobs that raised are listed under ``store_errors``
(an extra key: the report ignores it, readers may show it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnaudit.reports.store import JobStatus, ResultStore, StoredJob

#: the body key of each kind's items, and how rows sort in it
BODY = {"verify": "instances", "regions": "images"}


def store_documents(store: ResultStore, model_sha256: str) -> list[dict[str, Any]]:
    """The documents of every kind and settings stored for ``model_sha256`` (complete: what is stored is final)."""
    from nnaudit.reports.schema import finish, new_result

    groups: dict[tuple[str, str], list[StoredJob]] = {}
    for row in store.iter(model_sha256=model_sha256):
        if row.kind in BODY:
            groups.setdefault((row.kind, row.settings_hash), []).append(row)
    path = next((p for sha, p, _ in store.models() if sha == model_sha256), None)
    docs = []
    for (kind, digest), rows in groups.items():
        _, settings = store.settings(digest) or (kind, {})
        doc = new_result(kind, settings={**settings, "store": str(store.path), "settings_hash": digest},
                         command=f"nnaudit report --store {store.path} --model {model_sha256[:12]}")
        doc["model"] = {"sha256": model_sha256, "path": path, "file": None if path is None else Path(path).name}
        ok = [r.result for r in rows if r.status is JobStatus.OK and r.result is not None]
        if kind == "regions":
            ok.sort(key=lambda im: int(im["index"]))
            doc.update(_regions_body(settings))
        doc[BODY[kind]] = ok
        doc["store_errors"] = [{"key": r.key, "error": r.error} for r in rows if r.status is JobStatus.ERROR]
        docs.append(finish(doc))
    return docs


def _regions_body(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``regions`` body keys that the stored settings give."""
    method = settings.get("method", "exact")
    return {"manipulation": settings.get("manipulation"), "grid": settings.get("grid"), "patch": settings.get("patch"),
            "methods": ["exact", "dlv"] if method == "both" else [method],
            "region_channels": settings.get("region_channels", "all")}
