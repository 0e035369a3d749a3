"""The SQLite schema of the results store (:mod:`.store`) and its migrations.

Each version is the list of SQL statements that takes a database from the
version before it to this one; a new database runs them all.  A version is
never edited once released: a change is a new version appended to
:data:`MIGRATIONS`, with a test that migrates a database of the old one.
The tables are documented in ``reports/SCHEMA.md`` ("Results store").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from nnaudit.errors import ConfigError

#: version -> statements taking a database of version - 1 to it (0: an empty file)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
        """CREATE TABLE jobs (
               id INTEGER PRIMARY KEY,
               model_sha256 TEXT NOT NULL,
               settings_hash TEXT NOT NULL,
               job_key TEXT NOT NULL,
               kind TEXT NOT NULL,
               status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
               result TEXT,
               error TEXT NOT NULL DEFAULT '',
               created REAL NOT NULL,
               UNIQUE (model_sha256, settings_hash, job_key))""",
    ),
    2: (
        "ALTER TABLE jobs ADD COLUMN elapsed_s REAL",
        "ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE models (
               sha256 TEXT PRIMARY KEY,
               path TEXT NOT NULL,
               first_seen REAL NOT NULL)""",
        """CREATE TABLE settings (
               hash TEXT PRIMARY KEY,
               kind TEXT NOT NULL,
               json TEXT NOT NULL)""",
        "CREATE INDEX jobs_by_kind ON jobs (kind, model_sha256, created)",
    ),
}

#: the version this code writes
CURRENT = max(MIGRATIONS)


def version_of(conn: sqlite3.Connection) -> int:
    """The schema version of an open database (0: empty, no tables yet)."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if has is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, where: str, *, to: int = CURRENT) -> int:
    """Bring the database up to version ``to``, one version per transaction; returns the old version.

    ConfigError for a database newer than this code (``where`` names its file)."""
    old = version_of(conn)
    if old > CURRENT:
        raise ConfigError(f"{where}: results store has schema version {old}, newer than this nnaudit "
                          f"(version {CURRENT}); upgrade nnaudit to read it")
    for version in range(old + 1, to + 1):
        with transaction(conn):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version,))
    return old


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One explicit transaction on an autocommit connection (``isolation_level=None``), so that
    DDL is inside it too: a migration or a batch of writes happens whole or not at all."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
