"""Database: a Cloud SQL for PostgreSQL instance reachable only through the Cloud SQL connector.

No authorized networks and ``connector_enforcement = REQUIRED``: the instance's IP accepts only
IAM-authorised connector traffic (the ``/cloudsql`` volume Cloud Run mounts), and ``ssl_mode =
ENCRYPTED_ONLY`` refuses plaintext. Backups, point-in-time recovery, the maintenance window, regional HA
and deletion protection come from the stack. The user's first password is the ``database.password_secret``
secret's value: a secret Output, encrypted in Pulumi state. The second login (``alternate_user``) starts
with a random password; rotations set both logins' passwords from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_gcp import sql

from deployctl.config import Database as DatabaseConfig


@dataclass(frozen=True)
class DatabaseArgs:
    project: str
    region: str
    instance_name: str
    config: DatabaseConfig
    password: pulumi.Output[str]  # the value of config.password_secret (a secret Output)


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
        self.user = sql.User(
            f"{name}-user",
            sql.UserArgs(
                project=args.project,
                instance=self.instance.name,
                name=db.user,
                password=pulumi.Output.secret(args.password),
                deletion_policy="ABANDON",  # a Postgres role that owns objects cannot be dropped
            ),
            # Pulumi sets the first password; later ones are deployctl's rotation (docs/gcp.md), not drift
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["password"]),
        )
        # The role's second login: the first password rotation moves to it, the next one back (the order that
        # never breaks the serving revision, deployctl/pipeline/dblogins.py). Until then nobody knows its
        # password. Membership in the first login's role is granted in the database (docs/gcp.md).
        idle_password = random.RandomBytes(f"{name}-alternate-password", random.RandomBytesArgs(length=24),
                                           opts=parent)
        self.alternate_user = sql.User(
            f"{name}-alternate-user",
            sql.UserArgs(
                project=args.project,
                instance=self.instance.name,
                name=db.logins[1],
                password=pulumi.Output.secret(idle_password.hex),
                deletion_policy="ABANDON",
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["password"]),
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
        database_flags=[] if db.max_connections is None else [
            sql.DatabaseInstanceSettingsDatabaseFlagArgs(name="max_connections", value=str(db.max_connections))
        ],
    )
