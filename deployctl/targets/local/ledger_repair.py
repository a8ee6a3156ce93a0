"""``deployctl ledger repair`` on a local stack: mend a damaged ledger file, and say exactly what was done and
what was lost (deployctl.pipeline.ledger.repair holds the stack's deploy lock meanwhile).

The damaged file is kept aside as ``ledger.db.damaged-<UTC time>`` (a hard link, so it stays byte for byte
what was found), and the backup (``ledger.db.bak``, taken after every finished run) is restored. When SQLite
can still read the damaged file and only some of its rows are bad, its readable rows are kept too (they are
the newer copies, and hold what ran since the backup); a bad row the backup does not hold is lost, and its id
stays reserved (a placeholder), so no later run is given it. When SQLite cannot read the file at all, what was
saved since the backup is lost, and is named as such: the records after the backup's newest. Ids continue
after the highest one that survives.

Rules: nothing is deleted; a ledger that is not damaged is left alone; a record written by a newer
deployctl is not damage and is kept as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from deployctl.errors import LedgerDamaged
from deployctl.pipeline.ledger import count, next_id, number, span
from deployctl.pipeline.model import ReleaseRecord
from deployctl.targets.local import ledger_file
from deployctl.targets.local.ledger_file import Contents


class Records(Protocol):
    """What repair needs of the ledger's store (state.SqliteRecords, which calls repair_file)."""

    path: Path
    backup_path: Path
    where: str

    def check(self) -> Contents: ...

    def reopen(self) -> None: ...

    def backup(self) -> bool: ...


def repair_file(records: Records) -> list[str]:
    try:
        contents = records.check()  # a newer deployctl's record raises here: repair cannot help with that
    except LedgerDamaged:
        pass
    else:
        return [f"{records.where} is not damaged: {count(contents.records)} ({span(contents.records)}). "
                "Nothing to do."]
    found, problem = ledger_file.read_copy(records.path)
    backup = Backup.of(records.backup_path)
    newest = _newest([*found.rows, *found.bad])
    if problem is None and backup.newest and number(backup.newest) > number(newest or ""):
        problem = f"its newest record is {newest or 'none'}, but its backup holds {backup.newest}"
        found = Contents()  # an older history than the backup's: the backup is the ledger
    rows = {**backup.contents.rows, **found.rows}
    lost = sorted((set(found.bad) | set(backup.contents.bad)) - set(rows), key=number)
    for release_id in lost:
        rows[release_id] = json.dumps(ReleaseRecord.placeholder(release_id).to_dict(), sort_keys=True)
    aside = _aside(records.path) if records.path.exists() else None
    if aside is not None:
        ledger_file.keep_aside(records.path, aside)
    ledger_file.create(records.path, rows)
    records.reopen()
    said = [f"Kept the damaged file as {_beside(records.where, aside)}."] if aside else []
    said += _read_lines(records.where, found, problem)
    said += backup.lines([i for i in backup.contents.records if i not in found.rows])
    said += lost_lines(lost, problem, backup)
    said += _newer_lines({**backup.contents.newer, **found.newer})
    repaired = ledger_file.read(records.path).records
    if records.backup():
        said.append(f"Backed up the repaired ledger to {_beside(records.where, records.backup_path)}.")
    said.append(f"{records.where} now holds {count(repaired)} ({span(repaired)}); "
                f"the next id is {next_id(rows)}.")
    return said


class Backup:
    """The backup file as repair found it: what it holds, what is wrong with it, when it was taken."""

    def __init__(self, path: Path, contents: Contents, problem: str | None, when: str | None) -> None:
        self.path, self.contents, self.problem, self.when = path, contents, problem, when
        self.newest = _newest(contents.rows)

    @classmethod
    def of(cls, path: Path) -> Backup:
        if not path.exists():
            return cls(path, Contents(), None, None)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
        contents, problem = ledger_file.read_copy(path)
        return cls(path, contents, problem, when)

    def lines(self, restored: list[str]) -> list[str]:
        if self.when is None:
            return [f"There is no backup ({self.path.name}) to restore from."]
        if self.problem:
            return [f"The backup {self.path.name} of {self.when} cannot be used either ({self.problem})."]
        if restored:
            return [f"Restored {span(restored)} from the backup {self.path.name} of {self.when}."]
        return [f"The backup {self.path.name} of {self.when} held no record the damaged file lacked."]


def _read_lines(where: str, found: Contents, problem: str | None) -> list[str]:
    if problem:
        return [f"{where} cannot be used: {problem}."]
    said = [f"Read {count(found.records)} from {where}: {span(found.records)}."]
    by_reason: dict[str, list[str]] = {}
    for release_id in sorted(found.bad, key=number):
        by_reason.setdefault(found.bad[release_id], []).append(release_id)
    return said + [f"Could not read {span(ids)} from it: {reason}." for reason, ids in by_reason.items()]


def lost_lines(lost: list[str], problem: str | None, backup: Backup) -> list[str]:
    """What was lost: each bad row no copy holds by its id; when the file could not be read at all, what
    was saved since the backup, named by where it starts (its ids cannot be read)."""
    said = []
    if lost:
        ids = "its id stays" if len(lost) == 1 else "their ids stay"
        said.append(f"Lost {span(lost)}: no copy can be read; {ids} reserved and will not be used again.")
    if problem and backup.newest:
        said.append(f"Lost whatever was saved after the backup of {backup.when}: any record after "
                    f"{backup.newest}.")
    elif problem:
        said.append("Lost every record the file held: there is no readable backup.")
    elif not lost:
        said.append("Nothing was lost.")
    return said


def _newest(ids: Iterable[str]) -> str | None:
    return max(ids, key=number, default=None)


def _newer_lines(newer: dict[str, int]) -> list[str]:
    if not newer:
        return []
    return [f"Kept {span(newer)} as found: written by a newer deployctl (record schema "
            f"{max(newer.values())}); upgrade deployctl to read it."]


def _aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():  # a second repair within the same second
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return aside


def _beside(where: str, path: Path) -> str:
    return str(Path(where).with_name(path.name))
