"""CloudRunJob: a Cloud Run v2 job (``<stack>-<service>-migrate``, ``…-init``) running its service's image.

Same image digest, plain env and pinned secret env as the service, the jobs identity, the Cloud SQL
volume, bounded retries and a timeout. deployctl starts executions, and before each one sets the image and env
of the release it runs for; Pulumi shapes the job in deployctl's ups (a hand-run pulumi leaves it as it is, as
for services).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import cloudrunv2 as run

from deployctl.config import Job
from deployctl.infra.components.common import CLOUDSQL_MOUNT, CLOUDSQL_VOLUME
from deployctl.infra.components.service import JOB_FIELDS, SecretEnv


@dataclass(frozen=True)
class CloudRunJobArgs:
    project: str
    region: str
    job_name: str
    config: Job
    image: str
    service_account: pulumi.Output[str]
    env: dict[str, str]
    secret_env: SecretEnv
    connection_name: pulumi.Input[str] | None = None
    deletion_protection: bool = False
    frozen: bool = False  # a hand-run pulumi: the job is left exactly as it is (its image and pins are the
    # release's, set by deployctl before each run; resending the state's would bring back old ones)
    working_dir: str | None = None  # the container's working directory (naming.working_dir); None: the image's


class CloudRunJob(pulumi.ComponentResource):
    def __init__(self, name: str, args: CloudRunJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:CloudRunJob", name, None, opts)
        self.job = run.Job(
            f"{name}-job",
            run.JobArgs(
                project=args.project,
                location=args.region,
                name=args.job_name,
                deletion_protection=args.deletion_protection,
                template=run.JobTemplateArgs(template=_task(args)),
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=list(JOB_FIELDS) if args.frozen else []),
        )
        self.job_name: pulumi.Output[str] = self.job.name
        self.register_outputs({"name": self.job_name})


def _task(args: CloudRunJobArgs) -> run.JobTemplateTemplateArgs:
    volumes, mounts = [], []
    if args.connection_name is not None:
        volumes = [
            run.JobTemplateTemplateVolumeArgs(
                name=CLOUDSQL_VOLUME,
                cloud_sql_instance=run.JobTemplateTemplateVolumeCloudSqlInstanceArgs(instances=[args.connection_name]),
            )
        ]
        mounts = [run.JobTemplateTemplateContainerVolumeMountArgs(name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT)]
    envs = [run.JobTemplateTemplateContainerEnvArgs(name=k, value=v) for k, v in sorted(args.env.items())] + [
        run.JobTemplateTemplateContainerEnvArgs(
            name=env,
            value_source=run.JobTemplateTemplateContainerEnvValueSourceArgs(
                secret_key_ref=run.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(secret=s, version=v)
            ),
        )
        for env, (s, v) in sorted(args.secret_env.items())
    ]
    return run.JobTemplateTemplateArgs(
        service_account=args.service_account,
        max_retries=args.config.retries,
        timeout=f"{args.config.timeout_s}s",
        execution_environment="EXECUTION_ENVIRONMENT_GEN2",
        volumes=volumes,
        containers=[
            run.JobTemplateTemplateContainerArgs(
                image=args.image, working_dir=args.working_dir, commands=list(args.config.command), envs=envs,
                volume_mounts=mounts,
            )
        ],
    )
