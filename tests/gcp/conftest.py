"""The fake Google Cloud a GcpTarget runs against: drongo (Secret Manager, Cloud Run Jobs, GCS, extended by
tests/fakes/drongo_ext.py; Cloud Logging's entries:list, tests/fakes/cloudlogging.py), a gRPC fake of Cloud Run
Services and the HTTP server its revisions answer on, a REST fake of Cloud SQL Admin's users,
and a fake engine that applies the release the way the Pulumi program would (every engine a test's cloud
builds records its calls in the cloud's one PulumiBackend). Clients are the real Google
libraries; only their endpoints differ.

Every fake checks each call against the cloud's project (tests/fakes/iam.py): for ``cloud`` a pre-seeded
one (every API answers, a call without credentials is the owner's), for ``twin`` a project as Google creates
it (its default APIs only, only the owner holds a role, propagation delays of 0.2 s), whose callers pass
``credentials=`` (tests.fakes.iam.TwinCredentials) to ``target`` and ``channel``."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from drongo import mock_gcp
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import artifactregistry_v1, run_v2, secretmanager_v1, storage
from google.cloud.artifactregistry_v1.services.artifact_registry.transports import ArtifactRegistryGrpcTransport
from google.cloud.devtools import cloudbuild_v1
from google.cloud.devtools.cloudbuild_v1.services.cloud_build.transports import CloudBuildGrpcTransport
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from deployctl import naming
from deployctl.config import load
from deployctl.pipeline.run import Options
from deployctl.targets.gcp.retry import Propagation, RetryPolicy
from deployctl.targets.gcp.sql_users import sqladmin_client
from deployctl.targets.gcp.target import GcpTarget
from tests.fakes import drongo_ext
from tests.fakes.apis import TwinServiceUsage
from tests.fakes.builds import FakeCloudBuild, FakeRegistry
from tests.fakes.cloudrun import FakeRunServices, RevisionHttp
from tests.fakes.engine import FakeEngine, PulumiBackend
from tests.fakes.grpcfake import GrpcFake
from tests.fakes.iam import Project
from tests.fakes.reporter import QuietReporter
from tests.fakes.runtime import Runtime
from tests.fakes.sqladmin import FakeSqlAdmin

REPO = Path(__file__).resolve().parents[2]
IMAGE = "europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:" + "a" * 64
IMAGE2 = "europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:" + "b" * 64
IMAGE3 = "europe-central2-docker.pkg.dev/example-staging/staging-deployctl/api@sha256:" + "c" * 64
SERVICE = "projects/example-staging/locations/europe-central2/services/staging-api"
FAST = RetryPolicy(deadline_s=1.5, initial_s=0.01, maximum_s=0.05, call_timeout_s=5)
# With the runtime, the fake Cloud Run answers an UpdateService once the new revision's instance started (the real
# one answers at once and the operation completes then, which deployctl waits for up to the stage's deadline)
TWIN = RetryPolicy(deadline_s=60, initial_s=0.01, maximum_s=0.05, call_timeout_s=120)


def mint_id_token(audience: str) -> str:
    """What google.oauth2.id_token.fetch_id_token returns: a JWT whose ``aud`` is the audience asked for
    (unsigned here; the fake Cloud Run reads the claim, as it cannot check Google's signature)."""
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'aud': audience, 'iss': 'https://accounts.google.com'})}.sig"


