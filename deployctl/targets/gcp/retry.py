"""Retries for Google API calls: transient errors are retried with backoff under a per-stage deadline.

Rules:
- Only transient failures are retried: 429, 500, 502, 503, 504, gRPC DEADLINE_EXCEEDED/UNAVAILABLE and
  transport timeouts. Everything else fails at once.
- A read is simply retried. A *mutating* call whose outcome is unknown (a transient error may arrive after
  the change was applied) is re-read before it is retried: when the re-read shows the change, the call is
  done; otherwise it is sent again. So a lost response never doubles a deploy or a traffic shift.
- When the deadline passes, the last error becomes a DeployctlError naming the call; SDK exceptions never
  leave this module's callers.
- Propagation: IAM grants and enabled APIs take effect eventually (IAM "Access change propagation": policy
  changes typically 2 minutes, potentially 7 or longer; a disabled API answers 403 SERVICE_DISABLED "If you
  enabled this API recently, wait a few minutes"). After this command itself granted roles or enabled APIs
  (bootstrap, or a `pulumi up` that applies IAM bindings), a 403 is retried for a bounded window, with a
  line naming what is propagating. Outside such a window a 403 fails at once: a disabled API with the
  command that enables it, a deployer's missing read of the image it deploys with the grant of that
  repository (``download_refusal``; the policy's ``caller`` names the account when known), any other missing
  permission with the credentials hint. Calls on another project's resources use ``RetryPolicy.elsewhere``:
  what this command changed does not propagate there.
- A long-running operation is waited for once, within one overall budget (``operation_s``), and never sent
  again because the wait ran out: an operation still running when the budget ends is reported as still
  running, with what may still land (``wait``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from deployctl.errors import ConfigError, DeployctlError, PreconditionError

T = TypeVar("T")


IAM_PROPAGATION_S = 7 * 60.0  # IAM: "typically 2 minutes, potentially 7 minutes or longer"
API_PROPAGATION_S = 5 * 60.0  # Service Usage: "wait a few minutes for the action to propagate"
# How long one long-running operation may take. Cloud Run: an UpdateService that makes a revision ends when the
# revision is Ready or failed; its startup probe may wait initialDelaySeconds (at most 240) and then
# failureThreshold x periodSeconds (at most 240) before Cloud Run gives up on the container (Admin API v2
# reference: Probe; "Configure container health checks for services"). 480 s, plus 120 s for the image import
# and scheduling. Service Usage documents no bound for enabling APIs ("a few minutes"); the same budget serves.
OPERATION_S = 240 + 240 + 120.0
OPERATION_ENV = "DEPLOYCTL_OPERATION_TIMEOUT_S"  # overrides OPERATION_S (e.g. a region that imports slowly)


def operation_budget() -> float:
    raw = os.environ.get(OPERATION_ENV, "")
    if not raw:
        return OPERATION_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{OPERATION_ENV}: {raw!r} is not a number of seconds",
                          f"Set it to how long to wait for one Google Cloud operation (default {OPERATION_S:g}).")
    return seconds


@dataclass
class Propagation:
    """What this command changed that Google applies eventually, and until when a 403 means "not yet"."""

    say: Callable[[str], None] = lambda line: None
    until: float = 0.0
    changes: list[str] = field(default_factory=list)  # what propagates in the open window, each named once
    retried: bool = False  # a 403 was waited on: if one still ends the call, say what it waited for
    _told: str = ""

    @property
    def what(self) -> str:
        return " and ".join(self.changes)

    def begin(self, what: str, window_s: float) -> None:
        if not self.active():
            self.changes = []  # a closed window's changes have propagated
        self.until = max(self.until, time.monotonic() + window_s)
        if what not in self.changes:
            self.changes.append(what)

    def active(self) -> bool:
        return time.monotonic() < self.until

    def covers(self, exc: BaseException) -> bool:
        """Whether *exc* is a 403 that the changes still propagating can explain (then it is retried). A 403 is
        ``Forbidden`` over REST (Cloud Storage, and every client's REST transport) and its subclass
        ``PermissionDenied`` over gRPC (google-api-core maps both from the status)."""
        from google.api_core import exceptions as gexc

        if not (self.active() and isinstance(exc, gexc.Forbidden)):
            return False
        self.retried = True
        if self._told != self.what:
            self._told = self.what
            self.say(f"waiting for {self.what} to propagate (Google: typically 2 minutes, up to 7); "
                     f"retrying {_short(exc)}")
        return True


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff shape and the deadline one stage may spend retrying a single call."""

    deadline_s: float = 120.0
    initial_s: float = 1.0
    maximum_s: float = 16.0
    multiplier: float = 2.0
    call_timeout_s: float = 30.0  # per request, passed to the client as ``timeout=``
    propagation: Propagation = field(default_factory=Propagation, compare=False)  # shared by every copy
    caller: str = ""  # the IAM member the calls are made as (user:… or serviceAccount:…), when known: for hints
    operation_s: float = field(default_factory=operation_budget)  # the wait for one long-running operation
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)  # the operation wait's clock
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)  # and its sleep (tests move both)

    def elsewhere(self) -> RetryPolicy:
        """This policy for calls on another project's resources: what this command changed propagates in its own
        project, so a 403 there is not "not yet" and fails at once (a copy with its own, closed window)."""
        return replace(self, propagation=Propagation())


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


