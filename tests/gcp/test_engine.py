"""PulumiEngine without the pulumi CLI: where the stack's passphrase comes from, and how the CLI's failures
become one-line errors with the command that fixes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl.errors import EXIT_PRECONDITION, DeployctlError
from deployctl.targets.gcp.engine import PulumiEngine, _command_error


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
    ],
)
def test_cli_failures_become_one_line_errors(stderr: str, message: str, exit_code: int) -> None:
    error = _command_error(f"code: 255\n stdout: \n stderr: {stderr}\n")
    assert isinstance(error, DeployctlError)
    assert error.message.startswith(message) and "\n" not in error.message
    assert error.exit_code == exit_code and error.hint
