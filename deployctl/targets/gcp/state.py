"""The ledger and the deploy lock of a shared stack, kept in its GCS state bucket.

Layout under ``gs://<deployctl:gcp.state_bucket>/deployctl/<stack>/``: ``lock.json`` (the holder) and
``releases/r0001.json``… (one ledger record each). Laptops and Cloud Build see the same history.

Rules:
- Every write carries a generation precondition: the lock and a new release id are created only if
  absent (``if_generation_match=0``); updates and the release of the lock match the generation last read.
  A 412 means someone else won; nobody overwrites a record they did not read.
- The holder refreshes ``heartbeat`` while it works; a lock whose heartbeat is older than ``stale_after_s``
  (or whose process is gone, on the same host) is stale and is taken over with a warning.
- Deploys are ordered: a release of a commit that is an ancestor of the serving release's commit is
  refused; going back is an explicit ``deployctl rollback``.
- Records hold names, digests and versions only, never a secret value.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deployctl.errors import DeployctlError, LockedError
from deployctl.pipeline.liveness import alive, start_time
from deployctl.pipeline.model import LockInfo, ReleaseRecord
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read


class _Objects:
    """JSON objects in one bucket prefix, with generations (the only GCS calls this module makes)."""

    def __init__(self, client: Any, bucket: str, prefix: str, policy: RetryPolicy) -> None:
        self.bucket = client.bucket(bucket)
        self.prefix = prefix
        self.policy = policy
        self.where = f"gs://{bucket}/{prefix}"

    def get(self, name: str) -> tuple[dict[str, Any], int] | None:
        from google.api_core import exceptions as gexc

        def call() -> tuple[dict[str, Any], int] | None:
            blob = self.bucket.blob(self.prefix + name)
            try:
                data = blob.download_as_bytes(retry=None, timeout=self.policy.call_timeout_s)
            except gexc.NotFound:
                return None
            return json.loads(data), int(blob.generation)

        return read(call, f"read {self.where}{name}", self.policy)

    def put(self, name: str, data: dict[str, Any], generation: int) -> int | None:
        """Write *data* if the object's generation is *generation* (0: absent); None when someone else won."""
        from google.api_core import exceptions as gexc

        text = json.dumps(data, sort_keys=True)

        def send() -> int | None:
            blob = self.bucket.blob(self.prefix + name)
            try:
                blob.upload_from_string(
                    text,
                    content_type="application/json",
                    if_generation_match=generation,
                    retry=None,
                    timeout=self.policy.call_timeout_s,
                )
            except gexc.PreconditionFailed:
                return None
            return int(blob.generation)

        def applied() -> int | None:
            now = self.get(name)
            return now[1] if now and json.dumps(now[0], sort_keys=True) == text else None

        return mutate(send, applied, f"write {self.where}{name}", self.policy)

    def delete(self, name: str, generation: int) -> bool:
        from google.api_core import exceptions as gexc

        def send() -> bool:
            try:
                self.bucket.blob(self.prefix + name).delete(
                    if_generation_match=generation, retry=None, timeout=self.policy.call_timeout_s
                )
            except (gexc.PreconditionFailed, gexc.NotFound):
                return False
            return True

        def applied() -> bool | None:
            now = self.get(name)
            return True if now is None or now[1] != generation else None

        return mutate(send, applied, f"delete {self.where}{name}", self.policy)

    def names(self, under: str) -> list[str]:
        def call() -> list[str]:
            blobs = self.bucket.client.list_blobs(
                self.bucket, prefix=self.prefix + under, retry=None, timeout=self.policy.call_timeout_s
            )
            return [b.name[len(self.prefix) :] for b in blobs]

        return read(call, f"list {self.where}{under}", self.policy)


class GcsLedger:
    def __init__(self, client: Any, bucket: str, stack: str, policy: RetryPolicy, root: Path | None = None) -> None:
        self.objects = _Objects(client, bucket, f"deployctl/{stack}/", policy)
        self.stack = stack
        self.root = root  # the git checkout, for ordering deploys by commit

    def next_id(self) -> str:
        for _ in range(20):
            ids = [n.rsplit("/", 1)[-1].removesuffix(".json") for n in self.objects.names("releases/")]
            last = max((int(i[1:]) for i in ids if i[1:].isdigit()), default=0)
            release_id = f"r{last + 1:04d}"
            placeholder = ReleaseRecord(id=release_id, stack="", kind="release", started=0.0, command="")
            if self.objects.put(_path(release_id), placeholder.to_dict(), 0) is not None:
                return release_id
        raise DeployctlError(f"could not reserve a release id in {self.objects.where}", "Retry the command.")

    def save(self, record: ReleaseRecord) -> None:
        if record.kind == "release" and record.outcome == "running" and record.git_sha:
            self._refuse_older(record)
        for _ in range(5):
            current = self.objects.get(_path(record.id))
            generation = current[1] if current else 0
            if self.objects.put(_path(record.id), record.to_dict(), generation) is not None:
                return
        raise DeployctlError(f"release {record.id} kept changing under us in {self.objects.where}", "Retry.")

    def get(self, release_id: str) -> ReleaseRecord | None:
        found = self.objects.get(_path(release_id))
        if found is None or not found[0].get("stack"):
            return None
        return ReleaseRecord.from_dict(found[0])

    def history(self, limit: int = 50) -> list[ReleaseRecord]:
        names = sorted(self.objects.names("releases/"), reverse=True)
        out = []
        for name in names:
            found = self.objects.get(name)
            if found and found[0].get("stack"):
                out.append(ReleaseRecord.from_dict(found[0]))
            if len(out) >= limit:
                break
        return out

    def serving(self) -> ReleaseRecord | None:
        """The newest release or rollback that finished and left traffic on its revisions."""
        return next((r for r in self.history() if r.outcome == "succeeded" and r.kind != "rotate"), None)

    def _refuse_older(self, record: ReleaseRecord) -> None:
        serving = self.serving()
        if serving is None or not serving.git_sha or serving.git_sha == record.git_sha or self.root is None:
            return
        if _is_ancestor(self.root, str(record.git_sha), serving.git_sha):
            raise DeployctlError(
                f"commit {str(record.git_sha)[:12]} is older than the serving release {serving.id} "
                f"(commit {serving.git_sha[:12]}); refusing to deploy it",
                f"To go back on purpose: deployctl rollback {self.stack} --to RELEASE",
            )


