"""audit(stack): the policy pack's rules over an offline synthesis of the stack's infrastructure.

Rule: read-only and offline (Pulumi mocks, no cloud). A finding is a failing rule on one resource; the
report says which mandatory ones fail once the stack's and the command line's accepted risks are set aside.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deployctl.config import Stack


@dataclass
class AuditReport:
    stack: str
    findings: list[Any]  # deployctl.infra.policies.rules.Finding
    rules: list[dict[str, Any]] = field(default_factory=list)  # every rule: id, severity, mandatory, passed
    accepted: list[str] = field(default_factory=list)  # from the stack's gcp.accept_risks

    def failing_mandatory(self, accept_risks: Iterable[str] = ()) -> list[str]:
        accepted = set(self.accepted) | set(accept_risks)
        return sorted({f.rule for f in self.findings if f.mandatory and f.rule not in accepted})

    def to_dict(self, accept_risks: Iterable[str] = ()) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "rules": self.rules,
            "findings": [f.to_dict() for f in self.findings],
            "accepted": sorted(set(self.accepted) | set(accept_risks)),
            "failing_mandatory": self.failing_mandatory(accept_risks),
        }


def check(resources: list[dict[str, Any]], stack: Stack) -> AuditReport:
    from deployctl.infra.policies.rules import RULES

    findings = [f for rule in RULES for f in rule.evaluate(resources, stack)]
    failed = {f.rule for f in findings}
    rules = [
        {"id": r.id, "severity": r.severity, "mandatory": r.mandatory(stack), "passed": r.id not in failed}
        for r in RULES
    ]
    return AuditReport(stack.name, findings, rules, list(stack.gcp.accept_risks))


def audit(stack: Stack) -> AuditReport:
    from deployctl.targets.gcp.synth import synthesize

    synthesis = synthesize(stack)
    return check([r.to_dict() for r in synthesis.resources], stack)
