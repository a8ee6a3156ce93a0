"""Cloud SQL Admin facade (``sqladmin`` v1 through google-api-python-client): set a database user's password.

Rules:
- ``users.update`` is a PUT of the whole password: sending it twice is harmless, so a call whose response
  was lost is simply sent again (there is no way to read a password back, and no need).
- The call returns a Cloud SQL operation; the password counts as set only when the operation is ``DONE``
  without errors. Waiting is bounded by the stage's deadline.
- Cloud SQL runs one operation per instance at a time and answers 409 while another is running; that, like
  429 and 5xx, is retried with backoff under the deadline.
- The password never appears in an error: only the user, the instance and the API's status do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from deployctl.errors import DeployctlError
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read

T = TypeVar("T")


def sqladmin_client(credentials: Any, timeout_s: float, endpoint: str | None = None) -> Any:
    """A discovery client for sqladmin v1 (bundled discovery document: no network call to build it)."""
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout_s))
    options = {"api_endpoint": endpoint} if endpoint else None
    return build("sqladmin", "v1", http=http, static_discovery=True, cache_discovery=False, client_options=options)


class CloudSqlUsers:
    def __init__(self, client: Any, project: str, instance: str, policy: RetryPolicy, poll_s: float = 2.0) -> None:
        self.client = client
        self.project, self.instance = project, instance
        self.policy = policy
        self.poll_s = poll_s

    def set_password(self, user: str, password: str) -> None:
        what = f"set the password of database user {user} on {self.instance}"

        def send() -> str:
            request = self.client.users().update(
                project=self.project, instance=self.instance, name=user, body={"name": user, "password": password}
            )
            return str(_call(request.execute)["name"])

        operation = mutate(send, lambda: None, what, self.policy)
        self._wait(operation, what)

    def _wait(self, operation: str, what: str) -> None:
        deadline = time.monotonic() + self.policy.deadline_s
        while True:
            op = read(lambda: self._operation(operation), f"{what} (operation {operation})", self.policy)
            if op.get("status") == "DONE":
                errors = op.get("error", {}).get("errors", [])
                if errors:
                    first = errors[0]
                    raise DeployctlError(
                        f"{what}: {first.get('code', 'error')}: {str(first.get('message', ''))[:200]}",
                        "See the instance's operations: gcloud sql operations list --instance " + self.instance,
                    )
                return
            if time.monotonic() > deadline:
                raise DeployctlError(
                    f"{what}: operation {operation} still {op.get('status', 'pending')} after "
                    f"{self.policy.deadline_s:g}s",
                    f"Check it: gcloud sql operations describe {operation}",
                )
            time.sleep(self.poll_s)

    def _operation(self, operation: str) -> dict[str, Any]:
        return _call(self.client.operations().get(project=self.project, operation=operation).execute)


def _call(execute: Callable[..., T]) -> T:
    """Run a discovery request; HTTP errors become google-api-core exceptions, so the retry rules apply."""
    from google.api_core import exceptions as gexc
    from googleapiclient.errors import HttpError

    try:
        return execute(num_retries=0)
    except HttpError as exc:
        status = int(exc.resp.status)
        reason = exc.reason if isinstance(exc.reason, str) else ""
        if status == 409 and "operation" in reason.lower():
            raise gexc.ServiceUnavailable(f"another operation runs on the instance ({reason})") from None
        raise gexc.from_http_status(status, reason or f"HTTP {status}") from None
