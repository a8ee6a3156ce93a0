"""Plain data the pipeline passes between stages, targets and the ledger, and pure functions of it. No I/O."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import TypeAdapter

# The shape of a stored ReleaseRecord. A record without ``schema`` is 1 (written before it was stored). A
# field added that older readers may ignore keeps the number; a field renamed, removed or given another
# meaning bumps it, and an older deployctl then refuses the record instead of misreading it.
RECORD_SCHEMA = 1
STAGES = ("build", "migrate", "deploy", "smoke", "promote", "init")
StageStatus = Literal["ok", "skipped", "failed", "warning"]
Outcome = Literal["running", "succeeded", "failed", "rolled_back", "interrupted", "noop"]


@dataclass(frozen=True)
class Artifact:
    """What a build produced for one service: an image digest (gcp) or a content-addressed directory (local)."""

    service: str
    source_hash: str
    ref: str  # REGISTRY/IMAGE@sha256:… on gcp; the artifact id on local
    digest: str  # sha256:… of the image or of the artifact's content


@dataclass(frozen=True)
class Revision:
    """A deployed, immutable revision of a service. ``url`` reaches this revision alone (a tag URL)."""

    service: str
    name: str
    url: str
    artifact: str  # Artifact.ref
    secret_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """One entry of a service's traffic: a revision and the percent it gets."""

    revision: str
    percent: int
    tag: str | None = None


class JobState(StrEnum):
    """How a job execution ended, or that it was left running (a deadline passed, or nobody waits for it)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RUNNING = "running"


@dataclass(frozen=True)
class JobRun:
    job: str
    execution: str
    state: JobState
    attempts: int
    message: str = ""
    log: str | None = None  # a path or a console link, never the log's content

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED


@dataclass
class StageResult:
    name: str
    status: StageStatus
    elapsed_s: float
    detail: str = ""


@dataclass
class ReleaseRecord:
    """One row of the ledger. Secret *versions* only, never values."""

    id: str
    stack: str
    kind: Literal["release", "rollback", "rotate", "heal"]  # heal: a no-change `up` that mended what serves
    started: float
    command: str
    git_sha: str | None = None  # HEAD of the app's repository
    git_dirty: bool | None = None  # whether its work tree differed from that commit (None: unknown, older records)
    source_hash: str | None = None
    fingerprint: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # service -> artifact ref / image digest
    revisions: dict[str, str] = field(default_factory=dict)  # service -> revision this release deployed
    previous: dict[str, str] = field(default_factory=dict)  # service -> revision serving before
    migration_before: str | None = None
    migration_after: str | None = None
    migrations: str | None = None  # content hash of the migration files the database is at (migrations.files_hash)
    secret_versions: dict[str, str] = field(default_factory=dict)
    accepted_risks: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)  # the steps this run was planned as (Plan.to_dict)
    stages: list[StageResult] = field(default_factory=list)  # what each stage did, as it ended
    outcome: Outcome = "running"
    message: str = ""
    finished: float | None = None
    holder: str | None = None  # the lock id of the process that ran it
    holder_lock: LockInfo | None = None  # that lock as taken (pid, host, start): tells a live run from a dead one
    restored: str | None = None  # a rollback: the release whose code it serves again
    repinned: bool = False  # a rollback that deployed new revisions of that code (--repin), not routed back
    schema: int = RECORD_SCHEMA  # the shape this record was written in (see RECORD_SCHEMA)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def placeholder(cls, release_id: str) -> ReleaseRecord:
        """What reserves an id before its record is saved (and keeps a lost record's id from being reused);
        the ledger never shows it."""
        return cls(id=release_id, stack="", kind="release", started=0.0, command="")

    @property
    def is_placeholder(self) -> bool:
        return not self.stack


class RecordError(ValueError):
    """A stored record that cannot be read: ``reason`` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NewerSchemaError(RecordError):
    """A record written in a schema this deployctl does not know (a newer deployctl wrote it)."""

    def __init__(self, schema: int) -> None:
        super().__init__(f"written in record schema {schema}; this deployctl reads schema {RECORD_SCHEMA}")
        self.schema = schema


def decode_record(text: str | bytes, release_id: str) -> ReleaseRecord:
    """Parse the record stored under *release_id* strictly (no coercion: a string where a number belongs
    is an error). Raises NewerSchemaError for a schema above RECORD_SCHEMA, RecordError for anything else."""
    from pydantic import ValidationError

    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError(f"not a JSON object but {type(data).__name__}")
    schema = data.get("schema", RECORD_SCHEMA)
    if type(schema) is int and schema > RECORD_SCHEMA:
        raise NewerSchemaError(schema)
    try:
        record = _record_adapter().validate_json(text, strict=True)
    except ValidationError as exc:
        raise RecordError(_first_error(exc)) from None
    if record.schema < 1:
        raise RecordError(f"schema: {record.schema} is not a record schema")
    if record.id != release_id:
        raise RecordError(f"it holds the record of {record.id}")
    if "repinned" not in data:
        record.repinned = _repinned_before_it_was_recorded(record)
    return record


def _repinned_before_it_was_recorded(record: ReleaseRecord) -> bool:
    """A record written before ``repinned`` was: a repinned rollback is the one rollback whose planned
    steps deploy (a plain one only routes traffic). The one place that reads a rendered plan, to load it."""
    return record.kind == "rollback" and any(step.get("stage") == "deploy" for step in record.plan)


def _first_error(exc: Any) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


@functools.cache
def _record_adapter() -> TypeAdapter[ReleaseRecord]:
    from pydantic import TypeAdapter

    return TypeAdapter(ReleaseRecord)


@dataclass(frozen=True)
class LockInfo:
    """Who holds a stack's deploy lock."""

    id: str
    pid: int
    host: str
    command: str
    since: float
    heartbeat: float
    pid_started: float | None = None  # the process's start time, to tell a reused pid from the holder

    def describe(self) -> str:
        return f"lock {self.id} held by pid {self.pid} on {self.host} ({self.command!r})"


def fingerprint_of(stack_fp: str, hashes: dict[str, str], versions: dict[str, str | None], image: str | None) -> str:
    """What a release is made of: the stack's settings, each service's source, the secret versions, the image."""
    data = {"stack": stack_fp, "sources": hashes, "secrets": versions, "image": image}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def combined_hash(hashes: dict[str, str]) -> str:
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
