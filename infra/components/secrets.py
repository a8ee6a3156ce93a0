"""SecretAccess: ``roles/secretmanager.secretAccessor`` on each secret, for exactly the identities using it.

Secrets themselves (containers and versions) are created by deployctl before ``pulumi up`` (see
deployctl/targets/gcp/target.py ``ensure_secrets``), so no secret value ever passes through Pulumi state
and deployctl alone pins and rotates versions. This component only grants access, per secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_gcp import secretmanager

from infra.components.common import member


@dataclass(frozen=True)
class SecretAccessArgs:
    project: str
    grants: dict[str, dict[str, pulumi.Output[str]]] = field(default_factory=dict)  # secret -> label -> email


class SecretAccess(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:SecretAccess", name, None, opts)
        self.members = [
            secretmanager.SecretIamMember(
                f"{name}-{secret.lower().replace('_', '-')}-{label}",
                secretmanager.SecretIamMemberArgs(
                    project=args.project,
                    secret_id=secret,
                    role="roles/secretmanager.secretAccessor",
                    member=member(email),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for secret, identities in sorted(args.grants.items())
            for label, email in sorted(identities.items())
        ]
        self.register_outputs({"secrets": sorted(args.grants)})
