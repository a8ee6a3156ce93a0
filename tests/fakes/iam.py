"""The twin's project: who is calling, what their roles let them do, and which APIs answer.

One :class:`Project` is consulted by every fake (the gRPC layer in grpcfake.py, drongo's REST services in
drongo_ext.py and cloudlogging.py, the Cloud SQL Admin server in sqladmin.py, and the build's own identity in
builds.py). A call
is checked in Google's order:

1. **Authentication.** The real client libraries send ``authorization: Bearer <access token>`` (gRPC
   metadata or an HTTP header) from their credentials. Tests use :class:`TwinCredentials`, whose token names
   the principal (Google resolves an opaque access token to its principal; the twin's token carries it). A
   call without one is 401 UNAUTHENTICATED, ErrorInfo reason CREDENTIALS_MISSING; a token the twin did not
   issue is 401 ACCESS_TOKEN_TYPE_UNSUPPORTED (Google Cloud APIs "Errors" guide, ErrorInfo reasons).
   Only a project built by :meth:`Project.legacy` (the ``cloud`` fixture's, pre-seeded) takes a call
   without credentials as its owner, so the tests written before the twin keep using
   AnonymousCredentials; a twin project refuses it.
2. **The API is enabled** (tests/fakes/apis.py): else 403 SERVICE_DISABLED.
3. **IAM.** Each method needs the permission Google documents for it (GRPC_RULES here; drongo_ext.py and
   sqladmin.py name theirs). A principal has a permission on a resource when a binding of a role that
   contains it names the principal on that resource or on one of its ancestors — the project, or a parent in
   the resource's name (a secret's binding covers its versions). Resource policies are inherited downward,
   never sideways (IAM "Resource hierarchy" / "Policy inheritance"). Refused: 403 PERMISSION_DENIED
   "Permission 'P' denied on resource 'R' (or it may not exist)." with ErrorInfo reason
   IAM_PERMISSION_DENIED, domain iam.googleapis.com, metadata {permission, resource} (AIP-193 and the IAM
   troubleshooting guide; the "(or it may not exist)" wording is AIP-211's, so a denial never reveals
   whether the resource exists).
4. **Propagation.** A new binding takes effect after :data:`DEFAULT_IAM_DELAY_S`, a removed one stops
   after the same delay: "Changes to allow or deny policies typically propagate in 2 minutes, but could
   potentially take 7 minutes or longer" (IAM "Access change propagation"). Tests set small delays.

5. **Images.** Deploying a container image (a Cloud Run service's revision, a job's task) needs it read
   twice. The principal that creates or updates the service or job needs
   ``artifactregistry.repositories.downloadArtifacts`` on the image's repository (Artifact Registry,
   "Deploying to Cloud Run" > "Permissions required to deploy"; enforced since 15 January 2025, when Cloud
   Run stopped letting run.admin/run.developer deploy images of the same project implicitly: Google's notice
   "Ensure read access on container images deployed to Cloud Run" covers principals "creating or updating
   Cloud Run resources"). The shape of that refusal is the twin's: a 403 IAM_PERMISSION_DENIED naming
   downloadArtifacts on the repository, as every other permission (3.). Google's notice names only a "User
   does not have access to image" error (in audit logs), and the refusal users report reads "User must have
   permission to read the image, IMAGE. …" with the registry's 'Permission
   "artifactregistry.repositories.downloadArtifacts" denied on resource "projects/…/repositories/…"' as its
   cause (deployctl reads both that and the twin's shape: deployctl/targets/gcp/retry.py, download_refusal).
   The twin checks it on every create and update: CreateService and UpdateService (GRPC_RULES), the REST
   jobs.create and jobs.patch (drongo_ext.py) and the fake engine's ``pulumi up`` (engine.py), whose
   provider calls Cloud Run as the up's caller. And Cloud Run imports the image as the project's Cloud Run
   Service Agent, ``service-<project number>@serverless-robot-prod.iam.gserviceaccount.com``, which may read
   repositories of its own project; "If your repositories are in a different project, you must grant Artifact
   Registry Reader permissions to the Cloud Run Service Agent" (same page; Cloud Run "Deploying container
   images" > "Deploying images from other Google Cloud projects"). :meth:`Project.pull_refusal` gives Cloud
   Run's message for an image the agent cannot read.

Roles: :data:`ROLES` lists, per predefined role the project uses, the permissions the fakes' methods check,
taken from Google's IAM roles reference (https://cloud.google.com/iam/docs/roles-permissions/<service>, one
page per service, named beside each role). ``x.*`` is the reference's own notation for every permission
starting with ``x.``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.auth import credentials as ga_credentials

from tests.fakes.apis import DEFAULT_ENABLED, TITLES, Apis

DEFAULT_IAM_DELAY_S = 120.0  # IAM "Access change propagation": typically 2 minutes (up to 7 or longer)
PUBLIC_SAMPLES = "projects/cloudrun/locations/us/repositories/container"
OWNER = "user:owner@example.com"  # who created the project: roles/owner from the start

_RUN_DEVELOPER = (
    # Cloud Run roles (iam/docs/roles-permissions/run): roles/run.developer, "Read and write access to all
    # Cloud Run resources" — run.configurations.*, run.executions.*, run.jobs.{create,delete,get,
    # getIamPolicy,list,run,runWithOverrides,update}, run.operations.*, run.revisions.*, run.routes.*,
    # run.services.{create,delete,get,getIamPolicy,list,update}; no setIamPolicy
    "run.configurations.*", "run.executions.*", "run.operations.*", "run.revisions.*", "run.routes.*",
    "run.jobs.create", "run.jobs.delete", "run.jobs.get", "run.jobs.getIamPolicy", "run.jobs.list", "run.jobs.run",
    "run.jobs.runWithOverrides", "run.jobs.update", "run.locations.list",
    "run.services.create", "run.services.delete", "run.services.get", "run.services.getIamPolicy",
    "run.services.list", "run.services.update",
)
_AR_READER = (
    # Artifact Registry roles (iam/docs/roles-permissions/artifactregistry): roles/artifactregistry.reader
    "artifactregistry.dockerimages.get", "artifactregistry.dockerimages.list", "artifactregistry.files.download",
    "artifactregistry.files.get", "artifactregistry.files.list", "artifactregistry.packages.get",
    "artifactregistry.packages.list", "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.get", "artifactregistry.repositories.list", "artifactregistry.tags.get",
    "artifactregistry.tags.list", "artifactregistry.versions.get", "artifactregistry.versions.list",
)
_SECRET_VERSIONS = ("secretmanager.versions.add", "secretmanager.versions.destroy", "secretmanager.versions.disable",
                    "secretmanager.versions.enable", "secretmanager.versions.get", "secretmanager.versions.list")

ROLES: dict[str, tuple[str, ...]] = {
    # Cloud Run roles (iam/docs/roles-permissions/run)
    "roles/run.admin": ("run.*",),  # "Full control over all Cloud Run resources"
    "roles/run.developer": _RUN_DEVELOPER,
    "roles/run.invoker": ("run.routes.invoke",),  # "Can invoke a Cloud Run service"
    # IAM roles (iam/docs/roles-permissions/iam)
    "roles/iam.serviceAccountUser": ("iam.serviceAccounts.actAs", "iam.serviceAccounts.get",
                                     "iam.serviceAccounts.list"),
    "roles/iam.serviceAccountAdmin": ("iam.serviceAccounts.create", "iam.serviceAccounts.delete",
                                      "iam.serviceAccounts.disable", "iam.serviceAccounts.enable",
                                      "iam.serviceAccounts.get", "iam.serviceAccounts.getIamPolicy",
                                      "iam.serviceAccounts.list", "iam.serviceAccounts.setIamPolicy",
                                      "iam.serviceAccounts.undelete", "iam.serviceAccounts.update"),
    # Secret Manager roles (iam/docs/roles-permissions/secretmanager)
    "roles/secretmanager.admin": ("secretmanager.*",),
    "roles/secretmanager.secretAccessor": ("secretmanager.versions.access",),  # "accessing the payload"
    "roles/secretmanager.secretVersionManager": _SECRET_VERSIONS,  # no versions.access: it cannot read payloads
    # Cloud Storage roles (iam/docs/roles-permissions/storage): objectAdmin has no storage.buckets.*
    "roles/storage.objectViewer": ("storage.objects.get", "storage.objects.list", "storage.managedFolders.get",
                                   "storage.managedFolders.list"),
    "roles/storage.objectAdmin": ("storage.objects.*", "storage.managedFolders.*", "storage.multipartUploads.*"),
    "roles/storage.admin": ("storage.buckets.*", "storage.objects.*", "storage.managedFolders.*",
                            "storage.multipartUploads.*"),
    # Artifact Registry roles (iam/docs/roles-permissions/artifactregistry)
    "roles/artifactregistry.reader": _AR_READER,
    "roles/artifactregistry.writer": (*_AR_READER, "artifactregistry.files.upload", "artifactregistry.tags.create",
                                      "artifactregistry.tags.update", "artifactregistry.repositories.uploadArtifacts",
                                      "artifactregistry.versions.create"),
    "roles/artifactregistry.admin": ("artifactregistry.*",),
    # Cloud Build roles (iam/docs/roles-permissions/cloudbuild; Cloud Build "IAM roles and permissions")
    "roles/cloudbuild.builds.editor": ("cloudbuild.builds.create", "cloudbuild.builds.get", "cloudbuild.builds.list",
                                       "cloudbuild.builds.update", "cloudbuild.operations.*"),
    "roles/cloudbuild.builds.builder": ("cloudbuild.builds.create", "cloudbuild.builds.get", "cloudbuild.builds.list",
                                        "cloudbuild.builds.update", "logging.logEntries.create",
                                        "storage.buckets.create", "storage.buckets.get", "storage.buckets.list",
                                        "storage.objects.create", "storage.objects.get", "storage.objects.list",
                                        "artifactregistry.repositories.downloadArtifacts",
                                        "artifactregistry.repositories.uploadArtifacts", "artifactregistry.tags.*"),
    # Logging roles (iam/docs/roles-permissions/logging)
    "roles/logging.logWriter": ("logging.logEntries.create", "logging.logEntries.route"),
    # "Logs Viewer … Provides access to view logs": reads entries (entries.list needs logging.logEntries.list), but
    # not private logs, which need logging.privateLogEntries.list (the Private Logs Viewer role)
    "roles/logging.viewer": ("logging.logEntries.list",),
    # Cloud SQL "Predefined Cloud SQL IAM roles": the editor "can't … modify users", only the admin can
    "roles/cloudsql.client": ("cloudsql.instances.connect", "cloudsql.instances.get"),
    "roles/cloudsql.editor": ("cloudsql.instances.connect", "cloudsql.instances.get", "cloudsql.instances.list",
                              "cloudsql.instances.restart", "cloudsql.instances.update", "cloudsql.databases.*",
                              "cloudsql.users.list", "cloudsql.backupRuns.create", "cloudsql.backupRuns.get",
                              "cloudsql.backupRuns.list"),
    "roles/cloudsql.admin": ("cloudsql.*",),
    # Service Usage roles (iam/docs/roles-permissions/serviceusage)
    "roles/serviceusage.serviceUsageAdmin": ("serviceusage.services.*", "serviceusage.operations.*",
                                             "serviceusage.quotas.*"),
    # Resource Manager roles (iam/docs/roles-permissions/resourcemanager)
    "roles/resourcemanager.projectIamAdmin": ("resourcemanager.projects.getIamPolicy",
                                              "resourcemanager.projects.setIamPolicy"),
}


def role_grants(role: str, permission: str) -> bool:
    """Whether *role* contains *permission*.

    Basic roles ("Understanding roles" > Basic roles): Owner has every permission; Editor has every
    permission "for actions that modify state" but not those that manage access (no ``*.setIamPolicy``;
    Cloud SQL's roles page: "all cloudsql permissions except cloudsql.*.getIamPolicy and
    cloudsql.*.setIamPolicy"), while reading the project's own policy is a Viewer permission it keeps.
    """
    if role == "roles/owner":
        return True
    if role == "roles/editor":
        if permission == "resourcemanager.projects.getIamPolicy":
            return True
        return not permission.endswith((".setIamPolicy", ".getIamPolicy"))
    return any(permission == p or (p.endswith(".*") and permission.startswith(p[:-1])) for p in ROLES.get(role, ()))


# -- identity ------------------------------------------------------------------------------------------

_TOKEN_PREFIX = "ya29.twin."  # Google's OAuth access tokens start with ya29.; the rest is the twin's


def access_token(member: str) -> str:
    """The access token a twin caller sends: opaque to the client, resolved to *member* by the twin."""
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(json.dumps({"member": member}).encode()).decode().rstrip("=")


def member_of(token: str) -> str | None:
    """The principal a twin access token stands for, or None when the twin did not issue it."""
    if not token.startswith(_TOKEN_PREFIX):
        return None
    raw = token[len(_TOKEN_PREFIX):]
    try:
        member = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))["member"]
    except (ValueError, KeyError, TypeError):
        return None
    return member if isinstance(member, str) and ":" in member else None


class TwinCredentials(ga_credentials.Credentials):
    """google.auth credentials for a twin principal (``user:…`` or ``serviceAccount:…``).

    The client libraries call ``before_request``, which refreshes and sets ``authorization: Bearer <token>``
    exactly as for real credentials (HTTP header for REST clients, gRPC metadata through google-auth's
    AuthMetadataPlugin on a channel from :meth:`tests.fakes.grpcfake.GrpcFake.channel`).
    """

    def __init__(self, member: str) -> None:
        super().__init__()
        self.member = member

    def refresh(self, request: Any) -> None:
        self.token = access_token(self.member)
        self.expiry = None


def email(member: str) -> str:
    return member.split(":", 1)[-1]


# -- refusals --------------------------------------------------------------------------------------------

_UNAUTHENTICATED_SEE = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. "
                        "See https://developers.google.com/identity/sign-in/web/devconsole-project.")


@dataclass(frozen=True)
class Denial:
    """A refusal in Google's shape: google.rpc.Status with one ErrorInfo detail."""

    code: str  # UNAUTHENTICATED or PERMISSION_DENIED
    message: str
    reason: str  # ErrorInfo.reason
    domain: str
    metadata: dict[str, str] = field(default_factory=dict)
    member: str = ""
    permission: str = ""
    resource: str = ""

    @property
    def http_status(self) -> int:
        return 401 if self.code == "UNAUTHENTICATED" else 403

    def grpc_status(self) -> Any:
        """For ``ServicerContext.abort_with_status``."""
        from google.protobuf import any_pb2
        from google.rpc import code_pb2, error_details_pb2, status_pb2
        from grpc_status import rpc_status

        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=self.domain, metadata=self.metadata))
        return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, self.code), message=self.message,
                                                      details=[detail]))

    def rest_body(self) -> dict[str, Any]:
        """The JSON error of REST APIs (AIP-193: error.code/message/status/details; the v1 ``errors`` list)."""
        legacy = {"UNAUTHENTICATED": "required", "SERVICE_DISABLED": "accessNotConfigured"}.get(
            self.code if self.code == "UNAUTHENTICATED" else self.reason, "forbidden")
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason, "domain": self.domain,
                "metadata": self.metadata}
        return {"error": {"code": self.http_status, "message": self.message, "status": self.code,
                          "errors": [{"message": self.message, "domain": "global", "reason": legacy}],
                          "details": [info]}}


