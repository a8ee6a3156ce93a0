"""Cloud Run Jobs facade (run_v2 JobsClient + ExecutionsClient): run a job, wait with a deadline.

Rules:
- A job runs its release: before each run the job's image, pinned secret versions and the env values that
  follow them (``{db_user}``) are set to the release's when the job holds others (a code-only release or
  a rotation makes no ``pulumi up``; after one that did, nothing differs and nothing is sent).
- Each run carries ``DEPLOYCTL_RELEASE=<release id>`` as an env override. A rerun of the same release
  attaches to that release's execution while it still runs, instead of starting a second migration.
- Waiting stops at the deadline (the job's timeout times its attempts, plus slack): the execution is left alone
  (cancelling a migration half-way is worse) and the run is reported as RUNNING with its log link; the
  caller decides what that means (a blocking job that is still running has not succeeded).
- A failed execution is explained as the local target explains a failed process: its message is the line of its
  output that says why (``deployctl.joblog.explain``: the last traceback's exception line, else the last line
  naming an error; never merely the last line, which Cloud Run's own message says better), read from Cloud
  Logging (``run_logs.py``) and with the caller's secret values taken out of the whole output before that line
  is picked and cut (``deployctl.joblog.quote``). When the output cannot be read (no
  ``logging.logEntries.list``, an error, no line that says why) or the values cannot be, the message stays Cloud Run's
  own (the execution's Completed condition); the log link is there either way. Reading it never fails a run,
  and takes at most the log read's deadline (``run_logs.BUDGET_S``, 10 s) and ``SECRETS_S`` (5 s) more: the
  values are read within what remains of both, or not quoted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from deployctl.errors import DeployctlError
from deployctl.joblog import explain, quote
from deployctl.pipeline.model import JobRun, JobState
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read
from deployctl.targets.gcp.run_logs import ExecutionLogs
from deployctl.targets.gcp.run_services import set_release

RELEASE_ENV = "DEPLOYCTL_RELEASE"
SECRETS_S = 5.0  # reading the secret values to take out of a failed run's output, after its log read


@dataclass(frozen=True)
class JobSpec:
    """What deployctl owns in a job: the image, the pinned secret env and the env values that follow it."""

    image: str
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # ENV -> (secret id, pinned version)
    env: dict[str, str] = field(default_factory=dict)  # ENV -> value, replacing what the job has


class CloudRunJobs:
    def __init__(
        self, jobs: Any, executions: Any, project: str, region: str, policy: RetryPolicy, poll_s: float = 5.0,
        logs: ExecutionLogs | None = None,
    ) -> None:
        self.jobs = jobs
        self.executions = executions
        self.project, self.region = project, region
        self.parent = f"projects/{project}/locations/{region}"
        self.policy = policy
        self.poll_s = poll_s
        self.logs = logs  # None: a failed run says only what Cloud Run says

    def job_name(self, job_id: str) -> str:
        return f"{self.parent}/jobs/{job_id}"

    def run(
        self, job_id: str, spec: JobSpec, release_id: str, deadline_s: float,
        sleep: Callable[[float], None] = time.sleep, secret_values: Callable[[float], list[str]] | None = None,
    ) -> JobRun:
        """Run the job (or attach to the release's running execution) and wait. *secret_values* reads the values
        (longest first) to take out of a failed run's output, within the seconds it is given; without it a failed
        run quotes none."""
        name = self.job_name(job_id)
        self._ensure_spec(name, spec)
        execution = self._running_for(name, release_id) or self._start(name, release_id)
        run, execution = self._wait(job_id, execution, deadline_s, sleep)
        if run.state is JobState.FAILED and secret_values is not None:
            said = self._said(job_id, execution, sleep, secret_values)
            if said:
                run = replace(run, message=said)
        return run

    def _ensure_spec(self, name: str, spec: JobSpec) -> None:
        short = name.rsplit("/", 1)[-1]
        job = read(
            lambda: self.jobs.get_job(name=name, retry=None, timeout=self.policy.call_timeout_s),
            f"read Cloud Run job {short}",
            self.policy,
        )
        if _holds(job, spec):
            return
        set_release(job.template.template.containers[0], spec.image, spec.secret_env, spec.env)

        def send() -> bool:
            self.jobs.update_job(job=job, retry=None, timeout=self.policy.call_timeout_s).result()
            return True

        def applied() -> bool | None:
            return True if _holds(self.jobs.get_job(name=name, retry=None, timeout=self.policy.call_timeout_s),
                                  spec) else None

        mutate(send, applied, f"set job {short} to the release's image and secret versions", self.policy)

    def _list(self, name: str) -> list[Any]:
        return read(
            lambda: list(self.executions.list_executions(parent=name, retry=None, timeout=self.policy.call_timeout_s)),
            f"list executions of {name.rsplit('/', 1)[-1]}",
            self.policy,
        )

    def _running_for(self, name: str, release_id: str) -> Any | None:
        for execution in self._list(name):
            if _release_of(execution) == release_id and not _finished(execution):
                return execution
        return None

    def _start(self, name: str, release_id: str) -> Any:
        from google.cloud import run_v2

        override = run_v2.RunJobRequest.Overrides.ContainerOverride(
            env=[run_v2.EnvVar(name=RELEASE_ENV, value=release_id)]
        )
        request = run_v2.RunJobRequest(
            name=name, overrides=run_v2.RunJobRequest.Overrides(container_overrides=[override])
        )
        before = {e.name for e in self._list(name)}

        def send() -> Any:
            operation = self.jobs.run_job(request=request, retry=None, timeout=self.policy.call_timeout_s)
            return operation.metadata if operation.metadata and operation.metadata.name else operation.result()

        def applied() -> Any | None:
            return next((e for e in self._list(name) if e.name not in before and _release_of(e) == release_id), None)

        return mutate(send, applied, f"run job {name.rsplit('/', 1)[-1]}", self.policy)

    def _wait(self, job_id: str, execution: Any, deadline_s: float,
              sleep: Callable[[float], None]) -> tuple[JobRun, Any]:
        end = time.monotonic() + deadline_s
        name = str(execution.name)
        while not _finished(execution):
            if time.monotonic() >= end:
                why = f"still running after {deadline_s:g}s; left running"
                return self._result(job_id, execution, why), execution
            sleep(self.poll_s)
            execution = read(
                lambda: self.executions.get_execution(name=name, retry=None, timeout=self.policy.call_timeout_s),
                f"read execution {name.rsplit('/', 1)[-1]}",
                self.policy,
            )
        return self._result(job_id, execution, ""), execution

    def _said(self, job_id: str, execution: Any, sleep: Callable[[float], None],
              secret_values: Callable[[float], list[str]]) -> str:
        """The line of the failed execution's output that says why, without secret values; "" when unknown. All
        of it within the log read's budget and SECRETS_S more (see the rules)."""
        if self.logs is None:
            return ""
        end = self.logs.clock() + self.logs.budget_s + SECRETS_S
        created = execution.create_time or None
        # short waits for entries still on their way: the poll interval, at most a second (run_logs.py)
        output = self.logs.output(job_id, str(execution.name).rsplit("/", 1)[-1], created,
                                  wait_s=min(self.poll_s, 1.0), sleep=sleep)
        # only a line that says why replaces Cloud Run's message ("Task failed"), not one that merely came last
        if not output or not explain(output, strict=True):  # nothing to quote: the values are not read
            return ""
        try:
            values = secret_values(end - self.logs.clock())
        except DeployctlError:  # a value that cannot be read cannot be taken out: quote nothing (see the rules)
            return ""
        return quote(output, values, strict=True)  # the whole output redacted, then the line picked and cut

    def _result(self, job_id: str, execution: Any, why: str) -> JobRun:
        short = str(execution.name).rsplit("/", 1)[-1]
        if not _finished(execution):
            state = JobState.RUNNING
        else:
            state = JobState.SUCCEEDED if _succeeded(execution) else JobState.FAILED
        completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
        failure = str(completed.message if completed else "") or "the job failed"
        message = why or (failure if state is JobState.FAILED else "")
        log = str(execution.log_uri) or (
            f"https://console.cloud.google.com/run/jobs/executions/details/{self.region}/{short}/logs"
            f"?project={self.project}"
        )
        # the Execution counts tasks, not attempts: a task is marked failed only once its retries are spent
        # (TaskTemplate.max_retries, "Number of retries allowed per Task, before marking this Task failed"),
        # so a failed one ran max_retries + 1 times; a succeeded one ran once, or more if it retried
        if state is JobState.FAILED and execution.failed_count:
            attempts = int(execution.template.max_retries) + 1
        else:
            attempts = 2 if execution.retried_count else 1
        return JobRun(job=job_id, execution=short, state=state, attempts=attempts, message=message, log=log)


def _release_of(execution: Any) -> str | None:
    for container in execution.template.containers:
        for env in container.env:
            if env.name == RELEASE_ENV:
                return str(env.value)
    return None


def _finished(execution: Any) -> bool:
    if execution.completion_time:
        return True
    completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
    return completed is not None and completed.state in (
        completed.State.CONDITION_SUCCEEDED,
        completed.State.CONDITION_FAILED,
    )


def _succeeded(execution: Any) -> bool:
    completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
    return bool(completed and completed.state == completed.State.CONDITION_SUCCEEDED)


def _holds(job: Any, spec: JobSpec) -> bool:
    container = job.template.template.containers[0]
    env = {var.name: var for var in container.env}
    secrets_match = all(
        name in env and (env[name].value_source.secret_key_ref.secret, env[name].value_source.secret_key_ref.version)
        == ref for name, ref in spec.secret_env.items()
    )
    values_match = all(name in env and env[name].value == value for name, value in spec.env.items())
    return bool(container.image == spec.image and secrets_match and values_match)
