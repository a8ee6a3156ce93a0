"""Fakes of what ``deployctl bootstrap`` touches.

- Service Usage, IAM Admin (service accounts) and Resource Manager (project IAM policy) are served over
  gRPC by :class:`tests.fakes.grpcfake.GrpcFake` and driven through the real client libraries.
- Cloud Storage is :class:`FakeStorage`, a plain object with the method names the bootstrap adapter calls
  (``lookup_bucket``, ``bucket``, ``create_bucket``, ``Bucket.patch``): drongo 0.8 drops a bucket's
  ``iamConfiguration`` and cannot show whether uniform access and public access prevention were set.
- :class:`FakePulumi` stands in for the pulumi CLI (not installed here): it records logins and stacks.
- What ``deployctl doctor`` reads besides: Artifact Registry ``GetRepository`` and Cloud Build 2nd-gen
  ``GetConnection``/``GetRepository`` over gRPC, Cloud SQL Admin ``instances.get`` over REST (the fake
  of tests/fakes/sqladmin.py, extended), version states in :class:`FakeSecrets` and an object listing
  in :class:`FakeStorage`. None of these reads changes anything, and every mutation is recorded.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.cloud import artifactregistry_v1 as ar
from google.cloud import iam_admin_v1 as ia
from google.cloud import resourcemanager_v3 as rm
from google.cloud import service_usage_v1 as su
from google.cloud.devtools import cloudbuild_v2 as cb2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from deployctl.config import Stack, load
from deployctl.targets.gcp.bootstrap import Bootstrap
from deployctl.targets.gcp.retry import RetryPolicy
from tests.fakes.grpcfake import FakeError, GrpcFake, done_operation
from tests.fakes.sqladmin import FakeSqlAdmin, _error, _send

MUTATING = {"BatchEnableServices", "CreateServiceAccount", "SetIamPolicy"}
# the projects of the shipped stacks, by number (what Resource Manager answers outside a twin)
PROJECT_NUMBERS = {"example-staging": "123456789012", "example-production": "123456789013"}
ROOT = Path(__file__).resolve().parents[2]
# IAM: an account id is 6-30 characters, a lowercase letter first, no hyphen last (API reference:
# projects.serviceAccounts.create, accountId: "[a-z]([-a-z0-9]*[a-z0-9])")
ACCOUNT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")


class FakeServiceUsage:
    def __init__(self, fake: GrpcFake, enabled: set[str]) -> None:
        self.enabled = set(enabled)
        service = "google.api.serviceusage.v1.ServiceUsage"
        fake.add(service, "BatchGetServices", self._get, su.BatchGetServicesRequest)
        fake.add(service, "BatchEnableServices", self._enable, su.BatchEnableServicesRequest)

    def _service(self, parent: str, api: str) -> su.Service:
        state = su.State.ENABLED if api in self.enabled else su.State.DISABLED
        return su.Service(name=f"{parent}/services/{api}", parent=parent, state=state)

    def _get(self, request: su.BatchGetServicesRequest) -> su.BatchGetServicesResponse:
        apis = [name.rsplit("/", 1)[-1] for name in request.names]
        return su.BatchGetServicesResponse(services=[self._service(request.parent, a) for a in apis])

    def _enable(self, request: su.BatchEnableServicesRequest) -> Any:
        self.enabled |= set(request.service_ids)
        services = [self._service(request.parent, a) for a in request.service_ids]
        return done_operation("operations/enable", su.BatchEnableServicesResponse(services=services))


class FakeIam:
    def __init__(self, fake: GrpcFake) -> None:
        self.accounts: dict[str, ia.ServiceAccount] = {}  # email -> account
        fake.add("google.iam.admin.v1.IAM", "GetServiceAccount", self._get, ia.GetServiceAccountRequest)
        fake.add("google.iam.admin.v1.IAM", "CreateServiceAccount", self._create, ia.CreateServiceAccountRequest)

    def _get(self, request: ia.GetServiceAccountRequest) -> ia.ServiceAccount:
        email = request.name.rsplit("/", 1)[-1]
        if email not in self.accounts:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        return self.accounts[email]

    def _create(self, request: ia.CreateServiceAccountRequest) -> ia.ServiceAccount:
        project = request.name.removeprefix("projects/")
        if not ACCOUNT_ID.match(request.account_id):
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT, f"accountId {request.account_id!r} is invalid")
        email = f"{request.account_id}@{project}.iam.gserviceaccount.com"
        if email in self.accounts:
            raise FakeError(grpc.StatusCode.ALREADY_EXISTS, f"{email} exists")
        account = ia.ServiceAccount(name=f"{request.name}/serviceAccounts/{email}", email=email, project_id=project,
                                    display_name=request.service_account.display_name)
        self.accounts[email] = account
        return account


class FakeProjects:
    """One project IAM policy; SetIamPolicy with a stale etag is ABORTED, as Google answers. In a twin
    (``twin`` set: tests/fakes/iam.Project) the policy is the twin's project-level bindings: what SetIamPolicy
    adds or removes takes effect (or stops) after the twin's IAM propagation delay."""

    def __init__(self, fake: GrpcFake, bindings: dict[str, list[str]], twin: Any = None) -> None:
        self.twin = twin
        self.policy = policy_pb2.Policy(version=1, etag=b"1")
        for role, members in bindings.items():
            self.policy.bindings.add(role=role, members=members)
        self._etags = itertools.count(2)
        service = "google.cloud.resourcemanager.v3.Projects"
        fake.add(service, "GetIamPolicy", lambda request: self.policy, iam_policy_pb2.GetIamPolicyRequest)
        fake.add(service, "SetIamPolicy", self._set, iam_policy_pb2.SetIamPolicyRequest)
        fake.add(service, "GetProject", self._project, rm.GetProjectRequest)

    def _project(self, request: rm.GetProjectRequest) -> rm.Project:
        """Resource Manager v3 projects.get: the project's ``name`` is ``projects/<number>`` (a project it
        does not know is PERMISSION_DENIED, as Google answers for a project the caller cannot see)."""
        pid = request.name.removeprefix("projects/")
        number = (self.twin.numbers if self.twin is not None else PROJECT_NUMBERS).get(pid)
        if number is None:
            raise FakeError(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on resource project {pid}.")
        return rm.Project(name=f"projects/{number}", project_id=pid)

    def _set(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        if request.policy.etag != self.policy.etag:
            raise FakeError(grpc.StatusCode.ABORTED, "concurrent policy change")
        before = {(b.role, m) for b in self.policy.bindings for m in b.members}
        self.policy = policy_pb2.Policy()
        self.policy.CopyFrom(request.policy)
        self.policy.etag = str(next(self._etags)).encode()
        after = {(b.role, m) for b in self.policy.bindings for m in b.members}
        if self.twin is not None:
            for role, member in after - before:
                self.twin.grant(member, role, source="policy")
            for role, member in before - after:
                self.twin.revoke(member, role)
        return self.policy

    def roles_of(self, member: str) -> set[str]:
        return {b.role for b in self.policy.bindings if member in b.members}


class FakeBucket:
    def __init__(self, name: str, store: FakeStorage | None = None) -> None:
        self.name = name
        self.location: str | None = None
        self.iam_configuration = SimpleNamespace(uniform_bucket_level_access_enabled=False,
                                                 public_access_prevention="inherited")
        self.versioning_enabled = False
        self._store = store

    def patch(self, timeout: float | None = None) -> None:
        assert self._store is not None and self.name in self._store.buckets
        self._store.mutations.append(("patch", self.name))
        self._store.buckets[self.name] = self._copy(None)

    def _copy(self, store: FakeStorage | None) -> FakeBucket:
        saved, self._store = self._store, None
        try:
            twin = copy.deepcopy(self)
        finally:
            self._store = saved
        twin._store = store
        return twin


class FakeStorage:
    def __init__(self) -> None:
        self.buckets: dict[str, FakeBucket] = {}
        self.mutations: list[tuple[str, str]] = []
        self.unlistable: set[str] = set()  # buckets whose objects the caller may not list

    def list_blobs(self, bucket_or_name: str, prefix: str | None = None, max_results: int | None = None,
                   **_: Any) -> list[Any]:
        # Cloud Storage JSON API, objects.list: 404 for a bucket that does not exist, 403 without
        # storage.objects.list on the bucket ("IAM permissions for JSON methods"). Objects are not modelled.
        if bucket_or_name not in self.buckets:
            raise gexc.NotFound(f"bucket {bucket_or_name} not found")
        if bucket_or_name in self.unlistable:
            raise gexc.Forbidden(f"caller does not have storage.objects.list access to the bucket {bucket_or_name}")
        return []

    def bucket(self, name: str) -> FakeBucket:
        return FakeBucket(name)

    def lookup_bucket(self, name: str) -> FakeBucket | None:
        stored = self.buckets.get(name)
        return stored._copy(self) if stored else None  # a copy: changes count only once patched

    def create_bucket(self, bucket: FakeBucket, project: str, location: str) -> FakeBucket:
        if bucket.name in self.buckets:
            raise gexc.Conflict(f"bucket {bucket.name} exists")
        self.mutations.append(("create", bucket.name))
        stored = bucket._copy(None)
        stored.location = location.upper()
        self.buckets[bucket.name] = stored
        return stored._copy(self)


class FakePulumi:
    def __init__(self, installed: bool = True) -> None:
        self.is_installed = installed
        self.stacks: set[tuple[str, str]] = set()  # (backend url, stack)
        self.calls: list[str] = []
        self.stack = "staging"
        self.passphrase: str | None = None

    def installed(self) -> bool:
        return self.is_installed

    def has_stack(self, backend_url: str) -> bool:
        return (backend_url, self.stack) in self.stacks

    def login_and_init(self, backend_url: str, passphrase: str) -> None:
        assert self.is_installed, "pulumi was run although it is not installed"
        self.calls.append(f"login {backend_url}; stack init {self.stack}")
        self.passphrase = passphrase  # the stack's secrets are encrypted with it
        self.stacks.add((backend_url, self.stack))


class FakeSecrets:
    """The Secret Manager calls bootstrap makes, in memory. drongo fakes Secret Manager, but its mock also
    reroutes the Resource Manager and IAM clients these tests drive over gRPC; the SecretManager facade
    itself is proven through the real client against drongo in tests/gcp."""

    def __init__(self) -> None:
        self.versions: dict[str, list[str]] = {}  # secret id -> payloads, version 1 first
        self.disabled: set[tuple[str, int]] = set()  # (secret id, version number)
        self.mutations: list[tuple[str, str]] = []

    def get_secret(self, name: str, **_: Any) -> Any:
        from google.cloud import secretmanager_v1 as sm

        if name.rsplit("/", 1)[-1] not in self.versions:
            raise gexc.NotFound(name)
        return sm.Secret(name=name)

    def create_secret(self, parent: str, secret_id: str, **_: Any) -> None:
        self.versions.setdefault(secret_id, [])
        self.mutations.append(("create_secret", secret_id))

    def list_secret_versions(self, parent: str, **_: Any) -> list[Any]:
        from google.cloud import secretmanager_v1 as sm

        sid = parent.rsplit("/", 1)[-1]
        if sid not in self.versions:
            raise gexc.NotFound(parent)
        state = sm.SecretVersion.State
        return [sm.SecretVersion(name=f"{parent}/versions/{n}",
                                 state=state.DISABLED if (sid, n) in self.disabled else state.ENABLED)
                for n in range(1, len(self.versions[sid]) + 1)]

    def disable_secret_version(self, name: str, **_: Any) -> Any:
        from google.cloud import secretmanager_v1 as sm

        sid, version = name.split("/secrets/")[1].split("/versions/")
        self.disabled.add((sid, int(version)))
        self.mutations.append(("disable_secret_version", f"{sid}/{version}"))
        return sm.SecretVersion(name=name, state=sm.SecretVersion.State.DISABLED)

    def delete_secret(self, name: str, **_: Any) -> None:
        sid = name.rsplit("/", 1)[-1]
        if sid not in self.versions:
            raise gexc.NotFound(name)
        del self.versions[sid]
        self.disabled = {(s, n) for s, n in self.disabled if s != sid}
        self.mutations.append(("delete_secret", sid))

    def add_secret_version(self, parent: str, payload: dict[str, bytes], **_: Any) -> Any:
        from google.cloud import secretmanager_v1 as sm

        sid = parent.rsplit("/", 1)[-1]
        self.versions[sid].append(payload["data"].decode())
        self.mutations.append(("add_secret_version", sid))
        return sm.SecretVersion(name=f"{parent}/versions/{len(self.versions[sid])}")

    def access_secret_version(self, name: str, **_: Any) -> Any:
        from google.cloud import secretmanager_v1 as sm

        sid, version = name.split("/secrets/")[1].split("/versions/")
        if (sid, int(version)) in self.disabled:  # Secret Manager: FAILED_PRECONDITION "… is in DISABLED state."
            raise gexc.FailedPrecondition(f"Secret Version [{name}] is in DISABLED state.")
        data = self.versions[sid][int(version) - 1].encode()
        return sm.AccessSecretVersionResponse(name=name, payload=sm.SecretPayload(data=data))


class FakeRepositories:
    """Artifact Registry repositories (``GetRepository``: NOT_FOUND for one that does not exist; API reference,
    projects.locations.repositories.get) and their IAM policies (``GetIamPolicy``/``SetIamPolicy`` on a
    repository, API reference projects.locations.repositories.getIamPolicy/setIamPolicy: NOT_FOUND for a
    repository that does not exist, ABORTED for a stale etag as every IAM policy). In a twin (``twin`` set)
    what SetIamPolicy adds takes effect on that repository after the twin's propagation delay."""

    def __init__(self, fake: GrpcFake, twin: Any = None, registry: Any = None) -> None:
        self.names: set[str] = set()  # projects/P/locations/L/repositories/R
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.twin = twin
        self.registry = registry  # tests/fakes/builds.FakeRegistry: the repositories the fake engine created
        # outside a twin the caller owns everything; a test names the permissions it lacks here (the twin's own
        # refusal, tests/fakes/iam.py: PERMISSION_DENIED "Permission 'P' denied on resource 'R' …")
        self.lacking: set[str] = set()
        self._etags = itertools.count(2)
        service = "google.devtools.artifactregistry.v1.ArtifactRegistry"
        fake.add(service, "GetRepository", self._get, ar.GetRepositoryRequest)
        fake.add(service, "GetIamPolicy", self._get_policy, iam_policy_pb2.GetIamPolicyRequest)
        fake.add(service, "SetIamPolicy", self._set_policy, iam_policy_pb2.SetIamPolicyRequest)

    def exists(self, name: str) -> bool:
        return name in self.names or (self.registry is not None and self.registry.holds(name))

    def _get(self, request: ar.GetRepositoryRequest) -> ar.Repository:
        # API reference, projects.locations.repositories.get: artifactregistry.repositories.get on the repository
        self._refuse("artifactregistry.repositories.get", request.name)
        if not self.exists(request.name):
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"Repository {request.name} not found")
        return ar.Repository(name=request.name, format_=ar.Repository.Format.DOCKER)

    def policy(self, name: str) -> policy_pb2.Policy:
        if not self.exists(name):
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"Repository {name} not found")
        return self.policies.setdefault(name, policy_pb2.Policy(version=1, etag=b"1"))

    def _refuse(self, permission: str, resource: str) -> None:
        if permission in self.lacking:
            raise FakeError(grpc.StatusCode.PERMISSION_DENIED,
                            f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")

    def _get_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        self._refuse("artifactregistry.repositories.getIamPolicy", request.resource)
        return self.policy(request.resource)

    def _set_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        self._refuse("artifactregistry.repositories.setIamPolicy", request.resource)
        current = self.policy(request.resource)
        if request.policy.etag != current.etag:
            raise FakeError(grpc.StatusCode.ABORTED, "concurrent policy change")
        before = {(b.role, m) for b in current.bindings for m in b.members}
        new = policy_pb2.Policy()
        new.CopyFrom(request.policy)
        new.etag = str(next(self._etags)).encode()
        self.policies[request.resource] = new
        if self.twin is not None:
            for role, member in {(b.role, m) for b in new.bindings for m in b.members} - before:
                self.twin.grant(member, role, request.resource, source="policy")
        return new

    def members(self, name: str, role: str) -> set[str]:
        return {m for b in self.policies.get(name, policy_pb2.Policy()).bindings if b.role == role for m in b.members}


class FakeConnections:
    """Cloud Build 2nd-gen host connections and their linked repositories (RepositoryManager ``GetConnection``,
    ``GetRepository``: NOT_FOUND when absent; a connection stays in a PENDING_* installation stage until the
    GitHub app is authorized and installed — Cloud Build API v2, Connection.installationState)."""

    def __init__(self, fake: GrpcFake) -> None:
        self.connections: dict[str, cb2.InstallationState.Stage] = {}  # name -> stage
        self.repositories: set[str] = set()  # <connection name>/repositories/R
        service = "google.devtools.cloudbuild.v2.RepositoryManager"
        fake.add(service, "GetConnection", self._connection, cb2.GetConnectionRequest)
        fake.add(service, "GetRepository", self._repository, cb2.GetRepositoryRequest)

    def link(self, repository: str, stage: str = "COMPLETE") -> None:
        """The state a user leaves by connecting GitHub and linking *repository* (docs/getting-started.md)."""
        self.connections[repository.split("/repositories/")[0]] = cb2.InstallationState.Stage[stage]
        self.repositories.add(repository)

    def _connection(self, request: cb2.GetConnectionRequest) -> cb2.Connection:
        if request.name not in self.connections:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"connection {request.name} not found")
        return cb2.Connection(name=request.name, installation_state=cb2.InstallationState(
            stage=self.connections[request.name]))

    def _repository(self, request: cb2.GetRepositoryRequest) -> cb2.Repository:
        if request.name not in self.repositories:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"repository {request.name} not found")
        return cb2.Repository(name=request.name, remote_uri="https://github.com/example/example-app.git")


