"""The results store: every campaign job's result in one SQLite file (``--store results.db``).

A row is keyed by the model's sha256, the hash of the job's settings
(:func:`settings_hash`) and the job's key (``"image:17"``,
``"onnx/a.onnx,vnnlib/p.vnnlib"``): :meth:`ResultStore.put` inserts a row
once and ignores it afterwards, so a job redone after a worker died, or a
campaign run again, never stores a second copy, and a re-run skips the keys
:meth:`ResultStore.keys` returns.  WAL mode and one writer (the campaign's
client process) keep the file readable and intact after ``kill -9``: a row
is either committed or absent.  Rows of other model versions stay, so the
history of a model across releases can be read back (:meth:`ResultStore.iter`).
Tables and versions: ``reports/SCHEMA.md``, "Results store".
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from nnaudit.errors import ConfigError
from nnaudit.reports.store_schema import migrate, transaction

COLUMNS = "model_sha256, settings_hash, job_key, kind, status, result, error, created, elapsed_s, worker"


class JobStatus(Enum):
    """How a job ended: it produced a result, or it raised (the message is kept)."""

    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class StoredJob:
    """One row of the store: a job's result (``status`` OK) or its error message (ERROR)."""

    model_sha256: str
    settings_hash: str
    key: str
    kind: str                              # "verify", "regions", ... (the result document's kind)
    status: JobStatus
    result: dict[str, Any] | None = None   # the job's JSON result (None for an error)
    error: str = ""                        # the message of the exception the job raised
    elapsed_s: float | None = None         # the job's time on its worker
    worker: str = ""                       # where it ran (host:pid or the dask worker's address)
    created: float = field(default_factory=time.time)   # when the client stored it (Unix time)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash of a job's settings (canonical JSON: sorted keys, no spaces)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultStore:
    """One SQLite results store, opened (created and migrated if needed) at ``path``.

    Use it as a context manager or call :meth:`close`.  Writes come from one
    process (the client); readers may open the same file at the same time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"{self.path}: --store must be a file (an SQLite database), got a folder")
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            migrate(self.conn, str(self.path))
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a usable results store (SQLite said: {exc})") from None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (committed rows are on disk already)."""
        self.conn.close()

    # writing -----------------------------------------------------------------------------------

    def put(self, job: StoredJob) -> bool:
        """Store ``job`` unless a row with its key is there; True when it was inserted."""
        return self.put_many([job]) == 1

    def put_many(self, jobs: Sequence[StoredJob]) -> int:
        """Store the ``jobs`` not yet stored, in one transaction; returns how many rows were written.

        A key is written once, except that an error row gives way to the next row for its key (a job
        retried by a later run): a result, once stored, is never replaced."""
        rows = [(j.model_sha256, j.settings_hash, j.key, j.kind, j.status.value,
                 None if j.result is None else json.dumps(j.result, default=_plain), j.error, j.created,
                 j.elapsed_s, j.worker) for j in jobs]
        with transaction(self.conn):
            before = self.conn.total_changes
            self.conn.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) {_RETRY}", rows)
            return self.conn.total_changes - before

    def add_model(self, sha256: str, path: str) -> None:
        """Remember where a model of this sha256 was read (the first path is kept)."""
        with transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO models (sha256, path, first_seen) VALUES (?,?,?)",
                              (sha256, str(path), time.time()))

    def add_settings(self, kind: str, settings: Mapping[str, Any]) -> str:
        """Store a job family's settings; returns their :func:`settings_hash`."""
        digest = settings_hash(settings)
        with transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO settings (hash, kind, json) VALUES (?,?,?)",
                              (digest, kind, json.dumps(settings, sort_keys=True, default=str)))
        return digest

    # reading -----------------------------------------------------------------------------------

    def has(self, model_sha256: str, settings: str, key: str) -> bool:
        """Whether this job is stored (its result or its error)."""
        return self.get(model_sha256, settings, key) is not None

    def get(self, model_sha256: str, settings: str, key: str) -> StoredJob | None:
        """The row of this job, or None."""
        row = self.conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE model_sha256 = ? AND settings_hash = ? "
                                "AND job_key = ?", (model_sha256, settings, key)).fetchone()
        return None if row is None else _job(row)

    def keys(self, model_sha256: str, settings: str, status: JobStatus | None = None) -> set[str]:
        """The keys stored for this model and settings (with ``status`` only, when given)."""
        query = "SELECT job_key FROM jobs WHERE model_sha256 = ? AND settings_hash = ?"
        args: tuple[str, ...] = (model_sha256, settings)
        if status is not None:
            query, args = query + " AND status = ?", args + (status.value,)
        return {r[0] for r in self.conn.execute(query, args)}

    def iter(self, *, model_sha256: str | None = None, settings: str | None = None,
             kind: str | None = None) -> Iterator[StoredJob]:
        """Rows in the order they were stored, filtered by any of model, settings hash and kind."""
        where, args = _where(model_sha256=model_sha256, settings_hash=settings, kind=kind)
        for row in self.conn.execute(f"SELECT {COLUMNS} FROM jobs{where} ORDER BY id", args):
            yield _job(row)

    def count(self, *, model_sha256: str | None = None, settings: str | None = None) -> int:
        """How many rows, filtered by model and settings hash."""
        where, args = _where(model_sha256=model_sha256, settings_hash=settings)
        return int(self.conn.execute(f"SELECT COUNT(*) FROM jobs{where}", args).fetchone()[0])

    def settings(self, digest: str) -> tuple[str, dict[str, Any]] | None:
        """The kind and settings stored under ``digest`` (None: unknown)."""
        row = self.conn.execute("SELECT kind, json FROM settings WHERE hash = ?", (digest,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def models(self) -> list[tuple[str, str, float]]:
        """``(sha256, path, first_seen)`` of every model with rows, oldest first (a model's history)."""
        rows = self.conn.execute("SELECT sha256, path, first_seen FROM models ORDER BY first_seen, sha256")
        return [(r[0], r[1], float(r[2])) for r in rows]

    def model_matching(self, text: str) -> str:
        """The sha256 of the stored model that ``text`` names: a sha256 or a unique prefix of one, or a path
        it was read from.  ConfigError naming the store when none or several match."""
        known = self.models()
        hits = sorted({sha for sha, path, _ in known if sha.startswith(text.lower()) or path == text})
        if len(hits) == 1:
            return hits[0]
        what = "no model" if not hits else f"{len(hits)} models"
        raise ConfigError(f"{self.path}: {what} in this store match {text!r} (stored: "
                          f"{', '.join(f'{sha[:12]} {path}' for sha, path, _ in known) or 'none'})")


#: an error row is replaced by the next row of its key; a result row never is
_RETRY = ("ON CONFLICT (model_sha256, settings_hash, job_key) DO UPDATE SET kind = excluded.kind, "
          "status = excluded.status, result = excluded.result, error = excluded.error, created = excluded.created, "
          "elapsed_s = excluded.elapsed_s, worker = excluded.worker WHERE jobs.status = 'error'")


def _where(**filters: str | None) -> tuple[str, tuple[str, ...]]:
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), tuple(used.values())


def _job(row: tuple[Any, ...]) -> StoredJob:
    sha, digest, key, kind, status, result, error, created, elapsed, worker = row
    return StoredJob(sha, digest, key, kind, JobStatus(status), None if result is None else json.loads(result),
                     error or "", elapsed, worker or "", float(created))


def _plain(value: Any) -> Any:
    """JSON for NumPy arrays and scalars in a result."""
    return value.tolist() if hasattr(value, "tolist") else str(value)
