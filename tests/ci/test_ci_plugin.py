"""The pytest plugin, run on generated files with ``pytester``: checks-file
items, the ``nnaudit`` fixture and its assertion messages, the options, the
report/JSON of a session (also merged from pytest-xdist workers), silence
when unused, and ``examples/ci`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nnaudit.reports import schema

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
PROPS = EXAMPLES / "properties"

CHECKS = """
[[check]]
name = "digits-pgd-ok"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 10
eps = 0.01
options = { pgd = { steps = 10 } }
min_robust_accuracy = 0.5

[[check]]
name = "digits-pgd-strict"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 10
eps = 0.3
min_robust_accuracy = 0.95

[[check]]
name = "moons-rushed"
kind = "verify"
model = "moons-ffn"
property = "p0.vnnlib"
timeout = 0.001
"""


@pytest.fixture(autouse=True, scope="module")
def _warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """In-process pytester runs drop the modules they imported when they end, and
    extension modules (numpy, torch, onnxruntime) must not be imported twice in
    one process: run each kind of call once here so everything is imported first."""
    from nnaudit.checks import adapters
    from nnaudit.checks.output import write_html
    from nnaudit.runs.attack import AttackRun, run_attack
    from nnaudit.runs.regions import RegionsRun, run_regions
    from nnaudit.runs.verify import VerifyRun, run_verify
    from nnaudit.testing import perturbations  # noqa: F401  (hypothesis.extra.numpy)

    digits = adapters.load_network("digits-ffn")
    x, y = adapters.load_samples(digits, "digits", 2)
    _, attack_doc = run_attack(digits, x, y, AttackRun(eps=(0.01,), attacks=("fgsm", "pgd"), options={"pgd": {"steps": 2}},
                                                       threads=1))
    run_verify(adapters.load_network("moons-ffn"), [PROPS / "moons_sample0.vnnlib"], VerifyRun(timeout=0.001))
    cnn = adapters.load_network("digits-cnn")
    x, y = adapters.load_samples(cnn, "digits", 1)
    run_regions(cnn, x, y, RegionsRun(grid=(1, 1), step=0.01, steps=1, timeout=1))
    write_html([attack_doc], tmp_path_factory.mktemp("warm") / "report.html")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(PROPS / "moons_sample0.vnnlib", pytester.path / "p0.vnnlib")
    shutil.copy(PROPS / "moons_sample3.vnnlib", pytester.path / "p3.vnnlib")
    return pytester


def test_checks_file_items_pass_fail_and_skip_with_messages(project: pytest.Pytester) -> None:
    project.makefile(".toml", nnaudit=CHECKS)
    result = project.runpytest("-rs", "-v")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "*nnaudit.toml::digits-pgd-ok PASSED*",
        "*nnaudit.toml::digits-pgd-strict FAILED*",
        "*nnaudit attack check 'digits-pgd-strict' failed (*nnaudit.toml: ??check?? #2*",
        "*requirement min_robust_accuracy >= 0.95 not met: robust accuracy * < 0.95 at eps=0.3*"
        "Worst counterexample: sample * (label *): class * -> * by pgd at eps=0.3, perturbation l0=*, l2=*, linf=*",
        "SKIPPED ?1? nnaudit.toml:20: nnaudit check moons-rushed inconclusive: requirement expect = holds undecided*",
    ])


def test_unknown_is_failure_and_marker_selection(project: pytest.Pytester) -> None:
    project.makefile(".toml", nnaudit="[defaults]\nunknown_is_failure = true\n" + CHECKS)
    result = project.runpytest("-m", "nnaudit", "-k", "rushed")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*inconclusive, counted as a failure*"])


def test_bad_checks_file_is_a_collection_error_naming_file_and_key(project: pytest.Pytester) -> None:
    project.makefile(".toml", nnaudit=CHECKS.replace("eps = 0.01", "epsilon = 0.01"))
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting nnaudit.toml*", "nnaudit checks file 2 problems*",
                                 "*/nnaudit.toml: ??check?? #1 ('digits-pgd-ok'), "
                                 "key 'epsilon': unknown key for attack checks*",
                                 "*/nnaudit.toml: ??check?? #1 ('digits-pgd-ok'): missing required key 'eps'"])


def test_pyproject_table_is_collected(project: pytest.Pytester) -> None:
    text = CHECKS.split("[[check]]")[1]
    project.makefile(".toml", pyproject="[project]\nname = 'demo'\n\n[[tool.nnaudit.check]]" + text)
    project.runpytest().assert_outcomes(passed=1)


FIXTURE_TESTS = """
import numpy as np
import pytest
from nnaudit.networks import datasets

def test_attack_holds(nnaudit):
    ev = nnaudit.attack("digits-ffn", "digits", eps=0.01, limit=8)
    assert set(ev.robust_accuracy) == {0.01}
    nnaudit.assert_robust(ev, min_robust_accuracy=0.5)

def test_attack_fails(nnaudit):
    x, y = datasets.digits("test")
    ev = nnaudit.attack("digits-ffn", (x[:8], y[:8]), eps=0.3)
    nnaudit.assert_robust(ev, min_robust_accuracy=0.99)

@pytest.mark.nnaudit(timeout=0.001)
def test_verify_inconclusive(nnaudit):
    nnaudit.assert_holds(nnaudit.verify("moons-ffn", "p0.vnnlib"))

