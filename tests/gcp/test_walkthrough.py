"""A fresh project, walked through the way a team adopts deployctl, on the twin (tests/fakes/iam.py: APIs off
until enabled, every call checked against the caller's roles, both propagating with a delay).

1. an empty project (only the APIs Google enables on a new one; only its owner holds a role);
2. `deployctl bootstrap` of staging and of production, each in its own project (production's waits to grant
   its Cloud Run read access to staging's images until staging's repository exists);
3. `deployctl up staging` from a laptop, as the project's owner;
4. a release from inside Cloud Build, as the trigger's service account, running cloudbuild.yaml's release
   step (the image its build and push steps would make is built through Cloud Build by deployctl);
5. a code change;
6. `secrets rotate` of SECRET_KEY and of the database password (DATABASE_URL follows);
7. `rollback`;
8. `bootstrap production` again (the grant), then `promote staging production` across the projects;
9. `up` of the working tree (rolling forward), and a second `up` with nothing changed: a no-op.

Each step asserts what the twin holds and what serves; stacks/ is never written, and a hand-run
`pulumi preview` shows nothing to change after each command. It runs twice: with scripted revisions and
jobs, and with the twin's runtime, where every revision and job execution is the sample app's real code
(its secrets read as its own service account, against a real Postgres for each stack's Cloud SQL instance),
so each step's app also answers a request that reads its table.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import artifactregistry_v1, iam_admin_v1, secretmanager_v1, service_usage_v1, storage
from google.cloud.artifactregistry_v1.services.artifact_registry.transports import ArtifactRegistryGrpcTransport
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport
from google.cloud.service_usage_v1.services.service_usage.transports import ServiceUsageGrpcTransport
from google.iam.v1 import iam_policy_pb2

from deployctl import naming
from deployctl.config import load
from deployctl.pipeline import orchestrator, rollback, rotate
from deployctl.pipeline.promote import promote as promote_release
from deployctl.pipeline.rollback_guards import Guard
from deployctl.pipeline.run import Options
from deployctl.targets.gcp.bootstrap import APIS, RELEASE_ROLES, Bootstrap
from deployctl.targets.gcp.retry import RetryPolicy
from deployctl.targets.gcp.synth import synthesize
from tests.fakes.bootstrap import FakeIam, FakeProjects, FakePulumi, FakeRepositories
from tests.fakes.iam import OWNER, TwinCredentials
from tests.gcp.conftest import Cloud

pytestmark = pytest.mark.twin

STAGING = "projects/example-staging/locations/europe-central2/services/staging-api"
PRODUCTION = "projects/example-production/locations/europe-central2/services/production-api"
STAGING_IMAGES = "projects/example-staging/locations/europe-central2/repositories/staging-deployctl"
# a release waits out the twin's 0.2 s propagation delays well within this
POLICY = RetryPolicy(deadline_s=5.0, initial_s=0.02, maximum_s=0.1, call_timeout_s=5)


def _stack_files(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "stacks").iterdir())}


class _Projects:
    """resourcemanager_v3.ProjectsClient's IAM policy calls over its own gRPC transport: inside drongo's mock
    the client itself is forced onto REST, where drongo serves no IAM policy."""

    def __init__(self, channel: Any) -> None:
        self.transport = ProjectsGrpcTransport(channel=channel)

    def get_iam_policy(self, request: Any, **_: Any) -> Any:
        message = request if isinstance(request, iam_policy_pb2.GetIamPolicyRequest) else \
            iam_policy_pb2.GetIamPolicyRequest(**request)
        return self.transport.get_iam_policy(message)

    def get_project(self, name: str, **_: Any) -> Any:
        from google.cloud import resourcemanager_v3

        return self.transport.get_project(resourcemanager_v3.GetProjectRequest(name=name))

    def set_iam_policy(self, request: Any, **_: Any) -> Any:
        message = request if isinstance(request, iam_policy_pb2.SetIamPolicyRequest) else \
            iam_policy_pb2.SetIamPolicyRequest(**request)
        return self.transport.set_iam_policy(message)


def _bootstrap(cloud: Cloud, stack: str, iam: FakeIam, projects: FakeProjects, pulumi: FakePulumi) -> Any:
    """The real Bootstrap, as the owner of both projects, through the real client libraries on the twin."""
    owner = TwinCredentials(OWNER)
    channel = cloud.grpc.channel(owner)
    pulumi.stack = stack
    boot = Bootstrap(
        load(stack, cloud.root), cloud.root,
        service_usage=service_usage_v1.ServiceUsageClient(transport=ServiceUsageGrpcTransport(channel=channel)),
        iam=iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel)),
        projects=_Projects(channel),
        storage=storage.Client(project="example-staging", credentials=owner),
        secrets=secretmanager_v1.SecretManagerServiceClient(credentials=owner),
        registry=artifactregistry_v1.ArtifactRegistryClient(transport=ArtifactRegistryGrpcTransport(channel=channel)),
        pulumi=pulumi, policy=POLICY,  # type: ignore[arg-type]
    )
    return boot.run()


def _release_step(root: Path) -> list[str]:
    """cloudbuild.yaml's release step: the deployctl command line it runs."""
    steps = {s["id"]: s for s in yaml.safe_load((root / "cloudbuild.yaml").read_text())["steps"]}
    script = steps["release"]["args"][-1]
    line = next(line for line in script.splitlines() if line.strip().startswith("deployctl "))
    return shlex.split(line.strip(), posix=True)


