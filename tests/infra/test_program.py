"""The program under Pulumi mocks: the properties a security reviewer would check, per stack."""

from __future__ import annotations

from typing import Any

from deployctl.infra.components.common import PLACEHOLDER_IMAGE
from deployctl.targets.gcp.synth import Synthesis, synthesize
from tests.infra.conftest import DIGEST, RELEASE, WORKER_DIGEST, release, stack_with

SERVICE = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"
INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"


def _instance(syn: Synthesis) -> dict[str, Any]:
    [instance] = syn.of_type(INSTANCE)
    return instance.inputs


def _container(r: Any) -> dict[str, Any]:
    template = r.inputs["template"]
    container: dict[str, Any] = template.get("template", template)["containers"][0]
    return container


def _pins(r: Any) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueSource"]["secretKeyRef"]["secret"], e["valueSource"]["secretKeyRef"]["version"])
            for e in _container(r)["envs"] if "valueSource" in e}


def test_database_is_private_encrypted_backed_up(staging: Any) -> None:
    _, syn = staging
    settings = _instance(syn)["settings"]
    assert settings["ipConfiguration"]["authorizedNetworks"] == []
    assert settings["connectorEnforcement"] == "REQUIRED"
    assert settings["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
    backups = settings["backupConfiguration"]
    assert (backups["enabled"], backups["startTime"], backups["pointInTimeRecoveryEnabled"]) == (True, "03:00", True)
    assert backups["backupRetentionSettings"]["retainedBackups"] == 7
    assert (settings["maintenanceWindow"]["day"], settings["maintenanceWindow"]["hour"]) == (7, 4)  # Sunday 04:00


def test_production_is_ha_and_protected_staging_is_not(staging: Any, production: Any) -> None:
    prod = _instance(production[1])
    assert prod["settings"]["availabilityType"] == "REGIONAL"
    assert prod["deletionProtection"] is True and prod["settings"]["deletionProtectionEnabled"] is True
    stage = _instance(staging[1])
    assert stage["settings"]["availabilityType"] == "ZONAL" and stage["deletionProtection"] is False


def test_scaling_follows_the_stack(staging: Any, production: Any) -> None:
    for (stack, syn), expected in ((staging, (0, 4)), (production, (1, 10))):
        [svc] = syn.of_type(SERVICE)
        scaling = svc.inputs["template"]["scaling"]
        assert (scaling["minInstanceCount"], scaling["maxInstanceCount"]) == expected, stack.name


def test_service_runtime_shape(staging: Any) -> None:
    _, syn = staging
    [svc] = syn.of_type(SERVICE)
    template = svc.inputs["template"]
    assert svc.inputs["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert (template["timeout"], template["maxInstanceRequestConcurrency"]) == ("300s", 80)
    container = template["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}, "startupCpuBoost": True,
                                      "cpuIdle": True}
    assert container["startupProbe"]["httpGet"]["path"] == "/startup"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert template["volumes"] == [{"name": "cloudsql", "cloudSqlInstance": {
        "instances": ["example-staging:europe-central2:staging-db"]}}]
    assert container["volumeMounts"] == [{"name": "cloudsql", "mountPath": "/cloudsql"}]
    # plain env: the stack's, plus the pool deployctl hands every instance (counted by sql-connection-budget)
    assert {e["name"]: e["value"] for e in container["envs"] if "value" in e} == {
        "LOG_LEVEL": "info", "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0"}


def test_release_decides_image_revision_traffic_and_secret_versions(production: Any) -> None:
    _, syn = production
    [svc] = syn.of_type(SERVICE)
    assert svc.inputs["template"]["revision"] == "production-api-0123456789"
    assert svc.inputs["traffics"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "production-api-0123456789", "percent": 90},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "production-api-old", "percent": 10,
         "tag": "previous"},
    ]
    assert _container(svc)["commands"] == ["python", "-m", "app"]
    assert svc.ignore_changes == ["template.labels"]  # the release-id label deployctl puts on its revisions
    for r in [svc, *syn.of_type(JOB)]:
        assert _container(r)["image"] == DIGEST, r.name
        assert _pins(r) == {"SECRET_KEY": ("production-SECRET_KEY", "3"),
                            "DATABASE_URL": ("production-DATABASE_URL", "5")}, r.name


