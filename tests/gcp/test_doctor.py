"""deployctl doctor against a fake project: bootstrapped by the real Bootstrap, then given what the program's
first `pulumi up` creates (read from the synthesized program), then broken one piece at a time. Service
Usage, IAM, Resource Manager, Artifact Registry and Cloud Build connections over gRPC and Cloud SQL Admin
over REST, all through the real client libraries; Cloud Storage and Secret Manager as the in-memory fakes
tests/fakes/bootstrap.py describes. Every test checks that doctor changed nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.devtools import cloudbuild_v2
from google.cloud.devtools.cloudbuild_v2.services.repository_manager.transports import RepositoryManagerGrpcTransport

from deployctl.config import Stack, effective, load, parse
from deployctl.errors import EXIT_PRECONDITION
from deployctl.targets.gcp.bootstrap import APIS, RELEASE_ROLES, promotion_sources
from deployctl.targets.gcp.doctor import Doctor, Report
from deployctl.targets.gcp.retry import CREDENTIALS_HINT
from deployctl.targets.gcp.sql_users import sqladmin_client
from deployctl.targets.gcp.synth import synthesize
from tests.fakes.bootstrap import (
    FakeConnections,
    FakeIam,
    FakeProject,
    FakeProjects,
    FakePulumi,
    FakeRepositories,
    FakeSecrets,
    FakeServiceUsage,
    FakeSqlInstances,
    FakeStorage,
    fast_policy,
)
from tests.fakes.grpcfake import GrpcFake

ROOT = Path(__file__).resolve().parents[2]


CALLER = "alice@example.com"
BUILD = "staging-build@example-staging.iam.gserviceaccount.com"
BUCKET = "example-staging-deployctl"
REPOSITORY = "projects/example-staging/locations/europe-central2/connections/github/repositories/example-app"
FIX_BOOTSTRAP = "deployctl bootstrap staging"


@dataclass
class Project(FakeProject):
    connections: FakeConnections
    sql: FakeSqlInstances

    def doctor(self, stack: Stack | None = None, *, caller: str | None = CALLER, environ: dict[str, str] | None = None,
               which: Callable[[str], str | None] = lambda name: f"/opt/bin/{name}") -> Doctor:
        channel = self.grpc.channel()
        return Doctor(
            stack or load("staging", ROOT),
            **self.clients(),
            repositories=cloudbuild_v2.RepositoryManagerClient(
                transport=RepositoryManagerGrpcTransport(channel=channel)),
            sqladmin=sqladmin_client(AnonymousCredentials(), 5, endpoint=self.sql.endpoint),
            caller=caller,
            policy=fast_policy(),
            environ=environ or {},
            which=which,
        )

    def release(self, stack: Stack) -> None:
        """What the program's first `pulumi up` creates that doctor reads, as the synthesized program declares
        it: the image repository, each secret with its first version, the Cloud SQL instance."""
        synthesis = synthesize(stack)
        for r in synthesis.of_type("gcp:artifactregistry/repository:Repository"):
            i = r.inputs
            self.repositories.names.add(f"projects/{i['project']}/locations/{i['location']}/repositories/{i['repositoryId']}")
        for r in synthesis.of_type("gcp:secretmanager/secret:Secret"):
            parent = f"projects/{r.inputs['project']}"
            self.secrets.create_secret(parent, r.inputs["secretId"])
            self.secrets.add_secret_version(f"{parent}/secrets/{r.inputs['secretId']}", {"data": b"first version"})
        for r in synthesis.of_type("gcp:sql/databaseInstance:DatabaseInstance"):
            settings = r.inputs["settings"]
            self.sql.instances[r.inputs["name"]] = {
                "state": "RUNNABLE",
                "settings": {"tier": settings["tier"], "activationPolicy": settings.get("activationPolicy", "ALWAYS"),
                             "databaseFlags": settings.get("databaseFlags", [])},
            }

    def mutations(self) -> list[tuple[str, str]]:
        return super().mutations() + self.grpc.mutations() + self.sql.calls


@contextlib.contextmanager
def bootstrapped(released: bool) -> Iterator[Project]:
    """A staging project after `deployctl bootstrap staging` (the caller owns it), its trigger repository
    connected as docs/getting-started.md says, and, if *released*, after the first `deployctl up`."""
    fake = GrpcFake()
    p = Project(fake, FakeServiceUsage(fake, {"serviceusage.googleapis.com"}), FakeIam(fake),
                FakeProjects(fake, {"roles/owner": [f"user:{CALLER}"]}), FakeStorage(), FakePulumi(), FakeSecrets(),
                FakeRepositories(fake), FakeConnections(fake), FakeSqlInstances())
    fake.start()
    try:
        stack = load("staging", ROOT)
        p.bootstrap(stack).run()
        if released:
            p.release(stack)
        p.connections.link(REPOSITORY)
        yield p
    finally:
        p.sql.stop()
        fake.stop()


@pytest.fixture
def project() -> Iterator[Project]:
    with bootstrapped(released=True) as p:
        yield p


def run(project: Project, **kw: Any) -> tuple[Report, list[str]]:
    """Doctor's report and its lines, after checking it changed nothing."""
    before = list(project.mutations())
    lines: list[str] = []
    report = project.doctor(**kw).run(progress=lines.append)
    assert project.mutations() == before, "doctor changed something"
    return report, lines