def unauthenticated(api: str, method: str, missing: bool) -> Denial:
    if missing:
        message = f"Request is missing required authentication credential. {_UNAUTHENTICATED_SEE}"
        reason = "CREDENTIALS_MISSING"
    else:
        message = f"Request had invalid authentication credentials. {_UNAUTHENTICATED_SEE}"
        reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    return Denial("UNAUTHENTICATED", message, reason, "googleapis.com", {"service": api, "method": method})


def service_disabled(api: str, number: str) -> Denial:
    """SERVICE_DISABLED, with the metadata Google sends (see tests/fakes/apis.py)."""
    url = f"https://console.developers.google.com/apis/api/{api}/overview?project={number}"
    title = TITLES.get(api, api)
    message = (f"{title} has not been used in project {number} before or it is disabled. Enable it by visiting "
               f"{url} then retry. If you enabled this API recently, wait a few minutes for the action to "
               "propagate to our systems and retry.")
    metadata = {"service": api, "consumer": f"projects/{number}", "activationUrl": url, "serviceTitle": title,
                "containerInfo": number}
    return Denial("PERMISSION_DENIED", message, "SERVICE_DISABLED", "googleapis.com", metadata)


def permission_denied(member: str, permission: str, resource: str) -> Denial:
    message = f"Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
    return Denial("PERMISSION_DENIED", message, "IAM_PERMISSION_DENIED", "iam.googleapis.com",
                  {"permission": permission, "resource": resource}, member, permission, resource)


