"""The AutoAttack cascade and the CLI: bookkeeping, mixed norms refused, targeted runs, real-scale models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnaudit.attacks as A
from nnaudit.attacks.autoattack import PLANS, Version, autoattack, expand
from nnaudit.cli import cli
from nnaudit.errors import ConfigError
from nnaudit.networks import zoo
from nnaudit.networks.runtime import OnnxRuntimeModel

DATA = Path(__file__).resolve().parents[1] / "data"
FAST = {"apgd-ce": {"steps": 20}, "apgd-t": {"steps": 20, "target_classes": 3}, "fab-t": {"steps": 20, "target_classes": 2},
        "square": {"queries": 200}}


def _run(*args):
    return CliRunner().invoke(cli, ["attack", *map(str, args)], catch_exceptions=False)


def test_cascade_credits_each_sample_to_the_first_attack_and_skips_broken_ones(digits_small):
    net, x, y = digits_small
    ev = autoattack(net, x, y, eps=[0.05, 0.12], threads=1, options=FAST)
    assert ev.attacks == ("apgd-ce", "apgd-t", "fab-t", "square") and ev.cascade
    for e in ev.eps:
        before = np.zeros(len(y), dtype=bool)
        for a in ev.attacks:
            cell = ev.cells[(e, a)]
            assert not (cell.broken & before).any()  # disjoint: credited once, to the first
            assert not before[cell.attacked].any() and not (~ev.clean_correct[cell.attacked]).any()
            assert set(cell.attacked) == set(np.flatnonzero(ev.clean_correct & ~before))  # only those still robust
            if cell.result is not None:
                assert cell.result.num_samples == len(cell.attacked)  # the attack saw exactly those
                assert (cell.result.norms["linf"] <= e).all()
            before |= cell.broken
        assert np.array_equal(before, ev.broken(e))
        after = list(ev.robust_after(e).values())
        assert after == sorted(after, reverse=True) and after[-1] == ev.robust_accuracy[e]
        by = ev.broken_by(e)
        assert set(by) == set(np.flatnonzero(before)) and all(ev.cells[(e, a)].broken[i] for i, a in by.items())
    assert ev.robust_accuracy[0.12] < ev.robust_accuracy[0.05] < ev.clean_accuracy
    body = ev.to_dict(examples=2)
    assert body["cascade"] is True and "robust_after" in body["results"][0]
    for ex in body["examples"]:  # the examples' points are onnxruntime-misclassified, inside the ball
        x_adv = np.asarray(ex["x_adv"], np.float32)[None]
        assert OnnxRuntimeModel(str(net.source)).run(x_adv).argmax() != ex["label"]
        assert np.abs(x_adv - np.asarray(ex["x"], np.float32)).max() <= ex["eps"]


def test_versions_and_expansion():
    names, opts, cascade = expand(["standard"], "plus", {"square": {"queries": 10}}, target_classes=4)
    assert cascade and names == tuple(n for n, _ in PLANS[Version.PLUS])
    assert opts["square"]["queries"] == 10 and opts["apgd-t"]["target_classes"] == 4 and opts["fab"]["restarts"] == 5
    assert expand(["autoattack"], "rand")[0] == ("apgd-ce", "apgd-dlr")
    assert expand(["pgd", "apgd-t"], target_classes=2) == (("pgd", "apgd-t"), {"apgd-t": {"target_classes": 2}}, False)
    with pytest.raises(ConfigError, match="alone"):
        expand(["pgd", "autoattack"])
    with pytest.raises(ConfigError, match="options given for pgd"):
        expand(["autoattack"], "standard", {"pgd": {"steps": 3}})
    with pytest.raises(ConfigError, match="standard, plus, rand"):
        expand(["autoattack"], "fast")


def test_other_norms_are_refused_not_mixed(digits_small):
    net, x, y = digits_small
    with pytest.raises(ConfigError, match=r"cw \(l2\): not linf attacks"):
        A.evaluate(net, x, y, attacks=["pgd", "cw"], eps=[0.1])
    model = zoo.path("digits-ffn")
    for args, words in [(["--attacks", "pgd,cw"], "cw (l2)"), (["--attacks", "jsma", "--eps", "0.1"], "jsma (l0)"),
                        (["--attacks", "pgd,autoattack"], "alone"), (["--target-classes", "3"], "none of them is run"), (["--attacks", "autoattack", "--norm", "l0", "--eps", "3"], "norms")]:
        res = CliRunner().invoke(cli, ["attack", str(model), "--data", "digits", "--limit", "5", *args])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, res.output


def test_cli_autoattack_and_targeted_runs(tmp_path):
    out = tmp_path / "aa.json"
    sets = [f"--set={a}.{k}={v}" for a, o in FAST.items() for k, v in o.items()]
    res = _run(zoo.path("digits-ffn"), "--data", "digits", "--limit", 20, "--attacks", "standard", "--eps", 0.1,
               "--threads", 1, "--json", out, *sets)
    assert res.exit_code == 0, res.output
    assert "AutoAttack cascade" in res.output and "fab-t" in res.output
    doc = json.loads(out.read_text())
    assert doc["settings"]["autoattack"] == "standard" and doc["cascade"] is True
    broken = doc["results"][0]["broken"]
    flat = [i for v in broken.values() for i in v]
    assert len(flat) == len(set(flat)) and flat  # disjoint, and something broke
    html = tmp_path / "r.html"
    rep = CliRunner().invoke(cli, ["report", str(out), "-o", str(html)], catch_exceptions=False)
    assert rep.exit_code == 0, rep.output
    text = html.read_text()
    assert "fab-t (cascade: robust after it)" in text and "AutoAttack cascade" in text
    out2 = tmp_path / "t.json"
    res = _run(zoo.path("digits-ffn"), "--data", "digits", "--limit", 20, "--attacks", "apgd-ce", "--eps", 0.1,
               "--targeted", "--target-classes", 2, "--set", "apgd-ce.steps=20", "--threads", 1, "--json", out2)
    assert res.exit_code == 0, res.output
    doc = json.loads(out2.read_text())
    assert doc["targeted"] == 2 and doc["settings"]["targeted"] == 2 and doc["examples"]
    ort = OnnxRuntimeModel(str(zoo.path("digits-ffn")))
    for ex in doc["examples"]:  # each reached one of the label's two most likely other classes
        clean = ort.run(np.asarray(ex["x"], np.float32)[None])[0]
        clean[ex["label"]] = -np.inf
        assert ex["pred_adv"] in np.argsort(-clean, kind="stable")[:2]


def test_cifar_conv_net_with_normalisation_in_pixel_space(tmp_path):
    model = DATA / "cifar10" / "cifar_base_kw.onnx"
    res = _run(model, "--data", DATA / "cifar10" / "cifar10_test_3.npz", "--attacks", "autoattack", "--eps", 8 / 255,
               "--mean", "0.485,0.456,0.406", "--std", "0.225", "--threads", 1, "--json", tmp_path / "c.json",
               "--set", "apgd-ce.steps=10", "--set", "apgd-t.steps=10", "--set", "apgd-t.target_classes=2",
               "--set", "fab-t.steps=5", "--set", "fab-t.target_classes=1", "--set", "square.queries=20")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["clean_accuracy"] > 0 and all(m == 0 for m in doc["results"][0]["mismatches"].values())
    assert doc["results"][0]["robust_accuracy"]["worst"] <= doc["clean_accuracy"]


CHECK = """
[[check]]
name = "aa"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 12
eps = 0.3
attacks = {attacks}
version = "standard"
targeted = {targeted}
target_classes = 2
options = {{ apgd-ce = {{ steps = 10 }}, apgd-t = {{ steps = 10 }}, fab-t = {{ steps = 5 }}, square = {{ queries = 20 }} }}
min_robust_accuracy = 0.99
"""


@pytest.mark.parametrize("targeted", ["false", "true"])
def test_checks_file_runs_the_cascade(tmp_path, targeted):
    (tmp_path / "nnaudit.toml").write_text(CHECK.format(attacks='"autoattack"', targeted=targeted))
    res = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "nnaudit.toml"), "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 1 and "FAILED aa" in res.output, res.output  # eps 0.3 breaks digits-ffn
    nested = json.loads((tmp_path / "c.json").read_text())["checks"][0]["result"]
    assert nested["cascade"] is True and nested["settings"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert nested.get("targeted") == (2 if targeted == "true" else None)


def test_checks_file_refuses_mixed_norms_and_mixed_autoattack(tmp_path):
    for attacks, words in [('["pgd", "cw"]', "cw (l2)"), ('["pgd", "autoattack"]', "alone")]:
        text = "\n".join(line for line in CHECK.format(attacks=attacks, targeted="false").splitlines()
                          if not line.startswith("options"))
        (tmp_path / "nnaudit.toml").write_text(text)
        res = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "nnaudit.toml")])
        assert res.exit_code == 2 and words in res.output, res.output


def test_resumed_cascade_runs_only_the_later_stages_on_what_is_left(tmp_path):
    out = tmp_path / "aa.json"
    sets = [f"--set={a}.{k}={v}" for a, o in FAST.items() for k, v in o.items()]
    args = [zoo.path("digits-ffn"), "--data", "digits", "--limit", 24, "--attacks", "autoattack", "--eps", 0.12,
            "--threads", 1, "--json", out, *sets]
    assert _run(*args).exit_code == 0
    doc = json.loads(out.read_text())
    entry = doc["results"][0]
    full, broken = dict(entry["robust_accuracy"]), {a: list(v) for a, v in entry["broken"].items()}
    for key in ("robust_accuracy", "success_rate", "median_perturbation", "time_s", "mismatches", "broken",
                "robust_after"):
        for stage in ("fab-t", "square"):  # interrupted after APGD-T
            entry[key].pop(stage, None)
    entry["time_s"]["apgd-ce"] = 123.0
    doc["complete"] = False
    out.write_text(json.dumps(doc))
    assert _run(*args, "--resume").exit_code == 0
    again = json.loads(out.read_text())["results"][0]
    assert again["time_s"]["apgd-ce"] == 123.0  # restored, not rerun
    assert again["robust_accuracy"] == full and again["broken"] == broken  # same cascade, same credits
    flat = [i for v in again["broken"].values() for i in v]
    assert len(flat) == len(set(flat))