def test_verify_holds(nnaudit):
    res = nnaudit.verify("moons-ffn", "p3.vnnlib")
    assert res.verdict.value == "holds"

def test_regions_unsafe(nnaudit):
    images = nnaudit.regions("digits-cnn", "digits", grid=(2, 2), step=0.5, steps=2, timeout=5)
    nnaudit.assert_safe(images)
"""


def test_fixture_results_messages_and_session_json(project: pytest.Pytester) -> None:
    project.makepyfile(test_models=FIXTURE_TESTS)
    out = project.path / "session.json"
    result = project.runpytest(f"--nnaudit-json={out}")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*RobustnessAssertionError: min_robust_accuracy >= 0.99: FAILED (measured *)",
        "E  *requirement min_robust_accuracy >= 0.99 not met: robust accuracy * < 0.99 at eps=0.3 *",
        "E  *counterexample: sample * (label *): class * -> *",
        "*RobustnessAssertionError: expect = holds: INCONCLUSIVE (measured *)",
        "E  *requirement expect = holds undecided*",
        "*RobustnessAssertionError: max_unsafe_regions <= 0: FAILED (measured *)",
        "E  *counterexample: image 0 (label *), region *: class * -> *, perturbation l0=*",
        "nnaudit: 5 check(s) and fixture call(s) recorded; wrote *session.json",
    ])
    text = result.stdout.str()  # a few lines per failure: no library frames, no Evaluation repr
    assert "nnaudit/checks/fixture.py" not in text and "Evaluation(" not in text
    doc = schema.read_result(out, kind="check")
    status = {e["name"].split("::")[1]: e["status"] for e in doc["checks"]}
    assert status == {"test_attack_holds [attack #1]": "passed", "test_attack_fails [attack #1]": "failed",
                      "test_verify_inconclusive [verify #1]": "inconclusive",
                      "test_verify_holds [verify #1]": "passed",  # no assert_robust: the test's outcome
                      "test_regions_unsafe [regions #1]": "failed"}
    kinds = {e["result"]["kind"] for e in doc["checks"]}
    assert kinds == {"attack", "verify", "regions"}


def test_xdist_workers_results_are_merged_into_one_report(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makefile(".toml", nnaudit=CHECKS)
    project.makepyfile(test_models=FIXTURE_TESTS.split("@pytest.mark")[0])
    out = project.path / "merged.json"
    result = project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", f"--nnaudit-json={out}",
                                          "--nnaudit-report=report.html", "--nnaudit-device=cpu")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    doc = schema.read_result(out, kind="check")
    assert len(doc["checks"]) == 5
    assert {e["name"] for e in doc["checks"]} >= {"digits-pgd-ok", "digits-pgd-strict", "moons-rushed"}
    assert doc["settings"]["device"] == "cpu"
    assert (project.path / "report.html").read_text().count("digits-pgd-strict") >= 1


def test_silent_and_import_free_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="""
        import sys
        def test_nothing_heavy_loaded():
            heavy = [m for m in ("torch", "z3", "onnxruntime", "numpy", "nnaudit.checks", "nnaudit.config")
                     if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if not line.startswith("plugins:")]
    assert not [line for line in lines if "nnaudit" in line]
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "nnaudit robustness checks:" in help_text and "--nnaudit-report=PATH" in help_text


def test_examples_ci_end_to_end(pytester: pytest.Pytester) -> None:
    shutil.copytree(EXAMPLES, pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest("-v", "--nnaudit-report=report.html", "--nnaudit-json=out.json")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*nnaudit.toml::digits-ffn-linf-attacks PASSED*",
                                 "*nnaudit.toml::digits-cnn-regions PASSED*",
                                 "*nnaudit.toml::moons-ffn-local-robustness PASSED*"])
    doc = json.loads((pytester.path / "out.json").read_text())
    assert len(doc["checks"]) == 6 and all(e["status"] == "passed" for e in doc["checks"])
    assert (pytester.path / "report.html").stat().st_size > 1000


def test_checks_items_compare_with_the_baseline(project: pytest.Pytester) -> None:
    """A session's JSON is a check result: as the baseline it passes unchanged, and a baseline
    that was better makes the item fail naming the regression."""
    ok = CHECKS.split("[[check]]")[1]
    project.makefile(".toml", nnaudit="[[check]]" + ok)
    project.runpytest("--nnaudit-json=base.json").assert_outcomes(passed=1)
    project.makefile(".toml", nnaudit='[defaults]\nbaseline = "base.json"\n\n[[check]]' + ok)
    result = project.runpytest("--nnaudit-json=again.json")
    result.assert_outcomes(passed=1)
    (entry,) = schema.read_result(project.path / "again.json", kind="check")["checks"]
    assert entry["baseline"]["regressions"] == [] and "No change against the baseline" in entry["message"]
    doc = json.loads((project.path / "base.json").read_text())
    cell = doc["checks"][0]["result"]["results"][0]["robust_accuracy"]
    cell["worst"] = min(1.0, cell["worst"] + 0.2)
    (project.path / "base.json").write_text(json.dumps(doc))
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*regression against the baseline *base.json: robust accuracy at eps=0.01 * -> *"
                                 "(drop * > max_drop 0)*"])
