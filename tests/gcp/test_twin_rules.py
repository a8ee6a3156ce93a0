"""The twin's project-level rules (tests/fakes/iam.py, tests/fakes/apis.py) through the real client libraries:
disabled APIs, IAM permissions, propagation of grants and enablements, resource-level bindings, identity,
and deployctl's own retry layer waiting out a propagation window."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import googleapiclient.errors
import pytest
import requests
from drongo import get_backend
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import InvalidOperation
from google.auth.transport.requests import AuthorizedSession
from google.cloud import artifactregistry_v1, run_v2, secretmanager_v1, service_usage_v1, storage
from google.cloud.artifactregistry_v1.services.artifact_registry.transports import ArtifactRegistryGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.cloud.service_usage_v1.services.service_usage.transports import ServiceUsageGrpcTransport

from deployctl import naming
from deployctl.config import Release, load
from deployctl.errors import DeployctlError, PreconditionError
from deployctl.targets.gcp.bootstrap import RELEASE_ROLES
from deployctl.targets.gcp.retry import Propagation, RetryPolicy
from deployctl.targets.gcp.run_jobs import JobSpec
from deployctl.targets.gcp.run_services import Spec
from deployctl.targets.gcp.sql_users import sqladmin_client
from deployctl.targets.gcp.synth import synthesize
from deployctl.targets.gcp.target import GcpTarget
from tests.fakes import drongo_ext
from tests.fakes.apis import DEFAULT_ENABLED
from tests.fakes.cloudlogging import matches, parse
from tests.fakes.engine import FakeEngine
from tests.fakes.iam import OWNER, Project, TwinCredentials, access_token, check_grpc, email
from tests.gcp.conftest import FAST, IMAGE, IMAGE2, SERVICE, Cloud

pytestmark = pytest.mark.twin

PROJECT = "projects/example-staging"
DEV = "user:dev@example.com"
DEPLOYER = "serviceAccount:staging-deployer@example-staging.iam.gserviceaccount.com"
RUNTIME = "serviceAccount:staging-api-run@example-staging.iam.gserviceaccount.com"
BUILD = "serviceAccount:staging-build@example-staging.iam.gserviceaccount.com"
REPOSITORY = "projects/example-staging/locations/europe-central2/repositories/staging-deployctl"
LOGGING = "https://logging.googleapis.com/v2/entries:list"


class Clock:
    """A clock the test moves: propagation is then a step, not a race with the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(twin: Cloud) -> Iterator[Clock]:
    """The twin project on a test-driven clock (0.2 s delays, as the twin fixture's)."""
    clock = Clock()
    twin.use(Project("example-staging", api_delay_s=0.2, iam_delay_s=0.2, clock=clock))
    yield clock


def project(cloud: Cloud) -> Project:
    assert cloud.project is not None
    return cloud.project


def cloudbuild_bucket() -> None:
    """gs://<project>_cloudbuild as the first release from a laptop (the project's owner) leaves it."""
    owner = storage.Client(project="example-staging", credentials=TwinCredentials(OWNER))
    owner.create_bucket("example-staging_cloudbuild")


def services(cloud: Cloud, member: str | None) -> run_v2.ServicesClient:
    creds = TwinCredentials(member) if member else None
    return run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=cloud.grpc.channel(creds)))


def usage(cloud: Cloud, member: str) -> service_usage_v1.ServiceUsageClient:
    channel = cloud.grpc.channel(TwinCredentials(member))
    return service_usage_v1.ServiceUsageClient(transport=ServiceUsageGrpcTransport(channel=channel))


def secrets(member: str | None) -> secretmanager_v1.SecretManagerServiceClient:
    creds = TwinCredentials(member) if member else AnonymousCredentials()
    return secretmanager_v1.SecretManagerServiceClient(credentials=creds)


def serve_api(cloud: Cloud) -> None:
    """The Cloud Run service staging-api exists, serving IMAGE (as a pulumi up would leave it)."""
    template = run_v2.RevisionTemplate(revision="staging-api-r1", containers=[run_v2.Container(image=IMAGE)])
    cloud.run.apply(SERVICE, template, [run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
        revision="staging-api-r1", percent=100)])


def enable(cloud: Cloud, *apis: str) -> None:
    usage(cloud, OWNER).batch_enable_services(
        request={"parent": PROJECT, "service_ids": list(apis)}).result()


# -- APIs -------------------------------------------------------------------------------------------------


