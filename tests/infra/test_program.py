"""The program under Pulumi mocks: the properties a security reviewer would check, per stack."""

from __future__ import annotations

from typing import Any

from deployctl.targets.gcp.synth import Synthesis, synthesize
from infra.components.common import PLACEHOLDER_IMAGE
from tests.infra.conftest import DIGEST, stack_with

SERVICE = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"
INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"


def _instance(syn: Synthesis) -> dict[str, Any]:
    [instance] = syn.of_type(INSTANCE)
    return instance.inputs


def test_database_is_private_encrypted_backed_up(staging: Any) -> None:
    _, syn = staging
    settings = _instance(syn)["settings"]
    assert settings["ipConfiguration"]["authorizedNetworks"] == []
    assert settings["connectorEnforcement"] == "REQUIRED"
    assert settings["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
    backups = settings["backupConfiguration"]
    assert (backups["enabled"], backups["startTime"], backups["pointInTimeRecoveryEnabled"]) == (True, "03:00", True)
    assert backups["backupRetentionSettings"]["retainedBackups"] == 7
    assert settings["maintenanceWindow"]["day"] == 7 and settings["maintenanceWindow"]["hour"] == 4


def test_production_is_ha_and_protected_staging_is_not(staging: Any, production: Any) -> None:
    prod = _instance(production[1])
    assert prod["settings"]["availabilityType"] == "REGIONAL"
    assert prod["deletionProtection"] is True and prod["settings"]["deletionProtectionEnabled"] is True
    stage = _instance(staging[1])
    assert stage["settings"]["availabilityType"] == "ZONAL" and stage["deletionProtection"] is False


def test_names_derive_from_the_stack(staging: Any, production: Any) -> None:
    for stack, syn in (staging, production):
        assert _instance(syn)["name"] == f"{stack.name}-db"
        assert syn.outputs["db_connection"] == f"{stack.project}:{stack.region}:{stack.name}-db"
        assert all(r.name.startswith(f"{stack.name}-") for r in syn.resources)
        assert {r.inputs["name"] for r in syn.of_type(JOB)} == {"api-migrate", "api-init"}
        assert [r.inputs["name"] for r in syn.of_type(SERVICE)] == ["api"]


def test_no_secret_resources_and_per_secret_access(staging: Any) -> None:
    _, syn = staging
    assert not [r for r in syn.resources if r.type.startswith("gcp:secretmanager/secret:")]
    assert not [r for r in syn.resources if "secretVersion" in r.type]
    grants = {(r.inputs["secretId"], r.inputs["member"]) for r in syn.of_type(
        "gcp:secretmanager/secretIamMember:SecretIamMember")}
    runtime = "serviceAccount:api-runtime@example-staging.iam.gserviceaccount.com"
    jobs = "serviceAccount:deployctl-jobs@example-staging.iam.gserviceaccount.com"
    assert grants == {(s, m) for s in ("SECRET_KEY", "DATABASE_URL") for m in (runtime, jobs)}
    assert "DB_PASSWORD" not in {s for s, _ in grants}  # only composed into DATABASE_URL by deployctl


def test_jobs_and_service_run_the_release_image_and_pinned_secrets(production: Any) -> None:
    _, syn = production
    workloads = syn.of_type(JOB) + syn.of_type(SERVICE)
    for r in workloads:
        template = r.inputs["template"]
        container = template.get("template", template)["containers"][0]
        assert container["image"] == DIGEST
        versions = {e["name"]: e["valueSource"]["secretKeyRef"]["version"] for e in container["envs"]
                    if "valueSource" in e}
        assert versions == {"SECRET_KEY": "3", "DATABASE_URL": "5"}
    job = syn.named("production-api-migrate-job").inputs["template"]["template"]
    assert (job["maxRetries"], job["timeout"]) == (2, "300s")
    assert job["serviceAccount"].startswith("deployctl-jobs@")


def test_service_template_and_traffic_come_from_the_release(production: Any) -> None:
    _, syn = production
    [svc] = syn.of_type(SERVICE)
    assert svc.inputs["template"]["revision"] == "api-0123456789"
    assert svc.inputs["traffics"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-0123456789", "percent": 90},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-old", "percent": 10, "tag": "previous"},
    ]
    template = svc.inputs["template"]
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    connection = "example-production:europe-central2:production-db"
    assert template["volumes"][0]["cloudSqlInstance"]["instances"] == [connection]
    assert template["containers"][0]["resources"]["startupCpuBoost"] is True


def test_without_a_release_placeholders_and_latest_traffic(staging: Any) -> None:
    _, syn = staging
    [svc] = syn.of_type(SERVICE)
    assert svc.inputs["template"]["containers"][0]["image"] == PLACEHOLDER_IMAGE
    assert svc.inputs["traffics"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]


def test_db_password_is_never_plain(production: Any) -> None:
    _, syn = production
    [user] = syn.of_type("gcp:sql/user:User")
    assert user.inputs["passwordWo"] == "[secret]" and "password" not in user.inputs
    assert user.inputs["passwordWoVersion"] == 2


def test_invoker_all_users_only_when_public() -> None:
    def private(config: dict[str, Any]) -> None:
        config["deployctl:services"]["api"]["public"] = False

    public = synthesize(stack_with("staging"))
    closed = synthesize(stack_with("staging", private))
    invokers = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    assert [r.inputs["member"] for r in public.of_type(invokers)] == ["allUsers"]
    assert closed.of_type(invokers) == []
    assert closed.of_type("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig") == []


def test_least_privilege_roles(staging: Any) -> None:
    _, syn = staging
    roles = {(r.inputs["member"].split(":")[1].split("@")[0], r.inputs["role"])
             for r in syn.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles == {
        ("api-runtime", "roles/cloudsql.client"), ("api-runtime", "roles/artifactregistry.reader"),
        ("deployctl-jobs", "roles/cloudsql.client"), ("deployctl-jobs", "roles/artifactregistry.reader"),
        ("deployctl-build", "roles/artifactregistry.writer"), ("deployctl-build", "roles/run.developer"),
        ("deployctl-build", "roles/logging.logWriter"),
    }
    [trigger] = syn.of_type("gcp:cloudbuild/trigger:Trigger")
    assert trigger.inputs["serviceAccount"].endswith("/deployctl-build@example-staging.iam.gserviceaccount.com")
    assert trigger.inputs["substitutions"] == {"_STACK": "staging", "_REGION": "europe-central2",
                                               "_REPOSITORY": "deployctl"}


def test_every_resource_has_a_component_parent(staging: Any) -> None:
    _, syn = staging
    assert all(r.parent for r in syn.resources if r.custom)
    assert {r.type for r in syn.components} >= {"deployctl:gcp:CloudRunService", "deployctl:gcp:Database",
                                               "deployctl:gcp:Registry", "deployctl:gcp:Identities"}


def test_synthesis_is_repeatable(staging: Any) -> None:
    stack, first = staging
    again = synthesize(stack)
    def key(r: Any) -> str:
        return str(r.name)

    assert [r.to_dict() for r in sorted(again.resources, key=key)] == [
        r.to_dict() for r in sorted(first.resources, key=key)
    ]
    assert again.outputs == first.outputs