# -- the project -------------------------------------------------------------------------------------------


@dataclass
class Binding:
    resource: str  # "projects/<id>" or a resource in it (a secret, a repository, a bucket, a service account…)
    role: str
    member: str
    since: float  # effective from (clock time): granted + propagation delay
    until: float = float("inf")  # effective until: removed + propagation delay
    source: str = "api"  # "program:<stack>": declared by that stack's program (apply_program_bindings converges them)


Check = tuple[str, str]  # (permission, resource)

# IAM resource types of the Pulumi gcp provider the program may declare -> the resource they bind on
_IAM_TYPES: dict[str, Callable[[dict[str, Any]], str]] = {
    "gcp:projects/iAMMember:IAMMember": lambda i: f"projects/{i['project']}",
    "gcp:projects/iAMBinding:IAMBinding": lambda i: f"projects/{i['project']}",
    "gcp:serviceaccount/iAMMember:IAMMember": lambda i: str(i["serviceAccountId"]),
    "gcp:serviceaccount/iAMBinding:IAMBinding": lambda i: str(i["serviceAccountId"]),
    "gcp:secretmanager/secretIamMember:SecretIamMember": lambda i: _under(i, "secrets", i["secretId"]),
    "gcp:secretmanager/secretIamBinding:SecretIamBinding": lambda i: _under(i, "secrets", i["secretId"]),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":
        lambda i: _under(i, f"locations/{i['location']}/repositories", i["repository"]),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember":
        lambda i: _under(i, f"locations/{i['location']}/services", i["name"]),
    "gcp:cloudrunv2/jobIamMember:JobIamMember": lambda i: _under(i, f"locations/{i['location']}/jobs", i["name"]),
    "gcp:storage/bucketIAMMember:BucketIAMMember":
        lambda i: f"projects/_/buckets/{str(i['bucket']).removeprefix('b/')}",
    "gcp:storage/bucketIAMBinding:BucketIAMBinding":
        lambda i: f"projects/_/buckets/{str(i['bucket']).removeprefix('b/')}",
}
SERVICE_TYPE = "gcp:projects/service:Service"


