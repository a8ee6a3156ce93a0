"""deployctl bootstrap against fakes: Service Usage, IAM Admin and Resource Manager over gRPC through the
real clients; Cloud Storage, Secret Manager and the pulumi CLI as in-memory fakes (tests/fakes/bootstrap.py
says why)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl import naming
from deployctl.config import effective, load, parse
from deployctl.errors import EXIT_CONFIG, EXIT_PRECONDITION, ConfigError, PreconditionError
from deployctl.targets.gcp import bootstrap as boot
from deployctl.targets.gcp.bootstrap import APIS, PROGRAM_ROLES, RELEASE_ROLES
from deployctl.targets.gcp.retry import CREDENTIALS_HINT
from tests.fakes.bootstrap import (
    FakeBucket,
    FakeIam,
    FakeProject,
    FakeProjects,
    FakePulumi,
    FakeRepositories,
    FakeSecrets,
    FakeServiceUsage,
    FakeStorage,
)
from tests.fakes.grpcfake import GrpcFake

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "example-staging-deployctl"  # stacks/Pulumi.staging.yaml: deployctl:gcp.state_bucket
EMAIL = "staging-build@example-staging.iam.gserviceaccount.com"  # the trigger's identity


Project = FakeProject


@pytest.fixture
def project() -> Iterator[Project]:
    fake = GrpcFake()
    owner = {"roles/owner": ["user:alice@example.com"], "roles/run.admin": ["group:ops@example.com"]}
    p = Project(fake, FakeServiceUsage(fake, {"serviceusage.googleapis.com"}), FakeIam(fake),
                FakeProjects(fake, owner), FakeStorage(), FakePulumi(), FakeSecrets(), FakeRepositories(fake))
    fake.start()
    yield p
    fake.stop()


def test_first_run_prepares_the_project(project):
    outcome = project.bootstrap().run()

    assert [s["state"] for s in outcome.steps] == ["applied"] * 6
    assert project.apis.enabled == set(APIS)
    bucket = project.storage.buckets[BUCKET]
    assert bucket.iam_configuration.uniform_bucket_level_access_enabled is True
    assert bucket.iam_configuration.public_access_prevention == "enforced"
    assert bucket.versioning_enabled is True
    assert bucket.location == "EUROPE-CENTRAL2"
    assert list(project.iam.accounts) == [EMAIL]
    assert project.projects.roles_of(f"serviceAccount:{EMAIL}") == set(RELEASE_ROLES)
    # what others held is kept: the owner, and the existing run.admin binding gains a member
    assert project.projects.roles_of("user:alice@example.com") == {"roles/owner"}
    assert project.projects.roles_of("group:ops@example.com") == {"roles/run.admin"}
    assert project.pulumi.calls == [f"login gs://{BUCKET}; stack init staging"]
    # the stack's passphrase: generated into Secret Manager, handed to pulumi, printed nowhere
    assert list(project.secrets.versions) == ["staging-pulumi-passphrase"]
    [passphrase] = project.secrets.versions["staging-pulumi-passphrase"]
    assert len(passphrase) >= 40 and project.pulumi.passphrase == passphrase
    assert passphrase not in repr(outcome.to_dict())


def test_a_long_stack_name_gets_the_build_account_the_naming_rules_give(project):
    raw = effective("staging", ROOT)
    stack = parse(raw, stack="customer-portal-staging-eu", file="stacks/Pulumi.customer-portal-staging-eu.yaml")
    project.bootstrap(stack).run()

    account = naming.account(stack, "build")
    assert account == "customer-portal-staging-" + account[-6:]
    assert list(project.iam.accounts) == [f"{account}@example-staging.iam.gserviceaccount.com"]
    assert project.projects.roles_of(f"serviceAccount:{account}@example-staging.iam.gserviceaccount.com") == set(
        RELEASE_ROLES)


@pytest.mark.parametrize("name", ["staging", "production"])
def test_the_trigger_runs_as_the_account_bootstrap_creates_and_grants_the_release_roles(project, name):
    """The program's Cloud Build trigger runs `deployctl up`; its identity is the one that can reach the state
    bucket, read the Pulumi passphrase and run `pulumi up` — the account bootstrap creates and grants."""
    from deployctl.targets.gcp.synth import synthesize

    stack = load(name, ROOT)
    [trigger] = synthesize(stack).of_type("gcp:cloudbuild/trigger:Trigger")
    runner = project.bootstrap(stack)
    runner.run()

    assert trigger.inputs["serviceAccount"] == f"projects/{stack.project}/serviceAccounts/{runner.email}"
    assert list(project.iam.accounts) == [runner.email]
    held = project.projects.roles_of(f"serviceAccount:{runner.email}")
    assert "roles/storage.objectAdmin" in held  # the state bucket: Pulumi state, ledger, lock
    assert "roles/secretmanager.admin" in held  # holds secretmanager.versions.access: the passphrase
    assert held == set(RELEASE_ROLES)


@pytest.mark.parametrize("name", ["staging", "production"])
def test_every_resource_the_program_declares_has_the_roles_to_create_it(name):
    from deployctl.targets.gcp.synth import synthesize

    declared = {r.type for r in synthesize(load(name, ROOT)).resources if r.custom}

    assert declared - set(PROGRAM_ROLES) == set(), "a resource type bootstrap grants no role for"
    assert {role for t in declared for role in PROGRAM_ROLES[t]} <= set(RELEASE_ROLES)


def test_second_run_changes_nothing(project):
    project.bootstrap().run()
    before = len(project.mutations())

    outcome = project.bootstrap().run()

    assert [s["state"] for s in outcome.steps] == ["done"] * 6
    assert len(project.mutations()) == before


def test_dry_run_prints_every_step_and_changes_nothing(project):
    lines: list[str] = []

    outcome = project.bootstrap().run(dry_run=True, progress=lines.append)

    assert project.mutations() == []
    assert [s["step"] for s in outcome.steps] == ["apis", "bucket", "account", "roles", "passphrase", "pulumi"]
    assert [s["state"] for s in outcome.steps] == ["planned"] * 6
    assert lines[1] == f"  planned  create gs://{BUCKET} (uniform access, public access prevented, versioned)"
    assert lines[2] == f"  planned  create service account {EMAIL}"
    passphrase = "create secret staging-pulumi-passphrase (encrypts the stack's secrets in Pulumi state)"
    assert lines[4] == f"  planned  {passphrase}"
    assert len(lines) == 6


def test_an_insecure_existing_bucket_is_fixed_in_place(project):
    project.storage.buckets[BUCKET] = FakeBucket(BUCKET)  # exists, but none of the three settings

    project.bootstrap().run()

    assert ("patch", BUCKET) in project.storage.mutations
    assert ("create", BUCKET) not in project.storage.mutations
    assert project.storage.buckets[BUCKET].iam_configuration.public_access_prevention == "enforced"


def test_a_lost_create_response_does_not_create_the_account_twice(project):
    project.grpc.faults.add("CreateServiceAccount", "lost")

    project.bootstrap().run()

    assert list(project.iam.accounts) == [EMAIL]
    assert project.projects.roles_of(f"serviceAccount:{EMAIL}") == set(RELEASE_ROLES)


def test_missing_pulumi_stops_before_any_change(project):
    project.pulumi.is_installed = False

    with pytest.raises(PreconditionError) as caught:
        project.bootstrap().run()

    assert caught.value.exit_code == EXIT_PRECONDITION
    assert caught.value.message == "the pulumi CLI is not installed"
    assert project.mutations() == []


def _deployctl(tmp_path: Path, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_"))}
    base |= {"PATH": str(empty), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "deployctl", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=60)


def test_cli_without_pulumi_exits_5_with_the_install_hint(tmp_path):
    result = _deployctl(tmp_path, "bootstrap", "staging")

    assert result.returncode == 5, result.stderr
    assert result.stderr.splitlines() == [
        "Error: the pulumi CLI is not installed",
        "Hint: Install it: curl -fsSL https://get.pulumi.com | sh, then rerun deployctl bootstrap staging",
    ]


def test_cli_without_credentials_exits_5_with_the_credentials_hint(tmp_path):
    result = _deployctl(tmp_path, "bootstrap", "staging", "--dry-run",
                        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"))

    assert result.returncode == 5, result.stderr
    assert result.stderr.splitlines()[-2:] == ["Error: no Google Cloud credentials found", f"Hint: {CREDENTIALS_HINT}"]


def test_the_program_does_not_create_the_account_bootstrap_creates():
    from deployctl.targets.gcp.synth import synthesize

    stack = load("staging", ROOT)
    accounts = synthesize(stack).of_type("gcp:serviceaccount/account:Account")
    build = [a for a in accounts if a.inputs["accountId"] == naming.account(stack, "build")]
    # IAM answers 409 to a second projects.serviceAccounts.create of one id: the program looks the account up
    assert build == []


STAGING_IMAGES = "projects/example-staging/locations/europe-central2/repositories/staging-deployctl"
PRODUCTION_AGENT = "serviceAccount:service-123456789013@serverless-robot-prod.iam.gserviceaccount.com"


def test_a_stack_promoted_from_another_project_lets_its_run_agent_read_those_images(project):
    """stacks/Pulumi.production.yaml: gcp.promote_from [staging], another project. The grant needs staging's
    repository, which staging's first `up` makes: until then the step waits and says what to run."""
    production = load("production", ROOT)
    assert production.gcp.promote_from == ["staging"]
    first = project.bootstrap(production).run()
    pull = first.steps[-1]
    assert pull["step"] == "pull:staging" and pull["state"] == "later"
    assert pull["message"].endswith("run `deployctl up staging` first, then `deployctl bootstrap production` again")
    assert [s["state"] for s in first.steps[:-1]] == ["applied"] * 6  # the rest of production is ready

    project.repositories.names.add(STAGING_IMAGES)  # `deployctl up staging` made it
    planned = project.bootstrap(production).run(dry_run=True)
    assert [s["state"] for s in planned.steps] == ["done"] * 6 + ["planned"]
    second = project.bootstrap(production).run()
    assert [s["state"] for s in second.steps] == ["done"] * 6 + ["applied"]
    assert project.repositories.members(STAGING_IMAGES, "roles/artifactregistry.reader") == {PRODUCTION_AGENT}
    before = len(project.mutations())
    third = project.bootstrap(production).run()
    assert [s["state"] for s in third.steps] == ["done"] * 7 and len(project.mutations()) == before


