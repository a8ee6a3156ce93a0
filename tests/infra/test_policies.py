"""Each rule: it passes on the production stack as synthesized, and fails on one specific unsafe change."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from deployctl.config import Stack
from deployctl.infra.policies.rules import BY_ID, RULES, UNKNOWN, evaluate, is_production, tier_max_connections
from deployctl.targets.gcp.synth import synthesize
from tests.infra.conftest import stack_with

Resources = list[dict[str, Any]]


def _first(res: Resources, type_: str) -> dict[str, Any]:
    return next(r for r in res if r["type"] == type_)


def _instance(res: Resources) -> dict[str, Any]:
    inputs: dict[str, Any] = _first(res, "gcp:sql/databaseInstance:DatabaseInstance")["inputs"]
    return inputs


def _settings(res: Resources) -> dict[str, Any]:
    settings: dict[str, Any] = _instance(res)["settings"]
    return settings


def _container(res: Resources) -> dict[str, Any]:
    container: dict[str, Any] = _first(res, "gcp:cloudrunv2/service:Service")["inputs"]["template"]["containers"][0]
    return container


def _add(res: Resources, type_: str, **inputs: Any) -> None:
    res.append({"type": type_, "name": "added", "parent": None, "inputs": inputs})


def _iam(res: Resources, role: str) -> None:
    _add(res, "gcp:projects/iAMMember:IAMMember", role=role, member="serviceAccount:x@p.iam.gserviceaccount.com")


Breaker = Callable[[Resources], None]
BREAK: dict[str, Breaker] = {
    "run-no-public-invoker": lambda r: _add(r, "gcp:cloudrunv2/serviceIamMember:ServiceIamMember", name="internal",
                                            member="allUsers", role="roles/run.invoker"),
    "run-dedicated-sa": lambda r: _first(r, "gcp:cloudrunv2/service:Service")["inputs"]["template"].pop(
        "serviceAccount"),
    "run-ingress-explicit": lambda r: _first(r, "gcp:cloudrunv2/service:Service")["inputs"].pop("ingress"),
    "run-secrets-pinned": lambda r: _container(r)["envs"][-1]["valueSource"]["secretKeyRef"].update(version="latest"),
    "run-no-secret-in-env": lambda r: _container(r)["envs"].append({"name": "DB_PASSWORD", "value": "hunter2"}),
    "job-retries-timeout": lambda r: _first(r, "gcp:cloudrunv2/job:Job")["inputs"]["template"]["template"].pop(
        "timeout"),
    "sql-no-public-ip": lambda r: _settings(r)["ipConfiguration"].update(
        authorizedNetworks=[{"value": "0.0.0.0/0"}]),
    "sql-tls-required": lambda r: _settings(r)["ipConfiguration"].update(sslMode="ALLOW_UNENCRYPTED_AND_ENCRYPTED"),
    "sql-backups": lambda r: _settings(r)["backupConfiguration"].update(enabled=False),
    "sql-pitr": lambda r: _settings(r)["backupConfiguration"].update(pointInTimeRecoveryEnabled=False),
    "sql-deletion-protection": lambda r: _instance(r).update(deletionProtection=False),
    "sql-ha": lambda r: _settings(r).update(availabilityType="ZONAL"),
    "sql-supported-version": lambda r: _instance(r).update(databaseVersion="POSTGRES_9_6"),
    "sql-connection-budget": lambda r: _settings(r).update(tier="db-g1-small"),  # 50 < production's 205
    "secret-access-per-secret": lambda r: _iam(r, "roles/secretmanager.secretAccessor"),
    "ar-not-public": lambda r: _add(r, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
                                    member="allUsers", role="roles/artifactregistry.reader"),
    "ar-scanning": lambda r: _first(r, "gcp:artifactregistry/repository:Repository")["inputs"].update(
        vulnerabilityScanningConfig={"enablementConfig": "DISABLED"}),
    "iam-no-basic-roles": lambda r: _iam(r, "roles/editor"),
    "iam-no-sa-keys": lambda r: _add(r, "gcp:serviceaccount/key:Key", serviceAccountId="x"),
    "build-dedicated-sa": lambda r: _first(r, "gcp:cloudbuild/trigger:Trigger")["inputs"].update(
        serviceAccount="projects/p/serviceAccounts/123@cloudbuild.gserviceaccount.com"),
    "build-no-secret-substitutions": lambda r: _first(r, "gcp:cloudbuild/trigger:Trigger")["inputs"][
        "substitutions"].update(_DB_PASSWORD="hunter2"),
    "build-approval-production": lambda r: _first(r, "gcp:cloudbuild/trigger:Trigger")["inputs"].update(
        approvalConfig={"approvalRequired": False}),
    "secret-replication-explicit": lambda r: _first(r, "gcp:secretmanager/secret:Secret")["inputs"].pop(
        "replication"),
    "secret-versions-disabled": lambda r: _first(r, "gcp:secretmanager/secretVersion:SecretVersion")[
        "inputs"].update(deletionPolicy="DELETE"),
}


def _rule_ids(findings: list[Any]) -> set[str]:
    return {f.rule for f in findings}


@pytest.fixture(scope="module")
def baseline(production: Any) -> tuple[Stack, Resources]:
    stack, syn = production
    return stack, [r.to_dict() for r in syn.resources]


def test_every_rule_has_a_failing_case() -> None:
    assert set(BREAK) == set(BY_ID)


@pytest.mark.parametrize("rule_id", sorted(BREAK))
def test_rule_passes_then_fails(rule_id: str, baseline: tuple[Stack, Resources]) -> None:
    stack, resources = baseline
    assert rule_id not in _rule_ids(evaluate(resources, stack))
    broken = copy.deepcopy(resources)
    BREAK[rule_id](broken)
    findings = [f for f in evaluate(broken, stack) if f.rule == rule_id]
    assert findings, rule_id
    assert findings[0].mandatory is (BY_ID[rule_id].severity in ("CRITICAL", "HIGH"))  # production: all of them
    assert findings[0].remediation


def test_public_invoker_is_allowed_only_on_the_public_service(baseline: tuple[Stack, Resources]) -> None:
    stack, resources = baseline
    private = stack_with("production", lambda c: c["deployctl:services"]["api"].update(public=False))
    findings = [f for f in evaluate(resources, private) if f.rule == "run-no-public-invoker"]
    assert [(f.resource, f.mandatory) for f in findings] == [("production-api-public-invoker", True)]
    assert "run-no-public-invoker" not in _rule_ids(evaluate(resources, stack))


def test_a_version_being_created_counts_as_pinned(baseline: tuple[Stack, Resources]) -> None:
    stack, resources = baseline
    unknown = copy.deepcopy(resources)
    _container(unknown)["envs"][-1]["valueSource"]["secretKeyRef"]["version"] = UNKNOWN
    assert "run-secrets-pinned" not in _rule_ids(evaluate(unknown, stack))


def test_production_only_rules_are_advisory_elsewhere(staging: Any) -> None:
    stack, syn = staging
    findings = evaluate([r.to_dict() for r in syn.resources], stack)
    assert not is_production(stack)
    assert {"sql-ha", "sql-deletion-protection", "build-approval-production"} <= _rule_ids(findings)
    assert not [f for f in findings if f.mandatory]


def test_rule_ids_severities_and_remediations_are_well_formed() -> None:
    for rule in RULES:
        assert rule.severity in ("CRITICAL", "HIGH", "MEDIUM", "LOW")
        assert rule.remediation.endswith(".") and "\n" not in rule.remediation


@pytest.mark.parametrize("type_", ["gcp:projects/iAMMember:IAMMember",
                                   "gcp:secretmanager/secretIamMember:SecretIamMember",
                                   "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"])
def test_basic_roles_are_caught_on_any_iam_resource(type_: str, baseline: tuple[Stack, Resources]) -> None:
    stack, resources = baseline
    broken = copy.deepcopy(resources)
    _add(broken, type_, role="roles/owner", member="serviceAccount:x@p.iam.gserviceaccount.com")
    assert [f.resource for f in evaluate(broken, stack) if f.rule == "iam-no-basic-roles"] == ["added"]


def test_the_documented_rule_table_is_the_pack() -> None:
    from tests.infra.conftest import ROOT

    doc = (ROOT / "docs" / "infrastructure.md").read_text()
    for rule in RULES:
        where = "production" if rule.production_only else (
            "every stack" if rule.severity in ("CRITICAL", "HIGH") else "advisory")
        assert f"| `{rule.id}` | {rule.severity} | {where} | {rule.remediation} |" in doc, rule.id


def test_the_connection_budget_counts_what_the_issue_counted() -> None:
    """5 instances x (5 + 5), both revisions of a canary, 2 jobs and 3 reserved slots on a db-f1-micro."""
    issue = stack_with("staging", lambda c: c["deployctl:services"]["api"].update(
        max_instances=5, pool={"size": 5, "overflow": 5}))
    resources = [r.to_dict() for r in synthesize(issue).resources]
    findings = [f for f in evaluate(resources, issue) if f.rule == "sql-connection-budget"]
    assert [f.message for f in findings] == [
        "workloads may open 105 connections (3 reserved, staging-api-service 2 revisions x 5 instances x 10, "
        "2 job(s) x 1); db-f1-micro allows 25"]


@pytest.mark.parametrize(("tier", "limit"), [
    ("db-f1-micro", 25), ("db-g1-small", 50), ("db-custom-1-3840", 100), ("db-custom-2-7680", 400),
    ("db-custom-4-15360", 500), ("db-custom-8-30720", 600), ("db-custom-16-61440", 800),
    ("db-custom-32-122880", 1000), ("db-perf-optimized-N-2", None)])
def test_tier_limits_follow_googles_table(tier: str, limit: int | None) -> None:
    assert tier_max_connections(tier) == limit


def test_a_tier_google_does_not_list_needs_the_flag(baseline: tuple[Stack, Resources]) -> None:
    stack, resources = baseline
    broken = copy.deepcopy(resources)
    _settings(broken).update(tier="db-perf-optimized-N-2")
    assert [f.message for f in evaluate(broken, stack) if f.rule == "sql-connection-budget"] == [
        "max_connections of tier db-perf-optimized-N-2 is not in Google's table and no flag sets it"]
    flagged = stack_with("production", lambda c: c["deployctl:database"].update(
        tier="db-perf-optimized-N-2", max_connections=300))
    resources = [r.to_dict() for r in synthesize(flagged).resources]
    assert {"name": "max_connections", "value": "300"} in _settings(resources)["databaseFlags"]
    assert "sql-connection-budget" not in _rule_ids(evaluate(resources, flagged))