def _under(inputs: dict[str, Any], collection: str, name: Any) -> str:
    text = str(name)
    return text if text.startswith("projects/") else f"projects/{inputs['project']}/{collection}/{text}"


class Project:
    """One project: its enabled APIs, its IAM bindings (with the time each takes effect) and its owner."""

    def __init__(self, project_id: str, number: str = "123456789012", *, owner: str = OWNER,
                 enabled: Iterable[str] = DEFAULT_ENABLED, api_delay_s: float | None = None,
                 iam_delay_s: float = DEFAULT_IAM_DELAY_S, clock: Callable[[], float] = time.monotonic,
                 other_ids: Iterable[str] = (), numbers: dict[str, str] | None = None) -> None:
        self.project_id, self.number, self.owner = project_id, number, owner
        # each project id's number (Resource Manager: a project's name is projects/<number>); *other_ids* are
        # other projects whose calls this one model serves (the owner's bindings cover them too)
        self.numbers = {project_id: number, **(numbers or {})}
        self.name = f"projects/{project_id}"
        self.clock = clock
        self.iam_delay_s = iam_delay_s
        kw = {} if api_delay_s is None else {"delay_s": api_delay_s}
        self.apis = Apis(enabled, clock=clock, **kw)
        self.anonymous_is_owner = False
        self.every_api = False
        for other in other_ids:
            self.numbers.setdefault(other, str(int(number) + len(self.numbers)))
        self._ids = {project_id, number, *other_ids, *self.numbers.values()}
        self._lock = threading.Lock()
        self.bindings: list[Binding] = [
            Binding(self.name, "roles/owner", owner, float("-inf")),
            # Google's public sample image (Cloud Run quickstart "Deploy a sample container":
            # us-docker.pkg.dev/cloudrun/container/hello), which anyone may pull
            Binding(PUBLIC_SAMPLES, "roles/artifactregistry.reader", "allUsers", float("-inf")),
        ]
        self.denials: list[tuple[str, Denial]] = []  # (method, refusal) of every call refused

    @classmethod
    def legacy(cls, project_id: str, other_ids: Iterable[str] = (), *, agents_pull: bool = True) -> Project:
        """The pre-seeded project the ``cloud`` fixture serves (and the other stacks' projects it serves with
        it): every API answers and a call without credentials is the owner's — the tests written before the
        twin use AnonymousCredentials. Every call still goes through the same checks. Pre-seeded too (unless
        not *agents_pull*): each project's Cloud Run Service Agent reads every repository, the grant
        docs/runbook.md tells a team to make once for promotion across projects."""
        project = cls(project_id, other_ids=other_ids)
        project.anonymous_is_owner = True
        project.every_api = True
        if agents_pull:
            for pid in project.numbers:
                project.grant(project.run_agent(pid), "roles/artifactregistry.reader", now=True)
        return project

    def run_agent(self, project_id: str) -> str:
        """The Cloud Run Service Agent of *project_id* (IAM "Service agents": Cloud Run Service Agent,
        ``service-PROJECT_NUMBER@serverless-robot-prod.iam.gserviceaccount.com``)."""
        return f"serviceAccount:service-{self.numbers[project_id]}@serverless-robot-prod.iam.gserviceaccount.com"

    def pull_refusal(self, resource: str, image: str) -> str | None:
        """Why Cloud Run cannot import *image* for *resource* (a service or job name), or None.

        Images outside Artifact Registry (``<location>-docker.pkg.dev/<project>/<repository>/…``) and images
        of the resource's own project are read by its service agent as Google sets it up; an image in another
        project's repository needs the agent to hold downloadArtifacts there. The message is the one Cloud
        Run gives (quoted in Cloud Run troubleshooting reports: "Google Cloud Run Service Agent … must have
        permission to read the image, …"), naming both projects."""
        repository = image_repository(image)
        here = resource.split("/")[1]
        if repository is None or repository.split("/")[1] in (here, self.numbers.get(here)):
            return None
        agent = self.run_agent(here)
        if self.allowed(agent, "artifactregistry.repositories.downloadArtifacts", repository):
            return None
        there = repository.split("/")[1]
        return (f"Google Cloud Run Service Agent {email(agent)} must have permission to read the image, {image}. "
                "Ensure that the provided container image URL is correct and that the above account has permission "
                f"to access the image. Note that the image is from project [{there}], which is not the same as "
                f"this project [{here}]. Permission must be granted to the Google Cloud Run Service Agent from "
                "this project.")

    # -- changes ------------------------------------------------------------------------------------
    def enable(self, api: str, *, now: bool = False) -> None:
        self.apis.enable(api, now=now)

    def grant(self, member: str, role: str, resource: str | None = None, *, now: bool = False,
              source: str = "api") -> Binding:
        """Bind *member* to *role* on *resource* (the project by default); effective after the IAM delay."""
        resource = resource or self.name
        with self._lock:
            current = self._binding(resource, role, member)
            if current is not None:
                return current
            since = float("-inf") if now else self.clock() + self.iam_delay_s
            binding = Binding(resource, role, member, since, source=source)
            self.bindings.append(binding)
            return binding

    def revoke(self, member: str, role: str, resource: str | None = None) -> None:
        """Remove a binding; the principal may keep using it until the change propagates."""
        with self._lock:
            binding = self._binding(resource or self.name, role, member)
            if binding is not None:
                binding.until = self.clock() + self.iam_delay_s

    def _binding(self, resource: str, role: str, member: str) -> Binding | None:
        return next((b for b in self.bindings if (b.resource, b.role, b.member) == (resource, role, member)
                     and b.until == float("inf")), None)

    def apply_program_bindings(self, resources: Iterable[Any], stack: str = "") -> list[Binding]:
        """Apply what a ``pulumi up`` of the program declares for project access.

        Contract (for tests/fakes/engine.py): *resources* are the program's synthesized resources
        (deployctl.targets.gcp.synth ``Resource`` objects, or dicts with ``type`` and ``inputs``), all of them
        — the whole program, as each ``up`` has it. Then:

        - each ``gcp:projects/service:Service`` enables its ``service`` (propagating like any enablement);
        - each IAM member/binding resource (project, service account, secret, repository, Cloud Run service
          or job, bucket; see ``_IAM_TYPES``) binds its ``member`` (or each of ``members``) to ``role`` on
          that resource only, effective after the IAM delay; a binding that already exists keeps the time it
          took effect (an up that changes nothing changes no access);
        - a binding an earlier call for the same *stack* declared that this one no longer does is removed (the
          provider deletes it), effective after the delay; another stack's program bindings (two stacks may
          share a project: each has its own Pulumi state) and bindings made otherwise (bootstrap, tests) are
          never touched;
        - an IAM resource type the twin does not know raises ValueError, so a new kind of grant in the program
          cannot silently be ignored. Unknown inputs (an email the mocks could not resolve) are the caller's
          to resolve first.

        Returns the bindings this call created.
        """
        created: list[Binding] = []
        declared: set[tuple[str, str, str]] = set()
        for resource in resources:
            kind, inputs = _kind_inputs(resource)
            if kind == SERVICE_TYPE:
                self.enable(str(inputs["service"]))
                continue
            if kind not in _IAM_TYPES:
                if "iam" in kind.lower().split(":")[-1]:
                    raise ValueError(f"the twin does not know the IAM resource type {kind}")
                continue
            where = _IAM_TYPES[kind](inputs)
            for member in inputs.get("members") or [inputs["member"]]:
                key = (where, str(inputs["role"]), str(member))
                declared.add(key)
                before = len(self.bindings)
                binding = self.grant(key[2], key[1], key[0], source=f"program:{stack}")
                if len(self.bindings) > before:
                    created.append(binding)
        with self._lock:
            for binding in self.bindings:
                key = (binding.resource, binding.role, binding.member)
                if binding.source == f"program:{stack}" and key not in declared and binding.until == float("inf"):
                    binding.until = self.clock() + self.iam_delay_s
        return created

    # -- checks ---------------------------------------------------------------------------------------
    def in_project(self, resource: str) -> bool:
        """Whether *resource* lives in this project (Cloud Storage names buckets globally: ``projects/_``)."""
        parts = resource.split("/")
        return len(parts) > 1 and parts[0] == "projects" and (parts[1] in self._ids or parts[1] == "_")

    def _covers(self, binding: Binding, resource: str) -> bool:
        if binding.resource == self.name:
            return self.in_project(resource)
        return resource == binding.resource or resource.startswith(binding.resource + "/")

    def allowed(self, member: str, permission: str, resource: str) -> bool:
        """Whether *member* holds *permission* on *resource* now (effective bindings only)."""
        now = self.clock()
        with self._lock:
            bindings = list(self.bindings)
        return any(b.member in (member, "allUsers") and b.since <= now < b.until and self._covers(b, resource)
                   and role_grants(b.role, permission) for b in bindings)

    def caller(self, authorization: str | None, api: str, method: str) -> str | Denial:
        """The principal behind an ``authorization`` header/metadata value, or the 401 Google answers."""
        if not authorization:
            return self.owner if self.anonymous_is_owner else unauthenticated(api, method, missing=True)
        scheme, _, token = authorization.partition(" ")
        member = member_of(token.strip()) if scheme.lower() == "bearer" else None
        return member if member is not None else unauthenticated(api, method, missing=False)

    def authorize(self, api: str, method: str, checks: Iterable[Check], authorization: str | None) -> Denial | None:
        """Check one call: authentication, then the API, then each (permission, resource); None if allowed."""
        member = self.caller(authorization, api, method)
        denial = member if isinstance(member, Denial) else self.deny(member, api, checks)
        if denial is not None:
            with self._lock:
                self.denials.append((method, denial))
        return denial

    def deny(self, member: str, api: str, checks: Iterable[Check]) -> Denial | None:
        """For a known principal: SERVICE_DISABLED, or the first permission it lacks, or None."""
        if not (self.every_api or self.apis.answers(api)):
            return service_disabled(api, self.number)
        for permission, resource in checks:
            if not self.allowed(member, permission, resource):
                return permission_denied(member, permission, resource)
        return None