def test_a_stack_promoted_from_the_same_project_needs_no_grant(project):
    production = load("production", ROOT).model_copy(update={"project": "example-staging"})
    steps = [s["step"] for s in project.bootstrap(production).run(dry_run=True).steps]
    assert not any(step.startswith("pull:") for step in steps)  # Cloud Run reads its own project's images


def test_a_bootstrapper_who_cannot_change_the_source_repository_is_told_who_can(project):
    project.repositories.names.add(STAGING_IMAGES)
    project.repositories.lacking.add("artifactregistry.repositories.setIamPolicy")
    with pytest.raises(PreconditionError) as denied:
        project.bootstrap(load("production", ROOT)).run()
    assert denied.value.message.startswith(f"let {PRODUCTION_AGENT.removeprefix('serviceAccount:')} read "
                                           f"{STAGING_IMAGES}: ")
    assert "artifactregistry.repositories.setIamPolicy" in denied.value.message
    assert denied.value.hint == (
        "Run it as an admin of example-staging (its repository's IAM policy), or have one run: gcloud artifacts "
        "repositories add-iam-policy-binding staging-deployctl --project example-staging --location europe-central2 "
        f"--member {PRODUCTION_AGENT} --role roles/artifactregistry.reader")
    assert project.repositories.members(STAGING_IMAGES, "roles/artifactregistry.reader") == set()