def _retry(policy: RetryPolicy) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """Transient errors are retried until the policy's deadline; while a change of this command is still
    propagating, a 403 is retried too, until that window closes (each 403 retry gets a fresh deadline)."""
    from google.api_core.retry import Retry

    def backoff(predicate: Callable[[BaseException], bool], timeout: float) -> Any:
        return Retry(predicate=predicate, initial=policy.initial_s, maximum=policy.maximum_s,
                     multiplier=policy.multiplier, timeout=timeout)

    transient = backoff(is_transient, policy.deadline_s)
    propagation = policy.propagation
    propagation.retried = False  # per call
    if not propagation.active():
        return transient
    waiting = backoff(propagation.covers, propagation.until - time.monotonic())
    return lambda fn: waiting(transient(fn))


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


def wait(operation: Any, what: str, policy: RetryPolicy, may_land: str, check: str, first_s: float = 1.0) -> Any:
    """Wait for *operation* (a google.api_core Operation) to end, at most ``policy.operation_s`` in all, and return
    its result; an operation that failed raises its error, translated. Each look is a read (transient errors are
    retried); the call that started the operation is never sent again from here. Still running at the end of the
    budget: a DeployctlError that says so, what *may_land*, and the command that shows where it stands (*check*)."""
    deadline = policy.clock() + policy.operation_s
    delay = first_s
    while not read(operation.done, f"{what}: look at its operation", policy):
        left = deadline - policy.clock()
        if left <= 0:
            raise DeployctlError(
                f"{what}: still running after {policy.operation_s:g}s ({operation.operation.name})",
                f"Google Cloud goes on with it, so {may_land}; nothing was sent twice. See where it stands: "
                f"{check}; then run the command again ({OPERATION_ENV} sets a longer wait).",
            )
        policy.sleep(min(delay, left))
        delay = min(delay * 2, max(first_s, 10.0))
    try:
        return operation.result(timeout=0)
    except Exception as exc:  # the operation ended with an error (a revision that failed to start…)
        raise translate(exc, what, policy) from None


# Cloud Run imports an image as the project's Cloud Run Service Agent; an image in another project's
# repository needs that agent to hold roles/artifactregistry.reader there (Artifact Registry, "Deploying to
# Cloud Run"; Cloud Run, "Deploying images from other Google Cloud projects"). Cloud Run's refusal:
# "Google Cloud Run Service Agent service-N@serverless-robot-prod.iam.gserviceaccount.com must have permission
# to read the image, IMAGE. Ensure that …"
_AGENT_CANNOT_READ = re.compile(r"(?P<agent>service-\d+@serverless-robot-prod\.iam\.gserviceaccount\.com) must have "
                                r"permission to read the image, (?P<image>\S+?)\.(?:\s|$)")
_ARTIFACT_IMAGE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/")


def image_refusal(text: str, what: str = "") -> PreconditionError | None:
    """Cloud Run's refusal to import an image its service agent may not read, as one line and the grant that
    fixes it; None when *text* is not that refusal."""
    found = _AGENT_CANNOT_READ.search(text)
    if found is None:
        return None
    agent, image = found["agent"], found["image"]
    resource = _repository_of(image) or "projects/PROJECT/locations/LOCATION/repositories/REPOSITORY"
    return PreconditionError(
        f"{what + ': ' if what else ''}Cloud Run's service agent {agent} cannot read the image {image}",
        f"Grant it once (docs/runbook.md, Promote): {reader_grant(resource, f'serviceAccount:{agent}')}",
    )