def test_without_a_release_placeholder_image_own_secret_versions_latest_traffic(staging: Any) -> None:
    _, syn = staging
    [svc] = syn.of_type(SERVICE)
    assert svc.inputs["traffics"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    assert "revision" not in svc.inputs["template"]
    for r in [svc, *syn.of_type(JOB)]:
        assert _container(r)["image"] == PLACEHOLDER_IMAGE
        # the version the program created (the mock's "1"), never "latest"
        assert _pins(r) == {"SECRET_KEY": ("staging-SECRET_KEY", "1"), "DATABASE_URL": ("staging-DATABASE_URL", "1")}
    assert "commands" not in _container(svc)  # the placeholder has no python to run


def test_every_job_runs_its_service_image_and_identity() -> None:
    def two_services(config: dict[str, Any]) -> None:
        release(config)
        config["deployctl:services"]["worker"] = {"secrets": {"SECRET_KEY": "SECRET_KEY"}, "env": {"MODE": "w"}}
        config["deployctl:jobs"]["init"]["service"] = "worker"
        config[RELEASE]["images"]["worker"] = WORKER_DIGEST

    syn = synthesize(stack_with("production", two_services))
    jobs = {r.inputs["name"]: r for r in syn.of_type(JOB)}
    assert set(jobs) == {"production-api-migrate", "production-worker-init"}
    assert _container(jobs["production-api-migrate"])["image"] == DIGEST
    assert _container(jobs["production-worker-init"])["image"] == WORKER_DIGEST
    assert _pins(jobs["production-worker-init"]) == {"SECRET_KEY": ("production-SECRET_KEY", "3")}
    for job in jobs.values():
        task = job.inputs["template"]["template"]
        assert task["serviceAccount"] == "production-jobs@example-production.iam.gserviceaccount.com"
    migrate = jobs["production-api-migrate"].inputs["template"]["template"]
    assert (migrate["maxRetries"], migrate["timeout"]) == (2, "300s")


def test_invoker_all_users_only_when_public() -> None:
    def private(config: dict[str, Any]) -> None:
        config["deployctl:services"]["api"]["public"] = False

    public = synthesize(stack_with("staging"))
    closed = synthesize(stack_with("staging", private))
    assert [(r.inputs["name"], r.inputs["member"]) for r in public.of_type(INVOKER)] == [("staging-api", "allUsers")]
    assert closed.of_type(INVOKER) == []
    assert closed.of_type("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig") == []  # not reachable to check


def test_least_privilege_roles(staging: Any) -> None:
    _, syn = staging
    project_roles = {(r.inputs["member"].split(":")[1].split("@")[0], r.inputs["role"])
                     for r in syn.of_type("gcp:projects/iAMMember:IAMMember")}
    # the build account's project roles are bootstrap's (deployctl/targets/gcp/bootstrap.py), not the program's
    assert project_roles == {("staging-api-run", "roles/cloudsql.client"), ("staging-jobs", "roles/cloudsql.client")}
    [writer] = syn.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert (writer.inputs["repository"], writer.inputs["role"], writer.inputs["member"]) == (
        "staging-deployctl", "roles/artifactregistry.writer",
        "serviceAccount:staging-build@example-staging.iam.gserviceaccount.com")
    act_as = {(r.inputs["serviceAccountId"].rsplit("/", 1)[-1], r.inputs["role"])
              for r in syn.of_type("gcp:serviceaccount/iAMMember:IAMMember")}
    assert act_as == {("staging-api-run@example-staging.iam.gserviceaccount.com", "roles/iam.serviceAccountUser"),
                      ("staging-jobs@example-staging.iam.gserviceaccount.com", "roles/iam.serviceAccountUser")}
    assert not syn.of_type("gcp:serviceaccount/key:Key")


def test_registry_is_scanned_and_cleaned_up(staging: Any) -> None:
    _, syn = staging
    [repo] = syn.of_type("gcp:artifactregistry/repository:Repository")
    assert repo.inputs["format"] == "DOCKER"
    assert repo.inputs["vulnerabilityScanningConfig"] == {"enablementConfig": "INHERITED"}
    policies = {p["id"]: p for p in repo.inputs["cleanupPolicies"]}
    assert policies["keep-recent"]["action"] == "KEEP"
    assert policies["keep-recent"]["mostRecentVersions"]["keepCount"] == 10
    assert policies["delete-old-untagged"]["condition"] == {"tagState": "UNTAGGED", "olderThan": "604800s"}
    assert "containerscanning.googleapis.com" in {r.inputs["service"] for r in syn.of_type(
        "gcp:projects/service:Service")}


def test_trigger_runs_as_build_account_with_approval_in_production(staging: Any, production: Any) -> None:
    for (stack, syn), approval in ((staging, False), (production, True)):
        [trigger] = syn.of_type("gcp:cloudbuild/trigger:Trigger")
        assert trigger.inputs["serviceAccount"] == (
            f"projects/{stack.project}/serviceAccounts/{stack.name}-build@{stack.project}.iam.gserviceaccount.com")
        assert trigger.inputs["filename"] == "cloudbuild.yaml"
        assert trigger.inputs["substitutions"]["_STACK"] == stack.name
        assert trigger.inputs["approvalConfig"] == {"approvalRequired": approval}


def test_monitoring_uptime_and_alerts(production: Any) -> None:
    _, syn = production
    [uptime] = syn.of_type("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert uptime.inputs["httpCheck"]["path"] == "/health" and uptime.inputs["httpCheck"]["useSsl"] is True
    thresholds = {a.name.rsplit("-", 1)[-1]: a.inputs["conditions"][0]["conditionThreshold"]
                  for a in syn.of_type("gcp:monitoring/alertPolicy:AlertPolicy")}
    assert thresholds["errors"]["thresholdValue"] == 0.01
    assert 'response_code_class = "5xx"' in thresholds["errors"]["filter"]
    assert thresholds["latency"]["thresholdValue"] == 500  # production's latency_p95_ms
    assert thresholds["latency"]["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_95"


def test_components_follow_the_rules(staging: Any) -> None:
    _, syn = staging
    assert {r.type for r in syn.components} == {f"deployctl:gcp:{kind}" for kind in (
        "ProjectServices", "Identities", "Registry", "Secrets", "Database", "CloudRunService", "CloudRunJob",
        "ServiceMonitoring", "BuildTrigger")}
    for r in syn.resources:
        if r.custom:  # every cloud resource is a child of a component, named after it
            assert r.parent and r.name.startswith(f"{r.parent}-"), r.name
        else:
            assert r.parent is None and r.name.startswith("staging-"), r.name


def test_synthesis_is_repeatable(staging: Any) -> None:
    stack, first = staging
    again = synthesize(stack)
    assert sorted(map(repr, again.resources)) == sorted(map(repr, first.resources))
    assert again.outputs == first.outputs


def test_a_workdir_is_the_containers_working_dir_under_the_image_root() -> None:
    """services.<svc>.workdir and jobs.<job>.workdir run the command where the local target runs it: on Cloud Run,
    the container's working_dir under gcp.image_root (where the image holds the project root)."""
    def workdirs(config: dict[str, Any]) -> None:
        config["deployctl:services"]["api"].update(source="app", workdir="sub")
        config["deployctl:jobs"]["migrate"]["workdir"] = "."

    syn = synthesize(stack_with("staging", workdirs))
    [service] = syn.of_type(SERVICE)
    assert service.inputs["template"]["containers"][0]["workingDir"] == "/srv/app/sub"
    jobs = {r.inputs["name"]: r for r in syn.of_type(JOB)}
    assert _container(jobs["staging-api-migrate"])["workingDir"] == "/srv/app"
    assert _container(jobs["staging-api-init"])["workingDir"] == "/srv/app/sub"  # the service's, when it has none
    plain = synthesize(stack_with("staging"))
    assert "workingDir" not in plain.of_type(SERVICE)[0].inputs["template"]["containers"][0]  # the image's WORKDIR
