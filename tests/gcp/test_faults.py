"""Transient failures, ordering of deploys, and missing tools, end to end on the fake cloud."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deployctl.errors import EXIT_PRECONDITION, DeployctlError, PreconditionError
from deployctl.pipeline import orchestrator
from deployctl.pipeline.model import Artifact, JobRun, JobState
from deployctl.targets.gcp.engine import PulumiEngine
from deployctl.targets.gcp.retry import RetryPolicy
from tests.gcp.conftest import IMAGE, IMAGE2, SERVICE, Cloud, git


def test_503_burst_shorter_than_the_deadline_succeeds(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    before = len(cloud.grpc.mutations())
    cloud.grpc.faults.burst("UpdateService", "unavailable", 3)
    cloud.grpc.faults.add("UpdateService", "exhausted", "lost")
    second = orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter)
    assert second.outcome == "succeeded"
    assert cloud.run.serving(SERVICE) == {second.revisions["api"]: 100}
    assert second.revisions["api"] != first.revisions["api"]
    # the lost update was re-read, not sent again: one tag update and one traffic update got through
    assert [c[0] for c in cloud.grpc.mutations()[before:]] == ["UpdateService", "UpdateService"]


def test_503_burst_longer_than_the_deadline_fails_with_traffic_unchanged(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    short = RetryPolicy(deadline_s=0.3, initial_s=0.02, maximum_s=0.05, call_timeout_s=2)
    cloud.grpc.faults.burst("UpdateService", "unavailable", 1000)
    with pytest.raises(DeployctlError) as failed:
        orchestrator.release(cloud.target(policy=short), cloud.options(IMAGE2), reporter)
    cloud.grpc.faults.clear()
    assert "kept failing" in failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert cloud.target().lock.holder() is None  # released on the way out
    assert cloud.target().ledger.history()[0].outcome == "failed"


def test_older_commit_is_refused_after_a_newer_one(cloud: Cloud, reporter) -> None:
    git(cloud.root, "init", "-q")
    git(cloud.root, "add", "-A")
    git(cloud.root, "commit", "-q", "-m", "one")
    old = git(cloud.root, "rev-parse", "HEAD")
    (cloud.root / "app" / "main.py").write_text("print('two')\n")
    git(cloud.root, "commit", "-q", "-am", "two")
    new = git(cloud.root, "rev-parse", "HEAD")
    orchestrator.release(cloud.target(), cloud.options(IMAGE2, git_sha=new), reporter)
    with pytest.raises(DeployctlError) as refused:
        orchestrator.release(cloud.target(), cloud.options(IMAGE, git_sha=old, force=True), reporter)
    assert "older than the serving release r0001" in refused.value.message
    assert "deployctl rollback staging --to" in (refused.value.hint or "")
    assert set(cloud.run.serving(SERVICE).values()) == {100}
    assert (
        cloud.run.revisions[f"{SERVICE}/revisions/{next(iter(cloud.run.serving(SERVICE)))}"].containers[0].image
        == IMAGE2
    )


def test_missing_pulumi_cli_changes_nothing(cloud: Cloud, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi"))
    with pytest.raises(PreconditionError) as missing:
        cloud.target(engine=PulumiEngine("staging", cloud.root))
    assert missing.value.exit_code == EXIT_PRECONDITION
    assert "curl -fsSL https://get.pulumi.com | sh" in (missing.value.hint or "")
    assert cloud.mutations() == []


def _quick() -> RetryPolicy:
    return RetryPolicy(deadline_s=2, initial_s=0.01, maximum_s=0.02, call_timeout_s=2)


def test_a_403_right_after_this_command_changed_iam_is_waited_out(cloud: Cloud, reporter) -> None:
    """IAM: "typically 2 minutes, potentially 7 minutes or longer" — the grant `pulumi up` just made."""
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    stack_file = cloud.root / "stacks" / "Pulumi.staging.yaml"  # a settings change: the next up applies it
    stack_file.write_text(stack_file.read_text().replace("max_instances: 4", "max_instances: 3"))
    said: list[str] = []
    target = cloud.target(policy=_quick())
    target.policy.propagation.say = said.append
    cloud.grpc.faults.add("UpdateService", "iam_denied", "iam_denied")  # the deploy, right after prepare's up
    second = orchestrator.release(target, cloud.options(IMAGE2), reporter)
    cloud.grpc.faults.clear()
    assert second.outcome == "succeeded" and cloud.run.serving(SERVICE) == {second.revisions["api"]: 100}
    assert said == ["waiting for the IAM bindings `pulumi up` applied to propagate (Google: typically 2 minutes, "
                    "up to 7); retrying 403 Permission denied on resource (or it may not exist)."]


def test_a_403_with_nothing_propagating_fails_at_once_with_the_credentials_hint(cloud: Cloud) -> None:
    target = cloud.target(policy=_quick())
    cloud.grpc.faults.add("GetService", "iam_denied")
    with pytest.raises(PreconditionError) as denied:
        target.run.get("api")
    assert denied.value.message == ("read Cloud Run service api: 403 Permission denied on resource "
                                    "(or it may not exist).")
    assert denied.value.hint == "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)."
    assert cloud.grpc.faults.next("GetService") is None  # asked once, not retried


def test_a_disabled_api_names_the_api_and_the_command_that_enables_it(cloud: Cloud) -> None:
    target = cloud.target(policy=_quick())
    cloud.grpc.faults.add("GetService", "service_disabled")
    with pytest.raises(PreconditionError) as disabled:
        target.run.get("api")
    assert disabled.value.message.endswith("run.googleapis.com is not enabled in this project")
    assert (disabled.value.hint or "").startswith("Enable it: gcloud services enable run.googleapis.com")


def test_a_403_that_outlasts_the_window_says_what_it_waited_for(cloud: Cloud) -> None:
    target = cloud.target(policy=_quick())
    target.policy.propagation.begin("the roles just granted to x@p.iam.gserviceaccount.com", 2.0)
    cloud.grpc.faults.burst("GetService", "iam_denied", 1000)
    with pytest.raises(PreconditionError) as denied:
        target.run.get("api")
    cloud.grpc.faults.clear()
    assert denied.value.message.endswith(
        "(still, after waiting for the roles just granted to x@p.iam.gserviceaccount.com to propagate)")


class _Jobs:
    """The jobs facade's answers, scripted: what Cloud Run reports for each execution asked for."""

    def __init__(self, *results: JobRun) -> None:
        self.results = list(results)
        self.runs = 0

    def run(self, job_id: str, spec: object, release_id: str, deadline_s: float,
            secret_values: Callable[[float], list[str]] | None = None) -> JobRun:
        self.runs += 1
        return self.results.pop(0)


