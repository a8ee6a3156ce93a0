"""BuildTrigger: a Cloud Build trigger on pushes to the release branch, run as the build identity.

The trigger's repository is a Cloud Build 2nd-gen repository (``deployctl:gcp.trigger.repository``, required:
nothing can guess it); it fires on pushes to a branch or of a tag matching the stack's regex.
Substitutions carry only names (stack, region, repository), never secret values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import cloudbuild

from deployctl.config import Trigger


@dataclass(frozen=True)
class BuildTriggerArgs:
    project: str
    region: str
    stack: str
    trigger_name: str
    repository_id: str  # Artifact Registry repository
    config: Trigger
    service_account: pulumi.Output[str]  # the build account's resource name (projects/…/serviceAccounts/…)


class BuildTrigger(pulumi.ComponentResource):
    def __init__(self, name: str, args: BuildTriggerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:BuildTrigger", name, None, opts)
        config = args.config
        self.trigger = cloudbuild.Trigger(
            f"{name}-trigger",
            cloudbuild.TriggerArgs(
                project=args.project,
                location=args.region,
                name=args.trigger_name,
                description=f"deployctl up {args.stack} on push",
                filename="cloudbuild.yaml",
                repository_event_config=cloudbuild.TriggerRepositoryEventConfigArgs(
                    repository=config.repository,
                    push=cloudbuild.TriggerRepositoryEventConfigPushArgs(branch=config.branch, tag=config.tag),
                ),
                substitutions={"_STACK": args.stack, "_REGION": args.region, "_REPOSITORY": args.repository_id},
                service_account=args.service_account,
                approval_config=cloudbuild.TriggerApprovalConfigArgs(approval_required=config.approval),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"trigger": self.trigger.name})