def _options(cloud: Cloud, command: str, image: str | None = None) -> Options:
    return Options(command=command, image=image, root=cloud.root, lock_timeout_s=5)


# with the runtime, UpdateService answers once the instance has started (tests/gcp/conftest.py, TWIN)
REAL = RetryPolicy(deadline_s=60.0, initial_s=0.02, maximum_s=0.1, call_timeout_s=120)


@pytest.mark.parametrize("real_code", [False, True], ids=["scripted", "real-code"])
def test_a_fresh_project_from_bootstrap_to_promotion(cloud: Cloud, reporter, request: pytest.FixtureRequest,
                                                     real_code: bool) -> None:
    from tests.fakes.iam import Project

    root = cloud.root
    policy = POLICY
    runtime: Any = None
    if real_code:
        runtime = request.getfixturevalue("runtime")
        runtime.as_service_accounts = True  # the revision's own identity reads its secrets
        prod = load("production", root)
        assert prod.database is not None
        runtime.cloud_sql(naming.instance(prod), naming.connection(prod), prod.database.name,
                          list(prod.database.extensions))
        policy = REAL

    def reads_its_table(service: str = STAGING) -> None:
        if runtime is not None:  # the real app, through its service URL, reading the database
            status, _ = cloud.http.handle(f"/_s/{service.rsplit('/', 1)[-1]}/api/notes")
            assert status == 200
    (root / "cloudbuild.yaml").write_text((Path(__file__).resolve().parents[2] / "cloudbuild.yaml").read_text())
    for name in ("example-staging-deployctl", "example-production-deployctl"):  # 1. nothing in it yet
        cloud.storage.bucket(name).delete()
    # production is its own project: the twin serves both ids (its owner's bindings and the APIs are one
    # model's), each with its own number, so each has its own Cloud Run Service Agent (tests/fakes/iam.py)
    project = Project("example-staging", api_delay_s=0.2, iam_delay_s=0.2, other_ids=("example-production",))
    cloud.use(project)
    repositories = FakeRepositories(cloud.grpc, twin=project, registry=cloud.registry)
    stacks_before = _stack_files(root)
    laptop = TwinCredentials(OWNER)
    assert not project.apis.answers("run.googleapis.com") and not project.apis.answers("secretmanager.googleapis.com")

    # 2. bootstrap: APIs, the state bucket, the trigger's identity and its roles, the passphrase, the stack
    iam, pulumi = FakeIam(cloud.grpc), FakePulumi()
    projects = FakeProjects(cloud.grpc, {"roles/owner": [OWNER]}, twin=project)
    for stack in ("staging", "production"):
        outcome = _bootstrap(cloud, stack, iam, projects, pulumi)
        assert {s["state"] for s in outcome.steps if s["step"] != "pull:staging"} <= {"applied", "done"}
    # production's Cloud Run may read staging's images once staging's first up has made the repository
    assert outcome.steps[-1]["step"] == "pull:staging" and outcome.steps[-1]["state"] == "later"
    assert all(project.apis.recorded(api) for api in APIS)
    for stack in ("staging", "production"):
        spec = load(stack, root)
        account = f"serviceAccount:{naming.account(spec, 'build')}@{spec.project}.iam.gserviceaccount.com"
        assert set(RELEASE_ROLES) <= projects.roles_of(account)
    owner_storage = storage.Client(project="example-staging", credentials=TwinCredentials(OWNER))
    assert owner_storage.lookup_bucket("example-staging-deployctl") is not None
    assert pulumi.stacks >= {("gs://example-staging-deployctl", "staging"),
                             ("gs://example-production-deployctl", "production")}

    # 3. the first release, from a laptop: the infrastructure, the build, migrations, one revision that serves
    first = orchestrator.release(cloud.target(credentials=laptop, policy=policy), _options(cloud, "up staging"),
                                 reporter)
    assert first.outcome == "succeeded"
    assert [r.phase for r in cloud.pulumi.releases("staging")] == ["infra", "release"]
    assert cloud.run.revision_names(STAGING) == [first.revisions["api"]]
    assert cloud.run.serving(STAGING) == {first.revisions["api"]: 100}
    assert cloud.preview() == []
    reads_its_table()
    if runtime is not None:  # docs/runbook.md, once per instance: the alternate login acts as the role
        staging_db = runtime.sql[naming.connection(load("staging", root))]
        staging_db.run_as_postgres(["GRANT app TO app_b", "ALTER ROLE app_b SET role = 'app'"])

    # 4. Cloud Build on a push: the trigger runs as <stack>-build, and the release step runs `deployctl up`
    stack = load("staging", root)
    [trigger] = synthesize(stack).of_type("gcp:cloudbuild/trigger:Trigger")
    build_sa = naming.account(stack, "build") + "@example-staging.iam.gserviceaccount.com"
    assert trigger.inputs["serviceAccount"].endswith(f"/serviceAccounts/{build_sa}")
    assert trigger.inputs["filename"] == "cloudbuild.yaml"
    command = _release_step(root)
    assert command[:4] == ["deployctl", "up", "$_STACK", "--image"]
    assert trigger.inputs["substitutions"]["_STACK"] == "staging"
    as_trigger = TwinCredentials(f"serviceAccount:{build_sa}")
    main = root / "app" / "main.py"
    main.write_text(main.read_text() + "# pushed\n")
    pushed = cloud.target(credentials=as_trigger, policy=policy)
    image = pushed.builds.build("api", pushed.source_hash("api"), root, "Dockerfile.cloudrun").ref  # build + push
    second = orchestrator.release(pushed, _options(cloud, "deployctl up staging --image", image), reporter)
    assert second.outcome == "succeeded" and second.artifacts == {"api": image}
    assert cloud.run.serving(STAGING) == {second.revisions["api"]: 100}
    assert cloud.pulumi.methods("staging").count("up") == 2  # a code-only release: no pulumi up
    assert cloud.preview() == []
    reads_its_table()

    # 5. a code change from the laptop
    main.write_text(main.read_text() + "# changed on a laptop\n")
    third = orchestrator.release(cloud.target(credentials=laptop, policy=policy), _options(cloud, "up staging"),
                                 reporter)
    assert third.outcome == "succeeded" and cloud.run.serving(STAGING) == {third.revisions["api"]: 100}
    assert len(cloud.run.revision_names(STAGING)) == 3

    # 6. rotate each secret: the serving revision then pins the new versions
    for name in ("SECRET_KEY", "DB_PASSWORD"):
        rotated = rotate.rotate(cloud.target(credentials=laptop, policy=policy), name, None,
                                _options(cloud, f"secrets rotate staging {name}"), reporter)
        assert rotated.outcome == "succeeded"
        [serving] = cloud.run.serving(STAGING)
        pins = {e.name: e.value_source.secret_key_ref.version
                for e in cloud.run.revisions[f"{STAGING}/revisions/{serving}"].containers[0].env if e.value_source}
        assert pins[name if name != "DB_PASSWORD" else "DATABASE_URL"] == rotated.secret_versions[
            name if name != "DB_PASSWORD" else "DATABASE_URL"]
        assert cloud.preview() == []
        reads_its_table()
    ups_before = cloud.pulumi.methods("staging").count("up")

    # 7. rollback to the previous code, repinned to the current secret versions (the old ones are disabled)
    back = rollback.rollback(cloud.target(credentials=laptop, policy=policy), second.id,
                             _options(cloud, "rollback staging"), reporter, Guard(repin=True))
    assert back.outcome == "succeeded"
    [serving] = cloud.run.serving(STAGING)
    assert cloud.run.revisions[f"{STAGING}/revisions/{serving}"].containers[0].image == image
    assert cloud.pulumi.methods("staging").count("up") == ups_before

    # 8. bootstrap production again: staging's repository exists now, so production's Cloud Run Service Agent
    # is granted read access to it; once that has propagated, promote what staging serves to production
    # (another project): the same digest, no build
    regrant = _bootstrap(cloud, "production", iam, projects, pulumi)
    states = {s["step"]: s["state"] for s in regrant.steps}
    assert states.pop("pull:staging") == "applied"
    states.pop("bucket")  # drongo keeps no bucket's iamConfiguration, so bootstrap secures it again each time
    assert set(states.values()) == {"done"}
    agent = project.run_agent("example-production")
    assert repositories.members(STAGING_IMAGES, "roles/artifactregistry.reader") == {agent}
    time.sleep(project.iam_delay_s)  # IAM "Access change propagation"
    builds = len(cloud.cloudbuild.builds)
    promoted = promote_release(cloud.target(credentials=laptop, policy=policy),
                               cloud.target("production", credentials=laptop, policy=policy),
                               _options(cloud, "promote staging production"), reporter)
    assert promoted.outcome == "succeeded" and promoted.artifacts == {"api": image}
    assert len(cloud.cloudbuild.builds) == builds
    [live] = cloud.run.serving(PRODUCTION)
    assert cloud.run.revisions[f"{PRODUCTION}/revisions/{live}"].containers[0].image == image
    reads_its_table(PRODUCTION)

    # 9. the working tree's code again (rolled forward), then nothing changed: a no-op; no pulumi up for either,
    # and no command wrote a stack file
    forward = orchestrator.release(cloud.target(credentials=laptop, policy=policy), _options(cloud, "up staging"),
                                   reporter)
    assert forward.outcome == "succeeded" and forward.artifacts == third.artifacts  # the image, not rebuilt
    again = orchestrator.release(cloud.target(credentials=laptop, policy=policy), _options(cloud, "up staging"),
                                 reporter)
    assert again.outcome == "noop" and cloud.pulumi.methods("staging").count("up") == ups_before
    assert cloud.preview() == [] and cloud.preview("production") == []
    assert _stack_files(root) == stacks_before
