"""Secret Manager facade: create secrets, add versions, resolve and disable versions, read a payload.

Rules:
- Releases pin version *numbers*; nothing here ever returns or accepts ``latest`` for a deploy.
- Payloads are read only to compose secrets (DATABASE_URL from DB_PASSWORD) and to take them out of a failed
  job's output; they are never logged, put in an exception, or returned to the pipeline.
- ``within(seconds)`` reads under a deadline instead of the stage's: each call's timeout and the retries' deadline
  are what remains, and a 403 fails at once rather than wait out a grant still propagating.
- Adding a version is not idempotent, so before a retry the newest version is re-read and compared with
  the payload that was sent (a lost response must not add the same value twice).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deployctl import naming
from deployctl.targets.gcp.retry import Propagation, RetryPolicy, mutate, read

if TYPE_CHECKING:
    from deployctl.config import Stack


class SecretManager:
    def __init__(self, client: Any, project: str, policy: RetryPolicy, prefix: str = "") -> None:
        self.prefix = prefix  # secret ids are "<prefix><NAME>": the stack's own namespace in the project
        self.client = client
        self.project = project
        self.policy = policy

    @classmethod
    def of_stack(cls, client: Any, stack: Stack, policy: RetryPolicy) -> SecretManager:
        """The secrets of *stack* in its project, under the ids the Pulumi program gives them (naming.secret)."""
        assert stack.project  # config validation guarantees it for gcp stacks
        return cls(client, stack.project, policy, prefix=naming.secret(stack, ""))

    def secret_id(self, secret: str) -> str:
        """The Secret Manager id of the declared secret *secret* (what gcloud and the console show)."""
        return f"{self.prefix}{secret}"

    def within(self, seconds: float) -> SecretManager:
        """These secrets, read within *seconds* (see the rules)."""
        policy = replace(self.policy, deadline_s=seconds, call_timeout_s=min(self.policy.call_timeout_s, seconds),
                         propagation=Propagation())
        return SecretManager(self.client, self.project, policy, self.prefix)

    def _name(self, secret: str) -> str:
        return f"projects/{self.project}/secrets/{self.secret_id(secret)}"

    def _get(self, secret: str) -> Any:
        """The secret's metadata, or None when it does not exist."""
        from google.api_core import exceptions as gexc

        def call() -> Any:
            try:
                return self.client.get_secret(name=self._name(secret), retry=None, timeout=self.policy.call_timeout_s)
            except gexc.NotFound:
                return None

        return read(call, f"read secret {secret}", self.policy)

    def exists(self, secret: str) -> bool:
        return self._get(secret) is not None

    def create(self, secret: str, labels: dict[str, str]) -> None:
        from google.api_core import exceptions as gexc

        def send() -> bool:
            with contextlib.suppress(gexc.AlreadyExists):
                self.client.create_secret(
                    parent=f"projects/{self.project}",
                    secret_id=self.secret_id(secret),
                    secret={"replication": {"automatic": {}}, "labels": labels},
                    retry=None,
                    timeout=self.policy.call_timeout_s,
                )
            return True

        mutate(send, lambda: True if self.exists(secret) else None, f"create secret {secret}", self.policy)

    def labels(self, secret: str) -> dict[str, str]:
        found = self._get(secret)
        return dict(found.labels) if found is not None else {}

    def set_labels(self, secret: str, labels: dict[str, str]) -> None:
        """Replace the secret's labels (an update with a ``labels`` field mask; sending it twice is harmless)."""

        def send() -> bool:
            self.client.update_secret(
                secret={"name": self._name(secret), "labels": labels},
                update_mask={"paths": ["labels"]},
                retry=None,
                timeout=self.policy.call_timeout_s,
            )
            return True

        mutate(send, lambda: True if self.labels(secret) == labels else None, f"label secret {secret}", self.policy)

    def states(self, secret: str) -> dict[str, str]:
        """Every version number and its state (``enabled``, ``disabled``, ``destroyed``), oldest first."""
        from google.api_core import exceptions as gexc

        def call() -> dict[str, str]:
            try:
                versions = self.client.list_secret_versions(
                    parent=self._name(secret), retry=None, timeout=self.policy.call_timeout_s
                )
                found = {str(v.name).rsplit("/", 1)[-1]: str(v.state.name).lower() for v in versions}
            except gexc.NotFound:
                return {}
            return dict(sorted(found.items(), key=lambda item: int(item[0])))

        return read(call, f"list versions of secret {secret}", self.policy)

    def enabled_versions(self, secret: str) -> list[str]:
        """Enabled version numbers, oldest first."""
        return [version for version, state in self.states(secret).items() if state == "enabled"]

    def latest(self, secret: str) -> str | None:
        enabled = self.enabled_versions(secret)
        return enabled[-1] if enabled else None

    def value(self, secret: str, version: str) -> str:
        if version == "latest":
            raise ValueError("deployctl pins secret versions; 'latest' is never resolved here")

        def call() -> str:
            response = self.client.access_secret_version(
                name=f"{self._name(secret)}/versions/{version}", retry=None, timeout=self.policy.call_timeout_s
            )
            return str(response.payload.data.decode())

        return read(call, f"read secret {secret} v{version}", self.policy)

    def add(self, secret: str, value: str) -> str:
        before = set(self.enabled_versions(secret))

        def send() -> str:
            version = self.client.add_secret_version(
                parent=self._name(secret),
                payload={"data": value.encode()},
                retry=None,
                timeout=self.policy.call_timeout_s,
            )
            return str(version.name).rsplit("/", 1)[-1]

        def applied() -> str | None:
            new = [v for v in self.enabled_versions(secret) if v not in before]
            return next((v for v in reversed(new) if self.value(secret, v) == value), None)

        return mutate(send, applied, f"add a version to secret {secret}", self.policy)

    def disable(self, secret: str, version: str) -> None:
        def send() -> bool:
            self.client.disable_secret_version(
                name=f"{self._name(secret)}/versions/{version}", retry=None, timeout=self.policy.call_timeout_s
            )
            return True

        def applied() -> bool | None:
            return True if version not in self.enabled_versions(secret) else None

        mutate(send, applied, f"disable secret {secret} v{version}", self.policy)
