"""ProjectServices: the Google APIs a stack needs, enabled once per project."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import projects

APIS = (
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "secretmanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "containerscanning.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
)


@dataclass(frozen=True)
class ProjectServicesArgs:
    project: str


class ProjectServices(pulumi.ComponentResource):
    def __init__(self, name: str, args: ProjectServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:ProjectServices", name, None, opts)
        self.services = [
            projects.Service(
                f"{name}-{api.split('.')[0]}",
                projects.ServiceArgs(project=args.project, service=api, disable_on_destroy=False),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in APIS
        ]
        self.register_outputs({"apis": list(APIS)})
