"""``nnaudit attack``: output, JSON document, bad data, resume."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo
from nnaudit.reports.schema import read_result


def _run(*args):
    return CliRunner().invoke(cli, ["attack", *map(str, args)], catch_exceptions=False)


def test_attack_table_and_json(tmp_path):
    out = tmp_path / "attack.json"
    res = _run(zoo.path("digits-ffn"), "--data", "digits", "--limit", 30, "--attacks", "pgd,fgsm",
               "--eps", "0.05,0.1", "--set", "pgd.steps=10", "--threads", 1, "--json", out)
    assert res.exit_code == 0, res.output
    assert "clean accuracy" in res.output and "worst" in res.output
    doc = read_result(out, kind="attack")
    assert doc["complete"] is True and doc["num_samples"] == 30
    assert doc["settings"]["options"] == {"pgd": {"steps": 10}} and doc["seeds"] == {"attack": 0}
    assert [r["eps"] for r in doc["results"]] == [0.05, 0.1]
    assert set(doc["results"][1]["robust_accuracy"]) == {"worst", "pgd", "fgsm"}
    assert doc["examples"] and doc["model"]["file"] == "digits-ffn.onnx"


def test_bad_data_is_a_clear_error_before_work(tmp_path):
    bad = tmp_path / "bad.npz"
    x = np.random.default_rng(0).uniform(0, 1, (5, 64)).astype(np.float32)
    np.savez(bad, x=x, y=np.array([0, 1, 2, 3, 12]))
    res = CliRunner().invoke(cli, ["attack", str(zoo.path("digits-ffn")), "--data", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and "label 12" in res.output
    np.savez(bad, x=x * 255, y=np.zeros(5, dtype=int))
    res = CliRunner().invoke(cli, ["attack", str(zoo.path("digits-ffn")), "--data", str(bad)])
    assert res.exit_code == 2 and "outside the valid range [0, 1]" in res.output
    np.savez(bad, x=x[:, :10], y=np.zeros(5, dtype=int))
    res = CliRunner().invoke(cli, ["attack", str(zoo.path("digits-ffn")), "--data", str(bad)])
    assert res.exit_code == 2 and "(64,)" in res.output


def test_bad_options(tmp_path):
    model = str(zoo.path("moons-ffn"))
    for args, words in [(["--attacks", "nope"], "unknown attack"), (["--eps", "a,b"], "--eps"), (["--eps", "inf"], "finite"),
                        (["--set", "pgd.steps"], "ATTACK.OPTION=VALUE"), (["--resume"], "--json"),
                        (["--device", "tpu"], "expected cpu, cuda, cuda:N or auto")]:
        res = CliRunner().invoke(cli, ["attack", model, "--data", "moons", "--low", "-3", "--high", "3", *args])
        assert res.exit_code == 2 and words in res.output, res.output


def test_resume_skips_finished_attacks(tmp_path):
    out = tmp_path / "a.json"
    args = [zoo.path("moons-ffn"), "--data", "moons", "--low", -3, "--high", 3, "--limit", 40,
            "--attacks", "pgd,deepfool", "--eps", "0.2", "--threads", 1, "--json", out]
    assert _run(*args).exit_code == 0
    doc = json.loads(out.read_text())
    full = dict(doc["results"][0]["robust_accuracy"])
    # simulate an interruption after the first attack
    entry = doc["results"][0]
    for key in ("robust_accuracy", "success_rate", "median_perturbation", "time_s", "mismatches", "broken"):
        entry[key].pop("deepfool", None)
    entry["time_s"]["pgd"] = 123.0
    doc["complete"] = False
    out.write_text(json.dumps(doc))
    res = _run(*args, "--resume")
    assert res.exit_code == 0, res.output
    again = read_result(out, kind="attack")
    assert again["complete"] and again["results"][0]["time_s"]["pgd"] == 123.0  # not rerun
    assert again["results"][0]["robust_accuracy"] == full
    changed = [*args[:-1], tmp_path / "a.json", "--resume", "--seed", 5]
    res = CliRunner().invoke(cli, ["attack", *map(str, changed)])
    assert res.exit_code == 2 and "cannot resume" in res.output


def test_resume_from_a_missing_file_starts_afresh(tmp_path):
    out = tmp_path / "new.json"
    res = _run(zoo.path("moons-ffn"), "--data", "moons", "--low", -3, "--high", 3, "--limit", 20, "--attacks", "fgsm",
               "--eps", "0.2", "--threads", 1, "--json", out, "--resume")
    assert res.exit_code == 0, res.output
    doc = read_result(out, kind="attack")
    assert doc["complete"] is True and doc["num_samples"] == 20 and set(doc["results"][0]["robust_accuracy"]) == {"worst", "fgsm"}
