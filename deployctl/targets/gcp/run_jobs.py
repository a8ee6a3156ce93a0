"""Cloud Run Jobs facade (run_v2 JobsClient + ExecutionsClient): run a job, wait with a deadline.

Rules:
- The job's image is the artifact's digest; when the job definition holds another image it is updated
  first (``pulumi up`` normally already did it).
- Each run carries ``DEPLOYCTL_RELEASE=<release id>`` as an env override. A rerun of the same release
  attaches to that release's execution while it still runs, instead of starting a second migration.
- Waiting stops at the deadline (the job's timeout times its attempts, plus slack): the execution is left alone
  (cancelling a migration half-way is worse) and the run is reported as RUNNING with its log link; the
  caller decides what that means (a blocking job that is still running has not succeeded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deployctl.pipeline.model import JobRun, JobState
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read

RELEASE_ENV = "DEPLOYCTL_RELEASE"


class CloudRunJobs:
    def __init__(
        self, jobs: Any, executions: Any, project: str, region: str, policy: RetryPolicy, poll_s: float = 5.0
    ) -> None:
        self.jobs = jobs
        self.executions = executions
        self.project, self.region = project, region
        self.parent = f"projects/{project}/locations/{region}"
        self.policy = policy
        self.poll_s = poll_s

    def job_name(self, job_id: str) -> str:
        return f"{self.parent}/jobs/{job_id}"

    def run(
        self, job_id: str, image: str, release_id: str, deadline_s: float, sleep: Callable[[float], None] = time.sleep
    ) -> JobRun:
        name = self.job_name(job_id)
        self._ensure_image(name, image)
        execution = self._running_for(name, release_id) or self._start(name, release_id)
        return self._wait(job_id, execution, deadline_s, sleep)

    def _ensure_image(self, name: str, image: str) -> None:
        job = read(
            lambda: self.jobs.get_job(name=name, retry=None, timeout=self.policy.call_timeout_s),
            f"read Cloud Run job {name.rsplit('/', 1)[-1]}",
            self.policy,
        )
        containers = job.template.template.containers
        if containers and containers[0].image == image:
            return
        containers[0].image = image

        def send() -> bool:
            self.jobs.update_job(job=job, retry=None, timeout=self.policy.call_timeout_s).result()
            return True

        def applied() -> bool | None:
            now = self.jobs.get_job(name=name, retry=None, timeout=self.policy.call_timeout_s)
            return True if now.template.template.containers[0].image == image else None

        mutate(send, applied, f"set the image of job {name.rsplit('/', 1)[-1]}", self.policy)

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

    def _wait(self, job_id: str, execution: Any, deadline_s: float, sleep: Callable[[float], None]) -> JobRun:
        end = time.monotonic() + deadline_s
        name = str(execution.name)
        while not _finished(execution):
            if time.monotonic() >= end:
                return self._result(job_id, execution, f"still running after {deadline_s:g}s; left running")
            sleep(self.poll_s)
            execution = read(
                lambda: self.executions.get_execution(name=name, retry=None, timeout=self.policy.call_timeout_s),
                f"read execution {name.rsplit('/', 1)[-1]}",
                self.policy,
            )
        return self._result(job_id, execution, "")

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
        attempts = max(1, int(execution.succeeded_count) + int(execution.failed_count) + int(execution.retried_count))
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