def line(report: Report, subject: str) -> str:
    [found] = [c.line() for c in report.checks if c.subject == subject]
    return found


ALL_OK = [
    "ok      pulumi: the pulumi CLI is installed",
    f"ok      apis: all {len(APIS)} APIs the stack and bootstrap need are enabled",
    f"ok      deployer: {CALLER} holds roles/owner on example-staging",
    f"ok      trigger identity: {BUILD} holds the {len(RELEASE_ROLES)} release roles",
    f"ok      state bucket: gs://{BUCKET} exists, is secured and readable",
    "ok      passphrase: secret staging-pulumi-passphrase has an enabled version",
    "ok      image repository: europe-central2/staging-deployctl exists",
    "ok      trigger repository: example-app is linked through connection github (europe-central2)",
    "ok      secret DATABASE_URL: staging-DATABASE_URL v1 enabled",
    "ok      secret DB_PASSWORD: staging-DB_PASSWORD v1 enabled",
    "ok      secret SECRET_KEY: staging-SECRET_KEY v1 enabled",
    "ok      database: staging-db is RUNNABLE (db-f1-micro)",
    "ok      connection budget: workloads may open 21 of 25 connections (the instance's tier and flags)",
]


def test_a_bootstrapped_released_project_is_all_ok(project):
    report, lines = run(project)

    assert lines == ALL_OK
    assert report.missing == []
    assert report.to_dict()["ok"] is True


def test_before_the_first_up_what_the_program_creates_is_pending_not_missing():
    with bootstrapped(released=False) as p:
        report, lines = run(p)

    assert report.missing == []
    assert [x for x in lines if not x.startswith("ok")] == [
        "pending image repository: europe-central2/staging-deployctl not yet created — deployctl up staging creates it",
        "pending secret DATABASE_URL: staging-DATABASE_URL not yet created — deployctl up staging creates it",
        "pending secret DB_PASSWORD: staging-DB_PASSWORD not yet created — deployctl up staging creates it",
        "pending secret SECRET_KEY: staging-SECRET_KEY not yet created — deployctl up staging creates it",
        "pending database: Cloud SQL instance staging-db not yet created — deployctl up staging creates it",
    ]
    assert line(report, "connection budget") == ("ok      connection budget: workloads may open 21 of 25 connections "
                                                 "(the stack's tier: the instance is not created yet)")


def _unbind(project: Project, role: str, member: str) -> None:
    for binding in project.projects.policy.bindings:
        if binding.role == role and member in binding.members:
            binding.members.remove(member)


