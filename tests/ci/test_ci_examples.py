"""examples/ci's GitHub Actions workflow and GitLab CI job, tested as far as possible without a CI
service: the YAML parses, its shape is what the services read, and the nnaudit commands it runs
(and those its comments tell you to run to record the baseline) work on a copy of the example."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.reports import schema

yaml = pytest.importorskip("yaml")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
FILES = ("github-actions.yml", "gitlab-ci.yml")


def github() -> dict:
    return yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())


def gitlab() -> dict:
    return yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())


def commands(text: str) -> list[str]:
    """The nnaudit command lines of a CI file's steps (not of its comments)."""
    return [line.strip().lstrip("- ").strip() for line in text.splitlines()
            if re.match(r"^\s*(- )?nnaudit ", line)]


def commented(text: str) -> list[str]:
    """The nnaudit command lines its comments tell you to run (recording the baseline)."""
    return [m.group(1).strip() for m in re.finditer(r"^#\s+(nnaudit .*)$", text, re.M)]


def test_the_files_have_the_shape_the_services_read() -> None:
    wf = github()
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push"}
    steps = wf["jobs"]["robustness"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "nnaudit.xml" in upload["with"]["path"]
    job = gitlab()["nnaudit"]
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["reports"]["junit"].endswith("nnaudit.xml")
    for name in FILES:
        (line,) = commands((EXAMPLES / name).read_text())
        assert "--baseline" in line and "--junit nnaudit.xml" in line and "--report report.html" in line


def artifacts() -> set[str]:
    """Artifact paths of both files, relative to the example folder."""
    paths = set(github()["jobs"]["robustness"]["steps"][-1]["with"]["path"].split())
    paths |= set(gitlab()["nnaudit"]["artifacts"]["paths"])
    return {p.removeprefix("examples/ci/") for p in paths}


def test_the_commands_run_on_the_bundled_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(EXAMPLES / "nnaudit.toml", tmp_path)
    shutil.copytree(EXAMPLES / "properties", tmp_path / "properties")
    monkeypatch.chdir(tmp_path)
    text = (EXAMPLES / "github-actions.yml").read_text()
    assert commented(text) == commented((EXAMPLES / "gitlab-ci.yml").read_text())
    assert commands(text) == commands((EXAMPLES / "gitlab-ci.yml").read_text())
    for line in commented(text) + commands(text):
        result = CliRunner().invoke(cli, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
    assert all((tmp_path / p).is_file() for p in artifacts())
    doc = schema.read_result(tmp_path / "nnaudit.json", kind="check")
    assert all(c["baseline"]["regressions"] == [] for c in doc["checks"])
    assert "Compared with the baseline" in (tmp_path / "report.html").read_text()