def test_a_disabled_api_refuses_with_service_disabled_until_enabled_and_propagated(twin: Cloud, clock: Clock) -> None:
    serve_api(twin)
    with pytest.raises(gexc.PermissionDenied) as denied:
        services(twin, OWNER).get_service(name=SERVICE)
    assert denied.value.reason == "SERVICE_DISABLED"
    assert denied.value.domain == "googleapis.com"
    meta = denied.value.metadata
    assert meta["service"] == "run.googleapis.com" and meta["consumer"] == "projects/123456789012"
    assert meta["activationUrl"] == ("https://console.developers.google.com/apis/api/run.googleapis.com/overview"
                                     "?project=123456789012")
    assert "wait a few minutes for the action to propagate" in denied.value.message

    enable(twin, "run.googleapis.com")
    states = usage(twin, OWNER).batch_get_services(
        request={"parent": PROJECT, "names": [f"{PROJECT}/services/run.googleapis.com"]})
    assert [s.state.name for s in states.services] == ["ENABLED"]  # recorded at once…
    with pytest.raises(gexc.PermissionDenied) as still:
        services(twin, OWNER).get_service(name=SERVICE)
    assert still.value.reason == "SERVICE_DISABLED"  # …but the API answers only once it propagated

    clock.advance(0.2)
    assert services(twin, OWNER).get_service(name=SERVICE).name == SERVICE


def test_a_disabled_rest_api_refuses_in_the_rest_shape(twin: Cloud) -> None:
    with pytest.raises(gexc.Forbidden) as denied:  # api_core maps an HTTP 403 to Forbidden
        secrets(OWNER).list_secrets(parent=PROJECT)
    assert denied.value.reason == "SERVICE_DISABLED"
    assert denied.value.metadata["service"] == "secretmanager.googleapis.com"


def test_only_a_principal_with_serviceusage_enable_may_enable_an_api(twin: Cloud, clock: Clock) -> None:
    with pytest.raises(gexc.PermissionDenied) as denied:
        usage(twin, DEV).batch_enable_services(request={"parent": PROJECT, "service_ids": ["run.googleapis.com"]})
    assert denied.value.reason == "IAM_PERMISSION_DENIED"
    assert denied.value.metadata == {"permission": "serviceusage.services.enable", "resource": PROJECT}
    assert not project(twin).apis.recorded("run.googleapis.com")


def test_the_default_apis_of_a_new_project_answer_from_the_start(twin: Cloud) -> None:
    bucket = storage.Client(project="example-staging", credentials=TwinCredentials(OWNER)).lookup_bucket(
        "example-staging-deployctl")
    assert bucket is not None and bucket.name == "example-staging-deployctl"


# -- IAM permissions ----------------------------------------------------------------------------------------


def test_a_call_without_the_permission_is_denied_naming_it(twin: Cloud, clock: Clock) -> None:
    enable(twin, "run.googleapis.com")
    serve_api(twin)
    project(twin).grant(DEV, "roles/run.invoker", now=True)  # may call the service, not read its config
    clock.advance(0.2)
    with pytest.raises(gexc.PermissionDenied) as denied:
        services(twin, DEV).get_service(name=SERVICE)
    assert denied.value.reason == "IAM_PERMISSION_DENIED"
    assert denied.value.domain == "iam.googleapis.com"
    assert denied.value.metadata == {"permission": "run.services.get", "resource": SERVICE}
    assert denied.value.message == (f"Permission 'run.services.get' denied on resource '{SERVICE}' "
                                    "(or it may not exist).")
    project(twin).grant(DEV, "roles/run.developer", now=True)
    assert services(twin, DEV).get_service(name=SERVICE).name == SERVICE