DENIED = JobRun("staging-api-migrate", "e-1", JobState.FAILED, 1,
                "Task e-1-task0 failed to start: Permission denied on secret: projects/example-staging/secrets/"
                "staging-DATABASE_URL/versions/1 for Job service account staging-jobs@example-staging.iam")
RAN = JobRun("staging-api-migrate", "e-2", JobState.SUCCEEDED, 1)


@pytest.mark.parametrize(("propagating", "results", "runs", "ends"), [
    (True, (DENIED, DENIED, RAN), 3, JobState.SUCCEEDED),  # the grant `pulumi up` just made reached it
    (False, (DENIED, RAN), 1, JobState.FAILED),  # nothing propagating: a denial is the answer
    (True, (JobRun("staging-api-migrate", "e-1", JobState.FAILED, 3, "alembic: exit 1"), RAN), 1, JobState.FAILED),
])
def test_a_job_denied_its_secrets_while_grants_propagate_is_run_again(cloud: Cloud, propagating: bool,
                                                                     results: tuple[JobRun, ...], runs: int,
                                                                     ends: JobState) -> None:
    """Cloud Run reads a task's secrets as the job's identity at start; right after `pulumi up` granted them
    the grant may not have propagated, and nothing of the migration ran: run it again inside the window."""
    target = cloud.target(policy=_quick())
    if propagating:
        target.policy.propagation.begin("the IAM bindings `pulumi up` applied", 5.0)
    jobs = _Jobs(*results)
    target.jobs = jobs  # type: ignore[assignment]
    job = target.stack.jobs.migrate
    assert job is not None
    pins = {"SECRET_KEY": "1", "DATABASE_URL": "1", "DB_PASSWORD": "1"}
    result = target.run_job("migrate", job, Artifact("api", "h", IMAGE, "sha256:" + "a" * 64), pins, "r0002")
    assert (jobs.runs, result.state) == (runs, ends)
