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

Stores live beside the target they serve, so this module imports no storage library: ``SqliteRecords``
(local stacks, deployctl/targets/local/state.py: SQLite in WAL mode, where every write is one transaction,
so a crash, even ``kill -9``, leaves either the old or the new record; checked before its first use and
backed up after every finished run) and ``GcsRecords`` (gcp stacks, deployctl/targets/gcp/state.py: one
object per record, written with generation preconditions). Each store's ledger mends its own damage
(``repair``); ``repair`` here holds the deploy lock meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from deployctl.errors import DeployctlError, LedgerDamaged, PreconditionError
from deployctl.pipeline.model import RECORD_SCHEMA, NewerSchemaError, RecordError, ReleaseRecord, decode_record

if TYPE_CHECKING:
    from deployctl.pipeline.target import Target

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
            release_id = next_id(self._ids())
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


def repair(target: Target, command: str, lock_timeout_s: float) -> list[str]:
    """Repair the stack's ledger while holding its deploy lock (no run writes to it meanwhile)."""
    info = target.lock.acquire(command, lock_timeout_s)
    try:
        return target.ledger.repair()
    finally:
        target.lock.release(info)


def number(release_id: str) -> int:
    match = _ID.fullmatch(release_id)
    return int(match.group(1)) if match else -1


def span(ids: Iterable[str]) -> str:
    """``r0001…r0004, r0007`` for a set of ids."""
    ordered = sorted(ids, key=number)
    runs: list[list[str]] = []
    for rid in ordered:
        if runs and number(rid) == number(runs[-1][-1]) + 1:
            runs[-1].append(rid)
        else:
            runs.append([rid])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}…{run[-1]}" for run in runs) or "none"


def count(ids: list[str]) -> str:
    return f"{len(ids)} record{'' if len(ids) == 1 else 's'}"


def next_id(ids: Iterable[str]) -> str:
    return f"r{max(map(number, ids), default=0) + 1:04d}"
