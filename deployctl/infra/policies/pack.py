"""The policy pack's stack policies: the rules in rules.py over the resources of a real ``pulumi preview``.

Whether a rule is mandatory depends on the stack (production-only rules), so mandatory findings are
reported by a MANDATORY stack policy and the others by an ADVISORY one. Properties Pulumi cannot know yet
become ``rules.UNKNOWN`` instead of raising, so a first preview is judged like ``deployctl audit`` judges it.

The stack files are found from this directory up: Pulumi runs the pack here, and deployctl is installed in
the project's .venv (where Pulumi.yaml's ``virtualenv`` points) or, in a checkout, is the checkout itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pulumi_policy import EnforcementLevel, Policy, StackValidationArgs, StackValidationPolicy
from pulumi_policy.proxy import _DictProxy, _is_unknown, _ListProxy

from deployctl.config import Stack, load, project_root
from deployctl.infra.policies import DIRECTORY
from deployctl.infra.policies.rules import UNKNOWN, evaluate


def load_in_project(name: str) -> Stack:
    """The stack named *name*, from the project this pack is installed in."""
    return load(name, project_root(DIRECTORY))


def policies(load_stack: Callable[[str], Stack] = load_in_project) -> list[Policy]:
    return [
        StackValidationPolicy(
            name=f"deployctl-{kind}",
            description=f"deployctl's {kind} rules for this stack (docs/infrastructure.md)",
            enforcement_level=level,
            validate=_validator(mandatory, load_stack),
        )
        for kind, level, mandatory in (("mandatory", EnforcementLevel.MANDATORY, True),
                                       ("advisory", EnforcementLevel.ADVISORY, False))
    ]


def resources(args: StackValidationArgs) -> list[dict[str, Any]]:
    return [
        {"type": r.resource_type, "name": r.name, "parent": r.parent.name if r.parent else None,
         "inputs": plain(r.props), "ignore_changes": list(r.opts.ignore_changes or [])}
        for r in args.resources
    ]


def plain(value: Any) -> Any:
    """A property value without pulumi_policy's unknown-checking proxies (unknowns become UNKNOWN)."""
    if isinstance(value, _DictProxy | _ListProxy):
        value = value["__target"]  # the proxied container itself: reading it raises nothing
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return UNKNOWN if _is_unknown(value) else value


def stack_name(args: StackValidationArgs) -> str:
    """``urn:pulumi:<stack>::<project>::<type>::<name>``: the stack the preview runs on."""
    return args.resources[0].urn.split("::")[0].split(":")[-1] if args.resources else ""


def _validator(mandatory: bool, load_stack: Callable[[str], Stack]) -> Callable[[StackValidationArgs, Any], None]:
    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        if not args.resources:
            return
        stack = load_stack(stack_name(args))
        for f in evaluate(resources(args), stack):
            if f.mandatory == mandatory:
                report_violation(f"[{f.rule}] {f.resource}: {f.message}. {f.remediation}")

    return validate
