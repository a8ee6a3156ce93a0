"""drongo, extended where deployctl needs more than it fakes, through drongo's own registry.

- Every service answers through :class:`FaultMixin`: queued faults per handler (``"unavailable"`` → 503,
  ``"exhausted"`` → 429, ``"lost"`` → the change is applied, then a 504 comes back) and a log of the
  mutating calls that got through (method and path only: bodies may hold secret payloads).
- Cloud Storage honours ``ifGenerationMatch`` on uploads and deletes (drongo 0.8 ignores it), atomically
  with the write, which the GCS lock and ledger rely on.
- Cloud Run Jobs gains ``PATCH`` (UpdateJob), run overrides (env recorded on the execution's template),
  executions that stay running for a number of polls, ``logUri``, a per-job outcome and the output each run
  writes, which the fake Cloud Logging (tests/fakes/cloudlogging.py, registered here too) answers with.
- When a :class:`tests.fakes.iam.Project` is set (:func:`use_project`), every request is checked against it
  before it is handled: the ``Authorization`` header's principal, the API, and the permission each handler
  names in its service's ``RULES`` (from the method's API reference: Cloud Storage "IAM permissions for JSON
  methods", Secret Manager "Access control with IAM", Cloud Run "IAM permissions"); a refusal comes back in
  the service's own REST error shape.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
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

if TYPE_CHECKING:
    from tests.fakes.iam import Check, Denial, Project

_FAULT_STATUS = {"unavailable": 503, "exhausted": 429, "internal": 500, "lost": 504}


@dataclass
class Recorder:
    faults: Faults = field(default_factory=Faults)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (handler, path) of mutating calls

    def mutations(self, handler_prefix: str = "") -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0].startswith(handler_prefix)]


RECORDER = Recorder()
PROJECT: list[Project] = []  # the project every drongo service checks calls against (none: no checks)


def use_project(project: Project | None) -> None:
    """Check every drongo call against *project* from now on (None: stop checking)."""
    PROJECT[:] = [project] if project is not None else []


Rules = dict[str, "Callable[[Request], list[Check]] | None"]  # handler -> its checks (None: no IAM check)


class FaultMixin:
    _routes: list[tuple[str, Any, Callable[..., HttpResponse]]]
    API = ""
    RULES: ClassVar[Rules] = {}
    READS: ClassVar[frozenset[str]] = frozenset()  # handlers of a POST that only reads (not recorded as mutations)

    def handle(self, request: Request) -> HttpResponse | None:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path) if method == request.method else None
            if match is None:
                continue
            request.path_params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            fault = RECORDER.faults.next(handler.__name__)
            if fault and fault != "lost":
                return _error(_FAULT_STATUS[fault], f"injected {fault}")
            denial = self._authorize(handler.__name__, request)
            if denial is not None:
                return 403 if denial.http_status == 403 else 401, {"Content-Type": "application/json"}, \
                    json.dumps(self.error_body(denial))
            try:
                response = handler(self, request)
            except DrongoHttpError as exc:
                return exc.to_response()
            if request.method != "GET" and handler.__name__ not in self.READS:
                RECORDER.calls.append((handler.__name__, request.path))
            return _error(504, "injected: applied, response lost") if fault == "lost" else response
        return None


    def _authorize(self, handler: str, request: Request) -> Denial | None:
        if not PROJECT:
            return None
        project = PROJECT[0]
        if handler not in self.RULES:
            if project.anonymous_is_owner:
                return None  # the legacy cloud's owner may call anything; a twin handler names its permission
            raise LookupError(f"the twin names no permission for {type(self).__name__}.{handler} (drongo_ext RULES)")
        rule = self.RULES[handler]
        if rule is None:
            return None
        return project.authorize(self.API, f"{self.API}/{handler}", rule(request), request.header("Authorization"))

    def error_body(self, denial: Denial) -> dict[str, Any]:
        return denial.rest_body()


def _error(status: int, message: str) -> HttpResponse:
    return DrongoHttpError(status, message).to_response()


def _remap(url_paths: dict[str, Any], cls: type) -> dict[str, Any]:
    return {key: getattr(cls, fn.__name__) for key, fn in url_paths.items()}


# -- Cloud Storage with generation preconditions ------------------------------------------------------


def _bucket(request: Request) -> str:
    return f"projects/_/buckets/{request.path_params['bucket']}"


def _object(request: Request, name: str | None = None) -> str:
    return f"{_bucket(request)}/objects/{name if name is not None else request.path_params['object']}"


def _upload_name(request: Request) -> str | None:
    name = request.param("name")
    if name is None and request.param("uploadType") == "multipart":
        metadata, _, _ = _parse_multipart_related(request.body, request.header("Content-Type", "") or "")
        name = metadata.get("name")
    if name is None and request.param("uploadType") == "resumable" and request.body:
        name = json.loads(request.body or b"{}").get("name")
    return name


def _storage_project(request: Request) -> str:
    return f"projects/{request.param('project') or request.path_params.get('project', '_')}"


def _one(permission: str, where: Callable[[Request], str]) -> Callable[[Request], list[Check]]:
    return lambda request: [(permission, where(request))]


class PreconditionStorage(FaultMixin, StorageResponse):
    # Cloud Storage "IAM permissions for JSON methods": what each JSON API method needs
    API = "storage.googleapis.com"
    RULES: ClassVar[Rules] = {
        "insert_bucket": _one("storage.buckets.create", _storage_project),
        "list_buckets": _one("storage.buckets.list", _storage_project),
        "get_bucket": _one("storage.buckets.get", _bucket),
        "patch_bucket": _one("storage.buckets.update", _bucket),
        "delete_bucket": _one("storage.buckets.delete", _bucket),
        "get_bucket_iam": _one("storage.buckets.getIamPolicy", _bucket),
        "set_bucket_iam": _one("storage.buckets.setIamPolicy", _bucket),
        "test_bucket_iam": lambda request: [],  # testIamPermissions: no permission required
        "create_hmac_key": _one("storage.hmacKeys.create", _storage_project),
        "list_hmac_keys": _one("storage.hmacKeys.list", _storage_project),
        "get_hmac_key": _one("storage.hmacKeys.get", _storage_project),
        "update_hmac_key": _one("storage.hmacKeys.update", _storage_project),
        "delete_hmac_key": _one("storage.hmacKeys.delete", _storage_project),
        # objects.insert: storage.objects.create, plus storage.objects.delete when it replaces an object
        "upload_object": lambda request: PreconditionStorage._insert_checks(request),
        "resumable_put": None,  # "the session URI acts as an authentication token" (resumable uploads)
        "list_objects": _one("storage.objects.list", _bucket),
        "get_object": _one("storage.objects.get", _object),
        "download_object": _one("storage.objects.get", _object),
        "patch_object": _one("storage.objects.update", _object),
        "delete_object": _one("storage.objects.delete", _object),
        "rewrite_object": lambda r: PreconditionStorage._copy_checks(r),
        "copy_object": lambda r: PreconditionStorage._copy_checks(r),
    }

    @staticmethod
    def _insert_checks(request: Request) -> list[Check]:
        name = _upload_name(request) or ""
        checks = [("storage.objects.create", _object(request, name))]
        backend = PreconditionStorage(gcs_urls.url_bases, {}).backend
        bucket = request.path_params["bucket"]
        exists = bucket in backend.buckets and name in backend.buckets[bucket].blobs
        return checks + ([("storage.objects.delete", _object(request, name))] if exists else [])

    @staticmethod
    def _copy_checks(request: Request) -> list[Check]:
        p = request.path_params
        return [("storage.objects.get", f"projects/_/buckets/{p['src_bucket']}/objects/{p['src_object']}"),
                ("storage.objects.create", f"projects/_/buckets/{p['dst_bucket']}/objects/{p['dst_object']}")]

    def error_body(self, denial: Denial) -> dict[str, Any]:
        if denial.reason != "IAM_PERMISSION_DENIED":
            return denial.rest_body()
        # the Cloud Storage JSON API's 403 names the principal and the permission, without ErrorInfo
        from tests.fakes.iam import email

        kind = "object" if "/objects/" in denial.resource else "bucket"
        message = (f"{email(denial.member)} does not have {denial.permission} access to the Google Cloud Storage "
                   f"{kind}. Permission '{denial.permission}' denied on resource (or it may not exist).")
        return {"error": {"code": 403, "message": message,
                          "errors": [{"message": message, "domain": "global", "reason": "forbidden"}]}}

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
    # execution name -> its task template's maxRetries (Cloud Run Admin API v2: an Execution's ``template`` is
    # the TaskTemplate its tasks were made from; TaskTemplate.max_retries defaults to 3)
    max_retries: dict[str, int] = field(default_factory=dict)
    # job id -> what each run writes to its output (the last one repeats), as text or as whole log entries; an
    # execution's Cloud Logging entries (tests/fakes/cloudlogging.py) come from it
    output: dict[str, list[str | list[str]]] = field(default_factory=dict)
    logged: dict[str, tuple[str, str | list[str]]] = field(default_factory=dict)  # execution -> (createTime, output)
    before_run: Callable[[str], None] | None = None  # called with the job id as an execution is asked for
    # the twin's runtime (runtime.py): when set, an execution runs the job's container as a real process and
    # its state (running, succeeded, failed) is the runtime's, not ``outcomes``/``polls_running``
    runtime: Any = None


JOBS = JobsState()


def _job(request: Request) -> str:
    p = request.path_params
    return f"projects/{p['project']}/locations/{p['location']}/jobs/{p['job']}"


def _execution(request: Request) -> str:
    return f"{_job(request)}/executions/{request.path_params['execution']}"


def _location(request: Request) -> str:
    p = request.path_params
    return f"projects/{p['project']}/locations/{p['location']}"


def _images(job: dict[str, Any]) -> list[str]:
    """The container images of a Job resource's task template (REST JSON)."""
    containers = ((job.get("template") or {}).get("template") or {}).get("containers") or []
    return [str(c["image"]) for c in containers if c.get("image")]


