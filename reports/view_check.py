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
        "rows": rows, "counts": [(s, counts.get(s, 0)) for s in CHECK_STATUSES],
        "baseline": baseline_rows(checks), "baseline_source": _baseline_source(checks), "trend": trend_plot(checks)})
    section.counts.update(counts)
    for row in rows:
        section.lines.append(Line(row["status"], f"check {row['name']} ({row['kind']}): {row['status'].upper()} — "
                                                 f"requirement {row['requirement']}, measured {row['measured']}",
                                  f"#{row['anchor']}"))
    for c, row in zip(checks, rows):
        comp = c.get("baseline") if isinstance(c.get("baseline"), dict) else {}
        if comp.get("regressions"):
            section.lines.append(Line("failed", f"check {row['name']} regressed against the baseline: "
                                                + "; ".join(comp["regressions"]), f"#{row['anchor']}"))
        elif comp.get("improvements"):
            section.lines.append(Line("improved", f"check {row['name']} improved against the baseline: "
                                                  + "; ".join(comp["improvements"]), f"#{row['anchor']}"))
    return section


#: (label, key in a ``metrics`` record) of the values the comparison table shows
_MEASURES = (("examined", "examined"), ("classified correctly", "classified"), ("clean accuracy", "clean_accuracy"))


def baseline_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per measure of each check compared with a baseline (old -> new, the change),
    then a row with the verdict and what regressed or improved."""
    rows: list[dict[str, Any]] = []
    for c in checks:
        comp = c.get("baseline")
        if not isinstance(comp, dict):
            continue
        first = len(rows)
        for label, a, b in _measures(comp.get("old") or {}, comp.get("new") or {}):
            change = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            rows.append({"name": "", "measure": label, "old": fmt(a), "new": fmt(b),
                         "change": "–" if change is None else f"{change:+.3g}", "detail": "",
                         "trend": "same" if not change else "worse" if change < 0 else "better"})
        verdict = ("regressed" if comp.get("regressions") else "undecided" if comp.get("undecided")
                   else "improved" if comp.get("improvements") else "same")
        detail = "; ".join([*(comp.get("regressions") or []), *(comp.get("undecided") or []),
                            *(comp.get("improvements") or [])])
        rows.append({"name": "", "measure": "verdict", "old": "", "new": "", "change": verdict,
                     "detail": detail or comp.get("note") or "",
                     "trend": {"regressed": "worse", "improved": "better"}.get(verdict, "same")})
        rows[first]["name"] = c["name"]
    return rows


def _measures(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(label, baseline value, value now) of every measure either run recorded."""
    out = [(label, old.get(key), new.get(key)) for label, key in _MEASURES]
    robust_old, robust_new = old.get("robust") or {}, new.get("robust") or {}
    for key in sorted(set(robust_old) | set(robust_new)):
        label = {"safe": "fraction of regions safe", "holds": "fraction of properties holding"}.get(
            key, f"robust accuracy at {key}")
        out.append((label, robust_old.get(key), robust_new.get(key)))
    return [m for m in out if m[1] is not None or m[2] is not None]


def trend_plot(checks: list[dict[str, Any]]) -> str | None:
    """The robustness measures of each check over the model versions a results store recorded
    (then this run), as an SVG data URI; None without such a history."""
    series = {}
    for c in checks:
        history = (c.get("baseline") or {}).get("history") if isinstance(c.get("baseline"), dict) else None
        if not history or len(history) < 2:
            continue
        labels = [str(h.get("model") or "?")[:7] for h in history]
        for key in sorted({k for h in history for k in (h.get("robust") or {})}):
            series[f"{c['name']} {key}"] = (labels, [(h.get("robust") or {}).get(key) for h in history])
    if not series:
        return None
    from nnaudit.reports.figures import new_figure, to_uri

    fig, axes = new_figure((5.6, 3.0))
    ax = axes[0, 0]
    for name, (labels, values) in series.items():
        pts = [(i, v) for i, v in enumerate(values) if v is not None]
        ax.plot([i for i, _ in pts], [v for _, v in pts], marker="o", markersize=3.5, linewidth=1.4, label=name)
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
    ax.set_xlabel("model version (sha256; last: this run)")
    ax.set_ylabel("robust accuracy / fraction safe")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    return to_uri(fig)


def _baseline_source(checks: list[dict[str, Any]]) -> str:
    return next((c["baseline"].get("source") or "" for c in checks if isinstance(c.get("baseline"), dict)), "")


def nested(source: Source) -> list[tuple[str, dict[str, Any]]]:
    """(display name, document) of each check's nested full result document."""
    out = []
    for check in source.doc.get("checks") or []:
        result = check.get("result")
        if isinstance(result, dict) and result.get("kind") and "schema" in result:
            out.append((f"{source.name} → check {check['name']}", result))
    return out
