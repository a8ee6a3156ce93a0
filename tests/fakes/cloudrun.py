"""Fake Cloud Run Services and Revisions (run_v2) over gRPC, plus the HTTP server revisions "run" on.

State and rules follow Cloud Run: an UpdateService whose template names a new revision creates it; a
revision whose image is marked broken never becomes Ready and the update fails without moving traffic;
traffic must add up to 100 % over existing revisions, and only Ready revisions may get a share; tags get
their own URL. URLs point at :class:`RevisionHttp`, which answers as the revision behind them would (the
service URL spreads requests over revisions by their traffic percent, deterministically).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.cloud import run_v2

from tests.fakes.grpcfake import FakeError, GrpcFake, done_operation
from tests.fakes.serving import serve_in_thread

Behaviour = Callable[[str, run_v2.Revision], tuple[int, str]]
_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def healthy(path: str, revision: run_v2.Revision) -> tuple[int, str]:
    return (200, "healthy") if path == "/health" else (200, "ok")


class FakeRunServices:
    def __init__(self, fake: GrpcFake, http: RevisionHttp) -> None:
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, run_v2.Revision] = {}
        self.templates: dict[str, bytes] = {}  # revision -> the configuration it was created with
        self.broken_images: set[str] = set()
        self.crashed: set[str] = set()  # full revision names whose instances crashed after promotion (crash())
        self.behaviours: dict[str, Behaviour] = {}  # image -> how its revisions answer HTTP
        # the twin's runtime (runtime.py): when set, a new revision starts a real instance of its image and is
        # Ready only if that instance starts; requests to it are proxied to the instance
        self.runtime: Any = None
        # the twin's project (tests/fakes/iam.Project): whether the service agent may import an image
        self.project: Any = None
        self.http = http
        self.lock = threading.RLock()
        self._ops = itertools.count(1)
        http.resolver = self.resolve
        http.answer = self.answer
        svc, rev = "google.cloud.run.v2.Services", "google.cloud.run.v2.Revisions"
        fake.add(svc, "GetService", self._get_service, run_v2.GetServiceRequest)
        fake.add(svc, "UpdateService", self._update_service, run_v2.UpdateServiceRequest)
        fake.add(svc, "CreateService", self._create_service, run_v2.CreateServiceRequest)
        fake.add(rev, "GetRevision", self._get_revision, run_v2.GetRevisionRequest)
        from google.longrunning import operations_pb2

        fake.add("google.longrunning.Operations", "GetOperation", self._get_operation,
                 operations_pb2.GetOperationRequest)
        # Cloud Run Admin API v2: UpdateService "returns a long-running operation"; the client waits for it
        # (Operations.GetOperation) and its result is the updated Service or the error. Here an operation
        # is still running at the first POLLS_UNTIL_DONE looks, not done when UpdateService answers.
        self.pending: dict[str, tuple[Any, int, float]] = {}  # operation -> (finished one, looks left, done at)
        # How long an operation runs, on ``clock`` (a test moves a Clock instead of waiting). Cloud Run's answer to
        # a revision comes once its startup probe passes, which may take initialDelaySeconds (up to 240 s) plus
        # failureThreshold x periodSeconds (up to 240 s) (Admin API v2 reference: Probe): minutes, longer than
        # any fixed client timeout of 120 s.
        self.operation_s = 0.0
        self.landing: dict[str, Callable[[], None]] = {}  # operation -> what makes its change visible when it ends
        self.clock: Callable[[], float] = time.monotonic
        fake.add(rev, "ListRevisions", self._list_revisions, run_v2.ListRevisionsRequest)

    # -- what tests and the fake engine use --------------------------------------------------------
    def apply(self, name: str, template: run_v2.RevisionTemplate, traffic: list[run_v2.TrafficTarget]) -> None:
        """Create or update a service the way ``pulumi up`` would (no faults, no recorded call)."""
        with self.lock:
            current = self.services.get(name) or self._new_service(name)
            update = run_v2.Service(current)
            update.template = template
            del update.traffic[:]
            update.traffic.extend(traffic)
            self._apply(update, check_etag=False)

    def crash(self, service: str, revision: str) -> None:
        """The revision's instances crash after it was promoted (the app dies, its health check fails): Cloud Run
        reports it on the revision's conditions, ``Ready`` and ``ContainerHealthy`` False with the revision
        reason HEALTH_CHECK_CONTAINER_ERROR ("There was a health check error"; Cloud Run Admin API v2,
        Condition.RevisionReason), and requests routed to it get 503. It keeps its traffic: Cloud Run moves
        none by itself, and a revision that is not Ready cannot get a new share (``_check_traffic``)."""
        with self.lock:
            rev = self.revisions[f"{service}/revisions/{revision}"]
            failed, why = run_v2.Condition.State.CONDITION_FAILED, run_v2.Condition.RevisionReason
            message = "The user-provided container exited and failed its health check."
            del rev.conditions[:]
            rev.conditions.extend([
                run_v2.Condition(type_=kind, state=failed, message=message,
                                 revision_reason=why.HEALTH_CHECK_CONTAINER_ERROR)
                for kind in ("Ready", "ContainerHealthy")
            ])
            self.crashed.add(rev.name)

    def serving(self, name: str) -> dict[str, int]:
        svc = self.services[name]
        return {s.revision: s.percent for s in svc.traffic_statuses if s.percent}

    def tags(self, name: str) -> dict[str, str]:
        return {s.tag: s.revision for s in self.services[name].traffic_statuses if s.tag}

    def revision_names(self, name: str) -> list[str]:
        return sorted(r.rsplit("/", 1)[-1] for r in self.revisions if r.startswith(name + "/revisions/"))

    # -- gRPC handlers ---------------------------------------------------------------------------
    def _get_service(self, request: run_v2.GetServiceRequest) -> run_v2.Service:
        with self.lock:
            if request.name not in self.services:
                raise FakeError(grpc.StatusCode.NOT_FOUND, f"Service {request.name} not found")
            return run_v2.Service(self.services[request.name])

    def _update_service(self, request: run_v2.UpdateServiceRequest) -> Any:
        with self.lock:
            if request.service.name not in self.services:
                raise FakeError(grpc.StatusCode.NOT_FOUND, f"Service {request.service.name} not found")
            before = self.services[request.service.name]
            error = self._apply(run_v2.Service(request.service), check_etag=True)
            return self._operation(request.service.name.split("/services/")[0], error, request.service.name, before)

    def _operation(self, parent: str, error: str | None, name: str, before: run_v2.Service | None = None) -> Any:
        op = f"{parent}/operations/op-{next(self._ops)}"
        if error:
            return self._in_progress(done_operation(op, error=(grpc.StatusCode.FAILED_PRECONDITION.value[0], error)))
        finished = done_operation(op, self.services[name])
        if not self.operation_s or before is None:
            return self._in_progress(finished)
        # the service reads as before until the operation ends: Cloud Run moves traffic once the revision is Ready
        after, self.services[name] = self.services[name], before
        return self._in_progress(finished, lambda: self.services.__setitem__(name, after))

    def _create_service(self, request: run_v2.CreateServiceRequest) -> Any:
        with self.lock:
            name = f"{request.parent}/services/{request.service_id}"
            if name in self.services:
                raise FakeError(grpc.StatusCode.ALREADY_EXISTS, f"Resource '{request.service_id}' already exists.")
            service = run_v2.Service(request.service)
            service.name = name
            return self._operation(request.parent, self._apply(service, check_etag=False), name)

    POLLS_UNTIL_DONE = 1

    def _in_progress(self, finished: Any, land: Callable[[], None] | None = None) -> Any:
        from google.longrunning import operations_pb2

        self.pending[finished.name] = (finished, self.POLLS_UNTIL_DONE, self.clock() + self.operation_s)
        if land is not None:
            self.landing[finished.name] = land
        return operations_pb2.Operation(name=finished.name, done=False)

    def _get_operation(self, request: Any) -> Any:
        with self.lock:
            if request.name not in self.pending:
                raise FakeError(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found")
            finished, left, done_at = self.pending[request.name]
            if left > 0 or self.clock() < done_at:
                self.pending[request.name] = (finished, left - 1, done_at)
                from google.longrunning import operations_pb2

                return operations_pb2.Operation(name=finished.name, done=False)
            land = self.landing.pop(request.name, None)
            if land is not None:
                land()
            return finished

    def _get_revision(self, request: run_v2.GetRevisionRequest) -> run_v2.Revision:
        with self.lock:
            if request.name not in self.revisions:
                raise FakeError(grpc.StatusCode.NOT_FOUND, f"Revision {request.name} not found")
            return run_v2.Revision(self.revisions[request.name])

    def _list_revisions(self, request: run_v2.ListRevisionsRequest) -> run_v2.ListRevisionsResponse:
        with self.lock:
            prefix = request.parent + "/revisions/"
            revs = [run_v2.Revision(r) for n, r in sorted(self.revisions.items()) if n.startswith(prefix)]
            return run_v2.ListRevisionsResponse(revisions=revs)

    # -- Cloud Run's rules -----------------------------------------------------------------------
    def _new_service(self, name: str) -> run_v2.Service:
        service_id = name.rsplit("/", 1)[-1]
        # Cloud Run Admin API v2, CreateServiceRequest.service_id: "must begin with letter, and cannot end with
        # hyphen; must contain fewer than 50 characters". The message text is the twin's own: Google's exact
        # wording for this refusal was not found; the status (INVALID_ARGUMENT) is what a bad request gets.
        if len(service_id) >= 50:
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"service_id '{service_id}' must contain fewer than 50 characters.")
        return run_v2.Service(name=name, uri=f"{self.http.base}/_s/{service_id}", generation=0)

    def _apply(self, update: run_v2.Service, check_etag: bool) -> str | None:
        """Apply an update; return an error message when the operation fails (traffic then unchanged)."""
        name = update.name
        current = self.services.get(name) or self._new_service(name)
        _check_tags(name.rsplit("/", 1)[-1], update.traffic)
        if check_etag and update.etag and update.etag != current.etag:
            raise FakeError(grpc.StatusCode.ABORTED, "etag mismatch: the service changed since it was read")
        created = self._ensure_revision(name, update.template)
        svc = run_v2.Service(current)
        svc.template = update.template
        svc.generation = current.generation + 1
        svc.etag = f"g{svc.generation}"
        svc.latest_created_revision = created.name
        self.services[name] = svc
        if not _ready(created):
            # the operation's error carries the revision's reason, as Cloud Run's does
            why = next((c.message for c in created.conditions if c.type_ == "Ready"), "")
            return f"Revision '{created.name.rsplit('/', 1)[-1]}' is not ready and cannot serve traffic. {why}".strip()
        svc.latest_ready_revision = created.name
        error = self._check_traffic(name, update.traffic)
        if error:
            return error
        del svc.traffic[:]
        svc.traffic.extend(update.traffic)
        self._statuses(svc)
        return None

    def _ensure_revision(self, service: str, template: run_v2.RevisionTemplate) -> run_v2.Revision:
        """The revision *template* names. Cloud Run Admin API v2, RevisionTemplate.revision: "The unique name for
        the revision. If this field is omitted, it will be automatically generated based on the Service name"
        (``<service>-<generation, 5 digits>-<3 letters>``); a name that exists with another configuration is
        refused ("Revision named '…' with different configuration already exists", 409 ALREADY_EXISTS)."""
        current = self.services.get(service)
        if not template.revision and current is not None and current.latest_created_revision and \
                _configuration(template) == _configuration(current.template):
            return self.revisions[current.latest_created_revision]  # only a template change makes a revision
        if not template.revision:
            generation = (self.services[service].generation if service in self.services else 0) + 1
            suffix = hashlib.sha256(f"{service}{generation}".encode()).hexdigest()[:3]
            template = run_v2.RevisionTemplate(template)
            template.revision = f"{service.rsplit('/', 1)[-1]}-{generation:05d}-{suffix}"
        # Cloud Run Admin API v2, RevisionTemplate.revision: an RFC 1035 label ("<service name>-<suffix>"), so
        # 63 characters at most. The message text is the twin's own wording (Google's was not found).
        if len(template.revision) > 63:
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT, f"template.revision '{template.revision}' must be "
                            "an RFC 1035 label. Maximum length is 63 characters.")
        full = f"{service}/revisions/{template.revision}"
        image = template.containers[0].image if template.containers else ""
        existing = self.revisions.get(full)
        if existing is not None:
            if self.templates[full] != _configuration(template):
                raise FakeError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Revision named '{template.revision}' with different configuration already exists.",
                )
            return existing
        ok = image and image not in self.broken_images
        message = "" if ok else "The user-provided container failed to start and listen on the port."
        refusal = self.project.pull_refusal(service, image) if ok and self.project is not None else None
        if refusal:  # Cloud Run could not import the image (tests/fakes/iam.py, 5): the revision never starts
            ok, message = False, refusal
        if ok and self.runtime is not None:
            message = self.runtime.start_revision(full, template) or ""
            ok = not message
        state = run_v2.Condition.State.CONDITION_SUCCEEDED if ok else run_v2.Condition.State.CONDITION_FAILED
        revision = run_v2.Revision(
            name=full,
            service=service,
            labels=dict(template.labels),
            containers=list(template.containers),
            scaling=template.scaling,
            conditions=[run_v2.Condition(type_="Ready", state=state, message=message)],
        )
        self.revisions[full] = revision
        self.templates[full] = _configuration(template)
        return revision

    def _check_traffic(self, service: str, traffic: Any) -> str | None:
        if sum(t.percent for t in traffic) != 100:
            return "traffic percents must add up to 100"
        current = self.services.get(service)
        had = {t.revision: t.percent for t in current.traffic_statuses} if current is not None else {}
        for target in traffic:
            full = f"{service}/revisions/{target.revision}"
            if target.type_ == _REVISION and full not in self.revisions:
                return f"Revision '{target.revision}' does not exist"
            # a revision that crashed keeps what it had (crash()); it may not get more. The twin's own reading:
            # Google documents refusing traffic to a revision that is not ready, not what an update that leaves a
            # crashed revision's share as it was gets; refusing it would make every rollout around it impossible
            # in the twin, where on Cloud Run the candidate is created beside the crashed revision.
            grows = target.percent > had.get(target.revision, 0)
            if grows and target.type_ == _REVISION and not _ready(self.revisions[full]):
                return f"Revision '{target.revision}' is not ready and cannot serve traffic."
        tags = [t.tag for t in traffic if t.tag]
        return "tags must be unique" if len(tags) != len(set(tags)) else None

    def _statuses(self, svc: run_v2.Service) -> None:
        service_id = svc.name.rsplit("/", 1)[-1]
        del svc.traffic_statuses[:]
        for target in svc.traffic:
            revision = target.revision or svc.latest_ready_revision.rsplit("/", 1)[-1]
            uri = f"{self.http.base}/_t/{target.tag}---{service_id}" if target.tag else ""
            status = run_v2.TrafficTargetStatus(
                type_=_REVISION, revision=revision, percent=target.percent, tag=target.tag, uri=uri
            )
            svc.traffic_statuses.append(status)

    # -- routing for RevisionHttp ----------------------------------------------------------------
    def resolve(self, kind: str, key: str, counter: int) -> run_v2.Revision | None:
        with self.lock:
            if kind == "_t":
                tag, _, service_id = key.partition("---")
                svc = self._by_id(service_id)
                rev = next((s.revision for s in svc.traffic_statuses if s.tag == tag), None) if svc else None
            else:
                svc = self._by_id(key)
                wheel = [s.revision for s in svc.traffic_statuses for _ in range(s.percent)] if svc else []
                rev = wheel[(counter * 37) % len(wheel)] if wheel else None
            return self.revisions.get(f"{svc.name}/revisions/{rev}") if svc and rev else None

    def _by_id(self, service_id: str) -> run_v2.Service | None:
        return next((s for n, s in self.services.items() if n.endswith(f"/services/{service_id}")), None)

    def answer(self, revision: run_v2.Revision, path: str) -> tuple[int, str]:
        if revision.name in self.crashed:
            return 503, "Service Unavailable"
        if self.runtime is not None:
            answered: tuple[int, str] = self.runtime.answer(revision.name, path)
            return answered
        image = revision.containers[0].image
        return self.behaviours.get(image, healthy)(path, revision)


def _check_tags(service_id: str, traffic: Any) -> None:
    """A tag URL is ``<tag>---<service>-<hash>.run.app``, one DNS label: Cloud Run refuses the request (gcloud run
    deploy shows it; firebase-tools#6137, PolicyEngine/policyengine-api#3729 quote the text)."""
    for target in traffic:
        if target.tag and len(target.tag) + len(service_id) > 46:
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"spec.traffic.tag: traffic tag '{target.tag}' and service name '{service_id}' together "
                            "are too long. Combined traffic tag and service name cannot exceed 46 characters.")


