"""``nnaudit verify-suite`` on the embedded back end and on a real Dask cluster, with faults."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.reports.store import JobStatus, ResultStore

from campaign_cluster import SMALL, Cluster, suite

EXPECTED = {f"onnx/ACASXU_run2a_{n}_batch_2000.onnx,vnnlib/prop_{p}.vnnlib": e for n, p, e in SMALL}


def _verdicts(db: Path) -> dict[str, str]:
    """key -> VNN-COMP word of every row of the store (every key once: a duplicate would fail here)."""
    from nnaudit.campaign.verify_suite import vnncomp_word

    out: dict[str, str] = {}
    with ResultStore(db) as store:
        for row in store.iter():
            assert row.key not in out, f"{row.key} stored twice"
            out[row.key] = vnncomp_word(row)
    return out


def _command(csv_path: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nnaudit.cli", "verify-suite", str(csv_path), "--store", str(db),
            "--results", str(csv_path.parent / "results.csv"), *extra]


def _wait_rows(db: Path, n: int, proc: subprocess.Popen, limit_s: float = 90) -> int:
    """Poll the store (a second reader: WAL) until it holds ``n`` rows; returns the count."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    count = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
                except sqlite3.OperationalError:   # tables not created yet
                    count = 0
            if count >= n:
                return count
        time.sleep(0.05)
    raise AssertionError(f"store {db} did not reach {n} rows (command exit {proc.poll()})")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The suite's verdicts from the embedded default (local processes)."""
    folder = tmp_path_factory.mktemp("embedded")
    csv_path = suite(folder)
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(folder / "r.db"),
                                   "--workers", "2", "--results", str(folder / "results.csv")])
    assert res.exit_code == 1, res.output          # some instances are violated
    assert "unsat 4  sat 4  timeout 0  unknown 0  error 0" in res.output
    rows = list(csv.reader((folder / "results.csv").open()))
    assert [(r[0], f"{r[1]},{r[2]}", r[4]) for r in rows] == [("embedded0", k, e) for k, e in EXPECTED.items()]
    return _verdicts(folder / "r.db")


def test_embedded_run_matches_expected_and_a_rerun_skips_everything(embedded: dict[str, str],
                                                                    tmp_path: Path) -> None:
    assert embedded == EXPECTED
    csv_path = suite(tmp_path, SMALL[:3])
    args = ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"), "--workers", "1",
            "--results", str(tmp_path / "results.csv")]
    first = CliRunner().invoke(cli, args)
    assert "3 run now, 0 already stored" in first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == first.exit_code == 1 and "0 run now, 3 already stored" in again.output
    assert (tmp_path / "results.csv").read_text().count(",sat,") == 1


def test_an_instance_that_raises_is_an_error_row_and_the_rest_go_on(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:2])
    (tmp_path / "vnnlib" / "broken.vnnlib").write_text("(declare-const X_0 Real)\n(assert (<= X_0\n")
    with csv_path.open("a") as fh:
        fh.write("onnx/ACASXU_run2a_1_7_batch_2000.onnx,vnnlib/broken.vnnlib,30\n")
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"), "--workers", "1",
                                   "--results", str(tmp_path / "results.csv")])
    assert res.exit_code == 1 and "error 1" in res.output, res.output      # the violated one still decides it
    with ResultStore(tmp_path / "r.db") as store:
        rows = {r.key.split(",")[1]: r for r in store.iter()}
    assert rows["vnnlib/broken.vnnlib"].status is JobStatus.ERROR
    assert "broken.vnnlib" in rows["vnnlib/broken.vnnlib"].error
    assert {rows["vnnlib/prop_3.vnnlib"].status} == {JobStatus.OK}
    assert (tmp_path / "results.csv").read_text().splitlines()[2].split(",")[4] == "error"


def test_a_bad_instances_csv_is_exit_2_naming_the_line(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:1])
    with csv_path.open("a") as fh:
        fh.write("onnx/missing.onnx,vnnlib/prop_3.vnnlib,30\n")
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--results", str(tmp_path / "out.csv")])
    assert res.exit_code == 2 and f"{csv_path}:2: onnx/missing.onnx: no such file" in res.output


def test_an_unreachable_scheduler_is_exit_2_before_any_work(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    csv_path = suite(tmp_path, SMALL[:1])
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"),
                                   "--results", str(tmp_path / "out.csv")],
                             env={"NNAUDIT_SCHEDULER": f"tcp://127.0.0.1:{port}"})
    assert res.exit_code == 2, res.output
    assert f"$NNAUDIT_SCHEDULER tcp://127.0.0.1:{port}: cannot reach the Dask scheduler" in res.output
    with ResultStore(tmp_path / "r.db") as store:
        assert store.count() == 0


def test_kill_9_of_the_client_loses_nothing_stored_and_the_rerun_resumes(tmp_path: Path) -> None:
    import psutil

    csv_path = suite(tmp_path)
    db = tmp_path / "r.db"
    proc = subprocess.Popen(_command(csv_path, db, "--workers", "1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_rows(db, 2, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]  # died with it
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = _verdicts(db)
    assert 2 <= len(kept) < len(SMALL)
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(db), "--workers", "1",
                                   "--results", str(tmp_path / "results.csv")])
    assert f"{len(SMALL) - len(kept)} run now, {len(kept)} already stored" in res.output, res.output
    assert _verdicts(db) == EXPECTED


