"""The ledger and the deploy lock of a local stack, kept in its state directory (``.deployctl/<stack>/``).

Layout: ``ledger.db`` (SQLite in WAL mode, one row per ledger record), its backup ``ledger.db.bak``, and
``lock.json`` (the holder) with ``lock.mutex`` beside it.

The lock's and the ledger's rules are written once, in deployctl/pipeline/lock.py and ledger.py; this
module is their store on this machine, as deployctl/targets/gcp/state.py is in a GCS bucket. The SQLite
file itself (its checks, backup and creation) is ledger_file.py's; mending it is ledger_repair.py's.

Rules:
- Every ledger write is one SQLite transaction (autocommit), so a crash, even ``kill -9``, leaves either the
  old or the new record. The file is checked before a process first uses it (integrity, table, every
  record, and that it holds no less than its backup) and backed up after every finished run.
- Every change to the lock is a compare-and-set: a short ``flock`` on ``lock.mutex`` makes it atomic between
  processes, and ``lock.json`` is replaced by a rename, so a reader never sees half of it.
- The local lock does not heartbeat: its holders are processes on this machine, judged by pid and start
  time (deployctl/liveness.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from deployctl import liveness
from deployctl.pipeline.ledger import StoredLedger, damaged, newer_error, number
from deployctl.pipeline.lock import StoredLock
from deployctl.pipeline.model import LockInfo, ReleaseRecord
from deployctl.targets.local import ledger_file
from deployctl.targets.local.fs import atomic_write
from deployctl.targets.local.ledger_file import FileDamaged
from deployctl.targets.local.ledger_repair import repair_file

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
        return repair_file(self.records)


class FileLockStore:
    """``lock.json`` in a directory; its version is its text ("" when absent)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock.json"
        self.mutex = directory / "lock.mutex"
        directory.mkdir(parents=True, exist_ok=True)

    def read(self) -> tuple[dict[str, Any] | None, str]:
        text = self._text()  # no mutex needed: the file is only ever replaced by a rename
        try:
            data = json.loads(text) if text else None
        except ValueError:  # a torn or foreign file: no valid holder, but compare-and-set still guards it
            data = None
        return (data if isinstance(data, dict) else None), text

    def write(self, data: dict[str, Any], expected: str) -> str | None:
        text = json.dumps(data)
        with self._mutex():
            if self._text() != expected:
                return None
            atomic_write(self.path, text)
        return text

    def delete(self, expected: str) -> bool:
        with self._mutex():
            if self._text() != expected:
                return False
            self.path.unlink(missing_ok=True)
        return True

    def _text(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        with open(self.mutex, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class FileLock(StoredLock[str]):
    """The deploy lock of a stack whose state lives on this machine (no heartbeat: pipeline/lock.py says why)."""

    def __init__(self, directory: Path, stack: str, warn: Callable[[str], None] | None = None,
                 working: Callable[[LockInfo], list[str]] | None = None) -> None:
        super().__init__(FileLockStore(directory), stack, liveness=liveness, warn=warn, working=working)


def _shown(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):  # elsewhere, or the working directory is gone
        return str(path)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)
