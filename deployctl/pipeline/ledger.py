"""The release ledger on this machine: SQLite in WAL mode, one JSON record per release.

Rule: a record holds ids, hashes, digests, revision names and secret *versions*, never a secret value.
Every write is one transaction, so a crash (even kill -9) leaves either the old or the new record.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from deployctl.pipeline.model import ReleaseRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
"""


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def next_id(self) -> str:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            # an upsert consumes AUTOINCREMENT values, so number releases by the ids themselves
            (last,) = db.execute("SELECT COALESCE(MAX(CAST(substr(id, 2) AS INTEGER)), 0) FROM releases").fetchone()
            release_id = f"r{last + 1:04d}"
            placeholder = ReleaseRecord(id=release_id, stack="", kind="release", started=0.0, command="")
            db.execute("INSERT INTO releases (id, record) VALUES (?, ?)", (release_id, _dump(placeholder)))
            db.execute("COMMIT")
        return release_id

    def save(self, record: ReleaseRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO releases (id, record) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (record.id, _dump(record)),
            )

    def get(self, release_id: str) -> ReleaseRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM releases WHERE id = ?", (release_id,)).fetchone()
        return _load(row[0]) if row else None

    def history(self, limit: int = 50) -> list[ReleaseRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT record FROM releases ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [r for r in (_load(row[0]) for row in rows) if r.stack]


def _dump(record: ReleaseRecord) -> str:
    return json.dumps(record.to_dict(), sort_keys=True)


def _load(text: str) -> ReleaseRecord:
    return ReleaseRecord.from_dict(json.loads(text))
