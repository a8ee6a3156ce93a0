"""The local ledger's SQLite file: the check made when it is opened, its backup, and the copy repair reads.
Its store (SqliteRecords) is in state.py; its repair in ledger_repair.py.

Rules:
- Checking only reads: a damaged file keeps every byte it had (no table is created, no journal mode set).
- A ledger file is made whole in a temporary file and renamed into place, so a crash never leaves a
  half-made one: an empty ``ledger.db`` is never deployctl's own doing.
- The backup is the last good state. SQLite's online backup API copies the ledger into a temporary file
  (a consistent copy even while another process writes); the copy is checked like the ledger itself
  (integrity, table, every record) and only then renamed over the old backup. A copy that fails the
  check is dropped, so a bad row never replaces a good backup.
- Repair reads a damaged file through a scratch copy (``read_copy``), never the file itself (closing a
  connection may checkpoint its write-ahead log into it): the copy kept aside for a person is exactly what
  was found. It reads what SQLite can still read, and nothing more: a file SQLite cannot open is restored
  from its backup, which is taken after every finished run, so what is lost is what was saved since then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deployctl.pipeline.ledger import number
from deployctl.pipeline.model import NewerSchemaError, RecordError, decode_record

TABLE = "CREATE TABLE releases (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, record TEXT NOT NULL)"
COLUMNS = [("seq", "INTEGER"), ("id", "TEXT"), ("record", "TEXT")]
_SIDE = ("-wal", "-shm")  # the files SQLite keeps beside a database in WAL mode


class FileDamaged(Exception):  # noqa: N818 - a state, like the LedgerDamaged error it becomes
    """The file as a whole cannot be used; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Contents:
    """The rows of one ledger file: the readable ones as stored, and why the others cannot be used."""

    rows: dict[str, str | bytes] = field(default_factory=dict)  # id -> record as stored (newer ones too)
    bad: dict[str, str] = field(default_factory=dict)  # id -> why its row cannot be read
    newer: dict[str, int] = field(default_factory=dict)  # id -> the schema a newer deployctl wrote it in
    placeholders: set[str] = field(default_factory=set)  # reserved ids (no record saved, or a lost record)

    def add(self, release_id: str, text: str | bytes) -> None:
        try:
            record = decode_record(text, release_id)
        except NewerSchemaError as exc:
            self.newer[release_id] = exc.schema
        except RecordError as exc:
            self.bad[release_id] = exc.reason
            return
        else:
            if record.is_placeholder:
                self.placeholders.add(release_id)
        self.rows[release_id] = text
        self.bad.pop(release_id, None)

    @property
    def records(self) -> list[str]:
        """The ids of saved records (placeholders left out), oldest first."""
        return sorted((i for i in self.rows if i not in self.placeholders), key=number)


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=NORMAL")
        yield db
    finally:
        db.close()


def is_empty(path: Path) -> bool:
    """No ledger at all: the file is absent, or has no byte and no write-ahead log."""
    wal = path.with_name(path.name + "-wal")
    return not path.exists() or (path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0))


def read(path: Path) -> Contents:
    """Every row of a ledger file that passes the file checks; raises FileDamaged when it does not.
    Rows that cannot be read are listed in ``Contents.bad``, not raised."""
    try:
        with connect(path) as db:
            _check(db)
            contents = Contents()
            for release_id, text in db.execute("SELECT id, record FROM releases"):
                contents.add(str(release_id), text)
            return contents
    except sqlite3.DatabaseError as exc:
        raise FileDamaged(_said(exc)) from None


def _check(db: sqlite3.Connection) -> None:
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise FileDamaged(f"integrity check failed: {problems[0].splitlines()[-1]}")
    columns = [(row[1], row[2].upper()) for row in db.execute("PRAGMA table_info(releases)")]
    if not columns:
        raise FileDamaged("it has no releases table")
    if columns != COLUMNS:
        found = ", ".join(f"{name} {kind}" for name, kind in columns)
        raise FileDamaged(f"its releases table has the columns ({found}), not ({_columns()})")


def newest_id(path: Path) -> str | None:
    """The highest release id in a ledger file, read best-effort (None when unreadable or empty)."""
    try:
        with connect(path) as db:
            ids = [str(row[0]) for row in db.execute("SELECT id FROM releases")]
    except sqlite3.DatabaseError:
        return None
    return max(ids, key=number, default=None)


def read_copy(path: Path) -> tuple[Contents, str | None]:
    """What ``read`` finds in a copy of *path* (so *path* keeps every byte), and why the file as a whole
    cannot be read (None when it can: then only the rows in ``Contents.bad`` are damaged)."""
    if not path.exists():
        return Contents(), "it is missing"
    if is_empty(path):
        return Contents(), "it is empty (0 bytes)"
    with _scratch_copy(path) as scratch:
        try:
            return read(scratch), None
        except FileDamaged as exc:
            return Contents(), exc.reason


def create(path: Path, rows: dict[str, str | bytes] | None = None) -> None:
    """Make *path* a ledger holding *rows*, whole: built in a temporary file, then put in place. An absent
    *path* is only created (a hard link fails if another process made it meanwhile: theirs is kept); an
    existing one is replaced (repair, or an empty file of a new stack)."""
    new = _build(path.parent, rows or {})
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.link(new, path)
        else:
            for side in _SIDE:  # the old file's log would be replayed into the new one
                path.with_name(path.name + side).unlink(missing_ok=True)
            os.replace(new, path)
        _sync_dir(path.parent)
    finally:
        new.unlink(missing_ok=True)


def keep_aside(path: Path, aside: Path) -> None:
    """Keep the file at *path* (and its write-ahead log) as *aside*, leaving *path* in place."""
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            _link_or_copy(source, aside.with_name(aside.name + suffix))


def backup(path: Path, dest: Path) -> bool:
    """Copy the ledger at *path* to *dest* if the copy is good (see the module docstring); whether it was."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".new")
    os.close(fd)
    tmp = Path(name)
    try:
        with connect(path) as source, connect(tmp) as copy:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        if read(tmp).bad:
            return False
        _sync(tmp)
        os.replace(tmp, dest)
        _sync_dir(dest.parent)
        return True
    except (FileDamaged, sqlite3.DatabaseError):
        return False
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _scratch_copy(path: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".ledger-repair-") as tmp:
        scratch = Path(tmp) / path.name
        for suffix in ("", "-wal"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                shutil.copyfile(source, scratch.with_name(scratch.name + suffix))
        yield scratch


def _build(directory: Path, rows: dict[str, str | bytes]) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=".ledger.", suffix=".new")
    os.close(fd)
    new = Path(name)
    try:
        with connect(new) as db:
            db.execute(TABLE)
            db.execute("BEGIN")
            in_order = [(release_id, rows[release_id]) for release_id in sorted(rows, key=number)]
            db.executemany("INSERT INTO releases (id, record) VALUES (?, ?)", in_order)
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode=WAL")
        _sync(new)
    except BaseException:
        new.unlink(missing_ok=True)
        raise
    return new


def _said(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    return "not an SQLite database" if text == "file is not a database" else f"integrity check failed: {text}"


def _columns() -> str:
    return ", ".join(f"{name} {kind}" for name, kind in COLUMNS)


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # a filesystem without hard links
        shutil.copy2(source, dest)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _sync(directory)
