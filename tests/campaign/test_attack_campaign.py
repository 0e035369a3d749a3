"""``nnaudit attack --store`` and ``nnaudit check`` with a store: batches of samples as campaign jobs, ONE document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from campaign_cluster import Cluster
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo
from nnaudit.reports import schema
from nnaudit.reports.store import JobStatus, ResultStore

# PGD with one restart from the clean input draws no random numbers: exact against one process
EXACT = ["--data", "digits", "--limit", "40", "--attacks", "fgsm,pgd", "--eps", "0.05,0.1",
         "--set", "pgd.restarts=1", "--set", "pgd.steps=10"]


def _attack(tmp_path: Path, name: str, *args: str) -> tuple[int, str, dict]:
    out = tmp_path / f"{name}.json"
    res = CliRunner().invoke(cli, ["attack", str(zoo.path("digits-ffn")), "--json", str(out), *args])
    assert res.exit_code == 0, res.output
    return res.exit_code, res.output, schema.read_result(out, kind="attack")


def _meaning(doc: dict) -> dict:
    """The document without what differs between two runs of the same thing (times, when, how started)."""
    drop = {"time_s"}
    results = [{k: v for k, v in entry.items() if k not in drop} for entry in doc["results"]]
    return {"clean_accuracy": doc["clean_accuracy"], "num_samples": doc["num_samples"], "attacks": doc["attacks"],
            "eps": doc["eps"], "settings": doc["settings"], "seeds": doc["seeds"], "results": results,
            "examples": doc["examples"]}


def _rows(db: str) -> dict[str, float]:
    with ResultStore(db) as store:
        rows = list(store.iter())
    assert all(r.status is JobStatus.OK and r.kind == "attack" for r in rows)
    return {r.key: r.created for r in rows}


def test_embedded_campaign_gives_the_one_process_document_and_skips_stored_batches(tmp_path: Path) -> None:
    _, _, single = _attack(tmp_path, "single", *EXACT)
    db = str(tmp_path / "r.db")
    _, out, camp = _attack(tmp_path, "camp", *EXACT, "--store", db, "--workers", "2", "--chunk", "4")
    assert "campaign: 10 jobs: 10 run now, 0 already stored" in out
    assert _meaning(camp) == _meaning(single)          # broken sets, medians, mismatches, gallery: all equal
    assert len(camp["examples"]) == 8 and any(e["index"] >= 4 for e in camp["examples"])  # over two batches
    for entry in camp["results"]:
        assert set(entry["time_s"]) == {"fgsm", "pgd"} and all(t >= 0 for t in entry["time_s"].values())
    first = _rows(db)
    assert sorted(k.rsplit(":", 1)[0] for k in first) == sorted(f"samples:{i}-{i + 4}" for i in range(0, 40, 4))
    _, out, again = _attack(tmp_path, "again", *EXACT, "--store", db, "--workers", "2", "--chunk", "4")
    assert "campaign: 10 jobs: 0 run now, 10 already stored" in out
    assert again["results"] == camp["results"] and _rows(db) == first
    longer = [*EXACT[:3], "48", *EXACT[4:]]              # --limit 48: only the new batch runs
    _, out, _ = _attack(tmp_path, "longer", *longer, "--store", db, "--workers", "1", "--chunk", "4")
    assert "campaign: 12 jobs: 2 run now, 10 already stored" in out


def test_random_restarts_are_sound_and_fgsm_is_exact(tmp_path: Path) -> None:
    from nnaudit.attacks.base import onnx_reference
    from nnaudit.networks import load

    args = ["--data", "digits", "--limit", "40", "--attacks", "fgsm,pgd", "--eps", "0.1", "--set", "pgd.steps=10"]
    _, _, single = _attack(tmp_path, "single", *args)
    _, _, camp = _attack(tmp_path, "camp", *args, "--store", str(tmp_path / "r.db"), "--workers", "2",
                         "--chunk", "16")
    (one,), (many,) = single["results"], camp["results"]
    assert many["broken"]["fgsm"] == one["broken"]["fgsm"]
    assert many["robust_accuracy"]["fgsm"] == one["robust_accuracy"]["fgsm"]
    assert many["median_perturbation"]["fgsm"] == one["median_perturbation"]["fgsm"]
    ort = onnx_reference(load(zoo.path("digits-ffn")))
    for ex in camp["examples"]:                     # every success shown is one onnxruntime confirms
        x, x_adv = (np.asarray(ex[k], np.float32).reshape(1, *ex["shape"]) for k in ("x", "x_adv"))
        assert int(ort.run(x_adv).argmax()) != ex["label"] == int(ort.run(x).argmax())
        assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert set(many["broken"]["pgd"]) <= set(range(40)) and many["mismatches"]["pgd"] == 0
    assert many["robust_accuracy"]["worst"] <= many["robust_accuracy"]["fgsm"]


def test_bad_campaign_options_are_exit_2(tmp_path: Path) -> None:
    model = str(zoo.path("digits-ffn"))
    res = CliRunner().invoke(cli, ["attack", model, "--data", "digits", "--chunk", "8"])
    assert res.exit_code == 2 and "--chunk: only for a campaign" in res.output
    res = CliRunner().invoke(cli, ["attack", model, "--data", "digits", "--store", str(tmp_path / "r.db"),
                                   "--json", str(tmp_path / "a.json"), "--resume"])
    assert res.exit_code == 2 and "resumes from its store" in res.output


CHECKS = """
[defaults]
{defaults}

