"""The release gate: a gcp stack is released only when every mandatory policy rule passes or is accepted.

Rule: offline and read-only (see audit.py); the error names every failing rule and the exact flag that
accepts a risk, so the choice is explicit and recorded on the command line.
"""

from __future__ import annotations

from deployctl.config import Stack
from deployctl.errors import PolicyError


def enforce(stack: Stack, accept_risks: list[str]) -> None:
    from deployctl.targets.gcp.audit import audit

    unknown = _unknown(accept_risks)
    if unknown:
        raise PolicyError(f"unknown policy rule: {unknown[0]}", "Run `deployctl audit STACK` to list the rule ids.")
    failing = audit(stack).failing_mandatory(accept_risks)
    if failing:
        raise PolicyError(
            f"stack {stack.name} fails mandatory policy rules: {', '.join(failing)}",
            f"Fix them, or accept a risk explicitly: deployctl up {stack.name} --accept-risk RULE_ID",
        )


def _unknown(rule_ids: list[str]) -> list[str]:
    from deployctl.infra.policies.rules import BY_ID

    return [r for r in rule_ids if r not in BY_ID]