def test_each_role_grants_what_googles_reference_lists(twin: Cloud, clock: Clock) -> None:
    """A few documented edges: a version manager cannot read payloads, an object admin cannot read the bucket,
    the Cloud SQL editor cannot change users, the editor cannot change policies."""
    enable(twin, "secretmanager.googleapis.com", "sqladmin.googleapis.com")
    clock.advance(0.2)
    owner = secrets(OWNER)
    owner.create_secret(parent=PROJECT, secret_id="staging-SECRET_KEY", secret={"replication": {"automatic": {}}})
    owner.add_secret_version(parent=f"{PROJECT}/secrets/staging-SECRET_KEY", payload={"data": b"s3cret"})
    p = project(twin)
    p.grant(DEV, "roles/secretmanager.secretVersionManager", now=True)
    dev = secrets(DEV)
    versions = dev.list_secret_versions(parent=f"{PROJECT}/secrets/staging-SECRET_KEY")
    assert [v.name.rsplit("/", 1)[-1] for v in versions] == ["1"]
    with pytest.raises(gexc.Forbidden) as denied:
        dev.access_secret_version(name=f"{PROJECT}/secrets/staging-SECRET_KEY/versions/1")
    assert denied.value.metadata["permission"] == "secretmanager.versions.access"

    p.grant(DEV, "roles/storage.objectAdmin", "projects/_/buckets/example-staging-deployctl", now=True)
    gcs = storage.Client(project="example-staging", credentials=TwinCredentials(DEV))
    gcs.bucket("example-staging-deployctl").blob("x.json").upload_from_string(b"{}")
    with pytest.raises(gexc.Forbidden) as forbidden:
        gcs.get_bucket("example-staging-deployctl")
    assert "dev@example.com does not have storage.buckets.get access" in forbidden.value.message

    twin.sql.create_user("staging-db", "app", "old")
    p.grant(DEV, "roles/cloudsql.editor", now=True)
    sql = sqladmin_client(TwinCredentials(DEV), 5, endpoint=twin.sql.endpoint)
    update = sql.users().update(project="example-staging", instance="staging-db", name="app", body={"password": "new"})
    with pytest.raises(googleapiclient.errors.HttpError) as refused:
        update.execute()
    assert refused.value.status_code == 403
    assert refused.value.reason == "The client is not authorized to make this request."
    assert twin.sql.accepts("staging-db", "app", "old")
    p.grant(DEV, "roles/cloudsql.admin", now=True)
    update.execute()
    assert twin.sql.accepts("staging-db", "app", "new")

    p.grant(DEV, "roles/editor", now=True)
    assert p.allowed(DEV, "run.services.update", SERVICE)
    assert not p.allowed(DEV, "resourcemanager.projects.setIamPolicy", PROJECT)


def test_reading_logs_needs_logging_viewer_which_bootstrap_grants_the_release(twin: Cloud, clock: Clock) -> None:
    """entries:list needs logging.logEntries.list on the project (roles/logging.viewer), answers from a project
    whose logging API is on by default, and refuses a request Google would refuse."""
    body: dict[str, object] = {"resourceNames": [PROJECT], "filter": 'resource.type="cloud_run_job"'}

    def entries(member: str, **extra: object) -> requests.Response:
        return AuthorizedSession(TwinCredentials(member)).post(LOGGING, json={**body, **extra}, timeout=5)

    assert requests.post(LOGGING, json=body, timeout=5).status_code == 401
    denied = entries(DEV)
    assert denied.status_code == 403
    assert denied.json()["error"]["details"][0]["metadata"] == {"permission": "logging.logEntries.list",
                                                                 "resource": PROJECT}
    for role in RELEASE_ROLES:
        project(twin).grant(BUILD, role)
    clock.advance(0.2)
    assert entries(BUILD).json() == {}  # allowed; nothing was written yet
    assert entries(BUILD, pageSize=1001).status_code == 400
    assert entries(BUILD, orderBy="severity").status_code == 400
    assert entries(BUILD, filter='resource.type="cloud_run_job" AND (').status_code == 400

    off = Project("example-staging", enabled=DEFAULT_ENABLED - {"logging.googleapis.com"}, clock=clock)
    off.grant(BUILD, "roles/logging.viewer", now=True)
    twin.use(off)
    disabled = entries(BUILD)
    assert disabled.status_code == 403 and disabled.json()["error"]["details"][0]["reason"] == "SERVICE_DISABLED"


def test_the_logging_query_language_binds_not_then_or_then_and() -> None:
    entry = {"resource": {"type": "cloud_run_job", "labels": {"job_name": "a"}},
             "labels": {"run.googleapis.com/execution_name": "a-1"}, "timestamp": "2024-01-01T00:00:01.5Z",
             "severity": "ERROR", "textPayload": "KeyError: x"}
    assert matches(parse('resource.labels.job_name="b" OR resource.type="cloud_run_job" severity>=WARNING'), entry)
    assert not matches(parse('resource.labels.job_name="b" OR NOT resource.type="cloud_run_job"'), entry)
    assert matches(parse('labels."run.googleapis.com/execution_name"="a-1" timestamp>="2024-01-01T00:00:01Z"'), entry)
    assert not matches(parse('timestamp>="2024-01-01T00:00:02.000000Z"'), entry)
    assert matches(parse('textPayload:"keyerror"'), entry) and not matches(parse('jsonPayload.message:"x"'), entry)


# -- propagation ----------------------------------------------------------------------------------------------


def test_a_fresh_grant_is_refused_until_it_propagates_and_a_revoked_one_lingers(twin: Cloud, clock: Clock) -> None:
    enable(twin, "run.googleapis.com")
    clock.advance(0.2)
    serve_api(twin)
    project(twin).grant(DEV, "roles/run.developer")
    with pytest.raises(gexc.PermissionDenied) as denied:
        services(twin, DEV).get_service(name=SERVICE)
    assert denied.value.metadata["permission"] == "run.services.get"
    clock.advance(0.1)
    with pytest.raises(gexc.PermissionDenied):
        services(twin, DEV).get_service(name=SERVICE)
    clock.advance(0.1)
    assert services(twin, DEV).get_service(name=SERVICE).name == SERVICE

    project(twin).revoke(DEV, "roles/run.developer")
    assert services(twin, DEV).get_service(name=SERVICE).name == SERVICE  # "might still be able to use" it
    clock.advance(0.2)
    with pytest.raises(gexc.PermissionDenied):
        services(twin, DEV).get_service(name=SERVICE)