BREAKS: dict[str, tuple[Callable[[Project], None], str, str]] = {
    "an API disabled": (
        lambda p: p.apis.enabled.discard("run.googleapis.com"), "apis",
        "missing apis: run.googleapis.com not enabled in example-staging — fix: gcloud services enable "
        "run.googleapis.com --project=example-staging"),
    "the build account deleted": (
        lambda p: p.iam.accounts.pop(BUILD), "trigger identity",
        f"missing trigger identity: service account {BUILD} does not exist — fix: {FIX_BOOTSTRAP}"),
    "a role binding removed": (
        lambda p: _unbind(p, "roles/run.admin", f"serviceAccount:{BUILD}"), "trigger identity",
        f"missing trigger identity: {BUILD} lacks roles/run.admin on example-staging — fix: {FIX_BOOTSTRAP}"),
    "the state bucket deleted": (
        lambda p: p.storage.buckets.pop(BUCKET), "state bucket",
        f"missing state bucket: gs://{BUCKET} does not exist — fix: {FIX_BOOTSTRAP}"),
    "the state bucket unversioned": (
        lambda p: setattr(p.storage.buckets[BUCKET], "versioning_enabled", False), "state bucket",
        f"missing state bucket: gs://{BUCKET} lacks uniform access, public access prevention or versioning — "
        f"fix: {FIX_BOOTSTRAP}"),
    "the state bucket unreadable": (
        lambda p: p.storage.unlistable.add(BUCKET), "state bucket",
        f"missing state bucket: gs://{BUCKET} exists, but {CALLER} cannot list its objects — fix: gcloud storage "
        f"buckets add-iam-policy-binding gs://{BUCKET} --member=user:{CALLER} --role=roles/storage.objectAdmin"),
    "the passphrase deleted": (
        lambda p: p.secrets.delete_secret("projects/example-staging/secrets/staging-pulumi-passphrase"), "passphrase",
        "missing passphrase: secret staging-pulumi-passphrase does not exist and PULUMI_CONFIG_PASSPHRASE is not set "
        f"— fix: {FIX_BOOTSTRAP}"),
    "the passphrase's version disabled": (
        lambda p: p.secrets.disable_secret_version(
            "projects/example-staging/secrets/staging-pulumi-passphrase/versions/1"), "passphrase",
        "missing passphrase: secret staging-pulumi-passphrase has no enabled version — fix: gcloud secrets versions "
        "enable 1 --secret=staging-pulumi-passphrase --project=example-staging"),
    "a generated secret's only version disabled": (
        lambda p: p.secrets.disable_secret_version("projects/example-staging/secrets/staging-SECRET_KEY/versions/1"),
        "secret SECRET_KEY",
        "missing secret SECRET_KEY: staging-SECRET_KEY has no enabled version — fix: deployctl up staging"),
    "a composed secret's only version disabled": (
        lambda p: p.secrets.disable_secret_version(
            "projects/example-staging/secrets/staging-DATABASE_URL/versions/1"), "secret DATABASE_URL",
        "missing secret DATABASE_URL: staging-DATABASE_URL has no enabled version — fix: gcloud secrets versions "
        "enable 1 --secret=staging-DATABASE_URL --project=example-staging"),
    "the SQL instance stopped": (
        lambda p: p.sql.instances["staging-db"]["settings"].update(activationPolicy="NEVER"), "database",
        "missing database: staging-db is stopped (activation policy NEVER) — fix: gcloud sql instances patch "
        "staging-db --activation-policy=ALWAYS --project=example-staging"),
    "the SQL instance suspended": (
        lambda p: p.sql.instances["staging-db"].update(state="SUSPENDED"), "database",
        "missing database: staging-db is SUSPENDED, not RUNNABLE — fix: gcloud sql instances describe staging-db "
        "--project=example-staging"),
    "the connection missing": (
        lambda p: p.connections.connections.clear(), "trigger repository",
        "missing trigger repository: Cloud Build connection github does not exist in europe-central2 — fix: gcloud "
        "builds connections create github github --region=europe-central2 --project=example-staging"),
    "the connection not authorized": (
        lambda p: p.connections.link(REPOSITORY, stage="PENDING_USER_OAUTH"), "trigger repository",
        "missing trigger repository: connection github is not ready (PENDING_USER_OAUTH) — fix: gcloud builds "
        "connections describe github --region=europe-central2 --project=example-staging (open "
        "installationState.actionUri)"),
    "the repository not linked": (
        lambda p: p.connections.repositories.clear(), "trigger repository",
        "missing trigger repository: repository example-app is not linked in connection github — fix: gcloud builds "
        "repositories create example-app --connection=github --region=europe-central2 --project=example-staging "
        "--remote-uri=https://github.com/OWNER/example-app.git"),
    "pulumi not installed": (
        lambda p: None, "pulumi",
        "missing pulumi: the pulumi CLI is not installed (deployctl drives it) — fix: curl -fsSL "
        "https://get.pulumi.com | sh"),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_each_broken_piece_is_one_missing_line_with_its_fix(project, case):
    breaks, subject, expected = BREAKS[case]
    breaks(project)

    report, lines = run(project, **({"which": lambda name: None} if case == "pulumi not installed" else {}))

    assert line(report, subject) == expected
    assert [c.line() for c in report.missing] == [expected]  # nothing else is reported missing
    assert report.error().exit_code == EXIT_PRECONDITION
    assert len(lines) == len(ALL_OK)


def test_what_the_program_would_recreate_is_pending_after_a_release(project):
    project.repositories.names.clear()
    del project.sql.instances["staging-db"]

    report, _ = run(project)

    assert report.missing == []
    assert line(report, "image repository").startswith("pending image repository: europe-central2/staging-deployctl")
    assert line(report, "database") == (
        "pending database: Cloud SQL instance staging-db not yet created — deployctl up staging creates it")


def test_a_passphrase_in_the_environment_stands_in_for_the_secret(project):
    project.secrets.delete_secret("projects/example-staging/secrets/staging-pulumi-passphrase")

    report, _ = run(project, environ={"PULUMI_CONFIG_PASSPHRASE": "chosen"})

    assert line(report, "passphrase") == ("ok      passphrase: PULUMI_CONFIG_PASSPHRASE is set (the secret is not "
                                          "needed)")
    assert report.missing == []
    assert "chosen" not in repr(report.to_dict())


def _with_token(config: dict[str, Any]) -> None:
    config["deployctl:secrets"]["API_TOKEN"] = {"source": "provided"}


def _stack(edit: Callable[[dict[str, Any]], None]) -> Stack:
    raw = effective("staging", ROOT)
    edit(raw["config"])
    return parse(raw, stack="staging", file="stacks/Pulumi.staging.yaml")


def test_a_provided_secret_without_a_version_names_secrets_set(project):
    stack = _stack(_with_token)
    project.secrets.create_secret("projects/example-staging", "staging-API_TOKEN")  # created, never set

    report, _ = run(project, stack=stack)

    assert line(report, "secret API_TOKEN") == (
        "missing secret API_TOKEN: staging-API_TOKEN has no enabled version — fix: deployctl secrets set staging "
        "API_TOKEN < file-with-the-value")
    assert len(report.missing) == 1


def _tier(tier: str, flags: list[dict[str, str]]) -> Callable[[Project], None]:
    def change(p: Project) -> None:
        p.sql.instances["staging-db"]["settings"].update(tier=tier, databaseFlags=flags)

    return change


def test_the_budget_uses_the_real_instance_tier(project):
    _tier("db-custom-1-3840", [])(project)  # 3.75 GiB: Google's table says 100

    report, _ = run(project)

    assert line(report, "connection budget") == ("ok      connection budget: workloads may open 21 of 100 "
                                                 "connections (the instance's tier and flags)")


def test_an_undocumented_tier_is_judged_by_the_instances_max_connections_flag(project):
    _tier("db-n1-standard-1", [{"name": "max_connections", "value": "20"}])(project)

    report, _ = run(project)

    assert line(report, "connection budget") == (
        "missing connection budget: workloads may open 21 connections (3 reserved, staging-api-service 2 revisions x 4 "
        "instances x 2, 2 job(s) x 1); db-n1-standard-1 allows 20 (the instance's tier and flags) — fix: Lower "
        "services.<svc>.max_instances or pool, pick a larger database.tier, or set database.max_connections; then "
        "deployctl up staging")
    assert len(report.missing) == 1


def test_an_undocumented_tier_without_the_flag_is_missing(project):
    _tier("db-n1-standard-1", [])(project)

    report, _ = run(project)

    assert line(report, "connection budget").startswith(
        "missing connection budget: max_connections of tier db-n1-standard-1 is not in Google's table and no flag "
        "sets it (the instance's tier and flags)")


def test_a_deployer_without_the_roles_directly_is_a_note_not_a_failure(project):
    report, _ = run(project, caller="bob@example.com")

    assert line(report, "deployer").startswith("note    deployer: bob@example.com does not hold roles/artifactregistry"
                                               ".admin, ")
    assert report.missing == []


def test_a_denied_read_is_missing_and_the_other_checks_still_run(project):
    project.grpc.faults.add("GetIamPolicy", "iam_denied")

    report, lines = run(project)

    assert line(report, "deployer").startswith("missing deployer: could not check (read the IAM policy of "
                                               "example-staging: 403 ")
    assert line(report, "deployer").endswith(f"— fix: {CREDENTIALS_HINT}")
    assert len(lines) == len(ALL_OK)


# -- the command line -----------------------------------------------------------------------------------------
def _deployctl(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_"))}
    base |= {"CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "deployctl", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=60)


def test_cli_local_stack_has_nothing_to_check(tmp_path):
    result = _deployctl(tmp_path, "doctor", "local")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("stack local runs on this machine: nothing to check in Google Cloud "
                                     "(deployctl up local)")


def test_cli_without_credentials_exits_5_with_the_credentials_hint(tmp_path):
    result = _deployctl(tmp_path, "doctor", "staging", GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"))

    assert result.returncode == EXIT_PRECONDITION, result.stderr
    assert result.stderr.splitlines()[-2:] == ["Error: no Google Cloud credentials found", f"Hint: {CREDENTIALS_HINT}"]


def test_the_callers_identity_comes_from_the_credentials_when_they_name_it():
    from google.oauth2 import credentials as user
    from google.oauth2 import service_account

    from deployctl.targets.gcp.retry import caller_identity, member

    assert caller_identity(user.Credentials(token="t", account=CALLER)) == CALLER
    assert caller_identity(user.Credentials(token="t")) is None  # an ADC file without its account
    robot = service_account.Credentials(signer=None, service_account_email=BUILD, token_uri="https://oauth2.invalid")
    assert caller_identity(robot) == BUILD
    assert caller_identity(type("Metadata", (), {"service_account_email": "default"})()) is None  # not yet resolved
    assert (member(CALLER), member(BUILD), member(None)) == (f"user:{CALLER}", f"serviceAccount:{BUILD}", "")


def test_a_promotion_from_another_project_is_checked_until_its_pull_is_granted():
    """production (another project) is promoted into from staging (gcp.promote_from): doctor production says
    whether production's Cloud Run Service Agent reads staging's images, and bootstrap production fixes it."""
    staging_images = "projects/example-staging/locations/europe-central2/repositories/staging-deployctl"
    agent = "service-123456789013@serverless-robot-prod.iam.gserviceaccount.com"
    production = load("production", ROOT)
    with bootstrapped(released=False) as p:
        def check() -> str:
            doctor = p.doctor(production)
            doctor.sources = promotion_sources(production, ROOT)
            return line(doctor.run(), "promotion from staging")

        assert check() == (f"note    promotion from staging: {staging_images} does not exist yet (the first "
                           "`deployctl up staging` makes it); the grant comes after it — fix: deployctl up staging, "
                           "then deployctl bootstrap production")
        p.repositories.names.add(staging_images)
        assert check() == (f"missing promotion from staging: {agent} (Cloud Run in example-production) cannot read "
                           f"{staging_images}: a promoted image would not import — fix: deployctl bootstrap production")
        p.bootstrap(production).run()  # its pull step grants it
        assert check() == f"ok      promotion from staging: {agent} reads {staging_images}"
        # production's admin, who may not read staging's repository or its policy: a note, with the grant for
        # staging's admins (not `missing` with the credentials hint)
        grant = ("gcloud artifacts repositories add-iam-policy-binding staging-deployctl --project example-staging "
                 f"--location europe-central2 --member serviceAccount:{agent} --role roles/artifactregistry.reader")
        for refused, read in (("artifactregistry.repositories.getIamPolicy", f"the IAM policy of {staging_images}"),
                              ("artifactregistry.repositories.get", staging_images)):
            p.repositories.lacking = {refused}
            assert check() == (f"note    promotion from staging: could not check (read {read}: 403 Permission "
                               f"'{refused}' denied on resource '{staging_images}' (or it may not exist)) — fix: If "
                               f"it is not granted yet, an admin of example-staging runs: {grant}")