def test_dask_cluster_with_a_worker_killed_stores_each_job_once(cluster: Cluster, embedded: dict[str, str],
                                                                tmp_path: Path) -> None:
    csv_path = suite(tmp_path)
    db = tmp_path / "r.db"
    proc = subprocess.Popen(_command(csv_path, db, "--scheduler", cluster.address), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        stored = _wait_rows(db, 2, proc)
        lost = cluster.kill_busy_worker()          # its running job must be redone by the other worker
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stored < len(SMALL) and lost, "the campaign finished before the worker was killed"
    assert proc.returncode == 1, out
    assert f"{len(SMALL)} run now, 0 already stored" in out
    assert _verdicts(db) == embedded == EXPECTED
    with ResultStore(db) as store:
        assert {r.status for r in store.iter()} == {JobStatus.OK}      # the lost job was redone, not an error


def test_sigterm_stops_the_workers_and_exits_143_with_the_results_kept(tmp_path: Path) -> None:
    import psutil

    csv_path = suite(tmp_path)
    db = tmp_path / "r.db"
    proc = subprocess.Popen(_command(csv_path, db, "--workers", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_rows(db, 1, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "terminated (SIGTERM);" in out and "run the same command again to go on" in out
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert len(_verdicts(db)) >= 1


# -- --device ----------------------------------------------------------------------------------------------------

no_gpu = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")


def test_a_misspelled_device_is_exit_2_before_any_work_local_or_on_a_cluster(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:1])
    for env in ({}, {"NNAUDIT_SCHEDULER": "tcp://127.0.0.1:1"}):     # the spelling is checked before the scheduler
        res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"),
                                       "--results", str(tmp_path / "out.csv"), "--device", "tpu"], env=env)
        assert res.exit_code == 2, res.output
        assert "device: expected cpu, cuda, cuda:N or auto, got 'tpu'" in res.output
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "out.csv").exists()


@no_gpu
def test_a_gpu_missing_on_this_machine_is_exit_2_before_any_work(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:1])
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"),
                                   "--results", str(tmp_path / "out.csv"), "--device", "cuda:1"])
    assert res.exit_code == 2, res.output
    assert "device: 'cuda:1' requested but CUDA is not available" in res.output
    assert not (tmp_path / "r.db").exists()


@no_gpu
def test_device_auto_without_a_gpu_is_the_cpu_run_and_resumes_its_store(tmp_path: Path) -> None:
    csv_path = suite(tmp_path, SMALL[:2])
    args = ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"), "--workers", "1",
            "--results", str(tmp_path / "results.csv")]
    first = CliRunner().invoke(cli, args)
    assert "2 run now, 0 already stored" in first.output, first.output
    again = CliRunner().invoke(cli, [*args, "--device", "auto"])
    assert "0 run now, 2 already stored" in again.output, again.output
    assert again.exit_code == first.exit_code


def test_the_device_is_in_the_settings_only_when_it_is_not_the_cpu() -> None:
    from nnaudit.campaign.verify_suite import SuiteParams

    # the CPU's settings are those written before --device existed: stores written then resume
    assert SuiteParams(timeout=5.0, seed=1).settings() == {"kind": "verify-suite", "timeout": 5.0, "seed": 1}
    assert SuiteParams(device="cuda:0").settings() == {"kind": "verify-suite", "timeout": "csv", "seed": 0,
                                                       "device": "cuda:0"}


@no_gpu
def test_a_worker_without_the_gpu_raises_a_config_error_that_becomes_the_instance_error(tmp_path: Path) -> None:
    from nnaudit.campaign.verify_suite import SuiteParams, read_instances, run_instance, suite_jobs
    from nnaudit.errors import ConfigError
    from nnaudit.networks import load

    (job,) = suite_jobs(read_instances(suite(tmp_path, SMALL[:1])), SuiteParams(device="cuda"), "digest")
    with pytest.raises(ConfigError, match="'cuda' requested but CUDA is not available"):
        run_instance(load(job.model.path), job.items[0], job)


def test_spawned_workers_give_the_same_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The start a GPU run takes (spawned workers: a child forked after CUDA was initialised cannot use
    it), taken here on the CPU: the workers start from nothing and decide as forked ones do."""
    from nnaudit.campaign import executor

    assert executor.start_method() == ("spawn" if __import__("torch").cuda.is_available() else "fork")
    monkeypatch.setattr(executor, "start_method", lambda: "spawn")
    csv_path = suite(tmp_path, SMALL[:4])
    res = CliRunner().invoke(cli, ["verify-suite", str(csv_path), "--store", str(tmp_path / "r.db"), "--workers", "2",
                                   "--results", str(tmp_path / "results.csv")])
    assert "4 run now, 0 already stored" in res.output, res.output
    assert _verdicts(tmp_path / "r.db") == {k: EXPECTED[k] for k in list(EXPECTED)[:4]}
