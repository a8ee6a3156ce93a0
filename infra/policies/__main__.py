"""The Pulumi policy pack: ``pulumi preview --policy-pack infra/policies``.

It calls the very rule functions ``deployctl audit`` uses (infra/policies/rules.py). Mandatory findings
are reported by a MANDATORY stack policy, the others by an ADVISORY one, because whether a rule is
mandatory depends on the stack (production-only rules).
"""

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    StackValidationArgs,
    StackValidationPolicy,
)

from deployctl.config import load  # noqa: E402
from infra.policies.rules import evaluate  # noqa: E402


def _resources(args: StackValidationArgs) -> list[dict[str, Any]]:
    return [
        {"type": r.resource_type, "name": r.name, "parent": r.parent.name if r.parent else None, "inputs": r.props}
        for r in args.resources
    ]


def _stack_name(args: StackValidationArgs) -> str:
    urn = args.resources[0].urn if args.resources else "urn:pulumi:unknown::"
    return urn.split(":")[2].split("::")[0]


def _validator(mandatory: bool) -> Any:
    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        stack = load(_stack_name(args), ROOT)
        for f in evaluate(_resources(args), stack):
            if f.mandatory == mandatory:
                report_violation(f"[{f.rule}] {f.resource}: {f.message}. {f.remediation}")

    return validate


PolicyPack(
    name="deployctl",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=[
        StackValidationPolicy(
            name="deployctl-mandatory",
            description="deployctl's mandatory rules for this stack (see docs/infrastructure.md)",
            enforcement_level=EnforcementLevel.MANDATORY,
            validate=_validator(True),
        ),
        StackValidationPolicy(
            name="deployctl-advisory",
            description="deployctl's advisory rules (see docs/infrastructure.md)",
            enforcement_level=EnforcementLevel.ADVISORY,
            validate=_validator(False),
        ),
    ],
)
