"""CloudRunService: a Cloud Run v2 service whose template and traffic come from deployctl's release.

The template's revision name, image digest, command, env (with the pinned secret versions) and the traffic
are the release's: deployctl hands them to its own ``pulumi up`` after a release's migrations, and otherwise
sets them through the Cloud Run API (a code-only release, a traffic shift, a rollback). Traffic is written
as explicit revisions (the live split, tags included), or 100 % to the latest revision when there is none
yet, so an ``up`` never moves users by itself.

In every other ``up`` — a hand-run ``pulumi preview``/``up``, deployctl's ``infra`` up before migrations —
the service is left exactly as it is: every property it sets is
``ignore_changes``. Ignoring only the release's fields would not do: Pulumi fills an ignored property with
the value its *state* last sent ("Resource option: ignoreChanges"), and Cloud Run's UpdateService takes the
whole service, so any other change (ingress, say) would send that stale template and traffic back and move
users to an old revision. ``allUsers`` may invoke the service only when the stack declares it public.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_gcp import cloudrunv2 as run

from deployctl.config import Service, TrafficTarget
from deployctl.infra.components.common import CLOUDSQL_MOUNT, CLOUDSQL_VOLUME, INGRESS, PLACEHOLDER_IMAGE

SecretEnv = dict[str, tuple[pulumi.Input[str], pulumi.Input[str]]]  # ENV -> (secret id, pinned version)


@dataclass(frozen=True)
class CloudRunServiceArgs:
    project: str
    region: str
    service_name: str
    config: Service
    image: str
    service_account: pulumi.Output[str]
    secret_env: SecretEnv
    connection_name: pulumi.Input[str] | None = None
    revision: str | None = None
    traffic: list[TrafficTarget] = field(default_factory=list)
    deletion_protection: bool = False
    env: dict[str, str] | None = None  # the plain env, database facts filled in (program.plain_env); None: config.env
    working_dir: str | None = None  # the container's working directory (naming.working_dir); None: the image's
    frozen: bool = False  # not deployctl's release up: the service is left exactly as it is (see above)


# every property the program sets on a service, and on a job: a frozen one sends Google nothing
SERVICE_FIELDS = ("project", "location", "name", "ingress", "deletionProtection", "template", "traffics")
JOB_FIELDS = ("project", "location", "name", "deletionProtection", "template")


class CloudRunService(pulumi.ComponentResource):
    def __init__(self, name: str, args: CloudRunServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:CloudRunService", name, None, opts)
        svc = args.config
        self.service = run.Service(
            f"{name}-service",
            run.ServiceArgs(
                project=args.project,
                location=args.region,
                name=args.service_name,
                ingress=INGRESS[svc.ingress],
                deletion_protection=args.deletion_protection,
                template=_template(args),
                traffics=_traffic(args),
            ),
            # deployctl labels the revisions it creates with their release id; a label change would make
            # Cloud Run cut a new revision under the release's revision name, which already exists
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=list(SERVICE_FIELDS) if args.frozen else [
                "template.labels"]),
        )
        if svc.public:
            run.ServiceIamMember(
                f"{name}-public-invoker",
                run.ServiceIamMemberArgs(
                    project=args.project,
                    location=args.region,
                    name=self.service.name,
                    role="roles/run.invoker",
                    member="allUsers",
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.url: pulumi.Output[str] = self.service.uri
        self.register_outputs({"url": self.url})


def _template(args: CloudRunServiceArgs) -> run.ServiceTemplateArgs:
    svc = args.config
    volumes, mounts = [], []
    if args.connection_name is not None:
        volumes = [
            run.ServiceTemplateVolumeArgs(
                name=CLOUDSQL_VOLUME,
                cloud_sql_instance=run.ServiceTemplateVolumeCloudSqlInstanceArgs(instances=[args.connection_name]),
            )
        ]
        mounts = [run.ServiceTemplateContainerVolumeMountArgs(name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT)]
    plain = svc.runtime_env if args.env is None else args.env
    envs = [run.ServiceTemplateContainerEnvArgs(name=k, value=v) for k, v in sorted(plain.items())] + [
        run.ServiceTemplateContainerEnvArgs(
            name=env,
            value_source=run.ServiceTemplateContainerEnvValueSourceArgs(
                secret_key_ref=run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(secret=s, version=v)
            ),
        )
        for env, (s, v) in sorted(args.secret_env.items())
    ]
    probes = svc.probes
    return run.ServiceTemplateArgs(
        revision=args.revision,
        execution_environment="EXECUTION_ENVIRONMENT_GEN2",
        service_account=args.service_account,
        timeout=f"{svc.request_timeout_s}s",
        max_instance_request_concurrency=svc.concurrency,
        scaling=run.ServiceTemplateScalingArgs(
            min_instance_count=svc.min_instances, max_instance_count=svc.max_instances
        ),
        volumes=volumes,
        containers=[
            run.ServiceTemplateContainerArgs(
                image=args.image, working_dir=args.working_dir,
                commands=None if args.image == PLACEHOLDER_IMAGE else list(svc.command),
                ports=run.ServiceTemplateContainerPortsArgs(container_port=svc.port),
                envs=envs,
                volume_mounts=mounts,
                resources=run.ServiceTemplateContainerResourcesArgs(
                    limits={"cpu": str(svc.cpu), "memory": svc.memory},
                    startup_cpu_boost=svc.cpu_boost,
                    cpu_idle=True,
                ),
                startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                    http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(path=probes.startup.path),
                    period_seconds=probes.startup.period_s,
                    timeout_seconds=probes.startup.timeout_s,
                    failure_threshold=probes.startup.failure_threshold,
                ),
                liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                    http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(path=probes.liveness.path),
                    period_seconds=probes.liveness.period_s,
                    timeout_seconds=probes.liveness.timeout_s,
                    failure_threshold=probes.liveness.failure_threshold,
                ),
            )
        ],
    )


def _traffic(args: CloudRunServiceArgs) -> list[run.ServiceTrafficArgs]:
    if not args.traffic:
        return [run.ServiceTrafficArgs(type="TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", percent=100)]
    return [
        run.ServiceTrafficArgs(
            type="TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", revision=t.revision, percent=t.percent, tag=t.tag
        )
        for t in args.traffic
    ]