def _image_checks(request: Request) -> list[Check]:
    from tests.fakes.iam import image_checks

    return image_checks(_images(request.json() or {}))


def _run_job_checks(request: Request) -> list[Check]:
    # Cloud Run "Execute jobs": run.jobs.run; with overrides also run.jobs.runWithOverrides
    checks = [("run.jobs.run", _job(request))]
    if (request.json() or {}).get("overrides"):
        checks.append(("run.jobs.runWithOverrides", _job(request)))
    return checks


class JobsResponse(FaultMixin, CloudRunResponse):
    # Cloud Run "IAM permissions" (run/docs/reference/iam/permissions), Jobs
    API = "run.googleapis.com"
    RULES: ClassVar[Rules] = {
        "get_operation": _one("run.operations.get", _location),
        "run_job": _run_job_checks,
        "create_job": lambda request: [("run.jobs.create", _location(request)), *_image_checks(request)],
        "list_jobs": _one("run.jobs.list", _location),
        "get_job": _one("run.jobs.get", _job),
        "update_job": lambda request: [("run.jobs.update", _job(request)), *_image_checks(request)],
        "delete_job": _one("run.jobs.delete", _job),
        "list_executions": _one("run.executions.list", _job),
        "get_execution": _one("run.executions.get", _execution),
        "delete_execution": _one("run.executions.delete", _execution),
    }

    def _refused(self, request: Request, job: str, body: dict[str, Any]) -> HttpResponse | None:
        """Cloud Run imports the image as the job is created or updated (tests/fakes/iam.py, 5): when its service
        agent may not read it, the operation ends in Cloud Run's message and the job is left as it was (not
        made). Google documents the message, not the code: FAILED_PRECONDITION (9) is the twin's choice."""
        project = PROJECT[0] if PROJECT else None
        refusal = next((why for image in _images(body) if project and (why := project.pull_refusal(job, image))), None)
        if refusal is None:
            return None
        backend = self.backend_for(request)
        name = f"{self._parent(request)}/operations/op-{backend._next()}"
        operation = {"name": name, "done": True, "error": {"code": 9, "message": refusal}}
        backend.operations[name] = operation
        return json_response(operation)

    def create_job(self, request: Request) -> HttpResponse:
        job = f"{self._parent(request)}/jobs/{request.param('jobId')}"
        return self._refused(request, job, request.json() or {}) or super().create_job(request)

    def update_job(self, request: Request) -> HttpResponse:
        backend = self.backend_for(request)
        job = backend.get_job(self._job_name(request))
        body = request.json()
        body.pop("name", None)
        if (refused := self._refused(request, job.name, body)) is not None:
            return refused
        job.spec.update(body)
        return json_response(
            backend._operation(self._parent(request), "type.googleapis.com/google.cloud.run.v2.Job", job.to_resource())
        )

    def run_job(self, request: Request) -> HttpResponse:
        backend = self.backend_for(request)
        name = self._job_name(request)
        job = backend.get_job(name)
        job_id = name.rsplit("/", 1)[-1]
        if JOBS.before_run is not None:
            JOBS.before_run(job_id)
        execution = Execution(name=f"{name}/executions/{job_id}-{backend._next():05d}", job=name)
        overrides = (request.json().get("overrides") or {}).get("containerOverrides") or [{}]
        JOBS.env[execution.name] = {e["name"]: e.get("value", "") for e in overrides[0].get("env", [])}
        task = (job.spec.get("template") or {}).get("template") or {}
        JOBS.max_retries[execution.name] = int(task.get("maxRetries", task.get("max_retries", 3)))
        if JOBS.runtime is not None:
            JOBS.runtime.start_execution(job.to_resource(), execution.name, JOBS.env[execution.name])
        queue = JOBS.outcomes.get(job_id) or [True]
        ok = queue.pop(0) if len(queue) > 1 else queue[0]
        said = JOBS.output.get(job_id)
        if said and JOBS.runtime is None:
            JOBS.logged[execution.name] = (execution.create_time, said.pop(0) if len(said) > 1 else said[0])
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
    resource["template"] = {"containers": [{"env": [{"name": k, "value": v} for k, v in env.items()]}],
                            "maxRetries": JOBS.max_retries.get(execution.name, 3)}
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


