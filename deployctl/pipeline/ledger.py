"""A stack's release ledger: one model (``StoredLedger``) over a store per target.

Rules:
- A record holds ids, hashes, digests, revision names and secret *versions*, never a secret value.
- Release ids are ``r0001``, ``r0002``…: ``next_id`` takes the highest id stored plus one and reserves it
  by creating a placeholder record only if that id is absent; when another process got there first it
  tries the next number, so two allocators never share an id. A placeholder whose process died before
  saving is an id nobody uses again; ``get`` and ``history`` do not show it.
- ``history`` is newest first, by id number.
- Records are parsed strictly (model.decode_record) and carry a schema version. A record that cannot be
  read is ``LedgerDamaged``, naming the file or object and the record, with ``deployctl ledger repair`` as
  the hint; one a newer deployctl wrote is refused, not misread. Either way nothing is written.

Stores: ``SqliteRecords`` (local stacks: SQLite in WAL mode, where every write is one transaction, so a
crash, even ``kill -9``, leaves either the old or the new record) and ``GcsRecords`` (gcp stacks, in
deployctl/targets/gcp/state.py: one object per record, written with generation preconditions).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from deployctl.errors import DeployctlError, LedgerDamaged, PreconditionError
from deployctl.pipeline.model import RECORD_SCHEMA, NewerSchemaError, RecordError, ReleaseRecord, decode_record

_ID = re.compile(r"r(\d+)")


class RecordStore(Protocol):
    """Release records as JSON documents keyed by id."""

    where: str  # for messages: the file or the gs:// prefix

    def ids(self) -> list[str]:
        """Every stored id, placeholders included, in any order."""
        ...

    def create(self, release_id: str, data: dict[str, Any]) -> bool:
        """Store *data* under *release_id* only if that id is absent; False when it exists."""
        ...

    def put(self, release_id: str, data: dict[str, Any]) -> None:
        """Insert or replace the record of *release_id*."""
        ...

    def load(self, release_ids: Sequence[str]) -> Iterator[tuple[str, str | bytes]]:
        """(id, record as stored) for those ids that exist, in the order given (lazily: the caller may stop
        early). Undecoded: the ledger parses them, so every store's damage is reported the same way."""
        ...

    def locate(self, release_id: str) -> str:
        """Where one record is, for a message: ``record r0003 of .deployctl/local/ledger.db``, a gs:// URL."""
        ...


class StoredLedger:
    """The ledger's model (see the module docstring), over any ``RecordStore``."""

    def __init__(self, store: RecordStore, attempts: int = 20, stack: str = "STACK") -> None:
        self.store = store
        self.attempts = attempts
        self.stack = stack  # for the repair command in messages

    def next_id(self) -> str:
        for _ in range(self.attempts):
            release_id = f"r{max(map(_number, self._ids()), default=0) + 1:04d}"
            if self.store.create(release_id, ReleaseRecord.placeholder(release_id).to_dict()):
                return release_id
        raise DeployctlError(f"could not reserve a release id in {self.store.where}", "Retry the command.")

    def save(self, record: ReleaseRecord) -> None:
        self.store.put(record.id, record.to_dict())

    def get(self, release_id: str) -> ReleaseRecord | None:
        return next(self._records([release_id]), None)

    def history(self, limit: int = 50) -> list[ReleaseRecord]:
        newest_first = sorted(self._ids(), key=_number, reverse=True)
        out: list[ReleaseRecord] = []
        for record in self._records(newest_first):
            if len(out) >= limit:
                break
            out.append(record)
        return out

    def _ids(self) -> list[str]:
        return [i for i in self.store.ids() if _ID.fullmatch(i)]

    def _records(self, release_ids: Sequence[str]) -> Iterator[ReleaseRecord]:
        """The saved records of these ids; placeholders (reserved, never saved) are skipped."""
        for release_id, text in self.store.load(release_ids):
            record = self.decode(release_id, text)
            if not record.is_placeholder:
                yield record

    def decode(self, release_id: str, text: str | bytes) -> ReleaseRecord:
        try:
            return decode_record(text, release_id)
        except NewerSchemaError as exc:
            raise newer_error(self.store.locate(release_id), exc.schema) from None
        except RecordError as exc:
            raise damaged(self.store.locate(release_id), exc.reason, self.stack) from None


def damaged(where: str, reason: str, stack: str) -> LedgerDamaged:
    return LedgerDamaged(f"{where} is damaged ({reason})", f"Repair it: deployctl ledger repair {stack}")


def newer_error(where: str, schema: int) -> PreconditionError:
    return PreconditionError(
        f"{where} was written by a newer deployctl (record schema {schema}; this one reads {RECORD_SCHEMA})",
        "Upgrade deployctl to use this stack; nothing was changed.",
    )


def _number(release_id: str) -> int:
    return int(release_id[1:])


_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
"""
_CHUNK = 50  # records read per query by load()


class SqliteRecords:
    """Records in one SQLite file; every statement is its own transaction (autocommit)."""

    def __init__(self, path: Path, stack: str | None = None) -> None:
        self.path = path
        self.where = str(path)
        self.stack = stack or path.parent.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def locate(self, release_id: str) -> str:
        return f"record {release_id} of {self.where}"

    def ids(self) -> list[str]:
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT id FROM releases")]

    def create(self, release_id: str, data: dict[str, Any]) -> bool:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO releases (id, record) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
                (release_id, _dump(data)),
            )
            return cursor.rowcount == 1

    def put(self, release_id: str, data: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO releases (id, record) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (release_id, _dump(data)),
            )

    def load(self, release_ids: Sequence[str]) -> Iterator[tuple[str, str | bytes]]:
        for start in range(0, len(release_ids), _CHUNK):
            chunk = list(release_ids[start : start + _CHUNK])
            with self._connect() as db:
                rows = db.execute(
                    "SELECT id, record FROM releases WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(chunk),)
                ).fetchall()
            found = dict(rows)
            yield from ((i, found[i]) for i in chunk if i in found)


class SqliteLedger(StoredLedger):
    """The ledger of a stack whose state lives on this machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = SqliteRecords(path)
        super().__init__(self.records, stack=self.records.stack)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)