def forbidden(exc: BaseException | None) -> bool:
    """Whether *exc* is a 403, also when one ended a retry (google-api-core's RetryError names it as its cause)."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError):
        exc = exc.cause
    return isinstance(exc, gexc.Forbidden)


# Cloud Run checks that whoever creates or updates a service or job may read its image (Google's notice "Ensure read
# access on container images deployed to Cloud Run", enforced since 15 January 2025): a refusal names
# artifactregistry.repositories.downloadArtifacts on the image's repository, in IAM's ErrorInfo metadata or in the
# text Cloud Run quotes ("User must have permission to read the image, IMAGE. …" with the registry's 'Permission
# "artifactregistry.repositories.downloadArtifacts" denied on resource "projects/…/repositories/…"').
DOWNLOAD = "artifactregistry.repositories.downloadArtifacts"
_REPOSITORY = r"projects/[^/\s\\\"']+/locations/[^/\s\\\"']+/repositories/[^/\s\\\"']+"
_DOWNLOAD_DENIED = re.compile(r"Permission \\?[\"']" + re.escape(DOWNLOAD) + r"\\?[\"'] denied on resource \\?[\"']"
                              rf"(?P<resource>{_REPOSITORY})")
_USER_CANNOT_READ = re.compile(r"User must have permission to read the image, (?P<image>\S+?)\.(?:\s|$)")


def download_refusal(text: str, what: str = "", caller: str = "",
                     metadata: dict[str, str] | None = None) -> PreconditionError | None:
    """The refusal to deploy an image its deployer may not read, as one line and the grant that fixes it for
    *caller* (the IAM member deployctl runs as; a placeholder when unknown); None when it is not that refusal."""
    resource = _denied_repository(text, metadata or {})
    if resource is None:
        return None
    who = caller.split(":", 1)[-1] if caller else "the account deployctl runs as"
    grant = reader_grant(resource, caller or "PRINCIPAL")
    unknown = "" if caller else ", PRINCIPAL being user:EMAIL or serviceAccount:EMAIL of the account deployctl runs as"
    return PreconditionError(
        f"{what + ': ' if what else ''}{who} may not read the images of {resource} ({DOWNLOAD}), which Cloud Run "
        "requires of whoever deploys them",
        f"Grant it read access (docs/runbook.md, Promote): {grant}{unknown}",
    )


def _denied_repository(text: str, metadata: dict[str, str]) -> str | None:
    if metadata.get("permission") == DOWNLOAD and re.fullmatch(_REPOSITORY, metadata.get("resource", "")):
        return metadata["resource"]
    if (found := _DOWNLOAD_DENIED.search(text)) is not None:
        return found["resource"]
    said = _USER_CANNOT_READ.search(text)
    return _repository_of(said["image"]) if said else None


def _repository_of(image: str) -> str | None:
    """The resource name of an Artifact Registry image's repository; None for an image elsewhere."""
    repo = _ARTIFACT_IMAGE.match(image)
    if repo is None:
        return None
    return f"projects/{repo['project']}/locations/{repo['location']}/repositories/{repo['repository']}"


def _image_unreadable(exc: BaseException, what: str, policy: RetryPolicy | None) -> PreconditionError | None:
    """Cloud Run's refusal of an image its service agent, or the deployer, may not read; else None."""
    message = str(getattr(exc, "message", ""))
    return image_refusal(message, what) or download_refusal(message, what, policy.caller if policy else "",
                                                            _metadata(exc))


def reader_grant(repository: str, member: str) -> str:
    """The gcloud command that lets *member* read the Artifact Registry *repository* (its resource name)."""
    _, project, _, location, _, name = repository.split("/")
    return (f"gcloud artifacts repositories add-iam-policy-binding {name} --project {project} --location {location} "
            f"--member {member} --role roles/artifactregistry.reader")


def translate(exc: BaseException, what: str, policy: RetryPolicy | None = None) -> DeployctlError:
    """Turn an SDK exception into a one-line DeployctlError (no payloads, no tracebacks)."""
    if isinstance(exc, DeployctlError):
        return exc
    if (refused := _image_unreadable(exc, what, policy)) is not None:
        return refused
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.RetryError) and isinstance(exc.cause, gexc.Forbidden):
        exc = exc.cause  # the window closed while a 403 was being waited on
    if isinstance(exc, gexc.Forbidden) and policy and policy.propagation.retried:
        denied = translate(exc, what, policy.elsewhere())  # still denied once the window closed (no window here)
        return PreconditionError(f"{denied.message} (still, after waiting for {policy.propagation.what} to "
                                 "propagate)", denied.hint)
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
    if isinstance(exc, gexc.Forbidden) and getattr(exc, "reason", None) == "SERVICE_DISABLED":
        api = _metadata(exc).get("service", "the API")
        return PreconditionError(
            f"{what}: {api} is not enabled in this project",
            f"Enable it: gcloud services enable {api} (deployctl bootstrap STACK enables every API a stack "
            "uses); a newly enabled API takes a few minutes to answer.",
        )
    if isinstance(exc, gexc.Forbidden | gexc.Unauthenticated):
        return PreconditionError(f"{what}: {_short(exc)}", CREDENTIALS_HINT)
    if isinstance(exc, gexc.GoogleAPICallError) or is_transient(exc):
        return DeployctlError(f"{what}: {_short(exc)}", "Run again with --debug for details.")
    return DeployctlError(f"{what}: unexpected {type(exc).__name__}", "Run again with --debug for details.")


CREDENTIALS_HINT = "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)."


def caller_identity(credentials: Any) -> str | None:
    """The account the credentials act as, when they name it: a service account's email, or the account of
    user credentials that carry one (``gcloud auth application-default login`` records it)."""
    for attribute in ("service_account_email", "account"):
        value = getattr(credentials, attribute, None)
        if isinstance(value, str) and "@" in value:
            return value
    return None


def member(email: str | None) -> str:
    """The IAM member of an account's email (``serviceAccount:…`` or ``user:…``); "" for none."""
    if not email:
        return ""
    return f"{'serviceAccount' if email.endswith('.gserviceaccount.com') else 'user'}:{email}"


def _metadata(exc: Any) -> dict[str, str]:
    return dict(getattr(exc, "metadata", None) or {})


def _short(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    first = str(message).splitlines()[0][:200]
    return f"{int(code)} {first}" if isinstance(code, int) else f"{type(exc).__name__}: {first}"
