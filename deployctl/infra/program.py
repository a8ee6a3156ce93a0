"""build(stack): the whole gcp stack as components, and its exported outputs.

Rule: every value comes from the stack model and every name from deployctl.naming; what a release decides
(image digests, pinned secret versions, revision names, traffic) comes from ``stack.release``, which
deployctl hands to its own ``pulumi up`` (``handed_release``). Without a release (a hand-run pulumi) those
fields are left as Pulumi's state holds them; on creation a workload gets the placeholder image
(deployctl.infra.components.common) and pins the secret version this program created, never ``latest``.
The ``infra`` phase, before a release migrates, leaves every service's template and traffic as they are (a
service not created yet is left out), so nothing starts before its migrations (config.Release).
Callable repeatedly in one process (``deployctl plan`` runs it under mocks); an invalid stack is a
ConfigError naming the file and the key, raised before any resource.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pulumi

from deployctl import naming
from deployctl.config import Release, Stack
from deployctl.errors import ConfigError
from deployctl.facts import render_env
from deployctl.infra.components.common import PLACEHOLDER_IMAGE
from deployctl.infra.components.database import Database, DatabaseArgs
from deployctl.infra.components.identities import Identities, IdentitiesArgs
from deployctl.infra.components.jobs import CloudRunJob, CloudRunJobArgs
from deployctl.infra.components.monitoring import ServiceMonitoring, ServiceMonitoringArgs
from deployctl.infra.components.project import ProjectServices, ProjectServicesArgs
from deployctl.infra.components.registry import Registry, RegistryArgs
from deployctl.infra.components.secrets import Secrets, SecretsArgs, composition_order
from deployctl.infra.components.service import CloudRunService, CloudRunServiceArgs, SecretEnv
from deployctl.infra.components.trigger import BuildTrigger, BuildTriggerArgs

PROVIDED_NAMESPACE = "deployctl-secrets"  # `deployctl-secrets:API_TOKEN: {secure: …}` in the stack file
JOB_KINDS = ("migrate", "init")


def handed_release(stack: Stack) -> Release:
    """The release in ``DEPLOYCTL_PULUMI_RELEASE``, or a ``manual`` one when a person runs pulumi by hand."""
    text = os.environ.get(naming.RELEASE_ENV)
    if not text:
        return Release()
    try:
        return Release.model_validate_json(text)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{naming.RELEASE_ENV}: not a release deployctl wrote ({first})",
                          f"Unset it to run pulumi by hand for stack {stack.name}.") from None


def image(stack: Stack, service: str) -> str:
    return stack.release.images.get(service, PLACEHOLDER_IMAGE)


@dataclass(frozen=True)
class Platform:
    """What every workload runs on: identities, secrets, the database socket, and what it waits for."""

    stack: Stack
    ids: Identities
    secrets: Secrets
    connection: pulumi.Output[str] | None
    opts: pulumi.ResourceOptions
    protect: bool  # deletion protection for services and jobs follows the database's


def build(stack: Stack) -> dict[str, Any]:
    check(stack)
    assert stack.project and stack.region  # check() guarantees a gcp stack
    project, region, prefix = stack.project, stack.region, stack.name
    apis = ProjectServices(f"{prefix}-apis", ProjectServicesArgs(project=project))
    after_apis = pulumi.ResourceOptions(depends_on=[apis])
    ids = Identities(f"{prefix}-identities", IdentitiesArgs(
        project,
        runtime={svc: naming.runtime_account(stack, svc) for svc in stack.services},
        jobs=naming.account(stack, "jobs"),
        build=naming.account(stack, "build") if stack.gcp.trigger else None,
    ), after_apis)
    registry = Registry(f"{prefix}-registry", RegistryArgs(
        project, region, naming.repository(stack), keep_recent=max(10, 2 * stack.rollout.keep_revisions),
        writers={"build": ids.build.email} if ids.build else {},
    ), after_apis)
    secrets = Secrets(f"{prefix}-secrets", SecretsArgs(
        project, stack.name, stack.secrets, {name: naming.secret(stack, name) for name in stack.secrets},
        provided=provided_values(stack), facts=db_facts(stack), readers=_readers(stack, ids),
    ), after_apis)
    db = None
    if stack.database:
        db = Database(f"{prefix}-database", DatabaseArgs(
            project, region, naming.instance(stack), stack.database, secrets.values[stack.database.password_secret],
        ), after_apis)
    platform = Platform(stack, ids, secrets, db.connection_name if db else None,
                        pulumi.ResourceOptions(depends_on=[apis, secrets]),
                        protect=bool(stack.database and stack.database.deletion_protection))
    infra = stack.release.phase == "infra"  # no revision may start before the release's migrations ran
    services = {name: _service(platform, name, after_apis) for name in stack.services
                if not infra or name in stack.release.existing}
    jobs = {kind: _job(platform, kind) for kind in JOB_KINDS if getattr(stack.jobs, kind) is not None}
    if stack.gcp.trigger and ids.build is not None:
        BuildTrigger(f"{prefix}-build", BuildTriggerArgs(
            project, region, stack.name, naming.trigger(stack), naming.repository(stack), stack.gcp.trigger,
            ids.build.name,
        ), after_apis)
    outputs: dict[str, Any] = {
        "service_names": {name: naming.service(stack, name) for name in stack.services},
        "service_urls": {name: s.url for name, s in services.items()},
        "job_names": {kind: j.job_name for kind, j in jobs.items()},
        "registry": registry.path,
        "db_connection": platform.connection if platform.connection is not None else "",
        "secret_names": secrets.ids,
        "service_accounts": ids.emails,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def _service(p: Platform, name: str, after_apis: pulumi.ResourceOptions) -> CloudRunService:
    stack, svc = p.stack, p.stack.services[name]
    assert stack.project and stack.region
    service = CloudRunService(f"{stack.name}-{name}", CloudRunServiceArgs(
        stack.project, stack.region, naming.service(stack, name), svc, image(stack, name),
        p.ids.runtime[name].email, _secret_env(stack, name, p.secrets), p.connection,
        stack.release.revisions.get(name), list(stack.release.traffic.get(name, [])), p.protect, plain_env(stack, name),
        frozen=stack.release.phase != "release",
        working_dir=naming.working_dir(stack, name, svc.workdir),
    ), p.opts)
    ServiceMonitoring(f"{stack.name}-{name}-monitoring", ServiceMonitoringArgs(
        stack.project, naming.service(stack, name), service.url, stack.gcp.monitoring, svc.probes.liveness.path,
        uptime=svc.public and svc.ingress == "all",
    ), after_apis)
    return service


def _job(p: Platform, kind: str) -> CloudRunJob:
    """A job runs its service's image digest, env and pinned secrets, as the jobs identity."""
    stack, job = p.stack, getattr(p.stack.jobs, kind)
    assert stack.project and stack.region
    owner = stack.job_service(job)
    return CloudRunJob(f"{stack.name}-{owner}-{kind}", CloudRunJobArgs(
        stack.project, stack.region, naming.job(stack, owner, kind), job, image(stack, owner), p.ids.jobs.email,
        plain_env(stack, owner), _secret_env(stack, owner, p.secrets), p.connection, p.protect,
        frozen=stack.release.phase == "manual",
        working_dir=naming.working_dir(stack, owner, job.workdir if job.workdir is not None else
                                       stack.services[owner].workdir),
    ), p.opts)


