"""The ledger and the deploy lock of a shared stack, kept in its GCS state bucket.

Layout under ``gs://<Stack.state_bucket>/deployctl/<stack>/``: ``lock.json`` (the holder) and
``releases/r0001.json``… (one ledger record each). Laptops and Cloud Build see the same history.

The lock's and the ledger's rules are written once, in deployctl/pipeline/lock.py and ledger.py; this
module is their GCS store, plus one rule of its own, as deployctl/targets/local/state.py is their store on
this machine.

Rules:
- Every write carries a generation precondition: the lock and a new release id are created only if
  absent (``if_generation_match=0``); updates and the release of the lock match the generation last read.
  A 412 means someone else won; nobody overwrites a record they did not read.
- The lock heartbeats every ``heartbeat_s`` while its holder works, so a long release (on Cloud Build, say)
  never looks stale; a lock whose heartbeat is older than ``stale_after_s`` is stale.
- Records hold names, digests and versions only, never a secret value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from deployctl import liveness
from deployctl.errors import DeployctlError
from deployctl.pipeline.ledger import StoredLedger, count, next_id, number, span
from deployctl.pipeline.lock import StoredLock
from deployctl.pipeline.model import NewerSchemaError, RecordError, ReleaseRecord, decode_record
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read


class _Objects:
    """JSON objects in one bucket prefix, with generations (the only GCS calls this module makes)."""

    def __init__(self, client: Any, bucket: str, prefix: str, policy: RetryPolicy) -> None:
        self.bucket = client.bucket(bucket)
        self.prefix = prefix
        self.policy = policy
        self.where = f"gs://{bucket}/{prefix}"

    def get(self, name: str) -> tuple[dict[str, Any], int] | None:
        found = self.get_bytes(name)
        return None if found is None else (json.loads(found[0]), found[1])

    def get_bytes(self, name: str) -> tuple[bytes, int] | None:
        """The object's content as stored, and its generation; None when absent."""
        from google.api_core import exceptions as gexc

        def call() -> tuple[bytes, int] | None:
            blob = self.bucket.blob(self.prefix + name)
            try:
                data = blob.download_as_bytes(retry=None, timeout=self.policy.call_timeout_s)
            except gexc.NotFound:
                return None
            return data, int(blob.generation)

        return read(call, f"read {self.where}{name}", self.policy)

    def put(self, name: str, data: dict[str, Any], generation: int) -> int | None:
        """Write *data* if the object's generation is *generation* (0: absent); None when someone else won."""
        return self.put_bytes(name, json.dumps(data, sort_keys=True).encode(), generation)

    def put_bytes(self, name: str, text: bytes, generation: int) -> int | None:
        """``put`` of content as it is (a damaged record is moved aside unchanged)."""
        from google.api_core import exceptions as gexc

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
            now = self.get_bytes(name)
            return now[1] if now and now[0] == text else None

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


