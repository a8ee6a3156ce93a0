"""The interfaces the pipeline drives. A target (local, gcp) implements them; the pipeline knows no SDK.

Rules for implementers:
- Methods documented as read-only make no mutating call (``plan``/``--dry-run`` rely on it).
- Errors are raised as deployctl.errors.DeployctlError subclasses with a hint; SDK exceptions never escape.
- Secret values never leave ``ensure_secrets``/``add_secret_version``: everything else carries versions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from deployctl.config import Job, Stack
from deployctl.migration_state import MigrationState
from deployctl.pipeline.model import Artifact, JobRun, LockInfo, ReleaseRecord, Revision, Split


class Ledger(Protocol):
    """The release history of one stack. Writes are crash-safe; records hold no secret values."""

    def next_id(self) -> str:
        """Reserve and return a new release id (``r0001``, ``r0002``…)."""
        ...

    def save(self, record: ReleaseRecord) -> None:
        """Insert or replace the record with this id."""
        ...

    def get(self, release_id: str) -> ReleaseRecord | None: ...

    def history(self, limit: int = 50) -> list[ReleaseRecord]:
        """Newest first."""
        ...

    def repair(self) -> list[str]:
        """Mend what of the ledger cannot be read (the caller holds the deploy lock); say what was done and
        what was lost, one sentence each. A ledger that is not damaged is left alone."""
        ...


@dataclass(frozen=True)
class DataLoss:
    """What a target saw of a database that holds none of the stack's data: where the data was, and how
    the operator gets it back."""

    where: str  # "its data directory .deployctl/local/postgres holds no database"
    restore: str  # one sentence: the copy or backup to restore from


class Lock(Protocol):
    """A stack's deploy lock: one holder at a time, with who/where/since."""

    def acquire(self, command: str, timeout_s: float) -> LockInfo:
        """Take the lock, waiting up to *timeout_s*; raise LockedError naming the holder when it stays held.

        A holder that is provably dead (same host, process gone) is taken over with a warning."""
        ...

    def release(self, info: LockInfo) -> None: ...

    def holder(self) -> LockInfo | None:
        """Read-only: the current holder, if any."""
        ...

    def is_stale(self, info: LockInfo) -> bool:
        """Read-only: whether the holder is known dead (or its heartbeat expired)."""
        ...

    def force_release(self, lock_id: str) -> LockInfo:
        """Break the lock if its id is *lock_id*; raise DeployctlError otherwise."""
        ...

    def check(self, lock_id: str) -> None:
        """Read-only: raise LockLost unless the stack's lock is still *lock_id* (its holder's, before each step)."""
        ...


