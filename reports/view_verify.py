"""The ``verify`` result as a report section: the VNN-LIB instance table
with verdicts, times, phases and counts; counterexamples go to the gallery."""

from __future__ import annotations

from collections import Counter
from typing import Any

from nnaudit.reports.context import Gallery, Line, Section, Source, fmt
from nnaudit.reports.gallery import Card, vector_text
from nnaudit.reports.validate import VERIFY_VERDICTS

ANSWER = {
    "holds": "HOLDS (proved)",
    "violated": "VIOLATED (counterexample confirmed by onnxruntime)",
    "unknown": "UNKNOWN",
    "timeout": "TIMEOUT",
    "error": "ERROR",
}


def build(source: Source, gallery: Gallery) -> Section:
    instances = source.doc.get("instances") or []
    rows = [_row(source, i, inst, gallery) for i, inst in enumerate(instances)]
    counts = Counter(inst["verdict"] for inst in instances)
    total_time = sum(inst.get("time_s") or 0.0 for inst in instances)
    section = Section(source, f"Verification of {source.model}", {
        "rows": rows, "counts": [(v, counts.get(v, 0)) for v in VERIFY_VERDICTS],
        "total_time": fmt(total_time, 2),
    })
    section.counts.update(counts)
    most = gallery.limits.verify_lines
    for i, inst in enumerate(instances[:most]):
        text = f"{inst['model']} — {inst['property']}: {ANSWER[inst['verdict']]} in {fmt(inst.get('time_s'), 2)} s"
        if inst.get("message") and inst["verdict"] not in ("holds", "violated"):
            text += f" ({inst['message']})"
        section.lines.append(Line(inst["verdict"], text, f"#{source.ident}-inst{i}"))
    if len(instances) > most:
        section.lines.append(Line("unknown", f"… and {len(instances) - most} more instances "
                                             "in the VNN-LIB instance table", f"#sec-{source.ident}"))
    return section


def _row(source: Source, i: int, inst: dict[str, Any], gallery: Gallery) -> dict[str, Any]:
    anchor = None
    cx = inst.get("counterexample")
    if cx:
        shape = cx.get("input_shape") or [len(cx["x"])]
        y = cx["y"]
        top = max(range(len(y)), key=y.__getitem__) if y else None
        card = Card(anchor=f"cx-{source.ident}-v{i}", title=f"{inst['model']} · {inst['property']}",
                    finder="verify (complete verifier; re-checked by onnxruntime)",
                    before="–", after=f"arg max {top}" if top is not None else "–",
                    outputs=vector_text(y, "y (onnxruntime)"),
                    back=f"{source.ident}-inst{i}", back_text="instance table")
        anchor = gallery.add(card, None, cx["x"], shape)
    phases = inst.get("phases") or {}
    return {
        "anchor": f"{source.ident}-inst{i}", "model": inst["model"], "property": inst["property"],
        "verdict": inst["verdict"], "time": fmt(inst.get("time_s"), 3),
        "phases": ", ".join(f"{k} {fmt(v, 3)}" for k, v in phases.items()) or "–",
        "subdomains": fmt(inst.get("subdomains")) + (f" ({inst['phase_closed']} closed by phases)"
                                                      if inst.get("phase_closed") else ""),
        "z3": f"{fmt(inst.get('z3_calls'))} / {fmt(inst.get('z3_time_s'), 3)} s",
        "message": inst.get("message") or "", "counterexample": anchor,
    }