def _configuration(template: run_v2.RevisionTemplate) -> bytes:
    """What makes two templates the same revision: everything but the name. Labels count too (they are the
    revision's), so deployctl and Pulumi must agree on them or the name is refused."""
    unnamed = run_v2.RevisionTemplate(template)
    unnamed.revision = ""
    return run_v2.RevisionTemplate.serialize(unnamed)


def _ready(revision: run_v2.Revision) -> bool:
    ok = run_v2.Condition.State.CONDITION_SUCCEEDED
    return any(c.type_ == "Ready" and c.state == ok for c in revision.conditions)


class RevisionHttp:
    """``/_s/<service>/…`` is a service URL, ``/_t/<tag>---<service>/…`` a tag URL.

    Authentication, as Cloud Run documents it ("Authenticating service-to-service" / "Allowing public
    access"): a service whose IAM policy grants roles/run.invoker to allUsers (``public``) answers anyone;
    any other service answers 403 unless the request carries ``Authorization: Bearer <Google-signed ID
    token>`` whose ``aud`` claim is the service's URL (its tag URLs are reached with the same audience).
    The fake reads the claim without checking Google's signature, which it cannot.
    """

    def __init__(self) -> None:
        self.resolver: Callable[[str, str, int], run_v2.Revision | None] | None = None
        self.answer: Callable[[run_v2.Revision, str], tuple[int, str]] | None = None
        self.hits: list[tuple[str, str]] = []  # (revision, path)
        self.public: set[str] = set()  # service ids with allUsers as invoker
        self.denied: list[tuple[str, str]] = []  # (service id, why) of requests refused for authentication
        self._counter = itertools.count()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake.handle(self.path, self.headers.get("Authorization", ""))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve_in_thread(self.server)

    def handle(self, raw: str, authorization: str = "") -> tuple[int, str]:
        parts = raw.split("?", 1)[0].split("/", 3)  # "", kind, key, rest
        if len(parts) < 3 or self.resolver is None or self.answer is None:
            return 404, "no such URL"
        service_id = parts[2].split("---", 1)[-1]
        refused = None if service_id in self.public else self._refused(service_id, authorization)
        if refused:
            self.denied.append((service_id, refused))
            return 403, "Your client does not have permission to get URL from this server."
        revision = self.resolver(parts[1], parts[2], next(self._counter))
        if revision is None:
            return 404, "no revision behind this URL"
        path = "/" + (parts[3] if len(parts) > 3 else "")
        self.hits.append((revision.name.rsplit("/", 1)[-1], path))
        return self.answer(revision, path)

    def _refused(self, service_id: str, authorization: str) -> str | None:
        if not authorization.startswith("Bearer "):
            return "no ID token"
        try:
            payload = authorization.split(" ", 1)[1].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return "not a JWT"
        if claims.get("aud") != f"{self.base}/_s/{service_id}":
            return f"audience {claims.get('aud')!r} is not the service URL"
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