class GcsRecords:
    """Ledger records as ``releases/<id>.json`` objects (a ``RecordStore``)."""

    def __init__(self, objects: _Objects, attempts: int = 5) -> None:
        self.objects = objects
        self.where = objects.where + "releases/"
        self.attempts = attempts

    def ids(self) -> list[str]:
        return [n.rsplit("/", 1)[-1].removesuffix(".json") for n in self.objects.names("releases/")]

    def create(self, release_id: str, data: dict[str, Any]) -> bool:
        return self.objects.put(_path(release_id), data, 0) is not None

    def put(self, release_id: str, data: dict[str, Any]) -> None:
        for _ in range(self.attempts):
            current = self.objects.get(_path(release_id))
            if self.objects.put(_path(release_id), data, current[1] if current else 0) is not None:
                return
        raise DeployctlError(f"release {release_id} kept changing under us in {self.where}", "Retry.")

    def load(self, release_ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        for release_id in release_ids:
            found = self.objects.get_bytes(_path(release_id))
            if found is not None:
                yield release_id, found[0]

    def locate(self, release_id: str) -> str:
        return f"{self.where}{release_id}.json"


class GcsLedger(StoredLedger):
    def __init__(self, client: Any, bucket: str, stack: str, policy: RetryPolicy) -> None:
        self.records = GcsRecords(_Objects(client, bucket, _prefix(stack), policy))
        super().__init__(self.records, stack=stack)

    def repair(self) -> list[str]:
        """Move each record that cannot be read aside, unchanged, to ``damaged/<id>-<UTC time>.json`` and
        put a placeholder in its place, so its id is never given to another run; say what was moved."""
        objects, stamp = self.records.objects, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        said, readable = [], []
        for release_id in sorted(self._ids(), key=number):
            found = objects.get_bytes(_path(release_id))
            if found is None:
                continue
            try:
                record = decode_record(found[0], release_id)
            except NewerSchemaError:
                said.append(f"Kept {self.records.locate(release_id)} as found: written by a newer deployctl.")
            except RecordError as exc:
                said.append(self._set_aside(release_id, found, exc.reason, stamp))
            else:
                readable += [] if record.is_placeholder else [release_id]
        if not said:
            return [f"{self.records.where} is not damaged: {count(readable)} ({span(readable)}). Nothing to do."]
        return [*said, f"{self.records.where} now holds {count(readable)} ({span(readable)}); "
                       f"the next id is {next_id(self._ids())}.",
                "The state bucket keeps earlier generations of every object (versioning): "
                f"gcloud storage ls --all-versions {self.records.where}"]

    def _set_aside(self, release_id: str, found: tuple[bytes, int], reason: str, stamp: str) -> str:
        objects, where = self.records.objects, self.records.locate(release_id)
        aside = f"damaged/{release_id}-{stamp}.json"
        if objects.put_bytes(aside, found[0], 0) is None:
            return f"{where} is damaged ({reason}); {objects.where}{aside} exists already, so it was left."
        placeholder = ReleaseRecord.placeholder(release_id).to_dict()
        if objects.put(_path(release_id), placeholder, found[1]) is None:
            return f"{where} changed while it was being repaired; left as it is (a copy is in {objects.where}{aside})."
        return (f"Moved {where} ({reason}) aside to {objects.where}{aside}; "
                f"{release_id} stays reserved, so it is never reused.")


def _path(release_id: str) -> str:
    return f"releases/{release_id}.json"


class GcsLockStore:
    """The ``lock.json`` object (a ``LockStore``); its version is the object's generation (0: absent)."""

    def __init__(self, objects: _Objects) -> None:
        self.objects = objects

    def read(self) -> tuple[dict[str, Any] | None, int]:
        found = self.objects.get("lock.json")
        return found if found is not None else (None, 0)

    def write(self, data: dict[str, Any], expected: int) -> int | None:
        return self.objects.put("lock.json", data, expected)

    def delete(self, expected: int) -> bool:
        return self.objects.delete("lock.json", expected)


class GcsLock(StoredLock[int]):
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
        super().__init__(
            GcsLockStore(_Objects(client, bucket, _prefix(stack), policy)),
            stack,
            liveness=liveness,
            heartbeat_s=heartbeat_s,
            stale_after_s=stale_after_s,
            poll_s=2.0,  # each look is a billed request; a lock is held for minutes
            warn=warn,
        )


def _prefix(stack: str) -> str:
    return f"deployctl/{stack}/"


class InfraRecord:
    """``infra.json``: which stack settings and program the last successful ``pulumi up`` applied.

    deployctl runs ``pulumi up`` only when this differs from what it would apply now (an infrastructure
    fingerprint), so a code-only release touches nothing but Cloud Build and Cloud Run. ``fingerprint`` is
    None after a first ``infra`` apply whose release has not made its candidates yet.
    """

    NAME = "infra.json"

    def __init__(self, client: Any, bucket: str, stack: str, policy: RetryPolicy) -> None:
        self.objects = _Objects(client, bucket, _prefix(stack), policy)

    def read(self) -> tuple[dict[str, Any] | None, int]:
        found = self.objects.get(self.NAME)
        return found if found is not None else (None, 0)

    def write(self, fingerprint: str | None) -> None:
        """Record an apply; the stack's lock is held, so a lost race means a bug, not a peer."""
        _, generation = self.read()
        data = {"fingerprint": fingerprint, "applied": time.time()}
        if self.objects.put(self.NAME, data, generation) is None:
            raise DeployctlError(f"{self.objects.where}{self.NAME} changed while this command held the lock",
                                 "Run the command again.")
