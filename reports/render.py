"""Render result documents into one self-contained HTML report.

Pipeline: :func:`load_results` reads and validates the JSON files
(:func:`nnaudit.reports.schema.read_result`), :func:`build_report` turns
them into plain values (one :class:`~nnaudit.reports.context.Section` per
result, the gallery, the summary and the reproducibility records) and
:func:`render_html` fills the Jinja2 templates in ``templates/`` with
autoescaping on, so a model name or label such as ``<script>`` is shown as
text.  CSS is inlined (with the filter and sort rules of :mod:`.explorer`),
pictures are ``data:`` URIs and nothing needs JavaScript or the network.  ``nnaudit report`` calls :func:`write_report`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnaudit.errors import DataError
from nnaudit.reports import schema
from nnaudit.reports.context import BADGE, UNNAMED, Gallery, Line, Section, Source
from nnaudit.reports.limits import ReportLimits

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
KIND_ORDER = ("check", "verify", "regions", "attack", "adapt")
#: verdict word -> summary column
CATEGORY = {"holds": "proved", "safe": "proved", "passed": "proved",
            "violated": "broken", "unsafe": "broken", "failed": "broken",
            "unknown": "open", "timeout": "open", "inconclusive": "open", "error": "error"}


@dataclass
class Report:
    """Everything the templates show."""

    title: str
    generated: str
    sources: list[Source]
    sections: list[Section]
    gallery: Gallery
    lines: list[Line] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    robust: list[dict[str, Any]] = field(default_factory=list)
    repro: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Section]:
        return [s for s in self.sections if s.source.kind == kind]


def load_results(paths: Sequence[str | os.PathLike[str]]) -> list[Source]:
    """Read and validate every file first (bad input fails before any work),
    then add the full result documents nested in ``check`` results."""
    from nnaudit.reports import view_check
    from nnaudit.reports.validate import validate

    if not paths:
        raise DataError("no result files given")
    sources: list[Source] = []
    for path in paths:
        doc = schema.read_result(path)
        sources.append(Source(f"r{len(sources) + 1}", Path(path).name, doc))
        if doc["kind"] == "check":
            for name, nested in view_check.nested(sources[-1]):
                validate(nested, name)
                sources.append(Source(f"r{len(sources) + 1}", name, nested))
    return sources


def build_report(sources: Sequence[Source], *, title: str | None = None,
                 limits: ReportLimits = ReportLimits()) -> Report:
    """Sections in kind order (checks, verify, regions, attack, adapt), then
    the summary and reproducibility records; ``limits`` bound large runs."""
    from nnaudit.reports import view_adapt, view_attack, view_check, view_regions, view_verify

    builders = {"check": view_check, "verify": view_verify, "regions": view_regions,
                "attack": view_attack, "adapt": view_adapt}
    gallery = Gallery(limits)
    ordered = sorted(sources, key=lambda s: KIND_ORDER.index(s.kind))
    sections = [builders[s.kind].build(s, gallery) for s in ordered]
    models = sorted({s.model for s in sources if s.model != UNNAMED})
    report = Report(title=title or ("nnaudit robustness report" + (f": {', '.join(models)}" if models else "")),
                    generated=schema.now(), sources=list(sources), sections=sections, gallery=gallery)
    for section in sections:
        report.lines += section.lines
    if len(report.lines) > limits.summary_lines:
        extra = len(report.lines) - limits.summary_lines
        report.lines = report.lines[:limits.summary_lines] + [Line("unknown", f"… and {extra} more in the sections below")]
    report.counts = _counts(sections)
    report.robust = [_robust(s) for s in report.of_kind("attack") if s.data["rows"]]
    report.repro = [_repro(s) for s in sources]
    report.models = _models(sources)
    return report


def _models(sources: Sequence[Source]) -> list[dict[str, Any]]:
    """The models the results checked, each with its sha256 and the results about it (summary)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for source in sources:
        model = source.doc.get("model") or {}
        if not model.get("file") and not model.get("sha256"):
            continue
        key = (model.get("file") or UNNAMED, model.get("sha256") or "–")
        entry = found.setdefault(key, {"file": key[0], "sha256": key[1], "results": []})
        entry["results"].append({"name": source.name, "anchor": f"repro-{source.ident}"})
    return list(found.values())


def _counts(sections: Sequence[Section]) -> list[dict[str, Any]]:
    """Per result: how many items were proved, broken, left open or errored."""
    rows = []
    for section in sections:
        cats: Counter[str] = Counter()
        for verdict, n in section.counts.items():
            if verdict in CATEGORY:
                cats[CATEGORY[verdict]] += n
        if not cats:
            continue
        detail = ", ".join(f"{n} {v}" for v, n in section.counts.items() if v in CATEGORY and n)
        rows.append({"anchor": f"sec-{section.source.ident}", "title": section.title, "kind": section.source.kind,
                     "file": section.source.name, "detail": detail or "nothing recorded",
                     **{c: cats.get(c, 0) for c in ("proved", "broken", "open", "error")},
                     "total": sum(cats.values())})
    return rows


def _robust(section: Section) -> dict[str, Any]:
    return {"anchor": f"sec-{section.source.ident}", "model": section.source.model, "norm": section.data["norm"],
            "clean": section.data["clean"], "rows": [(r["eps"], r["worst"]) for r in section.data["rows"]]}


def _repro(source: Source) -> dict[str, Any]:
    doc = source.doc
    env = doc.get("environment") or {}
    versions = {k: v for k, v in (env.get("versions") or {}).items() if v}
    return {
        "anchor": f"repro-{source.ident}", "section": f"sec-{source.ident}", "name": source.name,
        "kind": source.kind, "command": doc.get("command") or "–", "model": _model(doc.get("model")),
        "settings": "\n".join(f"{k} = {v}" for k, v in flatten(doc.get("settings") or {})) or "(none recorded)",
        "seeds": ", ".join(f"{k} = {v}" for k, v in (doc.get("seeds") or {}).items()) or "–",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) or "–",
        "python": env.get("python") or "–", "machine": _machine(env.get("machine")), "device": env.get("device") or "–",
        "started": doc.get("started") or "–", "finished": doc.get("finished") or "not finished",
        "complete": doc.get("complete", True),
    }


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as ``("a.b.c", compact JSON value)`` pairs in key order (lists stay inline)."""
    if isinstance(value, dict) and value:
        out: list[tuple[str, str]] = []
        for key in sorted(value, key=str):
            out += flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix or "(value)", json.dumps(value, default=str, separators=(", ", ": ")))]


def _model(model: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("file", "sha256", "input_shape", "output_shape", "num_params", "layers")
    return None if model is None else {k: model.get(k) for k in keys}


def _machine(machine: Any) -> str:
    if isinstance(machine, dict):
        return ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None)
    return str(machine) if machine else "–"


def render_html(report: Report) -> str:
    """The report as one HTML string (Jinja2, autoescape on, CSS inlined)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    from nnaudit.reports.explorer import explorer_css

    css = (TEMPLATES / "style.css").read_text() + "\n" + explorer_css(
        [s.data["explorer"] for s in report.sections if s.data.get("explorer")])
    return env.get_template("report.html.j2").render(report=report, css=css, badge=BADGE)


def write_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 title: str | None = None) -> Path:
    """Read ``paths``, render, and write the HTML atomically to ``out``."""
    html = render_html(build_report(load_results(paths), title=title))
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    log.info("wrote %s (%d bytes)", target, len(html.encode("utf-8")))
    return target
