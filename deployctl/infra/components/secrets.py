"""Secrets: each secret the stack declares, its first version, and per-secret access.

A value is generated (``random.RandomBytes``, hex), provided (a ``secure:`` stack value the program reads
with ``require_secret``) or composed (a template over other secrets and database facts). Every value is a
secret Output, so Pulumi keeps it encrypted in state. Versions use ``deletion_policy = DISABLE``: a
replaced version is disabled, never destroyed, so a revision that still pins it can be rolled back to.
``secretAccessor`` is granted on each secret to exactly the identities whose workloads read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
from pulumi_gcp import secretmanager as sm

from deployctl.config import Secret as SecretConfig
from deployctl.infra.components.common import member


@dataclass(frozen=True)
class SecretsArgs:
    project: str
    stack: str
    secrets: Mapping[str, SecretConfig]
    secret_ids: Mapping[str, str]  # name -> Secret Manager secret id (derived from the stack)
    provided: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # name -> secure stack value
    facts: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # db_user, db_socket, … for templates
    readers: Mapping[str, Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)  # name -> label -> email


class Secrets(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:Secrets", name, None, opts)
        self._name, self._args = name, args
        self.values: dict[str, pulumi.Output[str]] = {}
        self.ids: dict[str, pulumi.Output[str]] = {}
        self.versions: dict[str, pulumi.Output[str]] = {}
        for secret in composition_order(args.secrets):
            self.values[secret] = self._value(secret)
            self._store(secret)
        self.register_outputs({"ids": self.ids, "versions": self.versions})

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _value(self, secret: str) -> pulumi.Output[str]:
        config = self._args.secrets[secret]
        if config.source == "generated":  # the provider marks hex secret too; this keeps it so under mocks
            return pulumi.Output.secret(random.RandomBytes(
                f"{self._name}-{secret}-value", random.RandomBytesArgs(length=config.bytes), opts=self._child()
            ).hex)
        if config.source == "provided":
            return pulumi.Output.secret(self._args.provided[secret])
        parts = {ref: self.values.get(ref, self._args.facts.get(ref, "")) for ref in config.references()}
        template = config.template or ""
        return pulumi.Output.secret(pulumi.Output.all(**parts).apply(lambda v: template.format(**v)))

    def _store(self, secret: str) -> None:
        args = self._args
        resource = sm.Secret(
            f"{self._name}-{secret}",
            sm.SecretArgs(
                project=args.project,
                secret_id=args.secret_ids[secret],
                replication=_replication(args.secrets[secret]),
                labels={"managed-by": "deployctl", "stack": args.stack},
            ),
            opts=self._child(),
        )
        version = sm.SecretVersion(
            f"{self._name}-{secret}-version",
            sm.SecretVersionArgs(secret=resource.id, secret_data=self.values[secret], deletion_policy="DISABLE"),
            # the program makes a secret's first version only. deployctl disables superseded versions after a
            # rotation (Pulumi must not enable them again), and later values are deployctl's (`secrets set`,
            # `rotate`, recomposition): a changed secretData would make Pulumi replace the version, which with
            # deletion_policy DISABLE disables the version a revision may still pin
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["enabled", "secretData"]),
        )
        self.ids[secret], self.versions[secret] = resource.secret_id, version.version
        for label, email in sorted(args.readers.get(secret, {}).items()):
            sm.SecretIamMember(
                f"{self._name}-{secret}-{label}",
                sm.SecretIamMemberArgs(
                    project=args.project,
                    secret_id=resource.secret_id,
                    role="roles/secretmanager.secretAccessor",
                    member=member(email),
                ),
                opts=self._child(),
            )


def _replication(config: SecretConfig) -> sm.SecretReplicationArgs:
    if config.replication == "user-managed":
        replicas = [sm.SecretReplicationUserManagedReplicaArgs(location=loc) for loc in config.replica_locations]
        return sm.SecretReplicationArgs(user_managed=sm.SecretReplicationUserManagedArgs(replicas=replicas))
    return sm.SecretReplicationArgs(auto=sm.SecretReplicationAutoArgs())


def composition_order(secrets: Mapping[str, SecretConfig]) -> list[str]:
    """Secret names, each after the secrets its template uses; ValueError names a secret in a cycle."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise ValueError(name)
        for ref in secrets[name].references():
            if ref in secrets:
                visit(ref, (*path, name))
        done.append(name)

    for name in secrets:
        visit(name, ())
    return done
