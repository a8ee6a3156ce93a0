"""Plain data the pipeline passes between stages, targets and the ledger, and pure functions of it. No I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
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
    kind: Literal["release", "rollback", "rotate"]
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
    secret_versions: dict[str, str] = field(default_factory=dict)
    accepted_risks: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)  # the steps this run was planned as (Plan.to_dict)
    stages: list[StageResult] = field(default_factory=list)  # what each stage did, as it ended
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


def fingerprint_of(stack_fp: str, hashes: dict[str, str], versions: dict[str, str | None], image: str | None) -> str:
    """What a release is made of: the stack's settings, each service's source, the secret versions, the image."""
    data = {"stack": stack_fp, "sources": hashes, "secrets": versions, "image": image}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def combined_hash(hashes: dict[str, str]) -> str:
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
