"""The ``adapt`` (DANN) result as a report section: training curves, the
source-only vs DANN table, the gap table (source-only / DANN /
train-on-target / fraction of the gap closed), feature PCA before/after and,
for 2-D inputs, the decision boundaries with the target points marked right
or wrong per model."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnaudit.reports import figures
from nnaudit.reports.context import Gallery, Line, Section, Source, fmt, pct

METRICS = (("source_accuracy", "source accuracy", pct), ("target_accuracy", "target accuracy", pct),
           ("a_distance", "proxy A-distance of the features (2 = domains separable, 0 = indistinguishable)", fmt),
           ("a_distance_logits", "proxy A-distance of the class scores (what the label layer outputs)", fmt))
RIGHT, WRONG = "#2ca02c", "#000000"


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
        "gap": gap_row(doc.get("gap")),
        "pca": figures.feature_pca(pca.get("before"), pca.get("after")) if pca.get("before") or pca.get("after") else None,
        "boundary": decision_boundary(boundary) if boundary and boundary.get("dann") else None,
        "export": doc.get("export"), "time": fmt(doc.get("time_s"), 2),
    })
    section.lines.append(_line(source, final))
    return section


def _table(final: dict[str, Any]) -> list[dict[str, str]]:
    models = [m for m in ("source_only", "dann") if final.get(m)]
    return [{"metric": label, **{m: show(final[m].get(key)) for m in models}}
            for key, label, show in METRICS if any(final[m].get(key) is not None for m in models)]


def gap_row(gap: dict[str, Any] | None) -> dict[str, str] | None:
    """The gap table's row: target accuracy of source-only, DANN and
    train-on-target, and the fraction of the gap closed; None without a gap record."""
    if not gap or gap.get("dann") is None:
        return None
    closed = gap.get("closed")
    if closed is None:
        closed_text = "–" if gap.get("train_on_target") is None else "no gap"
    else:
        closed_text = f"{100 * closed:.0f}%"
    return {"source_only": pct(gap.get("source_only")), "dann": pct(gap.get("dann")),
            "train_on_target": pct(gap.get("train_on_target")), "closed": closed_text,
            "scored": "the unlabelled training target (transductive)" if gap.get("transductive") else "held-out target samples"}


def decision_boundary(boundary: dict[str, Any]) -> str:
    """Predicted class over the 2-D input grid for source-only and DANN; source
    points coloured by class, target points as green triangles where that model is
    right and black crosses where it is wrong (grey without target labels)."""
    models = [(name, boundary.get(name)) for name in ("source_only", "dann") if boundary.get(name)]
    fig, axes = figures.new_figure((4.3 * len(models), 3.6), ncols=len(models))
    gx, gy = np.asarray(boundary["grid_x"]), np.asarray(boundary["grid_y"])
    src = np.asarray(boundary.get("source", {}).get("x") or np.zeros((0, 2))).reshape(-1, 2)
    src_y = np.asarray(boundary.get("source", {}).get("y") or np.zeros(len(src)))
    target = boundary.get("target") or {}
    tgt = np.asarray(target.get("x") or np.zeros((0, 2))).reshape(-1, 2)
    for ax, (name, classes) in zip(axes[0], models):
        ax.pcolormesh(gx, gy, np.asarray(classes), cmap="coolwarm", alpha=0.35, shading="nearest")
        ax.scatter(src[:, 0], src[:, 1], s=6, c=src_y, cmap="coolwarm", label="source", linewidths=0)
        marks = target_marks(boundary, name)
        title = "source-only" if name == "source_only" else "DANN"
        if marks is not None:
            right, wrong = marks
            ax.scatter(right[:, 0], right[:, 1], s=9, marker="^", color=RIGHT, label=f"target right ({len(right)})", linewidths=0)
            ax.scatter(wrong[:, 0], wrong[:, 1], s=14, marker="x", color=WRONG, label=f"target wrong ({len(wrong)})")
            title += f": {100 * len(right) / max(1, len(tgt)):.1f}% of these target points right"
        else:
            ax.scatter(tgt[:, 0], tgt[:, 1], s=5, color="#555555", alpha=0.5, label="target", linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, frameon=False, markerscale=1.5)
    return figures.to_uri(fig, "png")


def target_marks(boundary: dict[str, Any], model: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Target points (K, 2) that ``model`` classifies right and those it gets
    wrong, from the boundary record's ``target.correct``; None without labels."""
    target = boundary.get("target") or {}
    ok = (target.get("correct") or {}).get(model)
    tgt = np.asarray(target.get("x") or np.zeros((0, 2)), dtype=float).reshape(-1, 2)
    if ok is None or len(ok) != len(tgt):
        return None
    ok = np.asarray(ok, dtype=bool)
    return tgt[ok], tgt[~ok]


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
    row = gap_row(source.doc.get("gap"))
    if row and row["train_on_target"] != "–":
        text += f", {row['train_on_target']} trained on the target ({row['closed']} of the gap closed)"
    text += f"; source accuracy {pct(dann.get('source_accuracy'))}"
    verdict = "trained" if tgt is None or base_tgt is None else ("improved" if tgt > base_tgt else "no gain")
    return Line(verdict, text, f"#sec-{source.ident}")
