"""Names derive from the stack (two stacks share a project safely); an invalid stack fails clearly."""

from __future__ import annotations

from typing import Any

import pytest

from deployctl import naming
from deployctl.config import Stack
from deployctl.errors import ConfigError
from deployctl.facts import DB_FACTS
from deployctl.targets.gcp.synth import Synthesis, synthesize
from tests.infra.conftest import RELEASE, stack_with

# inputs that are the name of a cloud resource in the project (not a reference to another one)
NAME_KEYS = {
    "gcp:cloudrunv2/service:Service": "name", "gcp:cloudrunv2/job:Job": "name",
    "gcp:sql/databaseInstance:DatabaseInstance": "name", "gcp:serviceaccount/account:Account": "accountId",
    "gcp:secretmanager/secret:Secret": "secretId", "gcp:artifactregistry/repository:Repository": "repositoryId",
    "gcp:cloudbuild/trigger:Trigger": "name",
}


def _cloud_names(syn: Synthesis) -> set[str]:
    return {str(r.inputs[NAME_KEYS[r.type]]) for r in syn.resources if r.type in NAME_KEYS}


def test_every_cloud_name_starts_with_the_stack(staging: Any, production: Any) -> None:
    for stack, syn in (staging, production):
        names = _cloud_names(syn)
        assert len(names) == sum(1 for r in syn.resources if r.type in NAME_KEYS)  # and none repeats
        assert all(n.startswith(f"{stack.name}-") for n in names), names
        assert syn.outputs["db_connection"] == f"{stack.project}:{stack.region}:{stack.name}-db"
        assert syn.outputs["service_names"] == {"api": f"{stack.name}-api"}
        assert syn.outputs["job_names"] == {"migrate": f"{stack.name}-api-migrate", "init": f"{stack.name}-api-init"}
        assert syn.outputs["registry"] == f"{stack.region}-docker.pkg.dev/{stack.project}/{stack.name}-deployctl"


def test_staging_and_production_in_one_project_do_not_collide() -> None:
    def same_project(config: dict[str, Any]) -> None:
        config["gcp:project"] = "shared"

    staging = synthesize(stack_with("staging", same_project))
    production = synthesize(stack_with("production", same_project))
    assert not _cloud_names(staging) & _cloud_names(production)
    assert not {r.name for r in staging.resources} & {r.name for r in production.resources}


def test_long_names_are_shortened_uniquely() -> None:
    stack = stack_with("staging", stack="staging-europe-w")
    one, other = naming.runtime_account(stack, "payments-api"), naming.runtime_account(stack, "payments-app")
    assert len(one) <= 30 and len(other) <= 30 and one != other
    assert one.startswith("staging-europe-w-paymen-")


def _release_revision(config: dict[str, Any]) -> None:
    config[RELEASE] = {"revisions": {"api": "api-0123456789"}}


def _cycle(config: dict[str, Any]) -> None:
    config["deployctl:secrets"]["A"] = {"source": "composed", "template": "{B}"}
    config["deployctl:secrets"]["B"] = {"source": "composed", "template": "x{A}"}


@pytest.mark.parametrize(("stack", "message"), [
    (stack_with("local"), "stacks/Pulumi.local.yaml: deployctl:target: stack local is not a gcp stack"),
    (stack_with("staging", _release_revision),
     "DEPLOYCTL_PULUMI_RELEASE: revisions.api: 'api-0123456789' is not a revision of staging-api"),
    (stack_with("staging", _cycle), "stacks/Pulumi.staging.yaml: deployctl:secrets.A.template: composes itself"),
    # a valid stack name (deployctl.config.STACK_NAME) that gcp's stricter rule refuses: a leading digit, > 20
    (stack_with("staging", stack="1staging"),
     "stacks/Pulumi.1staging.yaml: stack name '1staging' cannot prefix Google Cloud resource names"),
    (stack_with("staging", stack="staging-europe-west-1"),
     "stacks/Pulumi.staging-europe-west-1.yaml: stack name 'staging-europe-west-1' cannot prefix Google Cloud"),
])
def test_an_invalid_stack_fails_before_any_resource(stack: Stack, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        synthesize(stack)
    assert exc.value.message.startswith(message)
    assert exc.value.hint


def test_a_failed_synthesis_leaves_the_next_one_working(staging: Any) -> None:
    stack, syn = staging
    with pytest.raises(ConfigError):
        synthesize(stack_with("local"))
    assert len(synthesize(stack).resources) == len(syn.resources)


def test_every_database_fact_a_template_may_use_gets_a_value() -> None:
    stack = stack_with("staging")
    facts = naming.cloud_sql_facts(stack, "app_b")
    assert tuple(facts) == DB_FACTS
    socket = "/cloudsql/example-staging:europe-central2:staging-db"
    assert facts == {"db_user": "app_b", "db_name": "app", "db_host": socket, "db_port": "5432",
                     "db_socket": socket, "db_connection": "example-staging:europe-central2:staging-db"}
