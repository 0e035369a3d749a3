"""The SQLite results store: idempotent puts, reads, error rows, history, schema migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nnaudit.errors import ConfigError
from nnaudit.reports.store import JobStatus, ResultStore, StoredJob, settings_hash
from nnaudit.reports.store_schema import CURRENT, migrate, version_of


def _row(key: str, value: int = 0, *, sha: str = "a" * 64, digest: str = "s1", status: JobStatus = JobStatus.OK,
         error: str = "") -> StoredJob:
    result = {"value": value} if status is JobStatus.OK else None
    return StoredJob(sha, digest, key, "verify", status, result, error, 0.5, "host:1")


def test_put_stores_each_key_once_and_reads_back(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        assert store.put(_row("k1", 1)) is True
        assert store.put(_row("k1", 2)) is False          # the same job again: ignored, first kept
        assert store.put_many([_row("k2", 3), _row("k1", 4), _row("k3", 5)]) == 2
        assert store.get("a" * 64, "s1", "k1").result == {"value": 1}
        assert store.has("a" * 64, "s1", "k2") and not store.has("a" * 64, "s2", "k2")
        assert store.keys("a" * 64, "s1") == {"k1", "k2", "k3"}
        assert [r.key for r in store.iter(model_sha256="a" * 64)] == ["k1", "k2", "k3"]
        assert store.count() == 3
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_error_row_gives_way_to_a_result_but_a_result_is_never_replaced(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        assert store.put(_row("k", status=JobStatus.ERROR, error="MemoryError: budget"))
        assert store.keys("a" * 64, "s1", JobStatus.OK) == set()
        assert store.keys("a" * 64, "s1", JobStatus.ERROR) == {"k"}
        assert store.put(_row("k", status=JobStatus.ERROR, error="second fault"))   # still an error: newest kept
        assert store.get("a" * 64, "s1", "k").error == "second fault"
        assert store.put(_row("k", 7))                   # the retry's result replaces the error row
        assert store.put(_row("k", 8)) is False          # ... and is final
        assert store.put(_row("k", status=JobStatus.ERROR, error="late")) is False
        row = store.get("a" * 64, "s1", "k")
        assert row.status is JobStatus.OK and row.result == {"value": 7} and store.count() == 1


def test_error_rows_keep_their_message(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        store.put(_row("bad", status=JobStatus.ERROR, error="SpecError: prop.vnnlib:3: bad"))
    with ResultStore(tmp_path / "r.db") as store:      # reopened: committed, not cached
        row = store.get("a" * 64, "s1", "bad")
        assert row.status is JobStatus.ERROR and row.result is None
        assert row.error == "SpecError: prop.vnnlib:3: bad"


def test_history_of_model_versions_is_kept_and_named(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        for sha, path in (("1" * 64, "m.onnx"), ("2" * 64, "m.onnx"), ("3" * 64, "other.onnx")):
            store.add_model(sha, path)
            store.put(_row("k", int(sha[0]), sha=sha))
        assert [m[0][0] for m in store.models()] == ["1", "2", "3"]
        assert store.model_matching("2222") == "2" * 64
        assert store.model_matching("other.onnx") == "3" * 64
        with pytest.raises(ConfigError, match="2 models in this store match 'm.onnx'"):
            store.model_matching("m.onnx")
        assert [r.result["value"] for r in store.iter(kind="verify")] == [1, 2, 3]


def test_settings_are_stored_under_their_hash(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        digest = store.add_settings("regions", {"b": 1, "a": [1, 2]})
        assert digest == settings_hash({"a": [1, 2], "b": 1}) != settings_hash({"a": [1, 2], "b": 2})
        assert store.settings(digest) == ("regions", {"a": [1, 2], "b": 1})
        assert store.settings("nope") is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from("abcdef"), st.integers(0, 9)),
                max_size=30))
def test_any_sequence_of_puts_keeps_the_first_row_per_key(tmp_path: Path,
                                                          puts: list[tuple[str, str, int]]) -> None:
    path = tmp_path / f"h{abs(hash(tuple(puts)))}.db"
    first: dict[tuple[str, str], int] = {}
    with ResultStore(path) as store:
        for digest, key, value in puts:
            inserted = store.put(_row(key, value, digest=digest))
            assert inserted == ((digest, key) not in first)
            first.setdefault((digest, key), value)
        assert store.count() == len(first)
        for (digest, key), value in first.items():
            assert store.get("a" * 64, digest, key).result == {"value": value}
    path.unlink()


def test_a_version_1_store_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), to=1)
    conn.execute("INSERT INTO jobs (model_sha256, settings_hash, job_key, kind, status, result, error, created) "
                 "VALUES ('f00', 's1', 'k1', 'verify', 'ok', '{\"verdict\": \"holds\"}', '', 1.0)")
    assert version_of(conn) == 1
    conn.close()
    with ResultStore(path) as store:
        assert version_of(store.conn) == CURRENT == 2
        row = store.get("f00", "s1", "k1")
        assert row.result == {"verdict": "holds"} and row.worker == "" and row.elapsed_s is None
        assert store.put(_row("k2", sha="f00")) and store.count() == 2
        store.add_model("f00", "m.onnx")
        assert store.models()[0][:2] == ("f00", "m.onnx")


def test_a_newer_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with ResultStore(newer) as store:
        store.conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ConfigError, match="newer.db: results store has schema version 99"):
        ResultStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="junk.db: not a usable results store"):
        ResultStore(junk)
    with pytest.raises(ConfigError, match="must be a file"):
        ResultStore(tmp_path)
