"""Retries for Google API calls: transient errors are retried with backoff under a per-stage deadline.

Rules:
- Only transient failures are retried: 429, 500, 502, 503, 504, gRPC DEADLINE_EXCEEDED/UNAVAILABLE and
  transport timeouts. Everything else fails at once.
- A read is simply retried. A *mutating* call whose outcome is unknown (a transient error may arrive after
  the change was applied) is re-read before it is retried: when the re-read shows the change, the call is
  done; otherwise it is sent again. So a lost response never doubles a deploy or a traffic shift.
- When the deadline passes, the last error becomes a DeployctlError naming the call; SDK exceptions never
  leave this module's callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from deployctl.errors import DeployctlError, PreconditionError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff shape and the deadline one stage may spend retrying a single call."""

    deadline_s: float = 120.0
    initial_s: float = 1.0
    maximum_s: float = 16.0
    multiplier: float = 2.0
    call_timeout_s: float = 30.0  # per request, passed to the client as ``timeout=``

    def with_deadline(self, deadline_s: float) -> RetryPolicy:
        return RetryPolicy(deadline_s, self.initial_s, self.maximum_s, self.multiplier, self.call_timeout_s)


def is_transient(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    if isinstance(
        exc,
        gexc.TooManyRequests
        | gexc.InternalServerError
        | gexc.BadGateway
        | gexc.ServiceUnavailable
        | gexc.GatewayTimeout
        | gexc.DeadlineExceeded,
    ):
        return True
    import requests

    return isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError | TimeoutError)


def _retry(policy: RetryPolicy):  # type: ignore[no-untyped-def]
    from google.api_core.retry import Retry

    return Retry(
        predicate=is_transient,
        initial=policy.initial_s,
        maximum=policy.maximum_s,
        multiplier=policy.multiplier,
        timeout=policy.deadline_s,
    )


def read(fn: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Run a read-only call, retrying transient errors until the policy's deadline."""
    try:
        return _retry(policy)(fn)()
    except Exception as exc:
        raise translate(exc, what, policy) from None


def mutate(fn: Callable[[], T], reread: Callable[[], T | None], what: str, policy: RetryPolicy) -> T:
    """Run a mutating call; before each retry, *reread* whether the previous attempt applied.

    *reread* returns the result the call would have had when the change is already in place, else None.
    """
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            done = reread()
            if done is not None:
                return done
        return fn()

    try:
        return _retry(policy)(attempt)()
    except Exception as exc:
        raise translate(exc, what, policy) from None


def translate(exc: BaseException, what: str, policy: RetryPolicy | None = None) -> DeployctlError:
    """Turn an SDK exception into a one-line DeployctlError (no payloads, no tracebacks)."""
    if isinstance(exc, DeployctlError):
        return exc
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        why = _short(cause) if cause is not None else "timed out"
        deadline = f" within {policy.deadline_s:g}s" if policy else ""
        return DeployctlError(
            f"{what}: Google Cloud kept failing{deadline} ({why})",
            "The API is unavailable or throttled; nothing further was changed. Retry later.",
        )
    if isinstance(exc, auth_exc.DefaultCredentialsError | auth_exc.RefreshError):
        return PreconditionError(f"{what}: no usable Google Cloud credentials", CREDENTIALS_HINT)
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated):
        return PreconditionError(f"{what}: {_short(exc)}", CREDENTIALS_HINT)
    if isinstance(exc, gexc.GoogleAPICallError) or is_transient(exc):
        return DeployctlError(f"{what}: {_short(exc)}", "Run again with --debug for details.")
    return DeployctlError(f"{what}: unexpected {type(exc).__name__}", "Run again with --debug for details.")


CREDENTIALS_HINT = "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)."


def _short(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    first = str(message).splitlines()[0][:200]
    return f"{int(code)} {first}" if isinstance(code, int) else f"{type(exc).__name__}: {first}"
