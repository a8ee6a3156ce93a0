"""PulumiEngine without the pulumi CLI: where the stack's passphrase comes from, how the CLI's failures
become one-line errors with the command that fixes them, and the real Automation API driving a stand-in
``pulumi`` executable (tests/fakes/pulumi_cli.py) for the release hand-over, a concurrent update and the
passphrase hand-over."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from deployctl.config import Release
from deployctl.errors import EXIT_PRECONDITION, DeployctlError, LockedError
from deployctl.targets.gcp.engine import PulumiEngine, command_error

REPO = Path(__file__).resolve().parents[2]
FAKE_CLI = REPO / "tests" / "fakes" / "pulumi_cli.py"


def test_the_passphrase_comes_from_secret_manager_when_the_environment_has_none(monkeypatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    asked: list[str] = []
    engine = PulumiEngine("staging", Path("."), passphrase=lambda: asked.append("x") or "s3cret-phrase")
    assert engine.workspace_env() == {"PULUMI_CONFIG_PASSPHRASE": "s3cret-phrase"}
    assert asked == ["x"]


@pytest.mark.parametrize("variable", ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"])
def test_a_passphrase_in_the_environment_wins_and_secret_manager_is_not_read(monkeypatch, variable) -> None:
    monkeypatch.setenv(variable, "from-the-caller")

    def never() -> str:
        raise AssertionError("Secret Manager was read")

    assert PulumiEngine("staging", Path("."), passphrase=never).workspace_env() == {}


def test_no_passphrase_secret_leaves_pulumi_to_its_own_secrets_provider(monkeypatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    assert PulumiEngine("staging", Path("."), passphrase=lambda: None).workspace_env() == {}


@pytest.mark.parametrize(
    ("stderr", "message", "exit_code"),
    [
        ("error: constructing secrets manager of type \"passphrase\": unable to find either `PULUMI_CONFIG_PASSPHRASE`"
         " or `PULUMI_CONFIG_PASSPHRASE_FILE`", "Pulumi cannot decrypt the stack's secrets", EXIT_PRECONDITION),
        ("error: incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE to the correct passphrase",
         "Pulumi cannot decrypt the stack's secrets", EXIT_PRECONDITION),
        ("error: no resource plugin 'gcp-v8.0.0' found in the workspace", "a Pulumi plugin is missing",
         EXIT_PRECONDITION),
        ("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions",
         "pulumi is not logged in", EXIT_PRECONDITION),
        ("error: update failed\n  gcp:sql:DatabaseInstance (staging-db): error: googleapi: Error 409: exists",
         "pulumi: error: update failed", 1),
        ("gcp:cloudrunv2:ServiceIamMember (staging-api-public-invoker): error: googleapi: Error 400: One or more "
         "users named in the policy do not belong to a permitted customer,  perhaps due to an organization policy.",
         "an organization policy (domain restricted sharing", EXIT_PRECONDITION),
        ("gcp:cloudrunv2:Job (production-api-migrate): error: Error waiting to update Job: Error code 9, message: "
         "Google Cloud Run Service Agent service-210987654321@serverless-robot-prod.iam.gserviceaccount.com must "
         "have permission to read the image, europe-central2-docker.pkg.dev/example-staging/staging-deployctl/"
         "api@sha256:" + "a" * 64 + ". Ensure that the provided container image URL is correct and that the above "
         "account has permission to access the image.",
         "pulumi: Cloud Run's service agent service-210987654321@serverless-robot-prod.iam.gserviceaccount.com "
         "cannot read the image europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:",
         EXIT_PRECONDITION),
        # the deployer may not read the image (Cloud Run since January 2025), as users report Cloud Run's words
        ("gcp:cloudrunv2:Service (production-api): error: googleapi: Error 403: User must have permission to read "
         "the image, europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:" + "a" * 64 + ". "
         "Ensure that the provided container image URL is correct and that the above account has permission to "
         "access the image. Permission must be granted to the User from this project. Cause: 403 Forbidden "
         "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"Permission \\\"artifactregistry.repositories."
         "downloadArtifacts\\\" denied on resource \\\"projects/example-staging/locations/europe-central2/"
         "repositories/staging-deployctl\\\" (or it may not exist)\"}]}",
         "pulumi: the account deployctl runs as may not read the images of projects/example-staging/locations/"
         "europe-central2/repositories/staging-deployctl (artifactregistry.repositories.downloadArtifacts)",
         EXIT_PRECONDITION),
        # and as the twin words it (tests/fakes/iam.py, 5)
        ("gcp:cloudrunv2:Job (production-api-migrate): error: Permission 'artifactregistry.repositories."
         "downloadArtifacts' denied on resource 'projects/example-staging/locations/europe-central2/repositories/"
         "staging-deployctl' (or it may not exist).",
         "pulumi: the account deployctl runs as may not read the images of projects/example-staging/locations/"
         "europe-central2/repositories/staging-deployctl (", EXIT_PRECONDITION),
    ],
)
def test_cli_failures_become_one_line_errors(stderr: str, message: str, exit_code: int) -> None:
    error = command_error(f"code: 255\n stdout: \n stderr: {stderr}\n")
    assert isinstance(error, DeployctlError)
    assert error.message.startswith(message) and "\n" not in error.message
    assert error.exit_code == exit_code and error.hint


def test_a_deployer_that_may_not_read_the_image_is_given_the_grant_for_the_account_pulumi_ran_as() -> None:
    stderr = ("error: User must have permission to read the image, europe-central2-docker.pkg.dev/example-staging/"
              "staging-deployctl/api@sha256:" + "a" * 64 + ". Ensure that the provided container image URL is correct")
    grant = ("gcloud artifacts repositories add-iam-policy-binding staging-deployctl --project example-staging "
             "--location europe-central2 --member {} --role roles/artifactregistry.reader")
    named = command_error(stderr, "serviceAccount:production-build@example-production.iam.gserviceaccount.com")
    assert named.message.startswith("pulumi: production-build@example-production.iam.gserviceaccount.com may not "
                                    "read the images of projects/example-staging/locations/europe-central2/")
    assert named.hint == ("Grant it read access (docs/runbook.md, Promote): " + grant.format(
        "serviceAccount:production-build@example-production.iam.gserviceaccount.com"))
    assert command_error(stderr).hint == ("Grant it read access (docs/runbook.md, Promote): "
                                          + grant.format("PRINCIPAL") + ", PRINCIPAL being user:EMAIL or "
                                          "serviceAccount:EMAIL of the account deployctl runs as")


# -- the real Automation API against a stand-in `pulumi` executable ------------------------------------
@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_CLI} \"$@\"\n")
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("FAKE_PULUMI_EXPECT_PASSPHRASE", "s3cret-phrase")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
    return log


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


RELEASE = Release(phase="release", images={"api": "img@sha256:" + "a" * 64}, secret_versions={"SECRET_KEY": "3"},
                  revisions={"api": "staging-api-abc"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project of its own: the stand-in CLI writes stack files the way the real one does."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "stacks", root / "stacks")
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    return root


def _engine(root: Path = REPO) -> PulumiEngine:
    return PulumiEngine("staging", root, progress=lambda line: None, passphrase=lambda: "s3cret-phrase")


def _stack_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "stacks").iterdir())}


def test_up_hands_the_release_to_the_program_and_writes_no_stack_file(fake_cli: Path, project: Path,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("FAKE_PULUMI_UP", "ok")
    before = _stack_files(project)
    engine = _engine(project)
    engine.up(RELEASE)
    calls = _calls(fake_cli)
    assert not [c for c in calls if c["args"][:1] == ["config"]]  # the stack's config is the user's
    up = next(c for c in calls if c["args"][:1] == ["up"])
    assert Release.model_validate(up["release"]) == RELEASE  # what the program reads (infra/main.py)
    assert _stack_files(project) == before
    # the release is handed to that up only: the next command the workspace runs has none
    engine.outputs()
    assert _calls(fake_cli)[-1]["args"][:2] == ["stack", "output"] and _calls(fake_cli)[-1]["release"] is None


def test_the_stand_in_cli_writes_config_with_pulumis_typing(fake_cli: Path, project: Path) -> None:
    """Why deployctl must not keep runtime state in the stack file: `config set-all --path` turns a version
    "1" into the number 1 (pulumi/pulumi#17586), and the file is the user's, checked in."""
    import pulumi.automation as auto

    stack = auto.select_stack("staging", work_dir=str(project))
    stack.set_all_config({"deployctl:release.secret_versions.SECRET_KEY": auto.ConfigValue("1")}, path=True)
    written = yaml.safe_load((project / "stacks" / "Pulumi.staging.yaml").read_text())
    assert written["config"]["deployctl:release"] == {"secret_versions": {"SECRET_KEY": 1}}


def test_a_concurrent_update_is_a_locked_error_naming_the_fix(fake_cli: Path) -> None:
    with pytest.raises(LockedError, match="stack staging is being updated by another `pulumi up`") as caught:
        _engine().up(RELEASE)
    assert caught.value.hint == "Wait for it; if it is stuck: pulumi cancel --stack staging"
    calls = _calls(fake_cli)
    # every call that can decrypt the stack got the passphrase from Secret Manager
    assert ["up", "--yes"] in [c["args"][:2] for c in calls]
    stack_calls = [c for c in calls if c["args"][:1] != ["version"]]
    assert stack_calls and all(c["has_passphrase"] and c["passphrase_matches"] for c in stack_calls)


@pytest.mark.parametrize(("mode", "message"), [
    ("passphrase", "Pulumi cannot decrypt the stack's secrets"),
    ("plugin", "a Pulumi plugin is missing"),
])
def test_up_failures_become_precondition_errors(fake_cli: Path, monkeypatch, mode: str, message: str) -> None:
    monkeypatch.setenv("FAKE_PULUMI_UP", mode)
    with pytest.raises(DeployctlError, match=message) as caught:
        _engine().up(RELEASE)
    assert caught.value.exit_code == EXIT_PRECONDITION


def test_check_names_the_login_command_when_pulumi_is_logged_out(fake_cli: Path, monkeypatch) -> None:
    _engine().check()  # logged in: nothing to say
    monkeypatch.setenv("FAKE_PULUMI_LOGGED_OUT", "1")
    with pytest.raises(DeployctlError, match="pulumi is not logged in to a state backend") as caught:
        _engine().check()
    assert caught.value.exit_code == EXIT_PRECONDITION and "pulumi login" in caught.value.hint


def test_the_state_bucket_is_the_backend_without_a_pulumi_login(fake_cli: Path, monkeypatch) -> None:
    """Cloud Build's release step never runs `pulumi login`: the engine names the stack's gs:// backend."""
    monkeypatch.setenv("FAKE_PULUMI_LOGGED_OUT", "1")
    engine = PulumiEngine("staging", REPO, backend_url="gs://example-staging-deployctl")
    engine.check()  # no login needed
    assert engine.workspace_env()["PULUMI_BACKEND_URL"] == "gs://example-staging-deployctl"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "gs://chosen-by-the-caller")
    assert "PULUMI_BACKEND_URL" not in PulumiEngine("staging", REPO, backend_url="gs://x").workspace_env()
