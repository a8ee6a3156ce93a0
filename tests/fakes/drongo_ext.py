"""drongo, extended where deployctl needs more than it fakes, through drongo's own registry.

- Every service answers through :class:`FaultMixin`: queued faults per handler (``"unavailable"`` → 503,
  ``"exhausted"`` → 429, ``"lost"`` → the change is applied, then a 504 comes back) and a log of the
  mutating calls that got through (method and path only: bodies may hold secret payloads).
- Cloud Storage honours ``ifGenerationMatch`` on uploads and deletes (drongo 0.8 ignores it), atomically
  with the write, which the GCS lock and ledger rely on.
- Cloud Run Jobs gains ``PATCH`` (UpdateJob), run overrides (env recorded on the execution's template),
  executions that stay running for a number of polls, ``logUri``, and a per-job outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from drongo.core import exceptions
from drongo.core.exceptions import DrongoHttpError
from drongo.core.registry import ServiceDefinition, get_backend, register_service
from drongo.core.responses import HttpResponse, Request, json_response
from drongo.services.cloudrun import urls as run_urls
from drongo.services.cloudrun.models import Execution, cloudrun_backends
from drongo.services.cloudrun.responses import CloudRunResponse
from drongo.services.secretmanager import _patchers as secret_patchers
from drongo.services.secretmanager import urls as sm_urls
from drongo.services.secretmanager.models import secretmanager_backends
from drongo.services.secretmanager.responses import SecretManagerResponse
from drongo.services.storage import urls as gcs_urls
from drongo.services.storage.models import storage_backends
from drongo.services.storage.responses import StorageResponse, _parse_multipart_related

from tests.fakes.grpcfake import Faults

_FAULT_STATUS = {"unavailable": 503, "exhausted": 429, "internal": 500, "lost": 504}


@dataclass
class Recorder:
    faults: Faults = field(default_factory=Faults)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (handler, path) of mutating calls

    def mutations(self, handler_prefix: str = "") -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0].startswith(handler_prefix)]


RECORDER = Recorder()


class FaultMixin:
    _routes: list[tuple[str, Any, Callable[..., HttpResponse]]]

    def handle(self, request: Request) -> HttpResponse | None:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path) if method == request.method else None
            if match is None:
                continue
            request.path_params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            fault = RECORDER.faults.next(handler.__name__)
            if fault and fault != "lost":
                return _error(_FAULT_STATUS[fault], f"injected {fault}")
            try:
                response = handler(self, request)
            except DrongoHttpError as exc:
                return exc.to_response()
            if request.method != "GET":
                RECORDER.calls.append((handler.__name__, request.path))
            return _error(504, "injected: applied, response lost") if fault == "lost" else response
        return None


def _error(status: int, message: str) -> HttpResponse:
    return DrongoHttpError(status, message).to_response()


def _remap(url_paths: dict[str, Any], cls: type) -> dict[str, Any]:
    return {key: getattr(cls, fn.__name__) for key, fn in url_paths.items()}


# -- Cloud Storage with generation preconditions ------------------------------------------------------


class PreconditionStorage(FaultMixin, StorageResponse):
    # Cloud Storage: a request with ifGenerationMatch succeeds only if the object's live generation matches
    # (0: no live object), else 412; the check and the write are one atomic step, so of two concurrent
    # creates with ifGenerationMatch=0 exactly one succeeds (https://cloud.google.com/storage/docs/
    # request-preconditions, "Avoid race conditions"). drongo answers in the calling thread, so the check
    # and the write share a lock here.
    _atomic = threading.Lock()

    def _check(self, request: Request, bucket: str, name: str | None) -> None:
        wanted = request.param("ifGenerationMatch")
        if wanted is None or name is None:
            return
        blob = self.backend.buckets[bucket].blobs.get(name) if bucket in self.backend.buckets else None
        actual = blob.generation if blob else 0
        if int(wanted) != actual:
            raise DrongoHttpError(412, "At least one of the pre-conditions you specified did not hold.")

    def upload_object(self, request: Request) -> HttpResponse:
        name = request.param("name")
        if name is None and request.param("uploadType") == "multipart":
            metadata, _, _ = _parse_multipart_related(request.body, request.header("Content-Type", "") or "")
            name = metadata.get("name")
        with self._atomic:
            self._check(request, request.path_params["bucket"], name)
            return super().upload_object(request)

    def delete_object(self, request: Request) -> HttpResponse:
        with self._atomic:
            self._check(request, request.path_params["bucket"], request.path_params["object"])
            return super().delete_object(request)


# -- Cloud Run Jobs: update, overrides, running executions ---------------------------------------------


@dataclass
class JobsState:
    outcomes: dict[str, list[bool]] = field(default_factory=dict)  # job id -> outcome per run (default ok)
    polls_running: dict[str, int] = field(default_factory=dict)  # job id -> polls an execution stays running
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # execution name -> override env
    left: dict[str, int] = field(default_factory=dict)  # execution name -> polls left while running
    failed: dict[str, bool] = field(default_factory=dict)
    # the twin's runtime (runtime.py): when set, an execution runs the job's container as a real process and
    # its state (running, succeeded, failed) is the runtime's, not ``outcomes``/``polls_running``
    runtime: Any = None


JOBS = JobsState()


class JobsResponse(FaultMixin, CloudRunResponse):
    def update_job(self, request: Request) -> HttpResponse:
        backend = self.backend_for(request)
        job = backend.get_job(self._job_name(request))
        body = request.json()
        body.pop("name", None)
        job.spec.update(body)
        return json_response(
            backend._operation(self._parent(request), "type.googleapis.com/google.cloud.run.v2.Job", job.to_resource())
        )

    def run_job(self, request: Request) -> HttpResponse:
        backend = self.backend_for(request)
        name = self._job_name(request)
        job = backend.get_job(name)
        job_id = name.rsplit("/", 1)[-1]
        execution = Execution(name=f"{name}/executions/{job_id}-{backend._next():05d}", job=name)
        overrides = (request.json().get("overrides") or {}).get("containerOverrides") or [{}]
        JOBS.env[execution.name] = {e["name"]: e.get("value", "") for e in overrides[0].get("env", [])}
        if JOBS.runtime is not None:
            JOBS.runtime.start_execution(job.to_resource(), execution.name, JOBS.env[execution.name])
        queue = JOBS.outcomes.get(job_id) or [True]
        ok = queue.pop(0) if len(queue) > 1 else queue[0]
        JOBS.failed[execution.name] = not ok
        JOBS.left[execution.name] = JOBS.polls_running.get(job_id, 0)
        execution.succeeded_count, execution.failed_count = (1, 0) if ok else (0, 1)
        job.executions[execution.name] = execution
        kind = "type.googleapis.com/google.cloud.run.v2.Execution"
        return json_response(backend._operation(self._parent(request), kind, _resource(execution, poll=False)))

    def get_execution(self, request: Request) -> HttpResponse:
        execution = self.backend_for(request).get_execution(self._execution_name(request))
        return json_response(_resource(execution, poll=True))

    def list_executions(self, request: Request) -> HttpResponse:
        executions = self.backend_for(request).list_executions(self._job_name(request))
        return json_response({"executions": [_resource(e, poll=False) for e in executions]})


def _resource(execution: Execution, poll: bool) -> dict[str, Any]:
    resource = execution.to_resource()
    env = JOBS.env.get(execution.name, {})
    resource["template"] = {"containers": [{"env": [{"name": k, "value": v} for k, v in env.items()]}]}
    resource["logUri"] = f"https://console.cloud.google.com/logs/fake?execution={execution.name.rsplit('/', 1)[-1]}"
    ran = JOBS.runtime.execution_status(execution.name) if JOBS.runtime is not None else None
    if ran is not None:
        resource.update(ran)
        if "completionTime" not in ran:
            resource.pop("completionTime", None)
        return resource
    left = JOBS.left.get(execution.name, 0)
    if poll and left > 0:
        JOBS.left[execution.name] = left - 1
    if left > 0:
        resource.pop("completionTime", None)
        resource.update(succeededCount=0, failedCount=0, runningCount=1)
        resource["conditions"] = [{"type": "Completed", "state": "CONDITION_RECONCILING"}]
    elif JOBS.failed.get(execution.name):
        resource["conditions"] = [{"type": "Completed", "state": "CONDITION_FAILED", "message": "Task failed"}]
    return resource


class FaultySecrets(FaultMixin, SecretManagerResponse):
    pass


def install() -> None:
    """Replace drongo's storage, cloudrun and secretmanager definitions with the extended ones."""
    import drongo.services  # noqa: F401  (registers the stock services first)

    register_service(
        ServiceDefinition(
            name="storage",
            backends=storage_backends,
            response=PreconditionStorage(gcs_urls.url_bases, _remap(gcs_urls.url_paths, PreconditionStorage)),
        )
    )
    job = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/jobs/(?P<job>[^/:]+)"
    paths = {f"PATCH {job}": JobsResponse.update_job, **_remap(run_urls.url_paths, JobsResponse)}
    from drongo.services.cloudrun import _patchers as run_patchers

    register_service(
        ServiceDefinition(
            name="cloudrun",
            backends=cloudrun_backends,
            response=JobsResponse(run_urls.url_bases, paths),
            patchers=run_patchers,
        )
    )
    register_service(
        ServiceDefinition(
            name="secretmanager",
            backends=secretmanager_backends,
            response=FaultySecrets(sm_urls.url_bases, _remap(sm_urls.url_paths, FaultySecrets)),
            patchers=secret_patchers,
        )
    )


def reset() -> None:
    RECORDER.faults.clear()
    RECORDER.calls.clear()
    global JOBS
    JOBS.__init__()  # type: ignore[misc]


def secret_values(project: str, secret: str) -> dict[str, tuple[str, bytes]]:
    """Test-only view of a secret's versions: version -> (state, payload)."""
    s = get_backend("secretmanager")[project].secrets.get(secret)
    return {str(v.version): (v.state, v.data) for v in s.versions} if s else {}


__all__ = ["JOBS", "RECORDER", "exceptions", "install", "reset", "secret_values"]