# -- resource-level bindings: the program's ---------------------------------------------------------------------


def test_the_programs_resource_level_grants_hold_on_that_resource_only(twin: Cloud, clock: Clock) -> None:
    p = project(twin)
    created = p.apply_program_bindings(synthesize(load("staging", twin.root)).resources)
    assert {(b.member, b.role, b.resource) for b in created} >= {
        (RUNTIME, "roles/secretmanager.secretAccessor", f"{PROJECT}/secrets/staging-SECRET_KEY"),
        (BUILD, "roles/artifactregistry.writer", REPOSITORY),
    }
    assert not p.apis.answers("secretmanager.googleapis.com")  # the program's Service resources propagate too
    clock.advance(0.2)
    assert p.apis.answers("secretmanager.googleapis.com") and p.apis.answers("artifactregistry.googleapis.com")

    owner = secrets(OWNER)
    for name in ("staging-SECRET_KEY", "staging-DB_PASSWORD"):
        owner.create_secret(parent=PROJECT, secret_id=name, secret={"replication": {"automatic": {}}})
        owner.add_secret_version(parent=f"{PROJECT}/secrets/{name}", payload={"data": name.encode()})
    runtime = secrets(RUNTIME)
    assert runtime.access_secret_version(name=f"{PROJECT}/secrets/staging-SECRET_KEY/versions/1").payload.data == \
        b"staging-SECRET_KEY"
    with pytest.raises(gexc.Forbidden) as sibling:  # the api service does not use DB_PASSWORD directly
        runtime.access_secret_version(name=f"{PROJECT}/secrets/staging-DB_PASSWORD/versions/1")
    assert sibling.value.metadata["permission"] == "secretmanager.versions.access"

    registry = artifactregistry_v1.ArtifactRegistryClient(
        transport=ArtifactRegistryGrpcTransport(channel=twin.grpc.channel(TwinCredentials(BUILD))))
    with pytest.raises(gexc.NotFound):  # allowed on its repository: the tag just does not exist
        registry.get_tag(name=f"{REPOSITORY}/packages/api/tags/latest")
    other = "projects/example-staging/locations/europe-central2/repositories/production-deployctl"
    with pytest.raises(gexc.PermissionDenied) as denied:
        registry.get_tag(name=f"{other}/packages/api/tags/latest")
    assert denied.value.metadata == {"permission": "artifactregistry.tags.get",
                                     "resource": f"{other}/packages/api/tags/latest"}


def test_a_binding_the_program_no_longer_declares_is_removed_after_the_delay(twin: Cloud, clock: Clock) -> None:
    p = project(twin)
    declared = [{"type": "gcp:secretmanager/secretIamMember:SecretIamMember",
                 "inputs": {"project": "example-staging", "secretId": "staging-SECRET_KEY", "member": RUNTIME,
                            "role": "roles/secretmanager.secretAccessor"}}]
    assert len(p.apply_program_bindings(declared)) == 1
    clock.advance(0.2)
    assert p.apply_program_bindings(declared) == []  # an up that changes nothing changes no access
    secret = f"{PROJECT}/secrets/staging-SECRET_KEY/versions/1"
    assert p.allowed(RUNTIME, "secretmanager.versions.access", secret)
    p.apply_program_bindings([])
    assert p.allowed(RUNTIME, "secretmanager.versions.access", secret)
    clock.advance(0.2)
    assert not p.allowed(RUNTIME, "secretmanager.versions.access", secret)
    with pytest.raises(ValueError, match="does not know the IAM resource type"):
        p.apply_program_bindings([{"type": "gcp:pubsub/topicIAMMember:TopicIAMMember", "inputs": {}}])


