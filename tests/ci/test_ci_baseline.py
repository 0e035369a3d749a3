"""Baselines, CI log output and the per-run cache of ``nnaudit check``: comparisons on real
runs of the zoo, progress lines counted with a fake clock, loads counted (never timed)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.checks.adapters import RunSettings
from nnaudit.checks.baseline import JsonBaseline, apply, compare, open_baseline
from nnaudit.checks.outcome import Status
from nnaudit.checks.progress import Progress, ProgressMode, Ticker
from nnaudit.checks.runner import run_checks
from nnaudit.checks.warm import RunCache
from nnaudit.cli import cli
from nnaudit.config import load_checks
from nnaudit.errors import ConfigError
from nnaudit.reports import schema

THREE = """
[[check]]
name = "fgsm"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 12
attacks = ["fgsm"]
eps = [0.02, 0.05]
min_robust_accuracy = 0.1

[[check]]
name = "clean"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 12
attacks = ["fgsm"]
eps = 0.01
min_clean_accuracy = 0.5

[[check]]
name = "regions"
kind = "regions"
model = "digits-ffn"
data = "digits"
limit = 2
grid = [2, 2]
step = 0.02
timeout = 5
max_unsafe_regions = 4
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, RunCache, list[str]]:
    """The three checks of one model run once, with every progress line on every step (every=0)."""
    folder = tmp_path_factory.mktemp("three")
    (folder / "nnaudit.toml").write_text(THREE)
    lines: list[str] = []
    cache = RunCache()
    settings = RunSettings(progress=Progress(ProgressMode.LOG, lines.append, every=0.0))
    outcomes = run_checks(load_checks(folder / "nnaudit.toml").checks, settings, cache=cache)
    return outcomes, cache, lines


def test_one_run_loads_the_model_and_data_once(run: tuple[list, RunCache, list[str]]) -> None:
    outcomes, cache, _ = run
    assert [o.status for o in outcomes] == [Status.PASSED] * 3
    assert cache.loads == {"network": 1, "data": 1}


def test_log_lines_count_the_work(run: tuple[list, RunCache, list[str]]) -> None:
    _, _, lines = run
    regions = [l for l in lines if l.startswith("[regions] ")]
    outcomes = run[0]
    doc = next(o.result for o in outcomes if o.kind == "regions")
    unsafe = sum(r["verdict"] == "unsafe" for im in doc["images"] for r in im["regions"])
    assert regions and regions[-1].startswith(f"[regions] 8/8 regions, {unsafe} unsafe, ")
    attacked = round(outcomes[0].result["clean_accuracy"] * 12)  # the correctly classified samples
    assert any(l.startswith(f"[fgsm] {2 * attacked}/{2 * attacked} samples attacked") for l in lines)  # 2 eps


