"""The ``attack`` result as a report section: robust accuracy per eps and
attack (table and curve, worst case bold) and the gallery examples.

An AutoAttack cascade (``cascade`` in the document) shows, per attack, the
robust accuracy after it and every attack before it (``robust_after``, as
AutoAttack's log) and the samples it broke first (its ``broken`` set)."""

from __future__ import annotations

from typing import Any

from nnaudit.reports import figures
from nnaudit.reports.context import Gallery, Line, Section, Source, fmt, pct
from nnaudit.reports.explorer_views import attack_explorer
from nnaudit.reports.gallery import Card, class_text


def build(source: Source, gallery: Gallery) -> Section:
    doc = source.doc
    results = sorted(doc.get("results") or [], key=lambda r: r["eps"])
    attacks = list(doc.get("attacks") or [])
    for r in results:  # attacks present in results but not listed
        attacks += [a for a in r["robust_accuracy"] if a != figures.WORST and a not in attacks]
    cascade = bool(doc.get("cascade"))
    rows = [_row(r, attacks, cascade) for r in results]
    key = "robust_after" if cascade else "robust_accuracy"
    curves = {a: [(r.get(key) or {}).get(a) for r in results] for a in attacks}
    curves[figures.WORST] = [r["robust_accuracy"].get(figures.WORST) for r in results]
    plot = figures.robust_accuracy_curves([r["eps"] for r in results], curves, doc.get("clean_accuracy"),
                                          doc.get("norm", "")) if results else None
    examples = [_card(source, i, ex, gallery) for i, ex in enumerate(doc.get("examples") or [])]
    section = Section(source, f"Attacks on {source.model}", {
        "norm": doc.get("norm"), "num_samples": doc.get("num_samples"), "clean": pct(doc.get("clean_accuracy")),
        "attacks": [f"{a} (cascade: robust after it)" for a in attacks] if cascade else attacks,
        "rows": rows, "plot": plot, "examples": examples,
        "explorer": attack_explorer(source, examples, gallery.limits.explorer_rows),
        "eps_missing": [fmt(e) for e in doc.get("eps") or [] if e not in {r["eps"] for r in results}],
    })
    section.lines.append(_line(source, results))
    broken = sum(1 for r in results if (r["robust_accuracy"].get(figures.WORST) or 0) < (doc.get("clean_accuracy") or 0))
    section.counts.update({"attack eps broken": broken, "attack eps robust": len(results) - broken})
    return section


def _row(result: dict[str, Any], attacks: list[str], cascade: bool = False) -> dict[str, Any]:
    ra, sr = result["robust_accuracy"], result.get("success_rate") or {}
    after = {**ra, **(result.get("robust_after") or {})} if cascade else ra
    med, times, mism = result.get("median_perturbation") or {}, result.get("time_s") or {}, result.get("mismatches") or {}

    def median(a: str) -> str:
        m = med.get(a)
        return "–" if not m else ", ".join(f"{k} {fmt(v)}" for k, v in m.items())

    return {
        "eps": fmt(result["eps"]), "worst": pct(ra.get(figures.WORST)), "worst_success": pct(sr.get(figures.WORST)),
        "cells": [{"attack": a, "robust": pct(after.get(a)), "success": pct(sr.get(a)), "median": median(a),
                   "time": fmt(times.get(a)), "mismatches": fmt(mism.get(a))} for a in attacks],
    }


def _card(source: Source, i: int, ex: dict[str, Any], gallery: Gallery) -> str:
    index = ex.get("index", i)
    card = Card(
        anchor=f"cx-{source.ident}-a{i}",
        title=f"{source.model} · sample {index}",
        finder=f"{ex['attack']} at eps {fmt(ex['eps'])}",
        label=str(ex["label"]),
        before=class_text(ex["pred_clean"], ex.get("conf_clean")),
        after=class_text(ex["pred_adv"], ex.get("conf_adv")),
        norms={k: v for k, v in (ex.get("norms") or {}).items() if v is not None},
        back=f"sec-{source.ident}", back_text="attack results",
    )
    return gallery.add(card, ex["x"], ex["x_adv"], ex["shape"])


def _line(source: Source, results: list[dict[str, Any]]) -> Line:
    doc = source.doc
    clean = doc.get("clean_accuracy")
    names = ", ".join(doc.get("attacks") or []) or "no attacks"
    if doc.get("cascade"):
        names = f"AutoAttack cascade {names}"
    if doc.get("targeted"):
        names += f", targeted at the top {doc['targeted']} classes"
    if not results:
        return Line("incomplete", f"{source.model}: {doc.get('norm')} attacks ({names}) — no eps finished yet",
                    f"#sec-{source.ident}")
    parts = [f"{pct(r['robust_accuracy'].get(figures.WORST))} at eps {fmt(r['eps'])}" for r in results]
    worst_last = results[-1]["robust_accuracy"].get(figures.WORST)
    verdict = "broken" if clean is not None and worst_last is not None and worst_last < clean else "robust"
    return Line(verdict, f"{source.model}: clean accuracy {pct(clean)} on {doc.get('num_samples')} samples; "
                         f"worst-case robust accuracy ({doc.get('norm')}, {names}) {'; '.join(parts)}",
                f"#sec-{source.ident}")
