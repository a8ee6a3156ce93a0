"""The pulumi-policy pack: its stack policies judge a preview's resources with the same rules as the audit."""

from __future__ import annotations

import copy
from typing import Any

from pulumi_policy import PolicyResource, PolicyResourceOptions, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from deployctl.config import Stack
from deployctl.infra.policies.pack import policies, stack_name


def _args(resources: list[dict[str, Any]], stack: str) -> StackValidationArgs:
    """What the engine hands a stack policy: proxied properties, URNs, parents."""
    opts = PolicyResourceOptions(False, [], False, [], None, [], None)  # type: ignore[arg-type]
    made: dict[str, PolicyResource] = {}
    for r in resources:
        urn = f"urn:pulumi:{stack}::deployctl::{r['type']}::{r['name']}"
        made[r["name"]] = PolicyResource(r["type"], unknown_checking_proxy(copy.deepcopy(r["inputs"])), urn,
                                         r["name"], opts, None, None, [], {})
    for r in resources:
        made[r["name"]].parent = made.get(r["parent"] or "")
    return StackValidationArgs(list(made.values()))


def _violations(resources: list[dict[str, Any]], stack: Stack) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in policies(load_stack=lambda name: stack):
        found[policy.name] = []
        policy.validate(_args(resources, stack.name), lambda message, urn=None, p=policy.name: found[p].append(
            message))
    return found


def _resources(production: Any) -> list[dict[str, Any]]:
    _, syn = production
    return copy.deepcopy([r.to_dict() for r in syn.resources])  # the synthesis is shared by other tests


def test_production_passes_the_pack_even_with_unknown_versions(production: Any) -> None:
    stack, _ = production
    resources = _resources(production)
    for r in resources:  # a first preview: Pulumi does not know the versions it is about to create
        for env in (r["inputs"].get("template", {}).get("containers") or [{}])[0].get("envs", []):
            if "valueSource" in env:
                env["valueSource"]["secretKeyRef"]["version"] = UNKNOWN_STRING_VALUE
    assert _violations(resources, stack) == {"deployctl-mandatory": [], "deployctl-advisory": []}


def test_unsafe_production_is_a_mandatory_violation_and_staging_only_advisory(production: Any,
                                                                              staging: Any) -> None:
    resources = _resources(production)
    instance = next(r for r in resources if r["type"] == "gcp:sql/databaseInstance:DatabaseInstance")
    instance["inputs"]["settings"]["availabilityType"] = "ZONAL"
    prod = _violations(resources, production[0])
    assert prod["deployctl-mandatory"] == [
        "[sql-ha] production-database-instance: is zonal (no high availability). Set database.high_availability: true."]
    zonal = _violations(_resources(staging), staging[0])  # staging is zonal too, by choice
    assert zonal["deployctl-mandatory"] == [] and any("[sql-ha]" in m for m in zonal["deployctl-advisory"])


def test_stack_name_comes_from_the_urn(production: Any) -> None:
    assert stack_name(_args(_resources(production)[:1], "production")) == "production"
