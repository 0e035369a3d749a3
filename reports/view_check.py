"""The ``check`` result (``nnaudit check`` / the pytest plugin) as a report
section: one row per declared check; nested full result documents are
rendered as sections of their own (see :func:`nested`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from nnaudit.reports.context import Gallery, Line, Section, Source, fmt
from nnaudit.reports.validate import CHECK_STATUSES


def build(source: Source, gallery: Gallery) -> Section:
    checks = source.doc.get("checks") or []
    counts = Counter(c["status"] for c in checks)
    rows = [{"anchor": f"{source.ident}-check{i}", "name": c["name"], "kind": c.get("kind") or "–",
             "requirement": c.get("requirement") or "–", "measured": fmt(c.get("measured")),
             "status": c["status"], "message": c.get("message") or ""} for i, c in enumerate(checks)]
    section = Section(source, "Declared robustness checks", {
        "rows": rows, "counts": [(s, counts.get(s, 0)) for s in CHECK_STATUSES]})
    section.counts.update(counts)
    for row in rows:
        section.lines.append(Line(row["status"], f"check {row['name']} ({row['kind']}): {row['status'].upper()} — "
                                                 f"requirement {row['requirement']}, measured {row['measured']}",
                                  f"#{row['anchor']}"))
    return section


def nested(source: Source) -> list[tuple[str, dict[str, Any]]]:
    """(display name, document) of each check's nested full result document."""
    out = []
    for check in source.doc.get("checks") or []:
        result = check.get("result")
        if isinstance(result, dict) and result.get("kind") and "schema" in result:
            out.append((f"{source.name} → check {check['name']}", result))
    return out
