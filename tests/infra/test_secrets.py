"""Secrets: generated, provided and composed values, kept secret, versions disabled on replace, per-secret access."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from deployctl import naming
from deployctl.config import Stack
from deployctl.infra.components.secrets import Secrets, SecretsArgs
from deployctl.infra.program import db_facts, provided_values
from deployctl.targets.gcp.synth import GENERATED_VALUE, PROVIDED_VALUE, SECRET, run_mocked, synthesize
from tests.infra.conftest import stack_with

SECRET_TYPE = "gcp:secretmanager/secret:Secret"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"


def _with_provided(config: dict[str, Any]) -> None:
    config["deployctl:secrets"]["API_TOKEN"] = {"source": "provided", "replication": "user-managed",
                                                 "replica_locations": ["europe-central2", "europe-west1"]}
    config["deployctl:services"]["api"]["secrets"]["API_TOKEN"] = "API_TOKEN"


def _values(stack: Stack) -> dict[str, Any]:
    """The Secrets component alone, under mocks: each value as a secret, and revealed."""

    def program() -> dict[str, Any]:
        secrets = Secrets("t", SecretsArgs("p", stack.name, stack.secrets, {n: n for n in stack.secrets},
                                           provided=provided_values(stack), facts=db_facts(stack)))
        return {**{f"secret:{k}": v for k, v in secrets.values.items()},
                **{k: pulumi.Output.unsecret(v) for k, v in secrets.values.items()}}

    return run_mocked(stack, program).outputs


def test_values_are_generated_provided_and_composed_and_stay_secret() -> None:
    stack = stack_with("staging", _with_provided)
    values = _values(stack)
    assert {values[f"secret:{name}"] for name in stack.secrets} == {SECRET}
    assert values["SECRET_KEY"] == values["DB_PASSWORD"] == GENERATED_VALUE
    assert values["API_TOKEN"] == PROVIDED_VALUE
    socket = "/cloudsql/example-staging:europe-central2:staging-db"
    assert values["DATABASE_URL"] == f"postgresql+psycopg://app:{GENERATED_VALUE}@/app?host={socket}"


def test_every_secret_is_stored_with_explicit_replication_and_disabled_versions() -> None:
    syn = synthesize(stack_with("staging", _with_provided))
    secrets = {r.inputs["secretId"]: r.inputs for r in syn.of_type(SECRET_TYPE)}
    assert set(secrets) == {"staging-SECRET_KEY", "staging-DB_PASSWORD", "staging-DATABASE_URL", "staging-API_TOKEN"}
    assert secrets["staging-SECRET_KEY"]["replication"] == {"auto": {}}
    assert secrets["staging-API_TOKEN"]["replication"] == {"userManaged": {"replicas": [
        {"location": "europe-central2"}, {"location": "europe-west1"}]}}
    versions = {r.inputs["secret"].rsplit("/", 1)[-1]: r.inputs for r in syn.of_type(VERSION)}
    assert set(versions) == set(secrets)
    assert {(v["secretData"], v["deletionPolicy"]) for v in versions.values()} == {(SECRET, "DISABLE")}
    # versions deployctl disables after a rotation stay disabled on the next `pulumi up`
    # the program makes first versions only: later values and states are deployctl's
    assert {tuple(r.ignore_changes) for r in syn.of_type(VERSION)} == {("enabled", "secretData")}
    lengths = {r.name.removeprefix("staging-secrets-").removesuffix("-value"): r.inputs["length"]
               for r in syn.of_type("random:index/randomBytes:RandomBytes") if "alternate" not in r.name}
    assert lengths == {"SECRET_KEY": 32, "DB_PASSWORD": 24}
    assert [r.name for r in syn.of_type("random:index/randomBytes:RandomBytes") if "alternate" in r.name] == [
        "staging-database-alternate-password"]


def test_database_password_is_the_generated_secret_and_never_plain(production: Any) -> None:
    _, syn = production
    user, alternate = sorted(syn.of_type("gcp:sql/user:User"), key=lambda r: r.inputs["name"])
    assert (user.inputs["name"], user.inputs["password"]) == ("app", SECRET)
    assert (alternate.inputs["name"], alternate.inputs["password"]) == ("app_b", SECRET)  # random, not DB_PASSWORD
    for login in (user, alternate):
        assert login.ignore_changes == ["password"]  # set once; rotation is deployctl's, not drift
    dump = json.dumps([r.to_dict() for r in syn.resources]) + json.dumps(syn.outputs)
    assert GENERATED_VALUE not in dump and PROVIDED_VALUE not in dump


def test_access_is_granted_per_secret_to_the_identities_that_read_it(staging: Any) -> None:
    stack, syn = staging
    grants = {(r.inputs["secretId"], r.inputs["member"].split(":")[1].split("@")[0], r.inputs["role"])
              for r in syn.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")}
    readers = {naming.runtime_account(stack, "api"), naming.account(stack, "jobs")}
    assert grants == {(f"staging-{s}", who, "roles/secretmanager.secretAccessor")
                      for s in ("SECRET_KEY", "DATABASE_URL") for who in readers}
    # DB_PASSWORD is only composed into DATABASE_URL: no workload reads it, so nobody is granted it
    assert not [r for r in syn.of_type("gcp:projects/iAMMember:IAMMember") if "secretmanager" in r.inputs["role"]]