[[check]]
name = "fgsm"
kind = "attack"
model = "digits-ffn"
data = "digits"
limit = 20
attacks = ["fgsm"]
eps = [0.05]
min_robust_accuracy = 0.1

[[check]]
name = "regions"
kind = "regions"
model = "digits-ffn"
data = "digits"
limit = 2
grid = [2, 2]
step = 0.05
steps = 1
max_unsafe_regions = 16
"""


def _check(tmp_path: Path, defaults: str, *args: str) -> tuple[int, str]:
    (tmp_path / "nnaudit.toml").write_text(CHECKS.format(defaults=defaults))
    res = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "nnaudit.toml"), "-q", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_a_check_with_a_store_resumes_from_it(tmp_path: Path) -> None:
    defaults = 'store = "checks.db"\nworkers = 1'
    code, out = _check(tmp_path, defaults, "--only", "fgsm", "--json", str(tmp_path / "first.json"))
    assert code == 0, out
    first = _rows(str(tmp_path / "checks.db"))
    assert len(first) == 1                           # the attack check's one batch (20 samples)
    code, out = _check(tmp_path, defaults, "--json", str(tmp_path / "all.json"))   # as after an interruption
    assert code == 0, out
    with ResultStore(tmp_path / "checks.db") as store:
        rows = list(store.iter())
    assert {r.kind for r in rows} == {"attack", "regions"} and len(rows) == 3     # 1 batch + 2 images
    assert {r.key: r.created for r in rows if r.kind == "attack"} == first     # not run again
    doc = schema.read_result(tmp_path / "all.json", kind="check")
    nested = {c["name"]: c["result"] for c in doc["checks"]}
    code, out = _check(tmp_path, "", "--only", "fgsm", "--json", str(tmp_path / "plain.json"))
    plain = {c["name"]: c["result"] for c in schema.read_result(tmp_path / "plain.json", kind="check")["checks"]}
    assert code == 0 and _meaning(nested["fgsm"]) == _meaning(plain["fgsm"])


def test_check_store_option_overrides_and_bad_defaults_are_exit_2(tmp_path: Path) -> None:
    code, out = _check(tmp_path, "workers = 0")
    assert code == 2 and "key 'workers': expected an integer >= 1, got 0" in out
    code, out = _check(tmp_path, "", "--only", "fgsm", "--store", str(tmp_path / "cli.db"), "--workers", "1")
    assert code == 0, out
    assert len(_rows(str(tmp_path / "cli.db"))) == 1


def test_attack_campaign_on_the_dask_cluster_matches_the_embedded_one(cluster: Cluster, tmp_path: Path) -> None:
    args = [*EXACT[:3], "24", *EXACT[4:]]
    _, _, embedded = _attack(tmp_path, "embedded", *args, "--store", str(tmp_path / "e.db"), "--workers", "1",
                             "--chunk", "8")
    db = str(tmp_path / "d.db")
    _, out, dask = _attack(tmp_path, "dask", *args, "--store", db, "--scheduler", cluster.address, "--chunk", "8")
    assert "3 run now" in out and _meaning(dask) == _meaning(embedded)
    with ResultStore(db) as store:
        rows = list(store.iter())
    assert len(rows) == 3 and all(r.worker for r in rows) and {r.status for r in rows} == {JobStatus.OK}
    assert json.dumps(dask["results"])   # plain JSON


def test_a_batch_that_raises_is_an_error_naming_it_and_its_row_is_kept(tmp_path: Path) -> None:
    import pytest

    from nnaudit.campaign.attack import AttackCampaign, run_batches
    from nnaudit.campaign.executor import CampaignError, Executor, ExecutorConfig
    from nnaudit.networks import load
    from nnaudit.networks.datasets import digits
    from nnaudit.runs.attack import AttackRun

    net = load(zoo.path("digits-ffn"))
    net.sha256 = "0" * 64          # the client's model is not the file the workers find at its path
    x, y = digits()
    campaign = AttackCampaign(net, x[:6], y[:6], AttackRun(attacks=("fgsm",)), chunk=4)
    with ResultStore(tmp_path / "r.db") as store, Executor(ExecutorConfig(workers=1)) as executor:
        with pytest.raises(CampaignError, match=r"2 of 2 batches raised, .*\(samples:0-4: ModelLoadError"):
            run_batches(campaign, executor, store)
        assert {r.status for r in store.iter()} == {JobStatus.ERROR} and store.count() == 2


def test_an_l1_campaign_keeps_the_l1_sizes_of_its_successes(tmp_path: Path) -> None:
    args = ["--data", "digits", "--limit", "12", "--attacks", "fab", "--norm", "l1", "--eps", "3.0"]
    _, _, single = _attack(tmp_path, "single", *args)
    _, _, camp = _attack(tmp_path, "camp", *args, "--store", str(tmp_path / "r.db"), "--workers", "1", "--chunk", "4")
    for doc in (single, camp):
        med = doc["results"][0]["median_perturbation"]["fab"]
        assert med is not None and set(med) == {"l0", "l1", "l2", "linf"} and 0 < med["l1"] <= 3.0
