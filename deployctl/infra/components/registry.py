"""Registry: the Artifact Registry Docker repository images are pushed to (private, scanned, cleaned up).

Cleanup keeps the most recent versions of every image (the serving and the rollback candidates) and only
deletes untagged versions older than a week: every deployctl build is tagged with its source hash, so a
deployed image is never deleted by policy. ``artifactregistry.writer`` is granted on this repository only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_gcp import artifactregistry as ar

from deployctl.infra.components.common import member


@dataclass(frozen=True)
class RegistryArgs:
    project: str
    region: str
    repository_id: str
    keep_recent: int = 10
    untagged_after_days: int = 7
    writers: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # label -> service-account email


class Registry(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:Registry", name, None, opts)
        self.repository = ar.Repository(
            f"{name}-repository",
            ar.RepositoryArgs(
                project=args.project,
                location=args.region,
                repository_id=args.repository_id,
                format="DOCKER",
                description="Images released by deployctl",
                cleanup_policy_dry_run=False,
                cleanup_policies=[
                    ar.RepositoryCleanupPolicyArgs(
                        id="keep-recent",
                        action="KEEP",
                        most_recent_versions=ar.RepositoryCleanupPolicyMostRecentVersionsArgs(
                            keep_count=args.keep_recent
                        ),
                    ),
                    ar.RepositoryCleanupPolicyArgs(
                        id="delete-old-untagged",
                        action="DELETE",
                        condition=ar.RepositoryCleanupPolicyConditionArgs(
                            tag_state="UNTAGGED", older_than=f"{args.untagged_after_days * 86400}s"
                        ),
                    ),
                ],
                vulnerability_scanning_config=ar.RepositoryVulnerabilityScanningConfigArgs(
                    enablement_config="INHERITED"  # on, as long as the Container Scanning API is enabled
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for label, email in sorted(args.writers.items()):
            ar.RepositoryIamMember(
                f"{name}-{label}-writer",
                ar.RepositoryIamMemberArgs(
                    project=args.project,
                    location=args.region,
                    repository=self.repository.repository_id,
                    role="roles/artifactregistry.writer",
                    member=member(email),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.path = f"{args.region}-docker.pkg.dev/{args.project}/{args.repository_id}"
        self.register_outputs({"path": self.path})
