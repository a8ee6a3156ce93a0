"""The project's enabled Google APIs (Service Usage), as the twin's fakes see them.

Rules, as Google documents them:
- A call to an API that is not enabled in the project is refused with 403 PERMISSION_DENIED whose
  google.rpc.ErrorInfo has reason SERVICE_DISABLED, domain googleapis.com and metadata naming the
  ``service``, the ``consumer`` (``projects/<number>``), the ``activationUrl``, ``serviceTitle`` and
  ``containerInfo``; the message says "… has not been used in project N before or it is disabled. Enable it
  by visiting <activationUrl> then retry. If you enabled this API recently, wait a few minutes for the action
  to propagate to our systems and retry." (Google Cloud APIs "Errors" guide, ErrorInfo reasons:
  SERVICE_DISABLED).
- Enabling an API is recorded at once (Service Usage reports it ENABLED), but the API answers only after
  the change propagated: "wait a few minutes for the action to propagate" (the same message). The delay is
  :data:`DEFAULT_API_DELAY_S` unless a test sets a small one.
- A project created with the console or gcloud starts with a documented set of APIs already enabled
  (Service Usage, "Enabled services": "Services enabled by default"): :data:`DEFAULT_ENABLED`.
- Service Usage itself: ``BatchGetServices``/``GetService`` need ``serviceusage.services.get``,
  ``BatchEnableServices``/``EnableService`` need ``serviceusage.services.enable`` on the project
  (Service Usage "Access control": roles/serviceusage.serviceUsageAdmin grants both); the permission check is
  the gRPC layer's (tests/fakes/iam.py, GRPC_RULES), like every other method's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from google.cloud import service_usage_v1 as su

from tests.fakes.grpcfake import GrpcFake, done_operation

# "a few minutes" (the SERVICE_DISABLED message); deployctl's own window for it is 5 minutes (retry.py)
DEFAULT_API_DELAY_S = 180.0

# Service Usage, "Enabled services" > "Services enabled by default" (the ones with an API endpoint)
DEFAULT_ENABLED = frozenset({
    "analyticshub.googleapis.com",
    "bigquery.googleapis.com",
    "bigqueryconnection.googleapis.com",
    "bigquerydatapolicy.googleapis.com",
    "bigquerymigration.googleapis.com",
    "bigqueryreservation.googleapis.com",
    "bigquerystorage.googleapis.com",
    "dataform.googleapis.com",
    "dataplex.googleapis.com",
    "datastore.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "servicemanagement.googleapis.com",
    "serviceusage.googleapis.com",
    "sql-component.googleapis.com",
    "storage-api.googleapis.com",
    "storage-component.googleapis.com",
    "storage.googleapis.com",
    "cloudapis.googleapis.com",
    "cloudtrace.googleapis.com",
})

# The titles Google puts in ErrorInfo.metadata.serviceTitle and the message (each API's console name)
TITLES = {
    "run.googleapis.com": "Cloud Run Admin API",
    "cloudbuild.googleapis.com": "Cloud Build API",
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "secretmanager.googleapis.com": "Secret Manager API",
    "sqladmin.googleapis.com": "Cloud SQL Admin API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "serviceusage.googleapis.com": "Service Usage API",
    "storage.googleapis.com": "Cloud Storage API",
    "monitoring.googleapis.com": "Cloud Monitoring API",
    "logging.googleapis.com": "Cloud Logging API",
    "containerscanning.googleapis.com": "Container Scanning API",
}


class Apis:
    """Which APIs a project has enabled, and from when each answers (``clock`` time)."""

    def __init__(self, enabled: Iterable[str] = DEFAULT_ENABLED, delay_s: float = DEFAULT_API_DELAY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {api: float("-inf") for api in enabled}

    def enable(self, api: str, *, now: bool = False) -> None:
        """Enable *api*; it answers after the propagation delay (at once with *now*, for seeding)."""
        with self._lock:
            if api not in self._since:
                self._since[api] = float("-inf") if now else self.clock() + self.delay_s

    def recorded(self, api: str) -> bool:
        """What Service Usage reports: enabled once asked, whether or not it propagated yet."""
        with self._lock:
            return api in self._since

    def answers(self, api: str) -> bool:
        """Whether calls to *api* get through (enabled, and the enablement has propagated)."""
        with self._lock:
            since = self._since.get(api)
        return since is not None and self.clock() >= since


class TwinServiceUsage:
    """Service Usage v1 over gRPC on the APIs of the fake's project (``fake.project``, tests/fakes/iam.py):
    what ``deployctl bootstrap`` calls to enable them."""

    def __init__(self, fake: GrpcFake) -> None:
        self.fake = fake
        service = "google.api.serviceusage.v1.ServiceUsage"
        fake.add(service, "BatchGetServices", self._batch_get, su.BatchGetServicesRequest)
        fake.add(service, "BatchEnableServices", self._batch_enable, su.BatchEnableServicesRequest)
        fake.add(service, "GetService", self._get, su.GetServiceRequest)
        fake.add(service, "EnableService", self._enable, su.EnableServiceRequest)

    @property
    def apis(self) -> Apis:
        assert self.fake.project is not None, "Service Usage answers for the fake's project"
        return self.fake.project.apis

    def _service(self, parent: str, api: str) -> su.Service:
        assert self.fake.project is not None
        enabled = self.fake.project.every_api or self.apis.recorded(api)
        state = su.State.ENABLED if enabled else su.State.DISABLED
        return su.Service(name=f"{parent}/services/{api}", parent=parent, state=state)

    def _batch_get(self, request: su.BatchGetServicesRequest) -> su.BatchGetServicesResponse:
        apis = [name.rsplit("/", 1)[-1] for name in request.names]
        return su.BatchGetServicesResponse(services=[self._service(request.parent, a) for a in apis])

    def _batch_enable(self, request: su.BatchEnableServicesRequest) -> Any:
        for api in request.service_ids:
            self.apis.enable(api)
        services = [self._service(request.parent, a) for a in request.service_ids]
        return done_operation("operations/enable", su.BatchEnableServicesResponse(services=services))

    def _get(self, request: su.GetServiceRequest) -> su.Service:
        parent, _, api = request.name.rpartition("/services/")
        return self._service(parent, api)

    def _enable(self, request: su.EnableServiceRequest) -> Any:
        parent, _, api = request.name.rpartition("/services/")
        self.apis.enable(api)
        return done_operation("operations/enable", su.EnableServiceResponse(service=self._service(parent, api)))
