"""Outputs of a checks run: the terminal table, the ``check`` result document,
JUnit XML for CI dashboards, and the HTML report.

The ``check`` document (reports/SCHEMA.md) nests every check's full result
document, so the HTML report (:mod:`nnaudit.reports.render`) shows the
checks table and a full section per check.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnaudit.checks.outcome import CheckOutcome, Status
from nnaudit.errors import ConfigError


def _measured(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(outcomes: Sequence[CheckOutcome]) -> str:
    """One row per check (name, kind, status, requirement, measured, time) and a tally line."""
    rows = [("check", "kind", "status", "requirement", "measured", "time s")]
    rows += [(o.name, o.kind, o.status.value.upper(), o.judgement.requirement or "-", _measured(o.judgement.measured),
              f"{o.time_s:.1f}") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = Counter(o.status.value for o in outcomes)
    lines.append(", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value]) or "no checks")
    return "\n".join(lines)


def failure_details(outcomes: Sequence[CheckOutcome]) -> str:
    """The messages of every check that did not pass, one paragraph each."""
    return "\n".join(f"{o.status.value.upper()} {o.name}: {o.judgement.message}"
                     for o in outcomes if o.status is not Status.PASSED)


def baseline_summary(outcomes: Sequence[CheckOutcome]) -> str:
    """One line per check compared with a baseline: regressions, improvements, or no change."""
    lines = []
    for o in outcomes:
        comp = o.comparison
        if comp is None:
            continue
        if comp.get("note"):
            what = comp["note"]
        elif comp["regressions"]:
            what = "REGRESSED: " + "; ".join(comp["regressions"])
        elif comp.get("undecided"):
            what = "UNDECIDED: " + "; ".join(comp["undecided"])
        elif comp["improvements"]:
            what = "improved: " + "; ".join(comp["improvements"])
        else:
            what = "no change"
        lines.append(f"  {o.name}: {what}")
    if not lines:
        return ""
    source = next(o.comparison["source"] for o in outcomes if o.comparison is not None)
    return f"against the baseline {source}:\n" + "\n".join(lines)


def junit_properties(o: CheckOutcome) -> dict[str, str]:
    """The measured values of a check as JUnit ``<properties>`` (name -> text)."""
    from nnaudit.checks.metrics import measure

    props = {"requirement": o.judgement.requirement or "", "measured": _measured(o.judgement.measured)}
    metrics = measure(o.kind, o.result)
    if metrics is not None:
        props.update({k: _measured(v) for k, v in metrics.flat().items()})
    comp = o.comparison or {}
    for key, value in ((comp.get("old") or {}).get("robust") or {}).items():
        props[f"baseline robust[{key}]"] = _measured(value)
    if comp.get("old") and comp["old"].get("clean_accuracy") is not None:
        props["baseline clean_accuracy"] = _measured(comp["old"]["clean_accuracy"])
    if comp:
        props["baseline regressions"] = str(len(comp.get("regressions") or []))
    return props


def check_document(outcomes: Sequence[CheckOutcome], *, settings: dict[str, Any] | None = None,
                   device: str | None = None, command: str | None = None) -> dict[str, Any]:
    """The ``check`` result document with every outcome and its nested result."""
    from nnaudit.reports import schema

    doc = schema.new_result("check", settings=settings or {}, device=device, command=command)
    doc["checks"] = [o.to_dict() for o in outcomes]
    return schema.finish(doc)


def write_junit(outcomes: Sequence[CheckOutcome], path: str | os.PathLike[str], *,
                suite: str = "nnaudit") -> Path:
    """JUnit XML: one testcase per check; failed -> <failure>, error -> <error>,
    inconclusive -> <skipped> (the exit code still reports it)."""
    counts = Counter(o.status for o in outcomes)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(outcomes)),
                       failures=str(counts[Status.FAILED]), errors=str(counts[Status.ERROR]),
                       skipped=str(counts[Status.INCONCLUSIVE]),
                       time=f"{sum(o.time_s for o in outcomes):.3f}")
    for o in outcomes:
        case = ET.SubElement(ts, "testcase", classname=f"nnaudit.{o.kind}", name=o.name, time=f"{o.time_s:.3f}")
        props = ET.SubElement(case, "properties")
        for name, value in junit_properties(o).items():
            ET.SubElement(props, "property", name=name, value=value)
        tag = {Status.FAILED: "failure", Status.ERROR: "error", Status.INCONCLUSIVE: "skipped"}.get(o.status)
        if tag is not None:
            first = o.judgement.message.split(". ")[0]
            ET.SubElement(case, tag, message=first[:300], type=o.status.value).text = o.judgement.message
        ET.SubElement(case, "system-out").text = o.judgement.message
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)
    return target


def require_html_renderer() -> None:
    """Raise ConfigError now (before any work) if the HTML report cannot be written."""
    try:
        from nnaudit.reports.render import write_report  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--report: the HTML report renderer is not available in this build ({exc})") from exc


def write_html(docs: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str | None = None,
               names: Sequence[str] | None = None) -> Path:
    """One HTML report from result documents (written to a temporary folder as
    ``names``, which the report shows as their sources, then rendered)."""
    from nnaudit.reports import schema
    from nnaudit.reports.render import write_report

    with tempfile.TemporaryDirectory(prefix="nnaudit-report-") as tmp:
        names = list(names or [f"nnaudit-{doc['kind']}-{i + 1}.json" for i, doc in enumerate(docs)])
        files = [schema.write_json(doc, Path(tmp) / name) for doc, name in zip(docs, names)]
        return write_report(files, path, title=title)