def test_a_build_runs_as_its_account_which_needs_the_source_and_the_repository(twin: Cloud, clock: Clock) -> None:
    p = project(twin)
    for api in ("cloudbuild.googleapis.com", "artifactregistry.googleapis.com"):
        p.enable(api, now=True)
    for role in RELEASE_ROLES:
        p.grant(DEPLOYER, role, now=True)
    p.grant(BUILD, "roles/artifactregistry.writer", REPOSITORY, now=True)
    twin.registry.repositories.add("staging-deployctl")  # what the program's first up created
    cloudbuild_bucket()
    target = twin.target(credentials=TwinCredentials(DEPLOYER))
    with pytest.raises(DeployctlError, match=r"ended FAILURE: staging-build@example-staging\.iam\.gserviceaccount"
                                              r"\.com does not have storage\.objects\.get access"):
        target.builds.build("api", target.source_hash("api"), twin.root, "Dockerfile.cloudrun")
    p.grant(BUILD, "roles/storage.objectAdmin", "projects/_/buckets/example-staging_cloudbuild", now=True)
    artifact = target.builds.build("api", target.source_hash("api"), twin.root, "Dockerfile.cloudrun")
    assert artifact.ref.startswith("europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:")


def test_bootstraps_and_the_programs_grants_are_enough_for_the_stacks_build(twin: Cloud, clock: Clock) -> None:
    """The build runs as <stack>-build and fetches its source from gs://<project>_cloudbuild (uniform access:
    IAM only): bootstrap's project-wide storage.objectAdmin lets it; the program's grants alone would not."""
    p = project(twin)
    stack = load("staging", twin.root)
    p.apply_program_bindings(synthesize(stack).resources)
    build = f"serviceAccount:{naming.account(stack, 'build')}@example-staging.iam.gserviceaccount.com"
    for role in RELEASE_ROLES:
        p.grant(build, role)
    for role in RELEASE_ROLES:
        p.grant(DEPLOYER, role)
    twin.registry.repositories.add(naming.repository(stack))  # what the program's first up created
    cloudbuild_bucket()
    clock.advance(0.2)
    target = twin.target(credentials=TwinCredentials(DEPLOYER))
    artifact = target.builds.build("api", target.source_hash("api"), twin.root, "Dockerfile.cloudrun")
    assert artifact.digest.startswith("sha256:")


# -- identity -----------------------------------------------------------------------------------------------------


def test_a_call_without_identity_is_unauthenticated_in_a_twin_project(twin: Cloud) -> None:
    with pytest.raises(gexc.Unauthenticated) as grpc_call:
        services(twin, None).get_service(name=SERVICE)
    assert grpc_call.value.reason == "CREDENTIALS_MISSING"
    assert "Request is missing required authentication credential" in grpc_call.value.message

    raw = requests.get("https://secretmanager.googleapis.com/v1/projects/example-staging/secrets", timeout=5)
    assert raw.status_code == 401
    error = raw.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["details"][0]["reason"] == "CREDENTIALS_MISSING"

    # the REST client libraries answer a 401 by refreshing their credentials, which anonymous ones cannot
    with pytest.raises(InvalidOperation, match="Anonymous credentials cannot be refreshed"):
        secrets(None).list_secrets(parent=PROJECT)
    anonymous = storage.Client(project="example-staging", credentials=AnonymousCredentials())
    with pytest.raises(InvalidOperation, match="Anonymous credentials cannot be refreshed"):
        anonymous.bucket("example-staging-deployctl").blob("lock.json").upload_from_string(b"{}")
    denials = project(twin).denials
    assert {d.reason for _, d in denials} == {"CREDENTIALS_MISSING"}
    assert {"google.cloud.run.v2.Services/GetService", "secretmanager.googleapis.com/list_secrets",
            "storage.googleapis.com/upload_object"} <= {method for method, _ in denials}
    assert drongo_ext.object_bytes("example-staging-deployctl", "lock.json") is None


def test_the_legacy_cloud_takes_no_identity_as_its_owner_but_refuses_a_token_it_did_not_issue(cloud: Cloud) -> None:
    serve_api(cloud)
    assert services(cloud, None).get_service(name=SERVICE).name == SERVICE

    class Foreign(TwinCredentials):
        def refresh(self, request: object) -> None:
            self.token, self.expiry = "ya29.someone-elses", None

    client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=cloud.grpc.channel(Foreign(OWNER))))
    with pytest.raises(gexc.Unauthenticated) as denied:
        client.get_service(name=SERVICE)
    assert denied.value.reason == "ACCESS_TOKEN_TYPE_UNSUPPORTED"


# -- deployctl's retry layer against propagation --------------------------------------------------------------


def retrying(window_s: float) -> RetryPolicy:
    # a deadline well past the 2 s delays below: a loaded machine still sees the wait end inside it
    policy = RetryPolicy(deadline_s=6.0, initial_s=0.05, maximum_s=0.2, multiplier=2.0, call_timeout_s=5)
    if window_s:
        policy.propagation.begin("the IAM bindings `pulumi up` applied", window_s)
    return policy


