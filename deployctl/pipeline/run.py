"""What every mutating flow (release, rollback, rotation, promotion) shares: options, progress, the lock,
the ledger record, and what serves now.

Rule: the lock is released on every path out; a record a dead holder left ``running`` is marked
``interrupted`` by the next holder before it plans anything.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deployctl.errors import DeployctlError, LockedError
from deployctl.pipeline.model import ReleaseRecord, Split, StageResult, StageStatus
from deployctl.pipeline.target import Target


class Reporter(Protocol):
    """Where progress goes: one line per stage with its elapsed time (deployctl.output renders it)."""

    def stage_started(self, name: str) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...

    def step_finished(self, stage: str, service: str, status: StageStatus, elapsed_s: float, detail: str) -> None:
        """One service's step of a stage ended (steps of a stage run concurrently, one line each)."""
        ...

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass(frozen=True)
class Options:
    command: str = "deployctl up"
    force: bool = False
    lock_timeout_s: float = 30.0
    image: str | None = None
    accept_risks: tuple[str, ...] = ()
    accept_empty_database: bool = False  # go on over a database that lost the data the ledger recorded
    git_sha: str | None = None  # given (promote: the source stack's); else the app repository's HEAD
    git_dirty: bool | None = None
    root: Path = field(default_factory=Path.cwd)
    workers: int = 8  # the most per-service steps that run at once (most wait on an API or a process)


@contextlib.contextmanager
def locked(target: Target, options: Options, reporter: Reporter) -> Iterator[str]:
    """Hold the stack's deploy lock; first settle any run a dead holder left 'running' (see ``settle``)."""
    info = target.lock.acquire(options.command, options.lock_timeout_s)
    try:
        for record in target.ledger.history(limit=5):
            if record.outcome == "running" and record.holder != info.id:
                refuse_live(target, record)
                reporter.warn(settle(target, record))
        yield info.id
    finally:
        target.lock.release(info)


RUN_NAMES = {"release": "release", "rollback": "rollback", "rotate": "rotation", "heal": "heal"}  # kind -> name


def refuse_live(target: Target, record: ReleaseRecord) -> None:
    """A run left 'running' under a lock that is gone (deleted, broken) may still be at work: while the
    lock's rules say its holder lives (deployctl.pipeline.lock), it is not settled but refused. It stops
    itself at its next step (``Lock.check``); then it, or the next command, says how it ended."""
    taken = record.holder_lock
    if taken is None or target.lock.is_stale(taken):
        return
    kind = RUN_NAMES[record.kind]
    where = f"pid {taken.pid}" if taken.host == socket.gethostname() else f"pid {taken.pid} on {taken.host}"
    raise LockedError(
        f"{kind} {record.id} is still running ({where}), but the deploy lock it took is gone",
        f"It stops before its next step. Wait for it, or stop it (kill {taken.pid}), then run the command again.",
    )


def settle(target: Target, record: ReleaseRecord) -> str:
    """Decide, from what serves, how a run whose process died ended; say what was done. Deterministic:

    - every service it deployed serves 100 % from its revision: its traffic switch finished, so it is
      ``succeeded`` (whatever was still to come, the init job or clean-up, did not run); nothing is
      released again for it;
    - otherwise, where it left traffic split or moved only some services, every service goes back to the
      revision that served fully before it (``record.previous``), and it is ``interrupted``;
    - otherwise traffic never moved: it is ``interrupted`` and traffic stays where it was.
    """
    kind = RUN_NAMES[record.kind]
    record.finished = time.time()
    moved = {svc: rev for svc, rev in record.revisions.items() if record.previous.get(svc) != rev}
    if moved and all(serves_fully(target, svc, rev) for svc, rev in record.revisions.items()):
        record.outcome = "succeeded"
        record.message = f"its process stopped after the traffic switch; {', '.join(record.revisions.values())} serve"
        target.ledger.save(record)
        return f"{kind} {record.id} was interrupted after its traffic switch; it serves, marked succeeded"
    touched = [svc for svc in target.stack.services if _split_or_moved(target, svc, record)]
    record.outcome = "interrupted"
    if touched and record.previous:
        route_all(target, {svc: record.previous[svc] for svc in touched if svc in record.previous})
        back = ", ".join(record.previous[svc] for svc in touched if svc in record.previous)
        record.message = f"its process stopped during the traffic switch; traffic went back to {back}"
        target.ledger.save(record)
        return f"{kind} {record.id} was interrupted during its traffic switch; traffic is back on {back}"
    record.message = "its process stopped before it finished; traffic was left where it was"
    target.ledger.save(record)
    return f"{kind} {record.id} was interrupted earlier; it is marked interrupted"