class FakeSqlInstances(FakeSqlAdmin):
    """Cloud SQL Admin with ``instances.get`` (GET /v1/projects/P/instances/I) besides users and operations:
    a DatabaseInstance (``state``, ``settings.tier``, ``settings.activationPolicy``,
    ``settings.databaseFlags``), or 404 for an instance that does not exist (sqladmin v1 discovery document;
    Google APIs "Errors": NOT_FOUND is HTTP 404). A stopped instance stays RUNNABLE with activation policy
    NEVER ("RUNNABLE: the instance is running, or has been stopped by owner"; Cloud SQL "Start, stop, and
    restart instances")."""

    _INSTANCE = re.compile(r"/v1/projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)")

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}  # instance id -> DatabaseInstance JSON
        super().__init__()

    def _handle(self, request: Any, method: str) -> None:
        path = request.path.split("?", 1)[0]
        match = self._INSTANCE.fullmatch(path)
        if method != "get" or match is None:
            return super()._handle(request, method)
        with self._lock:
            found = copy.deepcopy(self.instances.get(match["instance"]))
        if found is None:
            return _send(request, *_error(404, "instanceDoesNotExist"))
        return _send(request, 200, {"kind": "sql#instance", "name": match["instance"], "project": match["project"],
                                    **found})