@dataclass
class Cloud:
    root: Path
    grpc: GrpcFake
    http: RevisionHttp
    run: FakeRunServices
    storage: storage.Client
    registry: FakeRegistry
    cloudbuild: FakeCloudBuild
    sql: FakeSqlAdmin
    pulumi: PulumiBackend
    project: Project | None = None
    runtime: Runtime | None = None  # set by the ``runtime`` fixture: Cloud Run runs the real code

    def use(self, project: Project) -> None:
        """Check every call that reaches the fakes against *project* (tests/fakes/iam.py). The build's own
        account is checked only in a twin project: the legacy cloud grants it nothing."""
        self.project = project
        self.grpc.project = self.sql.project = self.run.project = project
        self.cloudbuild.project = None if project.anonymous_is_owner else project
        drongo_ext.use_project(project)

    @property
    def twin_project(self) -> Project | None:
        """The project the program's grants go to: a twin's (the legacy cloud grants everything already)."""
        return None if self.project is None or self.project.anonymous_is_owner else self.project

    def target(self, stack: str = "staging", policy: RetryPolicy | None = None, engine: object = None,
               id_token: Callable[[str], str] | None = None, credentials: Any = None,
               log_credentials: Any = None, sending: Callable[[str, Any], None] | None = None) -> GcpTarget:
        """A GcpTarget on the fakes; its clients send *credentials* (None: none, the legacy cloud's owner), its Cloud
        Logging reads *log_credentials* when given (another principal than the rest); *sending* sees each of its
        gRPC calls before it leaves (GrpcFake.channel)."""
        config = load(stack, self.root)
        config = config.model_copy(update={"rollout": config.rollout.model_copy(update={"drain_s": 0.0})})
        channel = self.grpc.channel(credentials, sending)
        creds = credentials or AnonymousCredentials()
        return GcpTarget(
            config,
            self.root,
            engine=engine or FakeEngine(config, self.run, self.pulumi, self.sql, self.registry,  # type: ignore[arg-type]
                                        project=self.twin_project, credentials=credentials),
            services=run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
            revisions=run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
            jobs=run_v2.JobsClient(credentials=creds),
            executions=run_v2.ExecutionsClient(credentials=creds),
            secrets=secretmanager_v1.SecretManagerServiceClient(credentials=creds),
            storage=self.storage if credentials is None else storage.Client(project=config.project,
                                                                              credentials=credentials),
            builds=cloudbuild_v1.CloudBuildClient(transport=CloudBuildGrpcTransport(channel=channel)),
            registry=artifactregistry_v1.ArtifactRegistryClient(
                transport=ArtifactRegistryGrpcTransport(channel=channel)
            ),
            sqladmin=sqladmin_client(creds, 5, endpoint=self.sql.endpoint),
            logging=AuthorizedSession(log_credentials or creds),  # Cloud Logging's REST API, served by drongo
            id_token=id_token or mint_id_token,
            # each target is one command: by default it starts with no propagation window (the module-level
            # policy's window would otherwise carry over from one test, or command, to the next); a test that
            # passes a policy passes its window too
            policy=policy or replace(TWIN if self.runtime else FAST, propagation=Propagation()),
            progress=lambda line: None,
            poll_s=0.01,
        )

    def options(self, image: str = IMAGE, **kw: object) -> Options:
        return Options(command="deployctl up staging", image=image, root=self.root, lock_timeout_s=2, **kw)  # type: ignore[arg-type]

    def engine_calls(self, stack: str = "staging") -> list[str]:
        """The engine methods deployctl called on *stack* so far in this test (every target's engine)."""
        return self.pulumi.methods(stack)

    def preview(self, stack: str = "staging") -> list[tuple[str, str]]:
        """A hand-run ``pulumi preview`` of *stack*: (operation, resource) for each change it would show."""
        engine = FakeEngine(load(stack, self.root), self.run, self.pulumi, self.sql, self.registry,
                            project=self.twin_project)
        return [(c.op, c.name) for c in engine.preview()]

    def mutations(self) -> list[tuple[str, str]]:
        """Every change that reached the fake cloud (Cloud Run Services over gRPC, the rest over drongo)."""
        return self.grpc.mutations() + drongo_ext.RECORDER.calls + self.sql.calls


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    root = tmp_path / "repo"
    (root / "stacks").mkdir(parents=True)
    for name in ("staging", "production"):
        shutil.copy(REPO / "stacks" / f"Pulumi.{name}.yaml", root / "stacks")
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")  # the app's one definition, which the stacks override
    # the build context is the project root: the real Dockerfile, its ignore file and the app it COPYs
    shutil.copytree(REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Dockerfile.cloudrun", ".dockerignore"):
        shutil.copy(REPO / name, root / name)
    drongo_ext.install()
    drongo_ext.reset()
    fake, http = GrpcFake(), RevisionHttp()
    run = FakeRunServices(fake, http)
    registry = FakeRegistry(fake, "example-staging", "europe-central2", "staging-deployctl")
    cloudbuild = FakeCloudBuild(fake, registry)
    TwinServiceUsage(fake)
    sql = FakeSqlAdmin()
    fake.start()
    try:
        with mock_gcp():
            client = storage.Client(project="example-staging", credentials=AnonymousCredentials())
            client.create_bucket("example-staging-deployctl")
            client.create_bucket("example-production-deployctl")
            cloudbuild.read_object = drongo_ext.object_bytes  # Cloud Build's own read of the source
            drongo_ext.RECORDER.calls.clear()
            cloud = Cloud(root, fake, http, run, client, registry, cloudbuild, sql, PulumiBackend())
            cloud.use(Project.legacy("example-staging", other_ids=("example-production",)))
            yield cloud
    finally:
        drongo_ext.use_project(None)
        sql.stop()
        fake.stop()
        http.stop()


@pytest.fixture
def twin(cloud: Cloud) -> Cloud:
    """The same fakes as one Google Cloud project as Google creates it: only its default APIs enabled,
    roles/owner for tests.fakes.iam.OWNER only, and every call needing credentials; APIs and grants
    propagate in 0.2 s. The state buckets exist (bootstrap made them)."""
    cloud.use(Project("example-staging", api_delay_s=0.2, iam_delay_s=0.2))
    return cloud


@pytest.fixture(scope="session")
def twin_venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime's dependency venvs, one per spec for the whole run, shared by xdist workers (made under a
    file lock); the same place tests/e2e keeps its venvs, so a full run makes the sample app's venv once."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base
    venvs = shared / "deployctl-cache" / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    return venvs


@pytest.fixture
def runtime(cloud: Cloud, tmp_path: Path, twin_venvs: Path) -> Iterator[Runtime]:
    """Opt-in: the fake cloud runs the real code (tests/fakes/runtime.py) — built images, revisions and job
    executions as processes, a real Postgres for the stack's Cloud SQL instance. Stopped when the test ends."""
    stack = load("staging", cloud.root)
    twin = Runtime(tmp_path / "twin", twin_venvs)
    try:
        if stack.database is not None:
            twin.cloud_sql(naming.instance(stack), naming.connection(stack), stack.database.name,
                           list(stack.database.extensions))
        cloud.cloudbuild.on_image = twin.image_built
        cloud.sql.applied = twin.user_applied
        cloud.run.runtime = twin
        drongo_ext.JOBS.runtime = twin
        cloud.runtime = twin
        yield twin
    finally:
        cloud.cloudbuild.on_image = cloud.sql.applied = cloud.run.runtime = drongo_ext.JOBS.runtime = None
        cloud.runtime = None
        twin.stop()


@pytest.fixture
def reporter() -> QuietReporter:
    return QuietReporter()


def git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()