STAGING_GRANT = ("gcloud artifacts repositories add-iam-policy-binding staging-deployctl --project example-staging "
                 f"--location europe-central2 --member {PRODUCTION_AGENT} --role roles/artifactregistry.reader")


@pytest.mark.parametrize("refused", ["artifactregistry.repositories.get",
                                     "artifactregistry.repositories.getIamPolicy"])
def test_a_first_bootstrap_that_may_not_read_the_source_repository_is_unchecked_at_once(project, monkeypatch,
                                                                                        refused):
    """Production's admin, who may not read staging's repository or its policy: the APIs and roles this run
    changed open a propagation window, but a 403 in another project is not theirs to wait out. The step cannot
    tell whether the grant is made, so it is `unchecked` with staging's admins' command, and the run goes on."""
    monkeypatch.setattr(boot, "API_PROPAGATION_S", 30.0)
    monkeypatch.setattr(boot, "IAM_PROPAGATION_S", 30.0)
    project.repositories.names.add(STAGING_IMAGES)
    project.repositories.lacking.add(refused)
    said: list[str] = []
    started = time.monotonic()
    outcome = project.bootstrap(load("production", ROOT)).run(progress=said.append)

    assert time.monotonic() - started < 15  # not the 30 s window of this run's own changes
    assert [s["state"] for s in outcome.steps] == ["applied"] * 6 + ["unchecked"]
    pull = outcome.steps[-1]["message"]
    assert f"could not check (read {'the IAM policy of ' if refused.endswith('Policy') else ''}{STAGING_IMAGES}: " \
           f"403 Permission '{refused}' denied" in pull
    assert pull.endswith(f"If it is not granted yet, an admin of example-staging runs: {STAGING_GRANT}")
    assert not any("waiting" in line for line in said)
    assert project.repositories.members(STAGING_IMAGES, "roles/artifactregistry.reader") == set()


