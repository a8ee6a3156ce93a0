"""build(stack): the whole gcp stack as components, and its exported outputs.

Rule: every value comes from the stack model; what a release decides (image digests, pinned secret
versions, revision names, traffic) comes from ``stack.release`` and falls back to the documented
placeholders in infra.components.common when there is no release yet. Callable repeatedly in one process.
"""

from __future__ import annotations

from typing import Any

import pulumi

from deployctl.config import Stack
from infra.components.common import PLACEHOLDER_IMAGE, PLACEHOLDER_SECRET_VERSION
from infra.components.database import Database, DatabaseArgs
from infra.components.identities import Identities, IdentitiesArgs
from infra.components.jobs import CloudRunJob, CloudRunJobArgs
from infra.components.monitoring import ServiceMonitoring, ServiceMonitoringArgs
from infra.components.project import ProjectServices, ProjectServicesArgs
from infra.components.registry import Registry, RegistryArgs
from infra.components.secrets import SecretAccess, SecretAccessArgs
from infra.components.service import CloudRunService, CloudRunServiceArgs
from infra.components.trigger import BuildTrigger, BuildTriggerArgs


def instance_name(stack: Stack) -> str:
    return f"{stack.name}-db"  # what deployctl's gcp target assumes before the first `pulumi up`


def image(stack: Stack, service: str) -> str:
    return stack.release.images.get(service, PLACEHOLDER_IMAGE)


def secret_version(stack: Stack, secret: str) -> str:
    return stack.release.secret_versions.get(secret, PLACEHOLDER_SECRET_VERSION)


def secret_env(stack: Stack, service: str) -> dict[str, tuple[str, str]]:
    return {env: (s, secret_version(stack, s)) for env, s in stack.services[service].secrets.items()}


def build(stack: Stack) -> dict[str, Any]:
    if stack.target != "gcp" or not stack.project or not stack.region:
        raise ValueError(f"stack {stack.name} is not a gcp stack")
    project, region, prefix = stack.project, stack.region, stack.name
    apis = ProjectServices(f"{prefix}-apis", ProjectServicesArgs(project=project))
    after_apis = pulumi.ResourceOptions(depends_on=[apis])
    registry = Registry(
        f"{prefix}-registry",
        RegistryArgs(project, region, stack.gcp.repository, keep_recent=max(10, stack.rollout.keep_revisions)),
        after_apis,
    )
    ids = Identities(
        f"{prefix}-identities",
        IdentitiesArgs(project, tuple(stack.services), build=stack.gcp.trigger is not None),
        after_apis,
    )
    db = None
    if stack.database:
        args = DatabaseArgs(project, region, instance_name(stack), stack.database,
                            secret_version(stack, stack.database.password_secret))
        db = Database(f"{prefix}-database", args, after_apis)
    connection = db.connection_name if db else None
    access = SecretAccess(f"{prefix}-secret-access", SecretAccessArgs(project, _grants(stack, ids)), after_apis)
    after_access = pulumi.ResourceOptions(depends_on=[apis, access])
    protect = bool(stack.database and stack.database.deletion_protection)

    services = {}
    for name, svc in stack.services.items():
        services[name] = CloudRunService(f"{prefix}-{name}", CloudRunServiceArgs(
            project, region, name, svc, image(stack, name), ids.runtime[name].email, secret_env(stack, name),
            connection, stack.release.revisions.get(name), list(stack.release.traffic.get(name, [])), protect,
        ), after_access)
        ServiceMonitoring(f"{prefix}-{name}-monitoring", ServiceMonitoringArgs(
            project, name, services[name].url, stack.gcp.monitoring, svc.probes.liveness.path,
            uptime=svc.public and svc.ingress == "all",
        ), pulumi.ResourceOptions(depends_on=[apis]))

    jobs = {}
    for kind in ("migrate", "init"):
        job = getattr(stack.jobs, kind)
        if job is None:
            continue
        owner = stack.job_service(job)
        jobs[kind] = CloudRunJob(f"{prefix}-{owner}-{kind}", CloudRunJobArgs(
            project, region, f"{owner}-{kind}", job, image(stack, owner), ids.jobs.email,
            dict(stack.services[owner].env), secret_env(stack, owner), connection, protect,
        ), after_access)

    if stack.gcp.trigger and ids.build is not None:
        BuildTrigger(f"{prefix}-build", BuildTriggerArgs(
            project, region, stack.name, stack.gcp.repository, stack.gcp.trigger, ids.build.name,
        ), after_apis)

    outputs: dict[str, Any] = {
        "db_connection": connection if connection is not None else "",
        "service_urls": {name: s.url for name, s in services.items()},
        "job_names": {kind: j.job_name for kind, j in jobs.items()},
        "registry": registry.path,
        "secret_names": sorted(stack.secrets),
        "service_accounts": ids.emails,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def _grants(stack: Stack, ids: Identities) -> dict[str, dict[str, pulumi.Output[str]]]:
    """secret -> identity label -> email: each identity gets exactly the secrets its workloads read."""
    grants: dict[str, dict[str, pulumi.Output[str]]] = {}
    for name, svc in stack.services.items():
        for secret in svc.secrets.values():
            grants.setdefault(secret, {})[f"{name}-runtime"] = ids.runtime[name].email
    for kind in ("migrate", "init"):
        job = getattr(stack.jobs, kind)
        if job is not None:
            for secret in stack.services[stack.job_service(job)].secrets.values():
                grants.setdefault(secret, {})["jobs"] = ids.jobs.email
    return grants