def fast_policy() -> RetryPolicy:
    """A fresh policy per client: bootstrap opens a propagation window on its policy, in which 403s are retried."""
    return RetryPolicy(deadline_s=1.5, initial_s=0.01, maximum_s=0.05, call_timeout_s=5)


@dataclass
class FakeProject:
    """The fakes bootstrap drives, and a real Bootstrap over them (gRPC clients on the fake's channel)."""

    grpc: GrpcFake
    apis: FakeServiceUsage
    iam: FakeIam
    projects: FakeProjects
    storage: FakeStorage
    pulumi: FakePulumi
    secrets: FakeSecrets
    repositories: FakeRepositories  # Artifact Registry: doctor reads them; bootstrap grants a promotion's pull

    def clients(self) -> dict[str, Any]:
        from google.cloud import iam_admin_v1, resourcemanager_v3, service_usage_v1
        from google.cloud.artifactregistry_v1.services.artifact_registry.transports import (
            ArtifactRegistryGrpcTransport,
        )
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
        from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport
        from google.cloud.service_usage_v1.services.service_usage.transports import ServiceUsageGrpcTransport

        channel = self.grpc.channel()
        return {
            "service_usage": service_usage_v1.ServiceUsageClient(transport=ServiceUsageGrpcTransport(channel=channel)),
            "iam": iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel)),
            "projects": resourcemanager_v3.ProjectsClient(transport=ProjectsGrpcTransport(channel=channel)),
            "storage": self.storage,
            "secrets": self.secrets,
            "registry": ar.ArtifactRegistryClient(transport=ArtifactRegistryGrpcTransport(channel=channel)),
        }

    def bootstrap(self, stack: Stack | None = None) -> Bootstrap:
        return Bootstrap(stack or load("staging", ROOT), ROOT, **self.clients(),
                         pulumi=self.pulumi, policy=fast_policy())  # type: ignore[arg-type]

    def mutations(self) -> list[tuple[str, str]]:
        cloud = [call for call in self.grpc.calls if call[0] in MUTATING]
        return cloud + self.storage.mutations + self.secrets.mutations + [("pulumi", c) for c in self.pulumi.calls]