def granted_just_now(twin: Cloud, delay_s: float, window_s: float) -> tuple[Project, GcpTarget]:
    """The deployer was just granted roles/run.developer (effective in *delay_s*); its target's retry policy
    has a propagation window of *window_s* (0: none)."""
    p = project(twin)
    p.enable("run.googleapis.com", now=True)
    serve_api(twin)
    p.iam_delay_s = delay_s
    p.grant(DEPLOYER, "roles/run.developer")
    return p, twin.target(credentials=TwinCredentials(DEPLOYER), policy=retrying(window_s))


def test_the_retry_layer_waits_for_a_fresh_grant_inside_its_propagation_window(twin: Cloud) -> None:
    granted = time.monotonic()
    p, target = granted_just_now(twin, 2.0, 10.0)
    lines: list[str] = []
    target.policy.propagation.say = lines.append
    splits = target.traffic("api")
    assert [(s.revision, s.percent) for s in splits] == [("staging-api-r1", 100)]
    assert time.monotonic() - granted >= 2.0
    refused = [d for m, d in p.denials if m.endswith("GetService")]
    assert refused and all(d.permission == "run.services.get" for d in refused)
    assert lines and lines[0].startswith("waiting for the IAM bindings `pulumi up` applied to propagate")


def test_outside_a_propagation_window_a_403_fails_at_once_naming_the_permission(twin: Cloud) -> None:
    p, target = granted_just_now(twin, 30.0, 0)
    started = time.monotonic()
    with pytest.raises(PreconditionError, match=r"Permission 'run\.services\.get' denied on resource"):
        target.traffic("api")
    assert time.monotonic() - started < 3.0 and len(p.denials) == 1  # at once: not the 30 s the grant takes


def test_the_retry_layer_waits_for_a_newly_enabled_api(twin: Cloud) -> None:
    p = project(twin)
    p.grant(DEPLOYER, "roles/run.developer", now=True)
    serve_api(twin)
    p.apis.delay_s = 2.0  # long enough that a loaded machine's first call still comes before it has passed
    p.enable("run.googleapis.com")
    policy = retrying(0)
    policy.propagation.begin("the APIs just enabled (run.googleapis.com)", 10.0)
    target = twin.target(credentials=TwinCredentials(DEPLOYER), policy=policy)
    assert [s.revision for s in target.traffic("api")] == ["staging-api-r1"]
    assert any(d.reason == "SERVICE_DISABLED" for _, d in p.denials)


def test_the_retry_layer_waits_on_a_rest_api_too(twin: Cloud) -> None:
    p = project(twin)
    p.grant(DEPLOYER, "roles/secretmanager.admin", now=True)
    p.apis.delay_s = 2.0
    p.enable("secretmanager.googleapis.com")
    policy = retrying(0)
    policy.propagation.begin("the APIs just enabled (secretmanager.googleapis.com)", 10.0)
    target = twin.target(credentials=TwinCredentials(DEPLOYER), policy=policy)
    assert target.secrets.latest("SECRET_KEY") is None  # answered (no such secret), once the API propagated



def test_secret_manager_refuses_labels_google_would_refuse(cloud: Cloud) -> None:
    """Secret.labels: lowercase letters, digits, _ and - only, keys start with a letter, at most 63 characters
    (deployctl's own login labels, ``deployctl-login-v3: app_b``, pass: the rotation tests set them)."""
    client = secretmanager_v1.SecretManagerServiceClient(credentials=AnonymousCredentials())
    for labels in ({"Upper": "x"}, {"ok": "Has Space"}, {"k" * 64: "x"}, {f"k{i}": "v" for i in range(65)}):
        with pytest.raises(gexc.BadRequest):
            client.create_secret(parent=PROJECT, secret_id="labelled",
                                 secret={"replication": {"automatic": {}}, "labels": labels})
    made = client.create_secret(parent=PROJECT, secret_id="labelled",
                                secret={"replication": {"automatic": {}}, "labels": {"deployctl-login-v3": "app_b"}})
    assert dict(made.labels) == {"deployctl-login-v3": "app_b"}


# -- images ---------------------------------------------------------------------------------------------


def test_deploying_an_image_needs_read_access_to_its_repository(twin: Cloud, clock: Clock) -> None:
    """Since January 2025 run.developer alone no longer deploys an image: the caller reads the repository."""
    enable(twin, "run.googleapis.com")
    serve_api(twin)
    project(twin).grant(DEV, "roles/run.developer", now=True)
    clock.advance(0.2)
    service = services(twin, DEV).get_service(name=SERVICE)
    service.template.revision = "staging-api-r2"
    with pytest.raises(gexc.PermissionDenied) as denied:
        services(twin, DEV).update_service(service=service).result()
    assert denied.value.metadata == {"permission": "artifactregistry.repositories.downloadArtifacts",
                                     "resource": REPOSITORY}
    project(twin).grant(DEV, "roles/artifactregistry.reader", REPOSITORY, now=True)
    services(twin, DEV).update_service(service=service).result()
    assert twin.run.services[SERVICE].latest_ready_revision == f"{SERVICE}/revisions/staging-api-r2"


