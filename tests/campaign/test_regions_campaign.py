"""``nnaudit regions --store``: one job per image, on local processes and on a Dask cluster, same document."""

from __future__ import annotations

import json
from pathlib import Path

from campaign_cluster import Cluster
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo
from nnaudit.reports.store import JobStatus, ResultStore

BASE = ["--data", "digits", "--grid", "2x2", "--step", "0.05", "--steps", "1", "--timeout-per-region", "20"]


def _run(tmp_path: Path, name: str, *args: str) -> tuple[int, str, dict]:
    out = tmp_path / f"{name}.json"
    res = CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), *BASE, "--json", str(out), *args])
    return res.exit_code, res.output, json.loads(out.read_text())


def _verdicts(doc: dict) -> list[tuple[int, list[str]]]:
    return [(im["index"], [r["verdict"] for r in im["regions"]]) for im in doc["images"]]


def test_embedded_campaign_gives_the_one_process_document_and_reuses_stored_images(tmp_path: Path) -> None:
    code, _, single = _run(tmp_path, "single", "--limit", "4")
    db = str(tmp_path / "r.db")
    code_c, out, camp = _run(tmp_path, "camp", "--limit", "4", "--store", db, "--workers", "2")
    assert code_c == code and camp["complete"] is True, out
    assert _verdicts(camp) == _verdicts(single)
    assert [im["label"] for im in camp["images"]] == [im["label"] for im in single["images"]]
    assert camp["settings"]["indices"] == single["settings"]["indices"] == [0, 1, 2, 3]
    with ResultStore(db) as store:
        assert store.count() == 4
    _, _, longer = _run(tmp_path, "longer", "--limit", "5", "--store", db, "--workers", "1")
    with ResultStore(db) as store:
        rows = list(store.iter())
    assert sorted(r.key for r in rows) == [f"image:{i}" for i in range(5)]
    assert rows[-1].key == "image:4"          # stored last: only it ran, the first 4 were not redone
    assert _verdicts(longer)[:4] == _verdicts(single)


def test_campaign_on_the_dask_cluster_stores_every_image_once(cluster: Cluster, tmp_path: Path) -> None:
    _, _, single = _run(tmp_path, "single", "--limit", "3", "--start", "5")
    db = str(tmp_path / "r.db")
    code, out, camp = _run(tmp_path, "dask", "--limit", "3", "--start", "5", "--store", db,
                           "--scheduler", cluster.address)
    assert _verdicts(camp) == _verdicts(single), out
    with ResultStore(db) as store:
        rows = list(store.iter())
    assert sorted(r.key for r in rows) == ["image:5", "image:6", "image:7"]
    assert {r.status for r in rows} == {JobStatus.OK} and all(r.worker for r in rows)


def test_a_model_file_that_differs_on_the_worker_is_refused_as_error_rows(tmp_path: Path) -> None:
    from nnaudit.campaign.executor import Executor, ExecutorConfig
    from nnaudit.campaign.regions import RegionsCampaign, run_images
    from nnaudit.networks import load
    from nnaudit.networks.datasets import digits
    from nnaudit.runs.regions import RegionsRun

    net = load(zoo.path("digits-ffn"))
    net.sha256 = "0" * 64          # the client's model is not the file the workers find at its path
    x, y = digits()
    run = RegionsRun(grid=(2, 2))
    campaign = RegionsCampaign(net, x, y, run.plan(net, 2), run.settings(2))
    with ResultStore(tmp_path / "r.db") as store, Executor(ExecutorConfig(workers=1)) as executor:
        images, errors, stats = run_images(campaign, executor, store)
    assert stats.stored == 2 and stats.errors == 2 and len(errors) == 2
    assert "ModelLoadError" in errors[0] and "has sha256" in errors[0] and "digits-ffn.onnx" in errors[0]
    assert [im["skipped"].startswith("error: ModelLoadError") for im in images] == [True, True]
    assert all(im["regions"] == [] for im in images)