def _split_or_moved(target: Target, service: str, record: ReleaseRecord) -> bool:
    live = [s for s in target.traffic(service) if s.percent > 0]
    before = record.previous.get(service)
    return len(live) > 1 or bool(before and live and live[0].revision != before)


def serving_revisions(target: Target) -> dict[str, str]:
    """service -> the revision that gets the most traffic now (absent before the first release)."""
    serving: dict[str, str] = {}
    for service in target.stack.services:
        splits = [s for s in target.traffic(service) if s.percent > 0]
        if splits:
            serving[service] = max(splits, key=lambda s: s.percent).revision
    return serving


def serving_release(target: Target) -> ReleaseRecord | None:
    """The release whose revisions serve every service fully now: the one definition of "what serves".

    The newest succeeded record (release, rollback or rotation) whose revisions are exactly the revisions
    that get the traffic; None before the first release or while traffic is split between two."""
    serving = serving_revisions(target)
    if not serving:
        return None
    for record in target.ledger.history(limit=50):
        if record.outcome == "succeeded" and record.revisions == serving:
            return record
    return None


def serves_fully(target: Target, service: str, revision: str) -> bool:
    return [(s.revision, s.percent) for s in target.traffic(service) if s.percent] == [(revision, 100)]


def route_all(target: Target, revisions: dict[str, str]) -> None:
    for service, revision in revisions.items():
        target.set_traffic(service, [Split(revision, 100)])


def new_record(target: Target, kind: str, options: Options, lock_id: str) -> ReleaseRecord:
    sha, dirty = (options.git_sha, options.git_dirty) if options.git_sha else app_commit(app_dir(target, options.root))
    taken = target.lock.holder()
    return ReleaseRecord(
        id=target.ledger.next_id(),
        stack=target.stack.name,
        kind=kind,  # type: ignore[arg-type]
        started=time.time(),
        command=options.command,
        git_sha=sha,
        git_dirty=dirty,
        accepted_risks=list(options.accept_risks),
        holder=lock_id,
        holder_lock=taken if taken is not None and taken.id == lock_id else None,
    )


def app_dir(target: Target, root: Path) -> Path:
    """Where the app's code is: the first service's source (its repository may not be the one deployctl or
    the stack files live in, e.g. a submodule), else the project root."""
    source = root / target.stack.services[target.stack.primary].source
    return source if source.is_dir() else root


def app_commit(where: Path) -> tuple[str | None, bool | None]:
    """The HEAD of the git repository that holds *where*, and whether its work tree differs from it
    (changed or untracked files, deployctl's own state directories aside); (None, None) outside git."""
    head = _git(where, "rev-parse", "HEAD")
    sha = os.environ.get("COMMIT_SHA") or (head.strip() or None if head else None)  # COMMIT_SHA: Cloud Build's
    status = _git(where, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    if status is None:
        return sha, None
    paths = [entry[3:] for entry in status.split("\0") if len(entry) > 3]  # "XY path", relative to the top
    return sha, any(".deployctl" not in Path(path).parts for path in paths)


def _git(where: Path, *args: str) -> str | None:
    """git's output in *where*; None when git is missing or *where* is in no repository."""
    try:
        out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def refuse_older_commit(target: Target, record: ReleaseRecord, root: Path) -> None:
    """On a stack ordered by commit, a release of a commit older than the serving release's is refused:
    pushes can reach the release step out of order; going back is an explicit ``deployctl rollback``."""
    serving = serving_release(target)
    if not target.ordered_by_commit or serving is None or not serving.git_sha or not record.git_sha:
        return
    if serving.git_sha != record.git_sha and _is_ancestor(record.git_sha, serving.git_sha, app_dir(target, root)):
        raise DeployctlError(
            f"commit {record.git_sha[:12]} is older than the serving release {serving.id} "
            f"(commit {serving.git_sha[:12]}); refusing to deploy it",
            f"To go back on purpose: deployctl rollback {target.stack.name} --to RELEASE",
        )


def _is_ancestor(older: str, newer: str, root: Path) -> bool:
    result = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=root, capture_output=True,
                            check=False)
    return result.returncode == 0


def where_traffic_is(target: Target, serving: dict[str, str]) -> str:
    if not serving:
        return "Nothing serves yet."
    urls = ", ".join(f"{rev} at {target.service_url(svc)}" for svc, rev in serving.items())
    return f"Traffic stays on {urls}."
