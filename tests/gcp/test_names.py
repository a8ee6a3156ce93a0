"""The gcp target addresses exactly the resources the real Pulumi program creates (same names)."""

from __future__ import annotations

from deployctl.config import load
from deployctl.infra.program import db_facts
from deployctl.targets.gcp.synth import synthesize
from tests.gcp.conftest import Cloud


def test_target_names_match_the_synthesized_program(cloud: Cloud) -> None:
    target = cloud.target()
    stack = load("staging", cloud.root)
    synthesized = synthesize(stack)
    by_type: dict[str, set[str]] = {}
    for resource in synthesized.resources:
        name = resource.inputs.get("name") or resource.inputs.get("secretId")
        if name:
            by_type.setdefault(resource.type, set()).add(str(name))
    assert target.run.service_name("api").rsplit("/", 1)[-1] in by_type["gcp:cloudrunv2/service:Service"]
    jobs = {target.names.job(stack, "api", kind) for kind in ("migrate", "init")}
    assert jobs <= by_type["gcp:cloudrunv2/job:Job"]
    secrets = {target.secret_prefix + name for name in stack.secrets}
    assert secrets == by_type["gcp:secretmanager/secret:Secret"]
    assert target._db_facts({})["db_connection"] == synthesized.outputs["db_connection"]
    assert target._db_facts({}) == db_facts(stack)  # the first login: what the program composed with
    instances = {str(r.inputs["instance"]) for r in synthesized.resources if r.type == "gcp:sql/user:User"}
    assert instances == {target.sql.instance}
    users = {str(r.inputs["name"]) for r in synthesized.resources if r.type == "gcp:sql/user:User"}
    assert users == set(stack.database.logins) if stack.database else False
    assert target._revision_name("api", "img@sha256:" + "0" * 64, {}).startswith("staging-api-")
