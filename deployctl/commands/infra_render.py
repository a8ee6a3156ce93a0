"""Rendering for ``plan``/``audit``: the same facts as rich tables or as JSON (key properties per resource)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployctl.config import Stack

# The order components are shown in: what the others depend on first.
COMPONENT_ORDER = ("ProjectServices", "Identities", "Registry", "Secrets", "Database", "CloudRunService",
                   "CloudRunJob", "ServiceMonitoring", "BuildTrigger")
# type -> (label, input path) of the properties a reviewer looks at first
KEY_PROPERTIES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "gcp:artifactregistry/repository:Repository": (
        ("id", ("repositoryId",)), ("scanning", ("vulnerabilityScanningConfig", "enablementConfig")),
        ("cleanup", ("cleanupPolicies",))),
    "gcp:secretmanager/secret:Secret": (("id", ("secretId",)), ("replication", ("replication",))),
    "gcp:secretmanager/secretVersion:SecretVersion": (("value", ("secretData",)),
                                                      ("on replace", ("deletionPolicy",))),
    "random:index/randomBytes:RandomBytes": (("bytes", ("length",)),),
    "gcp:sql/databaseInstance:DatabaseInstance": (
        ("name", ("name",)), ("version", ("databaseVersion",)), ("tier", ("settings", "tier")),
        ("availability", ("settings", "availabilityType")), ("deletion_protection", ("deletionProtection",)),
        ("authorized_networks", ("settings", "ipConfiguration", "authorizedNetworks")),
        ("ssl", ("settings", "ipConfiguration", "sslMode")),
        ("backups", ("settings", "backupConfiguration", "startTime")),
        ("pitr", ("settings", "backupConfiguration", "pointInTimeRecoveryEnabled"))),
    "gcp:sql/user:User": (("name", ("name",)), ("password", ("password",))),
    "gcp:cloudbuild/trigger:Trigger": (
        ("name", ("name",)), ("branch", ("repositoryEventConfig", "push", "branch")),
        ("approval", ("approvalConfig", "approvalRequired")), ("substitutions", ("substitutions",))),
    "gcp:monitoring/alertPolicy:AlertPolicy": (("alert", ("displayName",)),),
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": (("check", ("displayName",)),),
}
_COMMON = ("name", "accountId", "role", "secretId", "member", "service", "ingress")


def gcp_plan(stack: Stack) -> dict[str, Any]:
    from deployctl.targets.gcp.audit import check
    from deployctl.targets.gcp.synth import synthesize

    synthesis = synthesize(stack)
    resources = [r.to_dict() for r in synthesis.resources]
    kinds = {r.name: r.type.rsplit(":", 1)[-1] for r in synthesis.components}

    def rank(r: Any) -> tuple[int, str, str]:
        kind = kinds.get(r.parent or "", "")
        return (COMPONENT_ORDER.index(kind) if kind in COMPONENT_ORDER else 99, r.parent or "", r.name)

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in sorted((r for r in synthesis.resources if r.custom), key=rank):
        groups.setdefault(r.parent or "(stack)", []).append(
            {"type": r.type, "name": r.name, "properties": key_properties(r.type, r.inputs, stack)}
        )
    return {  # the envelope every plan shares (kind, stack, target; docs/architecture.md)
        "kind": "infrastructure",
        "stack": stack.name,
        "target": "gcp",
        "components": groups,
        "resources": resources,
        "outputs": synthesis.outputs,
        "policy": check(resources, stack).to_dict(),
    }


def key_properties(type_: str, inputs: dict[str, Any], stack: Stack) -> dict[str, Any]:
    if type_ in ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job"):
        return _workload(inputs, stack)
    if type_ in KEY_PROPERTIES:
        return {label: _at(inputs, path) for label, path in KEY_PROPERTIES[type_] if _at(inputs, path) is not None}
    return {k: inputs[k] for k in _COMMON if k in inputs}


def _workload(inputs: dict[str, Any], stack: Stack) -> dict[str, Any]:
    from deployctl import naming
    from deployctl.infra.components.common import PLACEHOLDER_IMAGE

    template = inputs.get("template", {})
    task = template.get("template", template)  # a job's task template is one level deeper
    container = (task.get("containers") or [{}])[0]
    pinned = {naming.secret(stack, name) for name in stack.release.secret_versions}
    props: dict[str, Any] = {"name": inputs.get("name"), "account": task.get("serviceAccount")}
    if "ingress" in inputs:
        props["ingress"] = inputs["ingress"]
    image = container.get("image", "")
    props["image"] = "set at release" if image == PLACEHOLDER_IMAGE else image
    props["secrets"] = {
        e["name"]: f"{ref['secret']}@{ref['version']}"
        + ("" if ref["secret"] in pinned else " (the version this stack created)")
        for e in container.get("envs", []) if (ref := (e.get("valueSource") or {}).get("secretKeyRef"))
    }
    if "maxRetries" in task:
        props.update(retries=int(task["maxRetries"]), timeout=task.get("timeout"))
    if "traffics" in inputs:
        props["revision"] = template.get("revision") or "(named by Cloud Run)"
        props["traffic"] = [f"{t.get('revision') or 'latest'}: {int(t.get('percent', 0))}%"
                            for t in inputs["traffics"]]
    return props


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def render_plan(data: dict[str, Any]) -> None:
    from deployctl.output import line, table

    line(f"Infrastructure of stack {data['stack']} (synthesized offline from the Pulumi program):")
    for comp, resources in data["components"].items():
        rows = [[r["type"].split(":")[-1], r["name"], _short(r["properties"])] for r in resources]
        table(comp, ["resource", "name", "key properties"], rows)
    table("Outputs", ["output", "value"], [[k, _short(v)] for k, v in data["outputs"].items()])
    rules = data["policy"]["rules"]
    rows = [[r["id"], r["severity"], "yes" if r["mandatory"] else "no", "pass" if r["passed"] else "FAIL"]
            for r in rules]
    table("Policy", ["rule", "severity", "mandatory", "result"], rows)
    failing = data["policy"]["failing_mandatory"]
    line(f"Mandatory rules failing: {', '.join(failing)}" if failing else "All mandatory policy rules pass.")


def render_findings(report: Any, accept_risks: Iterable[str]) -> None:
    from deployctl.output import line, table

    accepted = set(report.accepted) | set(accept_risks)
    rows = [[f.rule, f.severity, _status(f, accepted), f.resource, f.message, f.remediation]
            for f in report.findings]
    if rows:
        table(f"Policy findings for {report.stack}", ["rule", "severity", "status", "resource", "finding",
                                                      "remediation"], rows)
    passed = sum(1 for r in report.rules if r["passed"])
    line(f"{passed}/{len(report.rules)} rules pass; {len(report.findings)} finding(s).")


def _status(finding: Any, accepted: set[str]) -> str:
    if not finding.mandatory:
        return "advisory"
    return "accepted" if finding.rule in accepted else "MANDATORY"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" if v not in ({}, None) else str(k) for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_short(v) for v in value) if value else "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # protobuf numbers are floats
    return str(value)