def _path(release_id: str) -> str:
    return f"releases/{release_id}.json"


def _is_ancestor(root: Path, older: str, newer: str) -> bool:
    result = subprocess.run(
        ["git", "merge-base", "--is-ancestor", older, newer], cwd=root, capture_output=True, check=False
    )
    return result.returncode == 0


class GcsLock:
    def __init__(
        self,
        client: Any,
        bucket: str,
        stack: str,
        policy: RetryPolicy,
        stale_after_s: float = 600.0,
        heartbeat_s: float = 30.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.objects = _Objects(client, bucket, f"deployctl/{stack}/", policy)
        self.stack = stack
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.warn = warn or (lambda msg: print(f"Warning: {msg}", file=sys.stderr))
        self._beat: tuple[threading.Event, threading.Thread] | None = None
        self._generation = 0

    def holder(self) -> LockInfo | None:
        found = self.objects.get("lock.json")
        return LockInfo(**found[0]) if found else None

    def is_stale(self, info: LockInfo) -> bool:
        if time.time() - info.heartbeat > self.stale_after_s:
            return True
        return info.host == socket.gethostname() and not alive(info.pid, info.pid_started)

    def acquire(self, command: str, timeout_s: float) -> LockInfo:
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.objects.get("lock.json")
            if current is not None and self.is_stale(LockInfo(**current[0])):
                self.warn(f"took over a stale deploy lock: {LockInfo(**current[0]).describe()}")
            elif current is not None:
                holder = LockInfo(**current[0])
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"stack {self.stack!r} is locked: {holder.describe()}, last heartbeat "
                        f"{int(time.time() - holder.heartbeat)}s ago",
                        f"Wait for it (--lock-timeout SECONDS), or if it is stuck: "
                        f"deployctl unlock {self.stack} --force {holder.id}",
                    )
                time.sleep(min(2.0, max(0.05, deadline - time.monotonic())))
                continue
            mine = _new_info(command)
            generation = self.objects.put("lock.json", asdict(mine), current[1] if current else 0)
            if generation is not None:
                self._generation = generation
                self._start_heartbeat(mine)
                return mine

    def release(self, info: LockInfo) -> None:
        self._stop_heartbeat()
        current = self.objects.get("lock.json")
        if current is not None and current[0].get("id") == info.id:
            self.objects.delete("lock.json", current[1])

    def force_release(self, lock_id: str) -> LockInfo:
        current = self.objects.get("lock.json")
        if current is None:
            raise DeployctlError(f"stack {self.stack!r} is not locked", "Nothing to unlock.")
        holder = LockInfo(**current[0])
        if holder.id != lock_id:
            raise DeployctlError(
                f"stack {self.stack!r} is held by lock {holder.id}, not {lock_id}",
                f"Check `deployctl status {self.stack}`; pass the id it shows to --force.",
            )
        if not self.objects.delete("lock.json", current[1]):
            raise DeployctlError(f"the lock of {self.stack!r} changed while breaking it", "Look again and retry.")
        return holder

    def heartbeat(self, info: LockInfo) -> bool:
        """Refresh the holder's heartbeat; False when the lock is no longer ours."""
        beat = LockInfo(**{**asdict(info), "heartbeat": time.time()})
        generation = self.objects.put("lock.json", asdict(beat), self._generation)
        if generation is None:
            return False
        self._generation = generation
        return True

    def _start_heartbeat(self, info: LockInfo) -> None:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.heartbeat_s):
                try:
                    if not self.heartbeat(info):
                        self.warn(f"lost the deploy lock of {self.stack!r} (someone broke it)")
                        return
                except DeployctlError as exc:
                    self.warn(f"could not refresh the deploy lock: {exc.message}")

        thread = threading.Thread(target=loop, name=f"deployctl-lock-{self.stack}", daemon=True)
        thread.start()
        self._beat = (stop, thread)

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            stop, thread = self._beat
            stop.set()
            thread.join(timeout=5)
            self._beat = None


def _new_info(command: str) -> LockInfo:
    now = time.time()
    return LockInfo(
        id=uuid.uuid4().hex[:8],
        pid=os.getpid(),
        host=socket.gethostname(),
        command=command,
        since=now,
        heartbeat=now,
        pid_started=start_time(),
    )