class Target(Protocol):
    """Where a stack's releases run. One instance serves one stack."""

    name: str
    stack: Stack
    ordered_by_commit: bool  # refuse a release of a commit older than the serving release's (shared stacks)
    jobs_outlive_the_cli: bool  # a job runs on its own (Cloud Run): a stopped command leaves it running

    @property
    def ledger(self) -> Ledger: ...

    @property
    def lock(self) -> Lock: ...

    # -- read-only --------------------------------------------------------------------------------
    def source_hash(self, service: str) -> str:
        """A content hash of the service's source and dependency files."""
        ...

    def find_artifact(self, service: str, source_hash: str) -> Artifact | None:
        """An already built artifact for this source, if the target still has it."""
        ...

    def current_secret_versions(self) -> dict[str, str | None]:
        """The version each declared secret would be pinned to now (None where none exists yet)."""
        ...

    def secret_version_states(self, name: str) -> dict[str, str]:
        """Every version of secret *name* and its state: ``enabled``, ``disabled`` or ``destroyed``."""
        ...

    def revision_secret_versions(self, service: str, revision: str) -> dict[str, str] | None:
        """The secret versions the revision really runs with (secret -> version); None if it is gone."""
        ...

    def traffic(self, service: str) -> list[Split]:
        """Where the service's traffic goes now (empty before the first release)."""
        ...

    def revision_healthy(self, service: str, revision: str) -> bool:
        """Whether the revision exists and answers (local: its process answers its startup probe; Cloud Run: its
        Ready condition): for status, the no-change check, and where a failed stage may route back to."""
        ...

    def router_healthy(self, service: str) -> bool:
        """Whether the service's stable URL has a front end that answers (local: the router process runs and
        its port accepts a connection; Cloud Run: the service's Ready condition is not False)."""
        ...

    def database_healthy(self) -> bool | None:
        """Whether the stack's database server runs; None when this machine cannot tell (gcp) or there is none."""
        ...

    def smoke_auth(self, service: str) -> dict[str, str]:
        """Headers that let smoke checks reach the service and its candidates (gcp: an ID token for a
        private service). Credentials: they are sent, never printed or recorded."""
        ...

    def service_url(self, service: str) -> str:
        """The stable URL users reach."""
        ...

    def migration_state(self) -> MigrationState | None:
        """What the stack's own database says about its migrations (deployctl.migration_state: alembic,
        django, or only how many tables it has), or None when this machine cannot read it."""
        ...

    def migration_head(self) -> str | None:
        """The head of ``migration_state()``: the database's current migration revision, when the target
        can read it."""
        ...

    def database_lost(self) -> DataLoss | None:
        """Read-only: what the target sees when the stack's database holds none of its data (its data
        directory or its database is gone); None when it has data or the target cannot tell (Cloud SQL
        answers only inside the VPC)."""
        ...

    def describe(self) -> dict[str, str]:
        """Facts for ``deployctl status``: database, URLs, state location. No secret values."""
        ...

    def check_database_login(self, secret_versions: dict[str, str]) -> str | None:
        """Connect to the stack's database as the login of the pinned password version, with its password;
        raise DeployctlError when the database refuses it. Returns what was checked, or None when this
        machine cannot reach the database (gcp: Cloud SQL answers only inside the VPC)."""
        ...

    # -- mutating ---------------------------------------------------------------------------------
    def build(self, service: str, source_hash: str) -> Artifact: ...

    def ensure_secrets(self) -> dict[str, str]:
        """Create what is missing (generated and composed secrets) and return the versions to pin."""
        ...

    def add_secret_version(self, name: str, value: str | None) -> str:
        """Add a version (generated when *value* is None) and return its version id; the old stay enabled."""
        ...

    def disable_secret_versions(self, name: str, keep: Iterable[str]) -> list[str]:
        """Disable every enabled version of *name* not in *keep*; return what was disabled."""
        ...

    def prepare(self, artifacts: dict[str, Artifact], secret_versions: dict[str, str], *,
                infrastructure: bool = True) -> None:
        """Make the stack's backing services ready for this release (local: Postgres and its role; gcp: the
        infrastructure, when it changed). A rotation passes ``infrastructure=False``: it changes a secret and
        applies nothing else."""
        ...

    def run_job(
        self, name: str, job: Job, artifact: Artifact, secret_versions: dict[str, str], release_id: str
    ) -> JobRun:
        """Run a job to completion (with its retries and timeout) and report how it went."""
        ...

    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        """Create a candidate revision that gets no traffic and wait until it is ready."""
        ...

    def set_traffic(self, service: str, splits: list[Split]) -> None:
        """Route the service's traffic; percents add up to 100."""
        ...

    def restart_router(self, service: str) -> None:
        """Bring the service's front end back (local: start its router again); raise when it stays down."""
        ...

    def ensure_revision(self, service: str, revision: str) -> Revision:
        """Make an existing revision able to serve again (rollback); raise if it is gone."""
        ...

    def discard(self, service: str, revision: str) -> None:
        """Stop a revision that failed and will never get traffic."""
        ...

    def retire(self, service: str, keep: list[str]) -> None:
        """Release resources of revisions not in *keep* (they stay restorable where the target can)."""
        ...

    def down(self, purge: bool, confirm: Callable[[], None]) -> list[str]:
        """Stop what the stack runs on this machine (and with *purge* delete its data, after *confirm*,
        which raises to cancel); say what was done. A cloud target refuses: its resources are Pulumi's."""
        ...
