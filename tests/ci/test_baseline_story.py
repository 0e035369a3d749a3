"""The CI story end to end (issue #25), with CliRunner and real ONNX files run by onnxruntime.

Baseline on model A (digits-ffn); model B, a copy with its last layer's
weights perturbed, loses robust accuracy and a region that was safe turns
unsafe: the check fails naming both; model C (a milder perturbation) is
better and passes, and the report shows the improvement; a check that
examines one misclassified image checks zero regions and fails saying so.
The expected regressions are read from the runs' own JSON, not hard-coded.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from nnaudit.cli import cli
from nnaudit.networks import zoo
from nnaudit.reports import schema
from nnaudit.reports.context import fmt

CHECKS = """
[defaults]
baseline = "baseline.json"

[[check]]
name = "pgd"
kind = "attack"
model = "model.onnx"
data = "digits"
limit = 20
attacks = ["pgd"]
eps = 0.05
options = { pgd = { steps = 10 } }
min_robust_accuracy = 0.3

[[check]]
name = "regions"
kind = "regions"
model = "model.onnx"
data = "digits"
limit = 3
grid = [2, 2]
step = 0.1
steps = 2
timeout = 60
max_unsafe_regions = 4
"""

NOTHING = """
[[check]]
name = "first-image-only"
kind = "regions"
model = "digits-ffn"
data = "digits"
limit = 1
grid = [2, 2]
max_unsafe_regions = 0
"""


def perturbed(target: Path, *, scale: float, seed: int, layer: str = "4.weight") -> Path:
    """digits-ffn with Gaussian noise (``scale`` x the mean |weight|) added to one layer's weights."""
    model = onnx.load(str(zoo.path("digits-ffn")))
    init = next(i for i in model.graph.initializer if i.name == layer)
    w = numpy_helper.to_array(init).copy()
    w += (scale * np.abs(w).mean() * np.random.default_rng(seed).standard_normal(w.shape)).astype(w.dtype)
    init.CopyFrom(numpy_helper.from_array(w, layer))
    onnx.save(model, str(target))
    return target


def accept_into_store(result: Path, ref: Path) -> None:
    accepted = CliRunner().invoke(cli, ["baseline", "accept", str(result), "--to", str(ref)])
    assert accepted.exit_code == 0 and "new row(s)" in accepted.output, accepted.output


def check(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "--config", str(folder / "nnaudit.toml"), "-q", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def verdicts(doc: dict) -> dict[str, str]:
    (entry,) = [c for c in doc["checks"] if c["name"] == "regions"]
    return {f"image {im['index']} region {r['id']}": r["verdict"] for im in entry["result"]["images"]
            for r in im["regions"]}


def robust(doc: dict) -> float:
    (entry,) = [c for c in doc["checks"] if c["name"] == "pgd"]
    return entry["result"]["results"][0]["robust_accuracy"]["worst"]


def test_baseline_story(tmp_path: Path) -> None:
    (tmp_path / "nnaudit.toml").write_text(CHECKS)
    model = tmp_path / "model.onnx"
    shutil.copy(zoo.path("digits-ffn"), model)

    # no baseline yet: refused (exit 2) with the way to record one, never a silent pass
    code, out = check(tmp_path)
    assert code == 2 and "baseline.json: file not found" in out and "nnaudit baseline accept" in out

    # A: record the baseline
    code, out = check(tmp_path, "--no-baseline", "--json", str(tmp_path / "a.json"))
    assert code == 0, out
    accept = CliRunner().invoke(cli, ["baseline", "accept", str(tmp_path / "a.json"),
                                      "--config", str(tmp_path / "nnaudit.toml")])
    assert accept.exit_code == 0 and "as the baseline" in accept.output, accept.output
    assert (tmp_path / "baseline.json").is_file()
    a = schema.read_result(tmp_path / "a.json", kind="check")
    accept_into_store(tmp_path / "a.json", tmp_path / "store.db@main")

    # B: one layer perturbed -> robust accuracy drops and a safe region turns unsafe: exit 1, both named
    perturbed(model, scale=1.0, seed=0)
    code, out = check(tmp_path, "--json", str(tmp_path / "b.json"), "--junit", str(tmp_path / "b.xml"))
    b = schema.read_result(tmp_path / "b.json", kind="check")
    flipped = sorted(k for k, v in verdicts(b).items() if v == "unsafe" and verdicts(a).get(k) == "safe")
    assert robust(b) < robust(a) and flipped, "the perturbation no longer degrades the model"
    assert code == 1, out
    assert f"robust accuracy at eps=0.05 {robust(a):.4g} -> {robust(b):.4g}" in out and "> max_drop 0" in out
    assert "no longer safe" in out and all(f"{k} (safe -> unsafe)" in out for k in flipped[:8])
    assert "FAILED pgd: regression against the baseline" in out and "FAILED regions: regression" in out
    case = ET.parse(tmp_path / "b.xml").getroot().find("testsuite/testcase[@name='pgd']")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["baseline robust[eps=0.05]"] == f"{robust(a):.4g}" and props["robust[eps=0.05]"] == f"{robust(b):.4g}"
    assert case.find("failure") is not None

    # C: a milder perturbation that is better than A: exit 0, improvements summarised and in the report
    perturbed(model, scale=0.3, seed=0)
    code, out = check(tmp_path, "--json", str(tmp_path / "c.json"), "--report", str(tmp_path / "c.html"))
    c = schema.read_result(tmp_path / "c.json", kind="check")
    assert robust(c) > robust(a), "the milder perturbation is no longer better than A"
    assert code == 0, out
    assert f"pgd: improved: robust accuracy at eps=0.05 {robust(a):.4g} -> {robust(c):.4g}" in out
    html = (tmp_path / "c.html").read_text()
    assert "Compared with the baseline" in html and "improved" in html
    row = f'<td>robust accuracy at eps=0.05</td><td class="num">{fmt(robust(a))}</td><td class="num">{fmt(robust(c))}</td>'
    assert row in html

    # the results store keeps the history: A, then C accepted; C compared with it: no change, and a trend plot
    accept_into_store(tmp_path / "c.json", tmp_path / "store.db@main")
    code, out = check(tmp_path, "--baseline", f"{tmp_path / 'store.db'}@main", "--report", str(tmp_path / "s.html"),
                      "--json", str(tmp_path / "s.json"))
    assert code == 0, out
    assert "pgd: no change" in out and "regions: no change" in out
    (entry, _) = schema.read_result(tmp_path / "s.json", kind="check")["checks"]
    assert [p["robust"]["eps=0.05"] for p in entry["baseline"]["history"]] == [robust(a), robust(c), robust(c)]
    assert 'alt="robustness over the stored model versions"' in (tmp_path / "s.html").read_text()


def test_a_check_of_nothing_fails(tmp_path: Path) -> None:
    (tmp_path / "nnaudit.toml").write_text(NOTHING)
    code, out = check(tmp_path)
    assert code == 1, out
    assert "FAILED first-image-only: requirement max_unsafe_regions <= 0 not established" in out
    assert "examined 1 image(s) but checked 0 regions" in out and "misclassified: image 0" in out


@pytest.mark.parametrize("text", ['baseline = 3', 'max_drop = 1.5', 'baseline = "../outside.json"'])
def test_bad_baseline_keys_exit_2(tmp_path: Path, text: str) -> None:
    (tmp_path / "nnaudit.toml").write_text(NOTHING.replace("max_unsafe_regions = 0", f"max_unsafe_regions = 0\n{text}"))
    code, out = check(tmp_path)
    assert code == 2 and ("key 'baseline'" in out or "key 'max_drop'" in out), out
