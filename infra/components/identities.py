"""Identities: one runtime service account per service, one for jobs, one for builds; least privilege.

Runtime and jobs accounts may connect to Cloud SQL and pull images. The build account may push images,
deploy revisions, and act as (only) the runtime and jobs accounts. No basic roles, no keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import projects, serviceaccount

from infra.components.common import account_id, member

RUNTIME_ROLES = ("roles/cloudsql.client", "roles/artifactregistry.reader")
BUILD_ROLES = ("roles/artifactregistry.writer", "roles/run.developer", "roles/logging.logWriter")


@dataclass(frozen=True)
class IdentitiesArgs:
    project: str
    services: tuple[str, ...]
    build: bool = True


class Identities(pulumi.ComponentResource):
    def __init__(self, name: str, args: IdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:Identities", name, None, opts)
        self._name, self._project = name, args.project
        self.runtime = {svc: self._account(f"{svc}-runtime", f"{svc} runtime", RUNTIME_ROLES) for svc in args.services}
        self.jobs = self._account("deployctl-jobs", "migrate/init jobs", RUNTIME_ROLES)
        self.build: serviceaccount.Account | None = None
        if args.build:
            self.build = self._account("deployctl-build", "Cloud Build", BUILD_ROLES)
            for label, acct in [*self.runtime.items(), ("jobs", self.jobs)]:
                serviceaccount.IAMMember(
                    f"{name}-build-actas-{label}",
                    serviceaccount.IAMMemberArgs(
                        service_account_id=acct.name,
                        role="roles/iam.serviceAccountUser",
                        member=member(self.build.email),
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self.emails: dict[str, pulumi.Output[str]] = {
            **{f"runtime-{svc}": a.email for svc, a in self.runtime.items()},
            "jobs": self.jobs.email,
            **({"build": self.build.email} if self.build else {}),
        }
        self.register_outputs({"emails": self.emails})

    def _account(self, base: str, purpose: str, roles: tuple[str, ...]) -> serviceaccount.Account:
        acct_id = account_id(base)
        acct = serviceaccount.Account(
            f"{self._name}-{acct_id}",
            serviceaccount.AccountArgs(
                project=self._project, account_id=acct_id, display_name=f"deployctl: {purpose}"
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for role in roles:
            projects.IAMMember(
                f"{self._name}-{acct_id}-{role.split('/')[-1].replace('.', '-')}",
                projects.IAMMemberArgs(project=self._project, role=role, member=member(acct.email)),
                opts=pulumi.ResourceOptions(parent=self),
            )
        return acct
