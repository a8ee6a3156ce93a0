"""Identities: one runtime service account per service, one for the jobs; least privilege.

Runtime and jobs accounts may connect to Cloud SQL (``cloudsql.client``); their secret access is granted
per secret by the Secrets component, and images are pulled by Cloud Run's service agent, so they need no
registry role. The build account (the trigger's, ``<stack>-build``) is ``deployctl bootstrap``'s: it must
exist, with its project roles, before the first ``pulumi up`` (a release reads the state bucket and the
passphrase as it), so the program looks it up instead of creating it (IAM answers 409 to a second create
of one id) and only lets it act as the runtime and jobs accounts it creates here. No basic roles, no keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_gcp import projects, serviceaccount

from deployctl.infra.components.common import member

RUNTIME_ROLES = ("roles/cloudsql.client",)


@dataclass(frozen=True)
class IdentitiesArgs:
    project: str
    runtime: Mapping[str, str]  # service -> account id
    jobs: str  # account id
    build: str | None = None  # bootstrap's account id; None when the stack has no trigger


class Identities(pulumi.ComponentResource):
    def __init__(self, name: str, args: IdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:Identities", name, None, opts)
        self._name, self._project = name, args.project
        self.runtime = {svc: self._account(acct, f"{svc} runtime", RUNTIME_ROLES) for svc, acct in args.runtime.items()}
        self.jobs = self._account(args.jobs, "migrate/init jobs", RUNTIME_ROLES)
        self.build: pulumi.Output[serviceaccount.GetAccountResult] | None = None
        if args.build is not None:
            self.build = serviceaccount.get_account_output(
                account_id=args.build, project=args.project, opts=pulumi.InvokeOutputOptions(parent=self))
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

    def _account(self, account_id: str, purpose: str, roles: tuple[str, ...]) -> serviceaccount.Account:
        acct = serviceaccount.Account(
            f"{self._name}-{account_id}",
            serviceaccount.AccountArgs(
                project=self._project, account_id=account_id, display_name=f"deployctl: {purpose}"
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for role in roles:
            projects.IAMMember(
                f"{self._name}-{account_id}-{role.split('/')[-1].replace('.', '-')}",
                projects.IAMMemberArgs(project=self._project, role=role, member=member(acct.email)),
                opts=pulumi.ResourceOptions(parent=self),
            )
        return acct
