"""Plain data the pipeline passes between stages, targets and the ledger. No behaviour, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True)
class JobRun:
    job: str
    execution: str
    succeeded: bool
    attempts: int
    message: str = ""
    log: str | None = None  # a path or a console link, never the log's content


@dataclass
class StageResult:
    name: str
    status: StageStatus
    elapsed_s: float
    detail: str = ""


@dataclass
class Step:
    """One line of a plan: what a stage will do, in words a user reads (``up --dry-run``, ``plan``)."""

    stage: str
    action: str  # "run", "skip" or "reuse"
    message: str


@dataclass
class ReleasePlan:
    stack: str
    target: str
    source_hashes: dict[str, str]
    artifacts: dict[str, str | None]  # service -> existing artifact ref, or None when it must be built
    secret_versions: dict[str, str | None]  # secret -> version a release would pin now (None: to create)
    fingerprint: str
    serving_release: str | None
    noop: bool
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReleaseRecord:
    """One row of the ledger. Secret *versions* only, never values."""

    id: str
    stack: str
    kind: Literal["release", "rollback", "rotate"]
    started: float
    command: str
    git_sha: str | None = None
    source_hash: str | None = None
    fingerprint: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # service -> artifact ref / image digest
    revisions: dict[str, str] = field(default_factory=dict)  # service -> revision this release deployed
    previous: dict[str, str] = field(default_factory=dict)  # service -> revision serving before
    migration_before: str | None = None
    migration_after: str | None = None
    secret_versions: dict[str, str] = field(default_factory=dict)
    accepted_risks: list[str] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    outcome: Outcome = "running"
    message: str = ""
    finished: float | None = None
    holder: str | None = None  # the lock id of the process that ran it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseRecord:
        data = dict(data)
        data["stages"] = [StageResult(**s) for s in data.get("stages", [])]
        return cls(**data)


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