def check(stack: Stack) -> None:
    """Everything the program needs beyond the model's own validation, as ConfigErrors."""
    if stack.target != "gcp" or not stack.project or not stack.region:
        raise ConfigError(f"{stack.file}: deployctl:target: stack {stack.name} is not a gcp stack",
                          "Only gcp stacks have cloud infrastructure; a local stack runs on this machine.")
    naming.check(stack)
    try:
        composition_order(stack.secrets)
    except ValueError as exc:
        raise ConfigError(f"{stack.file}: deployctl:secrets.{exc}.template: composes itself (a cycle)",
                          "A composed secret may use other secrets, but not one that uses it.") from None


def provided_values(stack: Stack) -> dict[str, pulumi.Output[str]]:
    """Values of ``provided`` secrets: secure stack values under the deployctl-secrets namespace."""
    config = pulumi.Config(PROVIDED_NAMESPACE)
    return {name: config.require_secret(name) for name, s in stack.secrets.items() if s.source == "provided"}


def db_facts(stack: Stack) -> dict[str, str]:
    """The database facts of a secret's first composition: the first login, the instance's socket."""
    return naming.cloud_sql_facts(stack, stack.database.user) if stack.database else {}


def plain_env(stack: Stack, service: str) -> dict[str, str]:
    """The service's env with the database facts filled in with the Cloud SQL values (``{db_host}`` is the
    instance's socket directory under /cloudsql, ``{db_port}`` 5432). ``{db_user}`` is the login of the
    release's password version, which deployctl writes to ``release.env``; before a release, the first login."""
    env = render_env(stack.services[service].runtime_env, db_facts(stack))
    return {**env, **{k: v for k, v in stack.release.env.get(service, {}).items() if k in env}}


def _secret_env(stack: Stack, service: str, secrets: Secrets) -> SecretEnv:
    """ENV -> (secret id, version): the release's pinned version, else the version this program created."""
    return {
        env: (secrets.ids[name], stack.release.secret_versions.get(name) or secrets.versions[name])
        for env, name in stack.services[service].secrets.items()
    }


def _readers(stack: Stack, ids: Identities) -> dict[str, dict[str, pulumi.Output[str]]]:
    """secret -> identity label -> email: each identity may read exactly the secrets its workloads use."""
    readers: dict[str, dict[str, pulumi.Output[str]]] = {}
    for name, svc in stack.services.items():
        for secret in svc.secrets.values():
            readers.setdefault(secret, {})[f"{name}-runtime"] = ids.runtime[name].email
    for kind in JOB_KINDS:
        job = getattr(stack.jobs, kind)
        if job is not None:
            for secret in stack.services[stack.job_service(job)].secrets.values():
                readers.setdefault(secret, {})["jobs"] = ids.jobs.email
    return readers
