"""The local ledger survives corruption (issue 12).

Each kind of damage the fault-injection run found — an empty file, a garbage header, a truncated file, a
bad row (bad JSON; valid JSON of the wrong types), a record from a newer deployctl — is one error naming
the file and the repair command; nothing is written to the damaged file (every file of the stack's state
keeps its bytes); and ``repair`` restores the backup plus the rows of the damaged file that SQLite can
still read, names what was lost, and ids continue after the highest surviving one.

The stack used: r0001…r0004 finished (so the backup, taken after each finished run, holds them) and
r0005 is still running (only the ledger holds it). Each record's message fills most of a page, so page
4 + n of the file holds r000n (pages 1-4: schema, table root, id index, sequence).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deployctl.errors import LedgerDamaged, PreconditionError
from deployctl.pipeline.model import ReleaseRecord
from deployctl.targets.local import ledger_file
from deployctl.targets.local.state import SqliteLedger

HINT = "Repair it: deployctl ledger repair s"


def record(release_id: str, stack: str = "s", **kw: object) -> ReleaseRecord:
    return ReleaseRecord(id=release_id, stack=stack, kind="release", started=1700000000.0,
                         command=f"deployctl up {stack}", message="m" * 3000, **kw)  # type: ignore[arg-type]


def open_ledger(path: Path) -> SqliteLedger:
    """As the local target opens it: the stack's secrets and revisions are evidence that it was used."""
    return SqliteLedger(path, (path.parent / "secrets.json", path.parent / "revisions"))


def seed(path: Path) -> None:
    """The stack of this module's docstring: r0001…r0004 finished (revisions api-0000N-abc), r0005 runs."""
    ledger = open_ledger(path)  # made when the target is opened, before any other state
    (path.parent / "secrets.json").write_text("{}")
    for n in range(1, 6):
        rid = ledger.next_id()
        ledger.save(record(rid, path.parent.name, outcome="succeeded" if n < 5 else "running",
                           revisions={"api": f"api-{n:05d}-abc"}))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "s" / "ledger.db"
    seed(path)
    return path


def set_row(path: Path, release_id: str, text: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE releases SET record = ? WHERE id = ?", (text, release_id))


def good(release_id: str, **changes: object) -> str:
    return json.dumps({**record(release_id).to_dict(), **changes})


def truncate_after_r0002(path: Path) -> None:
    page = int.from_bytes(path.read_bytes()[16:18], "big")
    os.truncate(path, 6 * page)


DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty": (lambda p: p.write_bytes(b""),
              "{file} is damaged (it is empty (0 bytes), but the stack has other state: ledger.db.bak, secrets.json)"),
    "missing": (lambda p: p.unlink(),
                "{file} is damaged (it is missing, but the stack has other state: ledger.db.bak, secrets.json)"),
    "garbage header": (lambda p: p.write_bytes(b"garbage!" * 4 + p.read_bytes()[32:]),
                       "{file} is damaged (not an SQLite database)"),
    "truncated": (truncate_after_r0002, "{file} is damaged (integrity check failed: database disk image is malformed)"),
    "bad JSON": (lambda p: set_row(p, "r0002", '{"id": "r0002", oops'),
                 "record r0002 of {file} is damaged "
                 "(not JSON: Expecting property name enclosed in double quotes: line 1 column 17 (char 16))"),
    "wrong types": (lambda p: set_row(p, "r0005", good("r0005", started="yesterday")),
                    "record r0005 of {file} is damaged (started: Input should be a valid number)"),
    "emptier than its backup": (lambda p: (p.unlink(), ledger_file.create(p)),
                                "{file} is damaged "
                                "(its newest record is none, but its backup ledger.db.bak holds r0004)"),
}


