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

The local file is checked before its first use by a process (integrity, table, every record; and that it
holds no less than its backup), and is backed up after every finished run (ledger_file.py says how).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from deployctl.errors import DeployctlError, LedgerDamaged, PreconditionError
from deployctl.pipeline import ledger_file
from deployctl.pipeline.ledger_file import FileDamaged, number
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
            release_id = f"r{max(map(number, self._ids()), default=0) + 1:04d}"
            if self.store.create(release_id, ReleaseRecord.placeholder(release_id).to_dict()):
                return release_id
        raise DeployctlError(f"could not reserve a release id in {self.store.where}", "Retry the command.")

    def save(self, record: ReleaseRecord) -> None:
        self.store.put(record.id, record.to_dict())

    def get(self, release_id: str) -> ReleaseRecord | None:
        return next(self._records([release_id]), None)

    def history(self, limit: int = 50) -> list[ReleaseRecord]:
        newest_first = sorted(self._ids(), key=number, reverse=True)
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


_CHUNK = 50  # records read per query by load()


class SqliteRecords:
    """Records in one SQLite file; every statement is its own transaction (autocommit).

    *evidence*: paths of the stack's other state (secrets, revisions). A missing or empty file beside any
    of them, or beside a backup, is a ledger that was lost, not a new stack: it is damage, never a fresh
    history whose ids restart at r0001. A new stack's file is made when the store is opened (so it exists
    before any other state), whole, by ledger_file.create."""

    def __init__(self, path: Path, evidence: Sequence[Path] = (), stack: str | None = None) -> None:
        self.path = path
        self.backup_path = path.with_name(path.name + ".bak")
        self.where = _shown(path)
        self.stack = stack or path.parent.name
        self.evidence = (self.backup_path, *evidence)
        self._checked = False
        path.parent.mkdir(parents=True, exist_ok=True)
        if ledger_file.is_empty(path) and not self.other_state():
            ledger_file.create(path)

    def other_state(self) -> list[str]:
        """The names of the stack's other state that exists (evidence that this stack was used)."""
        return [p.name for p in self.evidence if p.is_file() or (p.is_dir() and any(p.iterdir()))]

    def inspect(self) -> ledger_file.Contents:
        """Read-only: every row, once the file passes its checks; raises FileDamaged naming what is wrong."""
        if ledger_file.is_empty(self.path):
            state = self.other_state()
            if state:
                missing = "missing" if not self.path.exists() else "empty (0 bytes)"
                raise FileDamaged(f"it is {missing}, but the stack has other state: {', '.join(state)}")
            return ledger_file.Contents()
        contents = ledger_file.read(self.path)
        kept = ledger_file.newest_id(self.backup_path) if self.backup_path.exists() else None
        newest = max([*contents.rows, *contents.bad], key=number, default=None)
        if kept is not None and number(kept) > (number(newest) if newest else 0):
            raise FileDamaged(f"its newest record is {newest or 'none'}, but its backup "
                              f"{self.backup_path.name} holds {kept}")
        return contents

    def check(self) -> ledger_file.Contents:
        """Read-only: ``inspect``, with what it finds raised as the error a user sees."""
        try:
            contents = self.inspect()
        except FileDamaged as exc:
            raise damaged(self.where, exc.reason, self.stack) from None
        for release_id in sorted(contents.bad, key=number):
            raise damaged(self.locate(release_id), contents.bad[release_id], self.stack)
        for release_id in sorted(contents.newer, key=number):
            raise newer_error(self.locate(release_id), contents.newer[release_id])
        return contents

    def reopen(self) -> None:
        """The file was replaced (repaired): check it again before its next use."""
        self._checked = False

    def _ready(self) -> None:
        if not self._checked:
            if ledger_file.is_empty(self.path) and not self.other_state():
                ledger_file.create(self.path)
            self.check()
            self._checked = True

    def locate(self, release_id: str) -> str:
        return f"record {release_id} of {self.where}"

    def ids(self) -> list[str]:
        self._ready()
        with ledger_file.connect(self.path) as db:
            return [row[0] for row in db.execute("SELECT id FROM releases")]

    def create(self, release_id: str, data: dict[str, Any]) -> bool:
        self._ready()
        with ledger_file.connect(self.path) as db:
            cursor = db.execute(
                "INSERT INTO releases (id, record) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
                (release_id, _dump(data)),
            )
            return cursor.rowcount == 1

    def put(self, release_id: str, data: dict[str, Any]) -> None:
        self._ready()
        with ledger_file.connect(self.path) as db:
            db.execute(
                "INSERT INTO releases (id, record) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (release_id, _dump(data)),
            )

    def load(self, release_ids: Sequence[str]) -> Iterator[tuple[str, str | bytes]]:
        self._ready()
        for start in range(0, len(release_ids), _CHUNK):
            chunk = list(release_ids[start : start + _CHUNK])
            with ledger_file.connect(self.path) as db:
                rows = db.execute(
                    "SELECT id, record FROM releases WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(chunk),)
                ).fetchall()
            found = dict(rows)
            yield from ((i, found[i]) for i in chunk if i in found)

    def backup(self) -> bool:
        """Copy the file to ``ledger.db.bak`` if the copy passes the checks (ledger_file.backup)."""
        return ledger_file.backup(self.path, self.backup_path)


class SqliteLedger(StoredLedger):
    """The ledger of a stack whose state lives on this machine.

    The backup is taken after every *finished* run (any outcome but ``running``): then the ledger has just
    been read and written whole by a process that held the lock, and the copy costs one file per run, not
    one per stage. Losing the file loses at most what the runs since the last backup wrote; ``ledger
    repair`` restores the backup (and keeps what SQLite can still read of the damaged file)."""

    def __init__(self, path: Path, evidence: Sequence[Path] = (), stack: str | None = None) -> None:
        self.path = path
        self.records = SqliteRecords(path, evidence, stack)
        super().__init__(self.records, stack=self.records.stack)

    def save(self, record: ReleaseRecord) -> None:
        super().save(record)
        if record.outcome != "running":
            self.records.backup()

    def repair(self) -> list[str]:
        """Mend a damaged file (ledger_repair.repair_file); what was done and lost, one sentence each."""
        from deployctl.pipeline.ledger_repair import repair_file

        return repair_file(self.records)


def _shown(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):  # elsewhere, or the working directory is gone
        return str(path)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)
