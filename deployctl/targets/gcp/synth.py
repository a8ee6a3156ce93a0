"""Offline synthesis: run the real Pulumi program (deployctl/infra/program.py) under Pulumi's mocks.

Rule: no cloud, no pulumi CLI, no state, no credentials. Each resource the program registers is recorded
with its type token, logical name, parent component, inputs as plain JSON and ignore_changes, with the
stack outputs. A secret input or output is ``"[secret]"``; a value only Google knows after creation is
``rules.UNKNOWN``; provided secrets get stand-in config values. Safe to call repeatedly in one process:
every call configures a fresh mock runtime and waits for all of its resources before returning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployctl.config import Stack

SECRET = "[secret]"
GENERATED_VALUE = "mock-generated-value"  # what random values are under mocks; tests check it never shows
PROVIDED_VALUE = "mock-provided-value"
SECRET_TYPE = "gcp:secretmanager/secret:Secret"


@dataclass
class Resource:
    type: str
    name: str
    parent: str | None  # logical name of the parent component (None at the stack's top level)
    custom: bool
    inputs: dict[str, Any]
    ignore_changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs,
                "ignore_changes": self.ignore_changes}


@dataclass
class Synthesis:
    resources: list[Resource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Resource:
        return next(r for r in self.resources if r.name == name)

    @property
    def components(self) -> list[Resource]:
        return [r for r in self.resources if not r.custom]


def _plain(value: Any) -> Any:
    """Inputs as JSON: unknowns and secrets never leak (a secret becomes ``"[secret]"``)."""
    from pulumi.runtime import rpc

    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value, default=str))


def synthesize(stack: Stack) -> Synthesis:
    """Run deployctl.infra.program.build(stack) under mocks and return what it would create."""
    from deployctl.infra.program import build

    return run_mocked(stack, lambda: build(stack))


def run_mocked(stack: Stack, program: Callable[[], Mapping[str, Any]]) -> Synthesis:
    """Run *program* (which declares resources and returns its outputs) under mocks answering for *stack*.

    An output that is a secret is reported as ``"[secret]"``.
    """
    from pulumi.runtime import mocks as pm
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    records: list[Resource] = []
    names: dict[str, str] = {}  # urn -> logical name

    class Mocks(pm.Mocks):
        def new_resource(self, args: pm.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            state = _state(args.typ, args.name, dict(args.inputs), stack)
            # secrets and accounts are identified by their resource name, as the provider does
            named = args.typ in (SECRET_TYPE, "gcp:serviceaccount/account:Account")
            return (str(state["name"]) if named else f"{args.name}-id"), state

        def call(self, args: pm.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
            result = dict(args.args)
            if args.token == "gcp:serviceaccount/getAccount:getAccount":  # what IAM returns for the account
                project = result.get("project", stack.project)
                email = f"{result['accountId']}@{project}.iam.gserviceaccount.com"
                result.update(email=email, name=f"projects/{project}/serviceAccounts/{email}")
            return result, []

    class Monitor(pm.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                names[response.urn] = request.name
                records.append(Resource(
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    inputs=_plain_inputs(request.object),
                    ignore_changes=list(request.ignoreChanges),
                ))
            return response

    mocks = Mocks()
    pm.set_mocks(mocks, project="deployctl", stack=stack.name, preview=False, monitor=Monitor(mocks))
    _provided_config(stack)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    declared: dict[str, Any] = {}
    _sync_await(run_pulumi_func(lambda: declared.update(program())))  # returns once every resource is registered
    for r in records:
        r.parent = names.get(r.parent or "")
    return Synthesis(records, _plain({key: _resolve(value) for key, value in declared.items()}))


def _resolve(value: Any) -> Any:
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    output = pulumi.Output.from_input(value)
    return SECRET if _sync_await(output.is_secret()) else _sync_await(output.future())


def _plain_inputs(obj: Any) -> dict[str, Any]:
    from google.protobuf import json_format  # type: ignore[import-untyped]

    return dict(_plain(json_format.MessageToDict(obj)))


def _provided_config(stack: Stack) -> None:
    """Stand-ins for the ``secure:`` values of provided secrets, which only Pulumi can decrypt."""
    from pulumi.runtime import set_all_config

    from deployctl.infra.program import PROVIDED_NAMESPACE

    keys = [f"{PROVIDED_NAMESPACE}:{name}" for name, s in stack.secrets.items() if s.source == "provided"]
    set_all_config({key: PROVIDED_VALUE for key in keys}, secret_keys=keys)


def _state(typ: str, name: str, inputs: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """What Google would return: inputs, plus the computed fields the program reads."""
    from deployctl.infra.policies.rules import UNKNOWN

    project, region = stack.project, stack.region
    state = dict(inputs)
    if typ == "gcp:sql/databaseInstance:DatabaseInstance":
        state["connectionName"] = f"{project}:{region}:{inputs.get('name', name)}"
    elif typ == "gcp:serviceaccount/account:Account":
        email = f"{inputs.get('accountId', name)}@{project}.iam.gserviceaccount.com"
        state.update(email=email, name=f"projects/{project}/serviceAccounts/{email}")
    elif typ == "gcp:cloudrunv2/service:Service":
        state["uri"] = UNKNOWN  # Google picks the URL when it creates the service
    elif typ == SECRET_TYPE:
        state["name"] = f"projects/{project}/secrets/{inputs.get('secretId', name)}"
    elif typ == "gcp:secretmanager/secretVersion:SecretVersion":
        state["version"] = "1"  # the first version of a secret this program creates
    elif typ == "random:index/randomBytes:RandomBytes":
        state.update(hex=GENERATED_VALUE, base64=GENERATED_VALUE)
    return state