def state_of(directory: Path) -> dict[str, bytes]:
    """Every file of the stack's state (subdirectories too) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_one_error_naming_the_file_and_nothing_is_written(path: Path, damage: str) -> None:
    hurt, message = DAMAGE[damage]
    hurt(path)
    before = state_of(path.parent)
    ledger = open_ledger(path)
    attempts = [ledger.history, lambda: ledger.get("r0001"), ledger.next_id,
                lambda: ledger.save(record("r0006", outcome="succeeded"))]
    for attempt in attempts:
        with pytest.raises(LedgerDamaged) as caught:
            attempt()
        assert (caught.value.message, caught.value.hint, caught.value.exit_code) == (
            message.format(file=path), HINT, 5)
    assert state_of(path.parent) == before  # no byte written, no file made (no backup of a damaged file either)


def when(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))


@pytest.mark.parametrize("damage", ["garbage header", "truncated"])
def test_repair_restores_the_backup_of_an_unreadable_file_and_ids_go_on(path: Path, damage: str) -> None:
    backup = path.with_name("ledger.db.bak")
    DAMAGE[damage][0](path)
    damaged, taken = path.read_bytes(), when(backup)
    reason = {"garbage header": "not an SQLite database",
              "truncated": "integrity check failed: database disk image is malformed"}[damage]

    said = open_ledger(path).repair()

    aside = next(path.parent.glob("ledger.db.damaged-*"))
    assert aside.read_bytes() == damaged  # kept aside exactly as found
    assert said == [
        f"Kept the damaged file as {aside}.",
        f"{path} cannot be used: {reason}.",
        f"Restored r0001…r0004 from the backup ledger.db.bak of {taken}.",
        f"Lost whatever was saved after the backup of {taken}: any record after r0004.",  # r0005 ran since
        f"Backed up the repaired ledger to {backup}.",
        f"{path} now holds 4 records (r0001…r0004); the next id is r0005.",
    ]
    repaired = open_ledger(path)
    assert [r.id for r in repaired.history()] == ["r0004", "r0003", "r0002", "r0001"]
    assert repaired.get("r0003") == record("r0003", outcome="succeeded", revisions={"api": "api-00003-abc"})
    assert repaired.next_id() == "r0005"  # r0005's record was in no readable copy


@pytest.mark.parametrize("damage", ["empty", "missing", "emptier than its backup"])
def test_repair_of_an_empty_or_missing_file_restores_the_backup(path: Path, damage: str) -> None:
    DAMAGE[damage][0](path)
    taken = when(path.with_name("ledger.db.bak"))
    said = open_ledger(path).repair()
    reason = {"empty": "it is empty (0 bytes)", "missing": "it is missing",
              "emptier than its backup": "its newest record is none, but its backup holds r0004"}[damage]
    assert said[said.index(f"{path} cannot be used: {reason}.") + 1:] == [
        f"Restored r0001…r0004 from the backup ledger.db.bak of {taken}.",
        f"Lost whatever was saved after the backup of {taken}: any record after r0004.",
        f"Backed up the repaired ledger to {path.with_name('ledger.db.bak')}.",
        f"{path} now holds 4 records (r0001…r0004); the next id is r0005.",
    ]
    assert (damage != "missing") == any(path.parent.glob("ledger.db.damaged-*"))  # nothing to keep when missing
    assert open_ledger(path).next_id() == "r0005"


def test_repair_of_an_unreadable_file_without_a_backup_says_everything_is_lost(path: Path) -> None:
    path.with_name("ledger.db.bak").unlink()
    DAMAGE["garbage header"][0](path)
    said = open_ledger(path).repair()
    assert said[1:] == [
        f"{path} cannot be used: not an SQLite database.",
        "There is no backup (ledger.db.bak) to restore from.",
        "Lost every record the file held: there is no readable backup.",
        f"Backed up the repaired ledger to {path.with_name('ledger.db.bak')}.",
        f"{path} now holds 0 records (none); the next id is r0001.",
    ]
    assert open_ledger(path).history() == []  # a ledger again, if an empty one: commands are not blocked


def test_repair_of_a_bad_row_takes_it_from_the_backup_and_keeps_newer_rows(path: Path) -> None:
    set_row(path, "r0002", '{"id": "r0002", oops')
    taken = when(path.with_name("ledger.db.bak"))
    said = open_ledger(path).repair()
    assert said[1:] == [
        f"Read 4 records from {path}: r0001, r0003…r0005.",
        "Could not read r0002 from it: "
        "not JSON: Expecting property name enclosed in double quotes: line 1 column 17 (char 16).",
        f"Restored r0002 from the backup ledger.db.bak of {taken}.",
        "Nothing was lost.",
        f"Backed up the repaired ledger to {path.with_name('ledger.db.bak')}.",
        f"{path} now holds 5 records (r0001…r0005); the next id is r0006.",
    ]
    repaired = open_ledger(path)
    assert [(r.id, r.outcome) for r in repaired.history(limit=2)] == [("r0005", "running"), ("r0004", "succeeded")]


def test_repair_of_a_bad_row_no_copy_holds_reserves_its_id(path: Path) -> None:
    set_row(path, "r0005", good("r0005", started="yesterday"))
    taken = when(path.with_name("ledger.db.bak"))  # before repair backs up the repaired ledger
    said = open_ledger(path).repair()
    assert said[1:4] == [
        f"Read 4 records from {path}: r0001…r0004.",
        "Could not read r0005 from it: started: Input should be a valid number.",
        f"The backup ledger.db.bak of {taken} held no record the damaged file lacked.",
    ]
    assert said[4] == "Lost r0005: no copy can be read; its id stays reserved and will not be used again."
    assert open_ledger(path).next_id() == "r0006"


def test_repair_without_a_backup_keeps_the_readable_rows(path: Path) -> None:
    path.with_name("ledger.db.bak").unlink()
    set_row(path, "r0003", "{oops")
    said = open_ledger(path).repair()
    assert said[2:5] == [
        "Could not read r0003 from it: not JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1).",
        "There is no backup (ledger.db.bak) to restore from.",
        "Lost r0003: no copy can be read; its id stays reserved and will not be used again.",
    ]
    assert [r.id for r in open_ledger(path).history()] == ["r0005", "r0004", "r0002", "r0001"]


def test_repair_leaves_a_good_ledger_and_a_newer_deployctls_records_alone(path: Path) -> None:
    before = state_of(path.parent)
    assert open_ledger(path).repair() == [f"{path} is not damaged: 5 records (r0001…r0005). Nothing to do."]
    assert state_of(path.parent) == before
    set_row(path, "r0005", good("r0005", schema=2))
    before = state_of(path.parent)
    for attempt in (open_ledger(path).history, open_ledger(path).repair):
        with pytest.raises(PreconditionError) as caught:
            attempt()
        assert caught.value.message == (f"record r0005 of {path} was written by a newer deployctl "
                                        "(record schema 2; this one reads 1)")
        assert caught.value.hint == "Upgrade deployctl to use this stack; nothing was changed."
    assert state_of(path.parent) == before


def test_a_new_stack_starts_at_r0001_and_an_empty_file_alone_is_a_new_stack(tmp_path: Path) -> None:
    fresh = open_ledger(tmp_path / "new" / "ledger.db")
    assert fresh.history() == [] and fresh.next_id() == "r0001"
    lone = tmp_path / "lone" / "ledger.db"
    lone.parent.mkdir()
    lone.write_bytes(b"")  # nothing else in the stack's state: nothing was lost
    assert open_ledger(lone).next_id() == "r0001"


def test_the_backup_is_the_state_after_the_last_finished_run(path: Path) -> None:
    backup = path.with_name("ledger.db.bak")
    assert ledger_file.read(backup).records == ["r0001", "r0002", "r0003", "r0004"]  # r0005 still runs
    ledger = open_ledger(path)
    ledger.save(record("r0005", outcome="failed"))
    assert ledger_file.read(backup).records == ["r0001", "r0002", "r0003", "r0004", "r0005"]
    with contextlib.closing(sqlite3.connect(backup)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    set_row(path, "r0003", "{oops")  # a row gone bad is never copied over a good backup
    before = backup.read_bytes()
    assert not ledger.records.backup()
    assert backup.read_bytes() == before
