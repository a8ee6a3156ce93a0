"""Database: a Cloud SQL for PostgreSQL instance reachable only through the Cloud SQL connector.

No authorized networks and ``connector_enforcement = REQUIRED``: the public IP accepts only IAM-authorised
connector traffic (the ``/cloudsql`` volume Cloud Run mounts), and ``ssl_mode = ENCRYPTED_ONLY`` refuses
plaintext. The user's password is never in Pulumi state as a plain value: it is read from Secret Manager at
its pinned version into ``password_wo`` (write-only in the provider) and marked secret; its rotation is
deployctl's (``deployctl secrets rotate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import secretmanager, sql

from deployctl.config import Database as DatabaseConfig


@dataclass(frozen=True)
class DatabaseArgs:
    project: str
    region: str
    instance_name: str
    config: DatabaseConfig
    password_version: str  # pinned Secret Manager version of config.password_secret


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:Database", name, None, opts)
        db = args.config
        self.instance = sql.DatabaseInstance(
            f"{name}-instance",
            sql.DatabaseInstanceArgs(
                project=args.project,
                region=args.region,
                name=args.instance_name,
                database_version=f"POSTGRES_{db.version}",
                deletion_protection=db.deletion_protection,
                settings=_settings(db),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        parent = pulumi.ResourceOptions(parent=self)
        self.database = sql.Database(
            f"{name}-database",
            sql.DatabaseArgs(project=args.project, instance=self.instance.name, name=db.name),
            opts=parent,
        )
        password = secretmanager.get_secret_version_output(
            project=args.project, secret=db.password_secret, version=args.password_version
        ).secret_data
        self.user = sql.User(
            f"{name}-user",
            sql.UserArgs(
                project=args.project,
                instance=self.instance.name,
                name=db.user,
                password_wo=pulumi.Output.secret(password),
                password_wo_version=int(args.password_version),
            ),
            opts=parent,
        )
        self.connection_name: pulumi.Output[str] = self.instance.connection_name
        self.register_outputs({"connection_name": self.connection_name})


def _settings(db: DatabaseConfig) -> sql.DatabaseInstanceSettingsArgs:
    return sql.DatabaseInstanceSettingsArgs(
        tier=db.tier,
        edition="ENTERPRISE",
        disk_size=db.disk_gb,
        disk_autoresize=True,
        availability_type="REGIONAL" if db.high_availability else "ZONAL",
        deletion_protection_enabled=db.deletion_protection,
        connector_enforcement="REQUIRED",
        ip_configuration=sql.DatabaseInstanceSettingsIpConfigurationArgs(
            ipv4_enabled=True, authorized_networks=[], ssl_mode="ENCRYPTED_ONLY"
        ),
        backup_configuration=sql.DatabaseInstanceSettingsBackupConfigurationArgs(
            enabled=db.backups.enabled,
            start_time=db.backups.start_time,
            point_in_time_recovery_enabled=db.backups.point_in_time_recovery,
            transaction_log_retention_days=min(7, db.backups.retained),
            backup_retention_settings=sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                retained_backups=db.backups.retained, retention_unit="COUNT"
            ),
        ),
        maintenance_window=sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
            day=db.maintenance.day, hour=db.maintenance.hour, update_track="stable"
        ),
    )