def _project(request: Request) -> str:
    return f"projects/{request.path_params['project']}"


def _secret(request: Request) -> str:
    return f"{_project(request)}/secrets/{request.path_params['secret']}"


def _version(request: Request) -> str:
    return f"{_secret(request)}/versions/{request.path_params['version']}"


class FaultySecrets(FaultMixin, SecretManagerResponse):
    # Secret Manager "Access control with IAM": the permission of each method
    API = "secretmanager.googleapis.com"
    RULES: ClassVar[Rules] = {
        "create_secret": _one("secretmanager.secrets.create", _project),
        "list_secrets": _one("secretmanager.secrets.list", _project),
        "get_secret": _one("secretmanager.secrets.get", _secret),
        "update_secret": _one("secretmanager.secrets.update", _secret),
        "delete_secret": _one("secretmanager.secrets.delete", _secret),
        "add_version": _one("secretmanager.versions.add", _secret),
        "list_versions": _one("secretmanager.versions.list", _secret),
        "get_version": _one("secretmanager.versions.get", _version),
        "access_version": _one("secretmanager.versions.access", _version),
        "disable_version": _one("secretmanager.versions.disable", _version),
        "enable_version": _one("secretmanager.versions.enable", _version),
        "destroy_version": _one("secretmanager.versions.destroy", _version),
    }

    # Secret Manager API reference, Secret.labels: "Label keys must be between 1 and 63 characters long ... and
    # must conform to ... [\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}. Label values must be between 0 and 63
    # characters long ... [\p{Ll}\p{Lo}\p{N}_-]{0,63}. No more than 64 labels can be assigned to a given
    # resource." (lowercase letters, digits, _ and -; ASCII here). A request that breaks it is 400.
    _LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
    _LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")

    def _check_labels(self, request: Request) -> None:
        labels = (request.json() or {}).get("labels") or {}
        if len(labels) > 64:
            raise DrongoHttpError(400, "No more than 64 labels can be assigned to a given resource.")
        for key, value in labels.items():
            if not self._LABEL_KEY.match(str(key)) or not self._LABEL_VALUE.match(str(value)):
                raise DrongoHttpError(400, f"Invalid label {key!r}: {value!r}: keys and values are lowercase letters, "
                                           "digits, _ and - (a key starts with a letter), at most 63 characters.")

    def create_secret(self, request: Request) -> HttpResponse:
        self._check_labels(request)
        return super().create_secret(request)

    def update_secret(self, request: Request) -> HttpResponse:
        self._check_labels(request)
        return super().update_secret(request)


