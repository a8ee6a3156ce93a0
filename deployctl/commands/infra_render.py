"""Rendering for ``plan``/``audit``: the same facts as rich tables or as JSON (key properties per resource)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployctl.config import Stack


def gcp_plan(stack: Stack) -> dict[str, Any]:
    from deployctl.targets.gcp.audit import check
    from deployctl.targets.gcp.synth import synthesize

    synthesis = synthesize(stack)
    resources = [r.to_dict() for r in synthesis.resources]
    report = check(resources, stack)
    top = {r.name: r.name for r in synthesis.components if r.parent is None}
    parents = {r.name: r.parent for r in synthesis.resources}

    def component(name: str) -> str:
        while parents.get(name) is not None:
            name = str(parents[name])
        return top.get(name, name)

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in synthesis.resources:
        if r.custom:
            groups.setdefault(component(r.name), []).append(
                {"type": r.type, "name": r.name, "properties": key_properties(r.type, r.inputs, stack)}
            )
    return {
        "stack": stack.name,
        "target": "gcp",
        "components": groups,
        "resources": resources,
        "outputs": synthesis.outputs,
        "policy": report.to_dict(),
    }


def key_properties(type_: str, inputs: dict[str, Any], stack: Stack) -> dict[str, Any]:
    from deployctl.targets.gcp.synth import infra_importable

    infra_importable()
    from infra.components.common import PLACEHOLDER_IMAGE

    props: dict[str, Any] = {k: inputs[k] for k in ("name", "accountId", "role", "secretId", "member", "service",
                                                    "repositoryId", "databaseVersion", "ingress") if k in inputs}
    if type_ in ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job"):
        template = inputs.get("template", {})
        task = template.get("template", template)
        container = (task.get("containers") or [{}])[0]
        image = container.get("image", "")
        props["image"] = "set at release" if image == PLACEHOLDER_IMAGE else image
        props["secrets"] = {
            e["name"]: f"{ref['secret']}@{ref['version']}"
            + ("" if ref["secret"] in stack.release.secret_versions else " (pinned at release)")
            for e in container.get("envs", []) if (ref := (e.get("valueSource") or {}).get("secretKeyRef"))
        }
        if "traffics" in inputs:
            props["traffic"] = [f"{t.get('revision') or 'latest'}: {int(t.get('percent', 0))}%"
                                for t in inputs["traffics"]]
    if type_ == "gcp:sql/databaseInstance:DatabaseInstance":
        settings = inputs.get("settings", {})
        props.update(tier=settings.get("tier"), availability=settings.get("availabilityType"),
                     deletion_protection=inputs.get("deletionProtection"))
    return props


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
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_short(v) for v in value)
    return str(value)
