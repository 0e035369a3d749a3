"""``nnaudit check`` end to end with CliRunner: exit codes 0/1/2/3, the table,
failure messages with the counterexample, and the JSON / JUnit / HTML outputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.reports import schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"

ATTACK = """
[[check]]
name = "{name}"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 12
eps = {eps}
options = {{ pgd = {{ steps = 10 }} }}
min_robust_accuracy = {floor}
"""

VERIFY = """
[[check]]
name = "{name}"
kind = "verify"
model = "moons-ffn"
property = "{prop}"
timeout = {timeout}
expect = "holds"
"""


def run(folder: Path, text: str, *args: str) -> tuple[int, str]:
    (folder / "nnaudit.toml").write_text(text)
    for name in ("moons_sample0.vnnlib", "moons_sample3.vnnlib"):
        (folder / name).write_text((EXAMPLES / "properties" / name).read_text())
    result = CliRunner().invoke(cli, ["check", "--config", str(folder / "nnaudit.toml"), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_all_hold_exits_0_and_writes_json_and_junit(tmp_path: Path) -> None:
    text = ATTACK.format(name="small-eps", eps=0.01, floor=0.5)
    code, out = run(tmp_path, text, "--json", str(tmp_path / "out.json"), "--junit", str(tmp_path / "out.xml"))
    assert code == 0, out
    assert "small-eps" in out and "PASSED" in out and "1 passed" in out
    doc = schema.read_result(tmp_path / "out.json", kind="check")  # validates the nested attack document too
    (entry,) = doc["checks"]
    assert entry["status"] == "passed" and entry["requirement"] == "min_robust_accuracy >= 0.5"
    nested = entry["result"]
    assert nested["kind"] == "attack" and nested["num_samples"] == 12
    assert entry["measured"] == nested["results"][0]["robust_accuracy"]["worst"]
    case = ET.parse(tmp_path / "out.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.get("name") == "small-eps" and case.find("failure") is None


def test_failed_requirement_exits_1_with_the_counterexample(tmp_path: Path) -> None:
    text = ATTACK.format(name="ok", eps=0.01, floor=0.5) + ATTACK.format(name="too-strict", eps=0.3, floor=0.99)
    code, out = run(tmp_path, text, "--junit", str(tmp_path / "out.xml"))
    assert code == 1, out
    assert "1 passed, 1 failed" in out
    line = next(l for l in out.splitlines() if l.startswith("FAILED too-strict"))
    assert "requirement min_robust_accuracy >= 0.99 not met" in line and "at eps=0.3" in line
    assert "Worst counterexample: sample" in line and "-> " in line and "linf=" in line
    suite = ET.parse(tmp_path / "out.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = [c for c in suite.findall("testcase") if c.get("name") == "too-strict"][0].find("failure")
    assert failure is not None and "not met" in (failure.text or "")


def test_inconclusive_exits_3_or_1_with_unknown_is_failure(tmp_path: Path) -> None:
    text = VERIFY.format(name="rushed", prop="moons_sample0.vnnlib", timeout=0.001)
    code, out = run(tmp_path, text)
    assert code == 3, out
    assert "INCONCLUSIVE" in out and "undecided" in out
    code, out = run(tmp_path, text, "--unknown-is-failure")
    assert code == 1, out
    assert "counted as a failure" in out


def test_verify_check_holds(tmp_path: Path) -> None:
    code, out = run(tmp_path, VERIFY.format(name="proved", prop="moons_sample3.vnnlib", timeout=60))
    assert code == 0, out
    assert "expect = holds" in out and "holds" in out


@pytest.mark.parametrize(("text", "expected"), [
    (ATTACK.format(name="x", eps=0.01, floor=0.5).replace("limit = 12", "limt = 12"), "key 'limt': unknown key"),
    (ATTACK.format(name="x", eps=0.01, floor=0.5).replace("digits-ffn", "nets/none.onnx"), "none.onnx not found"),
    (ATTACK.format(name="x", eps=0.01, floor=0.5).replace("steps = 10", "stepz = 10"), "stepz"),
    (VERIFY.format(name="x", prop="moons_sample0.vnnlib", timeout=1).replace("moons-ffn", "digits-ffn"),
     "the property has 2 inputs, the network 64"),
])
def test_bad_input_exits_2_before_any_check_runs(tmp_path: Path, text: str, expected: str) -> None:
    good = ATTACK.format(name="first", eps=0.01, floor=0.5)
    code, out = run(tmp_path, good + text, "--json", str(tmp_path / "out.json"))
    assert code == 2, out
    assert expected in out
    assert "PASSED" not in out and not (tmp_path / "out.json").exists()  # nothing ran


def test_missing_config_and_unknown_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2 and "no nnaudit.toml" in result.output
    code, out = run(tmp_path, ATTACK.format(name="a", eps=0.01, floor=0.5), "--only", "b")
    assert code == 2 and "--only: no check named 'b'" in out


def test_html_report_of_the_checks(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    code, out = run(tmp_path, ATTACK.format(name="reported", eps=0.01, floor=0.5),
                    "--report", str(tmp_path / "report.html"))
    assert code == 0, out
    html = (tmp_path / "report.html").read_text()
    assert "reported" in html and "min_robust_accuracy" in html
    assert f"wrote {tmp_path / 'report.html'}" in out


def test_interrupted_run_leaves_the_finished_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnaudit.checks import runner

    real = runner.execute
    calls = []

    def interrupt_second(check, go, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(check.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(check, go, **kwargs)

    monkeypatch.setattr(runner, "execute", interrupt_second)
    text = ATTACK.format(name="first", eps=0.01, floor=0.5) + ATTACK.format(name="second", eps=0.01, floor=0.5)
    code, _ = run(tmp_path, text, "--json", str(tmp_path / "out.json"))
    assert code != 0
    doc = schema.read_result(tmp_path / "out.json", kind="check")
    assert doc["complete"] is False and [c["name"] for c in doc["checks"]] == ["first"]