def _kind_inputs(resource: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(resource, dict):
        return str(resource["type"]), dict(resource["inputs"])
    return str(resource.type), dict(resource.inputs)


# -- what each gRPC method needs (the permission Google documents for it) ---------------------------------


@dataclass(frozen=True)
class Rule:
    api: str
    checks: Callable[[Any], list[Check]]


def _project_of(name: str) -> str:
    return "/".join(name.split("/")[:2])


def _sa(project_of: str, account: str) -> str:
    """A service account's resource name (``projects/P/serviceAccounts/EMAIL``) from an email or a name."""
    return account if account.startswith("projects/") else f"{_project_of(project_of)}/serviceAccounts/{account}"


def image_repository(image: str) -> str | None:
    """The Artifact Registry repository an image lives in (``projects/P/locations/L/repositories/R``), from
    its ``<location>-docker.pkg.dev/<project>/<repository>/<image>`` name; None for other registries."""
    host, _, path = image.partition("/")
    parts = path.split("/")
    if not host.endswith("-docker.pkg.dev") or len(parts) < 3:
        return None
    return f"projects/{parts[0]}/locations/{host.removesuffix('-docker.pkg.dev')}/repositories/{parts[1]}"


def image_checks(images: Iterable[str]) -> list[Check]:
    """What deploying *images* asks of the caller (module docstring, 5): downloadArtifacts on each one's
    repository."""
    return [("artifactregistry.repositories.downloadArtifacts", repo)
            for repo in dict.fromkeys(image_repository(i) for i in images) if repo]


def _deploy_checks(permission: str, resource: str, service: Any) -> list[Check]:
    """Creating or updating a service: *permission* on *resource*, then what its revision template asks."""
    checks = [(permission, resource)]
    account = service.template.service_account
    if account:
        # Cloud Run "Service identity": deploying a revision that runs as a user-managed service account
        # needs iam.serviceAccounts.actAs on that account
        checks.append(("iam.serviceAccounts.actAs", _sa(resource, account)))
    return checks + image_checks(c.image for c in service.template.containers)


def _create_service(request: Any) -> list[Check]:
    return _deploy_checks("run.services.create", request.parent, request.service)


def _update_service(request: Any) -> list[Check]:
    return _deploy_checks("run.services.update", request.service.name, request.service)


def _create_build(request: Any) -> list[Check]:
    project = f"projects/{request.project_id}" if request.project_id else _project_of(request.parent)
    checks = [("cloudbuild.builds.create", project)]
    if request.build.service_account:
        # Cloud Build "Configure user-specified service accounts": the caller needs
        # iam.serviceAccounts.actAs on the account the build runs as
        checks.append(("iam.serviceAccounts.actAs", _sa(project, request.build.service_account)))
    return checks


def _get_build(request: Any) -> list[Check]:
    project = f"projects/{request.project_id}" if request.project_id else _project_of(request.name)
    return [("cloudbuild.builds.get", project)]


def _one(permission: str, attr: str, project_level: bool = False) -> Callable[[Any], list[Check]]:
    def checks(request: Any) -> list[Check]:
        name = str(getattr(request, attr))
        return [(permission, _project_of(name) if project_level else name)]

    return checks


_RUN, _BUILD, _AR = "run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com"
_SU, _IAM, _CRM = "serviceusage.googleapis.com", "iam.googleapis.com", "cloudresourcemanager.googleapis.com"
_SERVICES, _REVISIONS = "google.cloud.run.v2.Services/", "google.cloud.run.v2.Revisions/"
_USAGE = "google.api.serviceusage.v1.ServiceUsage/"

# Each method's permission, from its API reference page ("IAM Permissions" / "Authorization requires the
# following IAM permission"): Cloud Run Admin API v2, Cloud Build v1 projects.builds, Artifact Registry v1
# tags.get, Service Usage v1 services, IAM v1 projects.serviceAccounts, Resource Manager v3 projects.
GRPC_RULES: dict[str, Rule] = {
    _SERVICES + "GetService": Rule(_RUN, _one("run.services.get", "name")),
    # the long-running operation of an update (Cloud Run "IAM permissions": run.operations.get)
    "google.longrunning.Operations/GetOperation": Rule(_RUN, _one("run.operations.get", "name")),
    _SERVICES + "ListServices": Rule(_RUN, _one("run.services.list", "parent")),
    _SERVICES + "CreateService": Rule(_RUN, _create_service),
    _SERVICES + "UpdateService": Rule(_RUN, _update_service),
    _SERVICES + "DeleteService": Rule(_RUN, _one("run.services.delete", "name")),
    _REVISIONS + "GetRevision": Rule(_RUN, _one("run.revisions.get", "name")),
    _REVISIONS + "ListRevisions": Rule(_RUN, _one("run.revisions.list", "parent")),
    _REVISIONS + "DeleteRevision": Rule(_RUN, _one("run.revisions.delete", "name")),
    "google.devtools.cloudbuild.v1.CloudBuild/CreateBuild": Rule(_BUILD, _create_build),
    "google.devtools.cloudbuild.v1.CloudBuild/GetBuild": Rule(_BUILD, _get_build),
    "google.devtools.artifactregistry.v1.ArtifactRegistry/GetTag": Rule(_AR, _one("artifactregistry.tags.get", "name")),
    "google.devtools.artifactregistry.v1.ArtifactRegistry/GetRepository":
        Rule(_AR, _one("artifactregistry.repositories.get", "name")),
    "google.devtools.artifactregistry.v1.ArtifactRegistry/GetIamPolicy":
        Rule(_AR, _one("artifactregistry.repositories.getIamPolicy", "resource")),
    "google.devtools.artifactregistry.v1.ArtifactRegistry/SetIamPolicy":
        Rule(_AR, _one("artifactregistry.repositories.setIamPolicy", "resource")),
    "google.cloud.resourcemanager.v3.Projects/GetProject": Rule(_CRM, _one("resourcemanager.projects.get", "name")),
    "google.devtools.artifactregistry.v1.ArtifactRegistry/ListTags":
        Rule(_AR, _one("artifactregistry.tags.list", "parent")),
    _USAGE + "BatchGetServices": Rule(_SU, _one("serviceusage.services.get", "parent")),
    _USAGE + "GetService": Rule(_SU, _one("serviceusage.services.get", "name", project_level=True)),
    _USAGE + "BatchEnableServices": Rule(_SU, _one("serviceusage.services.enable", "parent")),
    _USAGE + "EnableService": Rule(_SU, _one("serviceusage.services.enable", "name", project_level=True)),
    "google.iam.admin.v1.IAM/GetServiceAccount": Rule(_IAM, _one("iam.serviceAccounts.get", "name")),
    "google.iam.admin.v1.IAM/CreateServiceAccount": Rule(_IAM, _one("iam.serviceAccounts.create", "name")),
    "google.cloud.resourcemanager.v3.Projects/GetIamPolicy":
        Rule(_CRM, _one("resourcemanager.projects.getIamPolicy", "resource")),
    "google.cloud.resourcemanager.v3.Projects/SetIamPolicy":
        Rule(_CRM, _one("resourcemanager.projects.setIamPolicy", "resource")),
}


def check_grpc(project: Project, method: str, request: Any, metadata: Iterable[tuple[str, Any]]) -> Denial | None:
    """The refusal for gRPC *method* (``package.Service/Method``) with this request and metadata, or None."""
    authorization = next((str(v) for k, v in metadata if k.lower() == "authorization"), None)
    rule = GRPC_RULES.get(method)
    if rule is None:
        if project.anonymous_is_owner:
            return None  # the legacy cloud's owner may call anything; a twin method must name its permission
        raise LookupError(f"the twin names no permission for {method}: add it to tests/fakes/iam.py GRPC_RULES")
    return project.authorize(rule.api, method, rule.checks(request), authorization)
