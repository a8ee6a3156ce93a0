"""Templated env under the real program: the database facts become the Cloud SQL values in the service and
in its jobs, and nothing else in the env changes."""

from __future__ import annotations

from typing import Any

from deployctl.targets.gcp.synth import synthesize
from tests.infra.conftest import stack_with

SERVICE = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"
ENV = {"POSTGRES_SERVER": "{db_host}", "POSTGRES_PORT": "{db_port}", "POSTGRES_USER": "{db_user}",
       "POSTGRES_DB": "{db_name}", "INSTANCE": "{db_connection}", "LITERAL": "{{db_host}}", "LOG_LEVEL": "info"}
CONNECTION = "example-staging:europe-central2:staging-db"


def _with_env(config: dict[str, Any]) -> None:
    config["deployctl:services"]["api"]["env"] = dict(ENV)


def _plain(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["envs"] if "value" in e}


def test_the_program_fills_in_the_cloud_sql_facts_for_the_service_and_its_jobs() -> None:
    syn = synthesize(stack_with("staging", _with_env))
    expected = {"POSTGRES_SERVER": f"/cloudsql/{CONNECTION}", "POSTGRES_PORT": "5432", "POSTGRES_USER": "app",
                "POSTGRES_DB": "app", "INSTANCE": CONNECTION, "LITERAL": "{db_host}", "LOG_LEVEL": "info",
                "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0"}  # staging's pool, handed over as env
    [svc] = syn.of_type(SERVICE)
    container = svc.inputs["template"]["containers"][0]
    assert _plain(container) == expected
    assert {"name": "cloudsql", "mountPath": "/cloudsql"} in container["volumeMounts"]  # where db_host points
    jobs = syn.of_type(JOB)
    assert len(jobs) == 2
    for job in jobs:
        assert _plain(job.inputs["template"]["template"]["containers"][0]) == expected