def test_an_image_of_another_project_needs_the_run_agent_to_read_it(twin: Cloud, clock: Clock) -> None:
    """Cloud Run imports an image as its project's service agent: one from another project's repository
    fails the revision until that agent may read the repository; Google's public samples need nothing."""
    enable(twin, "run.googleapis.com")
    serve_api(twin)
    elsewhere = "europe-central2-docker.pkg.dev/shared-images/base/api@sha256:" + "e" * 64
    repository = "projects/shared-images/locations/europe-central2/repositories/base"
    project(twin).grant(OWNER, "roles/artifactregistry.reader", repository, now=True)  # the caller may read it
    clock.advance(0.2)
    owner = services(twin, OWNER)

    def deploy(revision: str, image: str) -> None:
        service = owner.get_service(name=SERVICE)
        service.template.revision, service.template.containers[0].image = revision, image
        owner.update_service(service=service).result()

    with pytest.raises(gexc.GoogleAPICallError) as failed:
        deploy("staging-api-r2", elsewhere)
    agent = project(twin).run_agent("example-staging").removeprefix("serviceAccount:")
    assert f"Google Cloud Run Service Agent {agent} must have permission to read the image, {elsewhere}." in \
        failed.value.message
    assert "image is from project [shared-images], which is not the same as this project [example-staging]" in \
        failed.value.message
    ready = lambda: twin.run.services[SERVICE].latest_ready_revision.rsplit("/", 1)[-1]  # noqa: E731
    assert ready() == "staging-api-r1"
    project(twin).grant(f"serviceAccount:{agent}", "roles/artifactregistry.reader", repository, now=True)
    deploy("staging-api-r3", elsewhere)
    assert ready() == "staging-api-r3"
    deploy("staging-api-r4", "us-docker.pkg.dev/cloudrun/container/hello")  # public: any agent may pull it
    assert ready() == "staging-api-r4"


def test_creating_a_service_needs_read_access_to_its_image_too(twin: Cloud, clock: Clock) -> None:
    """Google's notice covers principals "creating or updating Cloud Run resources": CreateService as
    UpdateService (the fake Cloud Run serves no CreateService, so its rule is asked directly)."""
    enable(twin, "run.googleapis.com")
    p = project(twin)
    p.grant(DEV, "roles/run.developer", now=True)
    clock.advance(0.2)
    request = run_v2.CreateServiceRequest(parent="projects/example-staging/locations/europe-central2",
                                          service_id="staging-web", service=run_v2.Service(
                                              template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=IMAGE)])))
    caller = [("authorization", f"Bearer {access_token(DEV)}")]
    denial = check_grpc(p, "google.cloud.run.v2.Services/CreateService", request, caller)
    assert denial is not None and (denial.permission, denial.resource) == (
        "artifactregistry.repositories.downloadArtifacts", REPOSITORY)
    p.grant(DEV, "roles/artifactregistry.reader", REPOSITORY, now=True)
    assert check_grpc(p, "google.cloud.run.v2.Services/CreateService", request, caller) is None


def test_creating_a_job_needs_its_image_read_by_the_caller_and_by_the_run_agent(twin: Cloud, clock: Clock) -> None:
    enable(twin, "run.googleapis.com")
    p = project(twin)
    p.grant(DEV, "roles/run.developer", now=True)
    clock.advance(0.2)
    jobs = run_v2.JobsClient(credentials=TwinCredentials(DEV))
    location = "projects/example-staging/locations/europe-central2"

    def create(job_id: str, image: str) -> None:
        task = run_v2.TaskTemplate(containers=[run_v2.Container(image=image)])
        jobs.create_job(parent=location, job_id=job_id,
                        job=run_v2.Job(template=run_v2.ExecutionTemplate(template=task))).result()

    with pytest.raises(gexc.Forbidden) as denied:  # REST: 403 is Forbidden
        create("staging-migrate", IMAGE)
    assert denied.value.metadata == {"permission": "artifactregistry.repositories.downloadArtifacts",
                                     "resource": REPOSITORY}
    p.grant(DEV, "roles/artifactregistry.reader", REPOSITORY, now=True)
    create("staging-migrate", IMAGE)
    assert jobs.get_job(name=f"{location}/jobs/staging-migrate").template.template.containers[0].image == IMAGE

    elsewhere = "europe-central2-docker.pkg.dev/shared-images/base/api@sha256:" + "e" * 64
    p.grant(DEV, "roles/artifactregistry.reader", "projects/shared-images/locations/europe-central2/repositories/base",
            now=True)  # the caller may read it; this project's Cloud Run Service Agent may not
    with pytest.raises(gexc.GoogleAPICallError) as failed:
        create("staging-init", elsewhere)
    assert f"must have permission to read the image, {elsewhere}." in failed.value.message
    with pytest.raises(gexc.NotFound):
        jobs.get_job(name=f"{location}/jobs/staging-init")  # not made


