"""ProjectServices: the Google APIs a stack needs, enabled once per project."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import projects

from deployctl.naming import PROGRAM_APIS as APIS


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