def install() -> None:
    """Replace drongo's storage, cloudrun and secretmanager definitions with the extended ones; add Cloud Logging's
    entries:list."""
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
    from tests.fakes import cloudlogging

    cloudlogging.register()
    register_service(
        ServiceDefinition(
            name="secretmanager",
            backends=secretmanager_backends,
            response=FaultySecrets(sm_urls.url_bases, _remap(sm_urls.url_paths, FaultySecrets)),
            patchers=secret_patchers,
        )
    )


def reset() -> None:
    from tests.fakes import cloudlogging

    PROJECT.clear()
    RECORDER.faults.clear()
    RECORDER.calls.clear()
    global JOBS
    JOBS.__init__()  # type: ignore[misc]
    cloudlogging.reset()


def object_bytes(bucket: str, name: str) -> bytes | None:
    """Test-only view of an object's bytes (None when absent): what a Google service reads on its own side,
    past IAM (Cloud Build fetching a build's source is checked as the build's account, in builds.py)."""
    backend = PreconditionStorage(gcs_urls.url_bases, {}).backend
    blob = backend.buckets[bucket].blobs.get(name) if bucket in backend.buckets else None
    return blob.data if blob is not None else None


def secret_values(project: str, secret: str) -> dict[str, tuple[str, bytes]]:
    """Test-only view of a secret's versions: version -> (state, payload)."""
    s = get_backend("secretmanager")[project].secrets.get(secret)
    return {str(v.version): (v.state, v.data) for v in s.versions} if s else {}


__all__ = ["JOBS", "PROJECT", "RECORDER", "exceptions", "install", "object_bytes", "reset", "secret_values",
           "use_project"]
