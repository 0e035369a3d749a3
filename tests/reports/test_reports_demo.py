"""``nnaudit demo --quick``: the real producers (regions, attacks, verifier, DANN)
write their JSON results and one report is rendered from them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.reports import schema


def test_quick_demo_writes_every_result_and_the_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    assert f"report: {report.resolve()}" in result.output
    kinds = {}
    for path in sorted(out.glob("*.json")):
        doc = schema.read_result(path)  # validated against SCHEMA.md
        kinds[doc["kind"]] = doc
        assert doc["complete"] and doc["command"].startswith("nnaudit demo")
    assert set(kinds) == {"regions", "attack", "verify", "adapt"}, sorted(kinds)
    html = report.read_text()
    regions = kinds["regions"]
    verdicts = [r["verdict"] for im in regions["images"] for r in im["regions"]]
    assert len(verdicts) == 4  # one digit, 2x2 grid
    assert f"{len(verdicts)} regions on 1 image — {verdicts.count('safe')} safe, {verdicts.count('unsafe')} unsafe" in html
    attack = kinds["attack"]
    worst = attack["results"][0]["robust_accuracy"]["worst"]
    assert f"eps 0.1: <b>{100 * worst:.1f}%</b>" in html
    for inst in kinds["verify"]["instances"]:
        assert f"{inst['model']} — {inst['property']}: {inst['verdict'].upper()}" in html
    assert kinds["adapt"]["final"]["dann"] and "DANN on moons: target accuracy" in html
    for heading in ("Summary", "Safety maps", "Robust accuracy", "VNN-LIB instances", "Domain adaptation (DANN)",
                    "Reproducibility"):
        assert f">{heading}</h2>" in html
    assert (out / "moons-dann.onnx").is_file()
    json.loads((out / "attack.json").read_text())


def test_failed_parts_are_reported_and_the_others_still_make_the_report(tmp_path, monkeypatch, schema_docs):
    """A failing part makes the exit code 1 but the report of the other parts is still written."""
    import copy

    from nnaudit.commands import demo

    def missing(*_):
        raise ImportError("No module named 'nnaudit.no_such_module'")

    def broken(*_):
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(demo, "_regions", missing)
    monkeypatch.setattr(demo, "_attack", broken)
    monkeypatch.setattr(demo, "_verify", lambda *_: copy.deepcopy(schema_docs["verify"]))
    monkeypatch.setattr(demo, "_adapt", lambda *_: copy.deepcopy(schema_docs["adapt"]))
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "FAILED: ImportError: No module named 'nnaudit.no_such_module'" in result.output
    assert "FAILED: RuntimeError: engine crashed" in result.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["adapt.json", "verify.json"]
    html = (tmp_path / "report.html").read_text()
    assert ">VNN-LIB instances</h2>" in html and ">Safety maps</h2>" not in html