def test_once_staging_granted_it_a_production_only_admin_reruns_bootstrap_without_failing(project):
    """Staging's admin ran the command; production's admin (no rights in staging) reruns bootstrap: it cannot
    read the grant, says so, and exits as a run that changed nothing."""
    project.repositories.names.add(STAGING_IMAGES)
    production = load("production", ROOT)
    project.bootstrap(production).run()  # as one who may: granted
    project.repositories.lacking.add("artifactregistry.repositories.getIamPolicy")
    before = len(project.mutations())

    for dry_run in (True, False):
        again = project.bootstrap(production).run(dry_run=dry_run)
        assert [s["state"] for s in again.steps] == ["done"] * 6 + ["unchecked"]
    assert len(project.mutations()) == before


def test_a_denied_grant_during_the_first_runs_propagation_window_fails_at_once(project, monkeypatch):
    """The policy is readable and lacks the grant, the caller may not set it: an error with the command, and
    without waiting for this run's own changes to propagate."""
    monkeypatch.setattr(boot, "API_PROPAGATION_S", 30.0)
    monkeypatch.setattr(boot, "IAM_PROPAGATION_S", 30.0)
    project.repositories.names.add(STAGING_IMAGES)
    project.repositories.lacking.add("artifactregistry.repositories.setIamPolicy")
    started = time.monotonic()
    with pytest.raises(PreconditionError) as denied:
        project.bootstrap(load("production", ROOT)).run()
    assert time.monotonic() - started < 15
    assert "(still, after waiting" not in denied.value.message
    assert denied.value.hint.endswith(f"or have one run: {STAGING_GRANT}")


def _production_promoted_from(root: Path, names: str) -> None:
    """*root* with the shipped stack files, production's gcp.promote_from set to *names* (YAML flow list)."""
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for name in ("local", "staging", "production"):
        text = (ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text()
        if name == "production":
            assert "promote_from: [staging]" in text
            text = text.replace("promote_from: [staging]", f"promote_from: {names}")
        (root / "stacks" / f"Pulumi.{name}.yaml").write_text(text)


@pytest.mark.parametrize(("names", "says", "hint"), [
    ("[stagign]", "names 'stagign', which has no stack file", "Known stacks: local, production, staging."),
    ("[local]", "names 'local', which is not a gcp stack", "Promotion copies an image digest between gcp stacks."),
])
def test_a_bad_promote_from_names_the_destinations_file_and_key_before_any_step(project, tmp_path, names, says,
                                                                                hint):
    _production_promoted_from(tmp_path, names)
    production = load("production", tmp_path)
    with pytest.raises(ConfigError) as bad:
        boot.Bootstrap(production, tmp_path, **project.clients(), pulumi=project.pulumi)  # type: ignore[arg-type]
    assert bad.value.message == f"stacks/Pulumi.production.yaml: deployctl:gcp.promote_from {says}"
    assert bad.value.hint == hint
    assert project.grpc.calls == [] and project.mutations() == []  # not a read, not a change


def test_cli_a_typo_in_promote_from_exits_with_the_config_error_before_credentials(tmp_path):
    _production_promoted_from(tmp_path / "repo", "[stagign]")
    result = _deployctl(tmp_path, "bootstrap", "production", "--dry-run", cwd=tmp_path / "repo",
                        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"), PYTHONPATH=str(ROOT))

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr.splitlines() == [
        "Error: stacks/Pulumi.production.yaml: deployctl:gcp.promote_from names 'stagign', which has no stack file",
        "Hint: Known stacks: local, production, staging.",
    ]


def test_a_403_that_ended_a_retry_is_still_a_403():
    from google.api_core import exceptions as gexc

    from deployctl.targets.gcp.retry import forbidden

    assert forbidden(gexc.RetryError("window closed", cause=gexc.PermissionDenied("denied")))
    assert not forbidden(gexc.RetryError("deadline", cause=gexc.ServiceUnavailable("down")))
    assert forbidden(gexc.Forbidden("denied")) and not forbidden(None)


def test_cli_says_which_steps_are_left_open(project, run_cli, monkeypatch):
    """production's pull step waits for staging's repository: the run ends ready, and says what is left."""
    from deployctl.targets.gcp import bootstrap as boot

    monkeypatch.setattr("shutil.which", lambda name: f"/opt/bin/{name}")
    monkeypatch.setattr(boot, "open_bootstrap", lambda stack, root: project.bootstrap(stack))
    result = run_cli(["bootstrap", "production"], cwd=ROOT)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("  later    let example-production's Cloud Run Service Agent read staging's images")
    assert lines[-1] == ("Project ready. Next: deployctl plan production, then deployctl up production. Left open: "
                         "pull:staging (see above; `deployctl bootstrap production` again finishes it when it can)")
