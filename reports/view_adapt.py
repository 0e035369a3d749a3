"""The ``adapt`` (DANN) result as a report section: training curves, the
source-only vs DANN table, feature PCA before/after and, for 2-D inputs,
the decision boundaries."""

from __future__ import annotations

from typing import Any

from nnaudit.reports import figures
from nnaudit.reports.context import Gallery, Line, Section, Source, fmt, pct

METRICS = (("source_accuracy", "source accuracy", pct), ("target_accuracy", "target accuracy", pct),
           ("a_distance", "proxy A-distance (lower = domains closer)", fmt))


def build(source: Source, gallery: Gallery) -> Section:
    doc = source.doc
    epochs = doc.get("epochs") or []
    final = doc.get("final") or {}
    pca = ((doc.get("features") or {}).get("pca")) or {}
    boundary = doc.get("decision_boundary")
    section = Section(source, f"Domain adaptation (DANN) on {doc.get('task')}", {
        "task": doc.get("task"), "device": doc.get("device") or "–", "num_epochs": len(epochs),
        "curves": figures.training_curves(epochs) if epochs else None,
        "table": _table(final),
        "pca": figures.feature_pca(pca.get("before"), pca.get("after")) if pca.get("before") or pca.get("after") else None,
        "boundary": figures.decision_boundary(boundary) if boundary and boundary.get("dann") else None,
        "export": doc.get("export"), "time": fmt(doc.get("time_s"), 2),
    })
    section.lines.append(_line(source, final))
    return section


def _table(final: dict[str, Any]) -> list[dict[str, str]]:
    models = [m for m in ("source_only", "dann") if final.get(m)]
    return [{"metric": label, **{m: show(final[m].get(key)) for m in models}}
            for key, label, show in METRICS if any(final[m].get(key) is not None for m in models)]


def _line(source: Source, final: dict[str, Any]) -> Line:
    task = source.doc.get("task")
    dann, base = final.get("dann"), final.get("source_only")
    if not dann:
        return Line("incomplete", f"DANN on {task}: run in progress ({len(source.doc.get('epochs') or [])} epochs recorded)",
                    f"#sec-{source.ident}")
    tgt, base_tgt = dann.get("target_accuracy"), (base or {}).get("target_accuracy")
    text = f"DANN on {task}: target accuracy {pct(tgt)}"
    if base:
        text += f" vs {pct(base_tgt)} source-only"
    text += f"; source accuracy {pct(dann.get('source_accuracy'))}"
    verdict = "trained" if tgt is None or base_tgt is None else ("improved" if tgt > base_tgt else "no gain")
    return Line(verdict, text, f"#sec-{source.ident}")
