"""``deployctl ledger repair``: mend a damaged ledger under the stack's deploy lock, and say exactly what was
done and what was lost.

Local (``repair_file``): the damaged file is kept aside as ``ledger.db.damaged-<UTC time>`` (a hard link,
so it stays byte for byte what was found), and a new file is made from every record that can still be
read: from the damaged file first (it is the newer), then from the backup (``ledger.db.bak``, the state
after the last finished run) for whatever the damaged file lost. With a good backup that is a restore
that keeps anything newer; without one, a salvage. A record no copy holds is lost, and its id stays
reserved (a placeholder), so no later run is given it: ids continue after the highest one that survives.

Rules: nothing is deleted; a ledger that is not damaged is left alone; a record written by a newer
deployctl is not damage and is kept as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from deployctl.errors import LedgerDamaged
from deployctl.pipeline import ledger_file
from deployctl.pipeline.ledger_file import Contents, number, span
from deployctl.pipeline.model import ReleaseRecord

if TYPE_CHECKING:
    from deployctl.pipeline.ledger import SqliteRecords
    from deployctl.pipeline.target import Target


def repair(target: Target, command: str, lock_timeout_s: float) -> list[str]:
    """Repair the stack's ledger while holding its deploy lock (no run writes to it meanwhile)."""
    info = target.lock.acquire(command, lock_timeout_s)
    try:
        return target.ledger.repair()
    finally:
        target.lock.release(info)


def repair_file(records: SqliteRecords) -> list[str]:
    try:
        contents = records.check()  # a newer deployctl's record raises here: repair cannot help with that
    except LedgerDamaged:
        pass
    else:
        return [f"{records.where} is not damaged: {count(contents.records)} ({span(contents.records)}). "
                "Nothing to do."]
    found, problem = ledger_file.salvage(records.path)
    backup = Backup.of(records.backup_path)
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
    said += lost_lines(lost, problem, backup.when)
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

    @classmethod
    def of(cls, path: Path) -> Backup:
        if not path.exists():
            return cls(path, Contents(), None, None)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
        contents, problem = ledger_file.salvage(path)
        return cls(path, contents, problem, when)

    def lines(self, restored: list[str]) -> list[str]:
        if self.when is None:
            return [f"There is no backup ({self.path.name}) to restore from."]
        said = [f"The backup {self.path.name} of {self.when} is damaged too ({self.problem})."] if self.problem else []
        if restored:
            return [*said, f"Restored {span(restored)} from the backup {self.path.name} of {self.when}."]
        return [*said, f"The backup {self.path.name} of {self.when} held no record the damaged file lacked."]


def _read_lines(where: str, found: Contents, problem: str | None) -> list[str]:
    if problem and not found.rows and not found.bad:
        return [f"Nothing could be read from {where}: {problem}."]
    damage = f" (damaged: {problem})" if problem else ""
    said = [f"Read {count(found.records)} from {where}{damage}: {span(found.records)}."]
    by_reason: dict[str, list[str]] = {}
    for release_id in sorted(found.bad, key=number):
        by_reason.setdefault(found.bad[release_id], []).append(release_id)
    return said + [f"Could not read {span(ids)} from it: {reason}." for reason, ids in by_reason.items()]


def lost_lines(lost: list[str], problem: str | None, backup_when: str | None) -> list[str]:
    """What was lost, one sentence per record, and what may be lost beyond them when the file was
    damaged as a whole (then not every record can be named)."""
    said = []
    if lost:
        ids = "its id stays" if len(lost) == 1 else "their ids stay"
        said.append(f"Lost {span(lost)}: no copy can be read; {ids} reserved and will not be used again.")
    if problem and backup_when:
        said.append(f"Anything saved after the backup of {backup_when} and not named above could not be read "
                    "and is lost.")
    elif problem:
        said.append("Anything else the file held could not be read and is lost.")
    elif not lost:
        said.append("Nothing was lost.")
    return said


def _newer_lines(newer: dict[str, int]) -> list[str]:
    if not newer:
        return []
    return [f"Kept {span(newer)} as found: written by a newer deployctl (record schema "
            f"{max(newer.values())}); upgrade deployctl to read it."]


def count(ids: list[str]) -> str:
    return f"{len(ids)} record{'' if len(ids) == 1 else 's'}"


def next_id(ids: Iterable[str]) -> str:
    return f"r{max(map(number, ids), default=0) + 1:04d}"


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