def test_ticker_writes_a_line_every_interval_with_an_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    ticker = Ticker("demo", 400, "regions", lines.append, every=5.0, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 1.0
        ticker.advance(2)
    assert len(lines) == 20  # 100 fake seconds, one line per 5
    assert lines[-1] == "[demo] 200/400 regions, 100 s, eta 100 s"
    flagged: list[str] = []
    counting = Ticker("demo", 4, "regions", flagged.append, every=0.0, clock=lambda: now[0], flag="unsafe")
    counting.advance(1, 1)
    counting.advance(2, 0)
    assert flagged[-1].startswith("[demo] 3/4 regions, 1 unsafe, ")
    ticker.close()
    assert len(lines) == 21
    assert Progress(ProgressMode.QUIET).start("x", 10, "regions") is None
    bar = Progress(ProgressMode.BAR).start("bar", 3, "regions")  # a click progress bar on stderr
    for _ in range(4):
        bar.advance()
    bar.close()
    assert bar.done == 3
    assert Progress.choose(quiet=False, tty=False) is ProgressMode.LOG
    assert Progress.choose(quiet=True, tty=True) is ProgressMode.QUIET


def test_comparison_of_real_runs(run: tuple[list, RunCache, list[str]]) -> None:
    outcomes, _, _ = run
    fgsm, _, regions = outcomes
    same = compare("attack", fgsm.result, fgsm.result)
    assert not same.regressions and not same.improvements
    worse = copy.deepcopy(fgsm.result)
    worse["results"][1]["robust_accuracy"]["worst"] -= 0.25
    fresh = min(set(range(12)) - set(worse["results"][1]["broken"]["fgsm"]))
    worse["results"][1]["broken"]["fgsm"].append(fresh)
    comp = compare("attack", fgsm.result, worse)
    assert len(comp.regressions) == 1 and "robust accuracy at eps=0.05" in comp.regressions[0]
    assert f"newly broken: sample(s) {fresh}" in comp.regressions[0]
    assert not compare("attack", fgsm.result, worse, max_drop=0.3).regressions  # within max_drop
    flipped = copy.deepcopy(regions.result)
    image = next(im for im in flipped["images"] if any(r["verdict"] == "safe" for r in im["regions"]))
    region = next(r for r in image["regions"] if r["verdict"] == "safe")
    region["verdict"] = "unsafe"
    comp = compare("regions", regions.result, flipped)
    key = f"image {image['index']} region {region['id']}"
    assert any(f"{key} (safe -> unsafe)" in r for r in comp.regressions)
    assert any(f"{key} (unsafe -> safe)" in i for i in compare("regions", flipped, regions.result).improvements)


def test_apply_fails_on_regression_and_refuses_other_settings(run: tuple[list, RunCache, list[str]]) -> None:
    outcomes, _, _ = run
    fgsm = outcomes[0]
    better = copy.deepcopy(fgsm.to_dict())
    better["result"]["results"][0]["robust_accuracy"]["worst"] += 0.2
    judged = apply(fgsm, JsonBaseline(Path("b.json"), {"fgsm": better}))
    assert judged.status is Status.FAILED and judged.judgement.message.startswith("regression against the baseline b.json")
    assert judged.comparison["regressions"] and judged.to_dict()["baseline"]["source"] == "b.json"
    other = copy.deepcopy(fgsm.to_dict())
    other["result"]["settings"]["eps"] = [0.1]
    judged = apply(fgsm, JsonBaseline(Path("b.json"), {"fgsm": other}))
    assert judged.status is Status.ERROR and "settings differ in eps" in judged.judgement.message
    judged = apply(fgsm, JsonBaseline(Path("b.json"), {}))
    assert judged.status is Status.PASSED and "a new check" in judged.comparison["note"]


def test_bad_baseline_files_are_refused(tmp_path: Path, run: tuple[list, RunCache, list[str]]) -> None:
    with pytest.raises(ConfigError, match="file not found; record one"):
        open_baseline(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="baseline .*bad.json"):
        open_baseline(tmp_path / "bad.json")
    from nnaudit.checks.output import check_document

    doc = check_document(run[0])
    schema.write_json(schema.finish(copy.deepcopy(doc), complete=False), tmp_path / "partial.json")
    with pytest.raises(ConfigError, match="did not finish"):
        open_baseline(tmp_path / "partial.json")
    schema.write_json(doc, tmp_path / "ok.json")
    assert open_baseline(tmp_path / "ok.json").entry("regions")["status"] == "passed"


def test_baseline_accept_needs_one_target(tmp_path: Path, run: tuple[list, RunCache, list[str]]) -> None:
    from nnaudit.checks.output import check_document

    schema.write_json(check_document(run[0]), tmp_path / "r.json")
    (tmp_path / "nnaudit.toml").write_text(THREE)
    result = CliRunner().invoke(cli, ["baseline", "accept", str(tmp_path / "r.json"),
                                      "--config", str(tmp_path / "nnaudit.toml")])
    assert result.exit_code == 2 and "expected one baseline path" in result.output and "--to" in result.output
    result = CliRunner().invoke(cli, ["baseline", "accept", str(tmp_path / "r.json"), "--to", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["kind"] == "check"
    result = CliRunner().invoke(cli, ["baseline", "accept", str(tmp_path / "missing.json"), "--to", "x.json"])
    assert result.exit_code == 2 and "missing.json: file not found" in result.output


@pytest.mark.browser
def test_report_shows_the_comparison_in_a_browser(tmp_path: Path, run: tuple[list, RunCache, list[str]]) -> None:
    """The HTML report of a compared run, opened by headless Chromium: the baseline table is in the DOM."""
    import shutil
    import subprocess

    from nnaudit.checks.output import check_document, write_html

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Chromium is not installed (Debian packages chromium, chromium-driver)")
    outcomes = run[0]
    base = copy.deepcopy(check_document(outcomes))
    base["checks"][0]["result"]["results"][0]["robust_accuracy"]["worst"] += 0.2  # the baseline was better
    compared = [apply(o, JsonBaseline(Path("main.json"), {c["name"]: c for c in base["checks"]})) for o in outcomes]
    page = write_html([check_document(compared)], tmp_path / "report.html", title="compared")
    dom = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Compared with the baseline <code>main.json</code>" in dom.stdout
    assert re.search(r'<tr class="worse"><td>fgsm</td>', dom.stdout) is None  # the name sits on the first row
    assert re.search(r'<tr class="same"><td>fgsm</td><td>examined</td><td class="num">12</td><td class="num">12</td>',
                     dom.stdout)
    assert re.search(r'<tr class="worse"><td></td><td>robust accuracy at eps=0.02</td>', dom.stdout)
    assert "regressed against the baseline" in dom.stdout  # the summary line


def test_store_baseline_by_tag_or_model(tmp_path: Path, run: tuple[list, RunCache, list[str]]) -> None:
    """A real SQLite results store: rows by tag, by model sha prefix, and the errors that name the problem."""
    from nnaudit.checks.baseline_store import record, store_ref
    from nnaudit.checks.output import check_document

    doc = check_document(run[0])
    assert store_ref("r.db@main") == (Path("r.db"), "main") and store_ref("r.json") is None
    assert store_ref("r.sqlite") == (Path("r.sqlite"), "baseline")
    assert record(tmp_path / "r.db", doc, tag="main") == 3
    assert record(tmp_path / "r.db", doc, tag="main") == 0  # the same model version is recorded once
    base = open_baseline(f"{tmp_path / 'r.db'}@main")
    assert base.entry("regions")["status"] == "passed" and len(base.history("fgsm")) == 1
    sha = doc["checks"][0]["result"]["model"]["sha256"]
    assert open_baseline(f"{tmp_path / 'r.db'}@{sha[:10]}").entry("clean") is not None
    with pytest.raises(ConfigError, match="no model in this store match"):
        open_baseline(f"{tmp_path / 'r.db'}@nightly")
    with pytest.raises(ConfigError, match="results store not found"):
        open_baseline(tmp_path / "none.db")
    with pytest.raises(ConfigError, match="--tag"):
        record(tmp_path / "r.db", doc, tag="a:b")
    judged = apply(run[0][0], base)
    assert judged.status is Status.PASSED and len(judged.comparison["history"]) == 2


def test_heartbeat_writes_while_a_step_takes_long() -> None:
    """No step finishes, yet the timer thread writes a line once the (fake) clock has moved on."""
    import threading

    now = [0.0]
    written = threading.Event()
    lines: list[str] = []

    def write(line: str) -> None:
        lines.append(line)
        written.set()

    ticker = Ticker("slow", 10, "regions", write, every=0.01, clock=lambda: now[0], heartbeat=True)
    assert not lines
    now[0] = 7.0
    assert written.wait(30), "the heartbeat never wrote"
    ticker.close()
    assert lines[0] == "[slow] 0/10 regions, 7 s"


def test_safe_region_now_unknown_is_undecided_not_passed(run: tuple[list, RunCache, list[str]]) -> None:
    regions = run[0][2]
    timed_out = copy.deepcopy(regions.result)
    image = next(im for im in timed_out["images"] if any(r["verdict"] == "safe" for r in im["regions"]))
    region = next(r for r in image["regions"] if r["verdict"] == "safe")
    region["verdict"] = "unknown"
    comp = compare("regions", regions.result, timed_out)
    assert comp.regressions == () and len(comp.undecided) == 1 and "(safe -> unknown)" in comp.undecided[0]
    now = dataclasses.replace(regions, result=timed_out)
    judged = apply(now, JsonBaseline(Path("b.json"), {"regions": regions.to_dict()}))
    assert judged.status is Status.INCONCLUSIVE and "now undecided (raise the timeout)" in judged.judgement.message
    worse = copy.deepcopy(timed_out)
    next(r for im in worse["images"] for r in im["regions"] if r["verdict"] == "safe")["verdict"] = "unsafe"
    assert compare("regions", regions.result, worse).regressions  # an unsafe one still fails


def test_quiet_and_conflicting_baseline_options(tmp_path: Path) -> None:
    (tmp_path / "nnaudit.toml").write_text(THREE.split("[[check]]")[0] + "[[check]]" + THREE.split("[[check]]")[2])
    config = ["check", "--config", str(tmp_path / "nnaudit.toml")]
    loud = CliRunner().invoke(cli, config)
    quiet = CliRunner().invoke(cli, [*config, "--quiet"])
    assert loud.exit_code == quiet.exit_code == 0, loud.output
    assert "      PASSED  clean (" in loud.output and "PASSED  clean (" not in quiet.output
    assert "1 passed" in quiet.output  # the table stays
    both = CliRunner().invoke(cli, [*config, "--baseline", "b.json", "--no-baseline"])
    assert both.exit_code == 2 and "--baseline and --no-baseline" in both.output