def test_a_pulumi_up_whose_caller_may_not_read_the_image_is_refused(twin: Cloud, clock: Clock) -> None:
    """The provider creates and updates services and jobs as the up's caller: Cloud Run checks their read of
    the images as it does for deployctl's own calls."""
    p = project(twin)
    for api in ("run.googleapis.com", "secretmanager.googleapis.com"):
        p.enable(api, now=True)
    for role in ("roles/run.developer", "roles/iam.serviceAccountUser", "roles/secretmanager.admin"):
        p.grant(DEV, role, now=True)
    engine = FakeEngine(load("staging", twin.root), twin.run, twin.pulumi, project=p, credentials=TwinCredentials(DEV))
    release = Release(phase="infra", images={"api": IMAGE})
    with pytest.raises(DeployctlError) as refused:
        engine.up(release)
    assert refused.value.message.startswith(f"pulumi: the account deployctl runs as may not read the images of "
                                            f"{REPOSITORY} (artifactregistry.repositories.downloadArtifacts)")
    p.grant(DEV, "roles/artifactregistry.reader", REPOSITORY, now=True)
    engine.up(release)
    job = get_backend("cloudrun")["example-staging"].jobs[
        f"projects/example-staging/locations/europe-central2/jobs/{naming.job(engine.stack, 'api', 'migrate')}"]
    assert job.spec["template"]["template"]["containers"][0]["image"] == IMAGE


def test_a_deployer_that_may_not_read_the_image_is_given_the_grant_for_itself(twin: Cloud, clock: Clock) -> None:
    """A principal with run.developer and actAs on the runtime account but no read of the image's repository
    (production's build account promoting staging's image is one): Cloud Run refuses the deploy, and the hint
    is the grant of that repository to it, not the credentials hint."""
    enable(twin, "run.googleapis.com")
    p = project(twin)
    template = run_v2.RevisionTemplate(revision="staging-api-r1", service_account=email(RUNTIME),
                                       containers=[run_v2.Container(image=IMAGE)])
    twin.run.apply(SERVICE, template, [run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision="staging-api-r1",
        percent=100)])
    get_backend("cloudrun")["example-staging"].create_job(
        "projects/example-staging/locations/europe-central2", "staging-api-migrate",
        {"template": {"template": {"containers": [{"image": IMAGE}]}}})
    for role in ("roles/run.developer", "roles/iam.serviceAccountUser"):
        p.grant(DEPLOYER, role, now=True)
    clock.advance(0.2)

    def grant(member: str) -> str:
        return ("Grant it read access (docs/runbook.md, Promote): gcloud artifacts repositories "
                "add-iam-policy-binding staging-deployctl --project example-staging --location europe-central2 "
                f"--member {member} --role roles/artifactregistry.reader")

    # deployctl knows whom it runs as (open_target: the credentials' account): the grant names it
    named = twin.target(credentials=TwinCredentials(DEPLOYER),
                        policy=replace(FAST, caller=DEPLOYER, propagation=Propagation()))  # no window of others
    with pytest.raises(PreconditionError) as refused:
        named.run.deploy("api", Spec("staging-api-r2", IMAGE2, {}, {}))
    assert refused.value.message.endswith(
        f": {email(DEPLOYER)} may not read the images of {REPOSITORY} (artifactregistry.repositories."
        "downloadArtifacts), which Cloud Run requires of whoever deploys them")
    assert refused.value.hint == grant(DEPLOYER)
    # credentials that do not name their account: the same grant for the account deployctl runs as; the job
    # the migrations run is updated over REST
    unnamed = twin.target(credentials=TwinCredentials(DEPLOYER))
    with pytest.raises(PreconditionError) as refused:
        unnamed.jobs.run("staging-api-migrate", JobSpec(IMAGE2), "r-2", deadline_s=5)
    assert refused.value.message.startswith("set job staging-api-migrate to the release's image and secret "
                                            "versions: the account deployctl runs as may not read the images of ")
    assert refused.value.hint == grant("PRINCIPAL") + (", PRINCIPAL being user:EMAIL or serviceAccount:EMAIL of "
                                                       "the account deployctl runs as")
    p.grant(DEPLOYER, "roles/artifactregistry.reader", REPOSITORY, now=True)  # what the hint says
    assert named.run.deploy("api", Spec("staging-api-r2", IMAGE2, {}, {})).ready
