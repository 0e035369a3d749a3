"""The embedded executor redoes the jobs of a killed worker process; ``nnaudit report --store`` renders a store."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from campaign_cluster import SMALL, suite
from click.testing import CliRunner

from nnaudit.campaign.executor import Executor, ExecutorConfig
from nnaudit.campaign.jobs import Item, Job, JobKind
from nnaudit.campaign.runner import run_campaign
from nnaudit.campaign.verify_suite import SuiteParams, read_instances, suite_jobs, vnncomp_word
from nnaudit.cli import cli
from nnaudit.reports.store import JobStatus, ResultStore


def test_a_killed_embedded_worker_process_has_its_jobs_redone_and_stored_once(tmp_path: Path) -> None:
    instances = read_instances(suite(tmp_path))
    killed: list[int] = []
    with ResultStore(tmp_path / "r.db") as store, Executor(ExecutorConfig(workers=2)) as executor:
        digest = store.add_settings("verify", SuiteParams().settings())
        jobs = suite_jobs(instances, SuiteParams(), digest)

        def kill_one(rows: list) -> None:       # after the first result: SIGKILL a busy worker process
            if not killed:
                pid = next(iter(executor._pool._processes))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        stats = run_campaign(executor, store, jobs, on_rows=kill_one)
        rows = list(store.iter())
    assert killed and stats.stored == len(SMALL) == len(rows) == len({r.key for r in rows})
    assert {r.key: vnncomp_word(r) for r in rows} == {
        f"onnx/ACASXU_run2a_{n}_batch_2000.onnx,vnnlib/prop_{p}.vnnlib": e for n, p, e in SMALL}


def test_trivial_jobs_are_stored_once_and_skipped_on_a_rerun(tmp_path: Path) -> None:
    jobs = [Job(JobKind.NOOP, None, "s", tuple(Item(f"{j}.{i}") for i in range(3))) for j in range(20)]
    with ResultStore(tmp_path / "r.db") as store, Executor(ExecutorConfig(workers=2)) as executor:
        first = run_campaign(executor, store, jobs)
        again = run_campaign(executor, store, jobs)
        assert (first.stored, first.skipped, again.stored, again.skipped) == (60, 0, 0, 60)
        assert {r.status for r in store.iter()} == {JobStatus.OK} and store.count() == 60


def test_report_from_the_store_by_path_or_sha(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:2])
    db = tmp_path / "r.db"
    CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(db), "--workers", "1",
                             "--results", str(tmp_path / "results.csv")])
    onnx = str((tmp_path / "onnx" / "ACASXU_run2a_1_7_batch_2000.onnx").resolve())
    out = tmp_path / "report.html"
    res = CliRunner().invoke(cli, ["report", "--store", str(db), "--model", onnx, "-o", str(out)])
    assert res.exit_code == 0 and f"wrote {out}" in res.output, res.output
    html = out.read_text()
    assert "violated" in html and "prop_3.vnnlib" in html
    with ResultStore(db) as store:
        sha = store.model_matching(onnx)
    res = CliRunner().invoke(cli, ["report", "--store", str(db), "--model", sha[:10], "-o", str(out)])
    assert res.exit_code == 0
    res = CliRunner().invoke(cli, ["report", "--store", str(db), "--model", "beef", "-o", str(out)])
    assert res.exit_code == 2 and "no model in this store match 'beef'" in res.output
    res = CliRunner().invoke(cli, ["report", "--store", str(db), "-o", str(out)])
    assert res.exit_code == 2 and "--store and --model go together" in res.output


def test_a_rerun_submits_only_the_items_not_stored_even_inside_a_chunk(tmp_path: Path) -> None:
    from nnaudit.campaign.runner import pending
    from nnaudit.reports.store import StoredJob

    instances = read_instances(suite(tmp_path))
    with ResultStore(tmp_path / "r.db") as store:
        jobs = suite_jobs(instances, SuiteParams(), "d", chunk=3)
        assert len(jobs) == len({n for n, _, _ in SMALL}) and sum(len(j.items) for j in jobs) == len(SMALL)
        assert {len(j.items) for j in jobs} == {1, 2}       # one job per model: its instances together
        first = jobs[0]
        store.put(StoredJob(first.model.sha256, "d", first.items[0].key, "verify", JobStatus.OK, {"verdict": "holds"}))
        todo, skipped, _ = pending(jobs, store)
    assert skipped == 1 and sum(len(j.items) for j in todo) == len(SMALL) - 1
    assert first.items[0].key not in {i.key for j in todo for i in j.items}


def test_a_rerun_retries_the_items_stored_as_errors_and_keeps_one_row_each(tmp_path: Path) -> None:
    from nnaudit.reports.store import StoredJob

    jobs = [Job(JobKind.NOOP, None, "noop", (Item(f"n{i}"),)) for i in range(4)]
    with ResultStore(tmp_path / "r.db") as store, Executor(ExecutorConfig(workers=1)) as executor:
        store.put(StoredJob("", "noop", "n1", "noop", JobStatus.ERROR, None, "OSError: worker lost its disk"))
        store.put(StoredJob("", "noop", "n2", "noop", JobStatus.OK, {"kept": True}))
        stats = run_campaign(executor, store, jobs)
        assert (stats.skipped, stats.retried, stats.stored, stats.errors) == (1, 1, 3, 0)
        assert "1 retried after an error" in stats.line()
        rows = {r.key: r for r in store.iter(settings="noop")}
        assert len(rows) == 4 and all(r.status is JobStatus.OK for r in rows.values())
        assert rows["n2"].result == {"kept": True}
        again = run_campaign(executor, store, jobs)
        assert (again.skipped, again.retried, again.stored) == (4, 0, 0)
