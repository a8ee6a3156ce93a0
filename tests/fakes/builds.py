"""Fake Artifact Registry (tags → digests) and Cloud Build (operations, statuses) over gRPC.

A build created here goes QUEUED → WORKING → SUCCESS over successive GetBuild calls; on success each
image it names is tagged in the fake registry with a digest derived from the uploaded source object, so
the same source gives the same digest. ``fail_next`` makes the next build end in FAILURE.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import tarfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.cloud import artifactregistry_v1 as ar
from google.cloud.devtools import cloudbuild_v1 as cb

from tests.fakes.grpcfake import FakeError, GrpcFake

if TYPE_CHECKING:
    from tests.fakes.iam import Project

_STEPS = [cb.Build.Status.QUEUED, cb.Build.Status.WORKING, cb.Build.Status.SUCCESS]


class FakeRegistry:
    """Tags → digests in the repositories that exist. A repository exists once something created it (the
    fake engine applies the program's ``gcp:artifactregistry/repository:Repository``); a push to any other
    name fails, as Artifact Registry documents it ("Troubleshooting": ``name unknown: Repository "…" not
    found``; pushing never creates a repository)."""

    def __init__(self, fake: GrpcFake, project: str, region: str, repository: str) -> None:
        self.repositories: set[str] = set()  # repository ids that exist
        self.tags: dict[str, str] = {}  # "service:tag" -> sha256:…
        self.prefix = f"projects/{project}/locations/{region}/repositories/{repository}/packages/"
        self.lock = threading.Lock()
        fake.add("google.devtools.artifactregistry.v1.ArtifactRegistry", "GetTag", self._get_tag, ar.GetTagRequest)

    def holds(self, name: str) -> bool:
        """Whether the repository ``projects/P/locations/L/repositories/R`` exists (the engine made R)."""
        return name.rsplit("/", 1)[-1] in self.repositories

    def _get_tag(self, request: ar.GetTagRequest) -> ar.Tag:
        package, _, tag = request.name.removeprefix(self.prefix).partition("/tags/")
        with self.lock:
            digest = self.tags.get(f"{package}:{tag}")
        if digest is None:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"tag {request.name} not found")
        return ar.Tag(name=request.name, version=f"{self.prefix}{package}/versions/{digest}")

    def tag(self, image: str, digest: str) -> None:
        service, _, tag = image.rsplit("/", 1)[-1].partition(":")
        with self.lock:
            self.tags[f"{service}:{tag}"] = digest


class FakeCloudBuild:
    """Rules, as Cloud Build documents them:
    - a build with a user-specified ``service_account`` must say where logs go (``options.logging``
      CLOUD_LOGGING_ONLY or NONE, or a logs bucket), else CreateBuild is INVALID_ARGUMENT ("Configure
      user-specified service accounts");
    - the build fetches its ``storage_source`` object first: a missing object fails the build
      (FailureInfo FETCH_SOURCE_FAILED);
    - ``docker build -f F .`` runs the user's Dockerfile on the uploaded context: a missing Dockerfile, or a
      COPY/ADD source that is not in the context, fails the step (Docker: "COPY failed: file not found in
      build context"), so the build ends FAILURE (FailureInfo USER_BUILD_STEP);
    - with a project set (``project``, tests/fakes/iam.py), the build runs as its ``service_account``, which
      needs what its steps do ("Configure user-specified service accounts": grant the account the roles the
      build needs; roles/cloudbuild.builds.builder, the default builder's role, holds exactly these):
      ``storage.objects.get`` on the source object, else FETCH_SOURCE_FAILED naming the permission (Cloud
      Storage's 403 "… does not have storage.objects.get access …"), and
      ``artifactregistry.repositories.uploadArtifacts`` on the repository of each image, else PUSH_FAILED
      ("denied: Permission 'artifactregistry.repositories.uploadArtifacts' denied on resource …", as docker
      push reports Artifact Registry's refusal). Whether the caller may create the build at all (and act as
      that account) is the gRPC layer's check (tests/fakes/iam.py GRPC_RULES).
    """

    def __init__(self, fake: GrpcFake, registry: FakeRegistry,
                 read_object: Callable[[str, str], bytes | None] | None = None) -> None:
        self.registry = registry
        self.read_object = read_object  # (bucket, object) -> bytes, or None when it does not exist
        self.builds: dict[str, tuple[cb.Build, int]] = {}
        self.fail_next = False
        self.project: Project | None = None  # when set, the build's own account needs its permissions
        # (digest, uploaded context) of each image a build pushed: the twin's runtime runs them (runtime.py)
        self.on_image: Callable[[str, bytes], None] | None = None
        self._ids = itertools.count(1)
        service = "google.devtools.cloudbuild.v1.CloudBuild"
        fake.add(service, "CreateBuild", self._create, cb.CreateBuildRequest)
        fake.add(service, "GetBuild", self._get, cb.GetBuildRequest)

    def _create(self, request: cb.CreateBuildRequest) -> Any:
        from google.longrunning import operations_pb2

        build = cb.Build(request.build)
        logging = build.options.logging
        if build.service_account and logging not in (cb.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY,
                                                     cb.BuildOptions.LoggingMode.NONE) and not build.logs_bucket:
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT, "if 'build.service_account' is specified, the build "
                            "must either (a) specify 'build.logs_bucket', (b) use the REGIONAL_USER_OWNED_BUCKET "
                            "build.options.default_logs_bucket_behavior option, or (c) use either CLOUD_LOGGING_ONLY "
                            "/ NONE logging options")
        build.id = f"b-{next(self._ids)}"
        build.status = cb.Build.Status.QUEUED
        build.log_url = f"https://console.cloud.google.com/cloud-build/builds/{build.id}"
        why = self._identity_fails(build) or self._context_fails(build)
        if why is not None:
            kind, _, detail = why.partition(": ")
            build.failure_info = cb.Build.FailureInfo(type_=cb.Build.FailureInfo.FailureType[kind], detail=detail)
        failing = self.fail_next or why is not None
        self.fail_next = False
        self.builds[build.id] = (build, -1 if failing else 0)
        op = operations_pb2.Operation(name=f"operations/build/{build.id}", done=False)
        op.metadata.Pack(cb.BuildOperationMetadata.pb(cb.BuildOperationMetadata(build=build)))
        return op

    def _identity_fails(self, build: cb.Build) -> str | None:
        """Why the build's account cannot fetch its source or push its images, or None."""
        if self.project is None or not build.service_account:
            return None
        from tests.fakes.iam import email

        member = "serviceAccount:" + build.service_account.rsplit("/", 1)[-1]
        source = build.source.storage_source
        if source.object_:
            where = f"projects/_/buckets/{source.bucket}/objects/{source.object_}"
            if self.project.deny(member, "storage.googleapis.com", [("storage.objects.get", where)]):
                return (f"FETCH_SOURCE_FAILED: {email(member)} does not have storage.objects.get access to the "
                        f"Google Cloud Storage object gs://{source.bucket}/{source.object_}.")
        for image in build.images:
            host, project, repository = image.split("/")[:3]
            where = f"projects/{project}/locations/{host.removesuffix('-docker.pkg.dev')}/repositories/{repository}"
            denial = self.project.deny(member, "artifactregistry.googleapis.com",
                                       [("artifactregistry.repositories.uploadArtifacts", where)])
            if denial is not None:
                return f"PUSH_FAILED: denied: {denial.message}"
        return None

    def _context_fails(self, build: cb.Build) -> str | None:
        """Why the uploaded context cannot build, or None (checked when a reader of the bucket is wired)."""
        if self.read_object is None or not build.source.storage_source.object_:
            return None
        data = self.read_object(build.source.storage_source.bucket, build.source.storage_source.object_)
        if data is None:
            return "FETCH_SOURCE_FAILED: the source object does not exist"
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = set(tar.getnames())
            dockerfile = next((s.args[s.args.index("-f") + 1] for s in build.steps if "-f" in s.args), "Dockerfile")
            if dockerfile not in names:
                return f"USER_BUILD_STEP: {dockerfile} is not in the build context"
            text = tar.extractfile(dockerfile).read().decode()  # type: ignore[union-attr]
        for source in _copy_sources(text):
            if source not in names and not any(n.startswith(source.rstrip("/") + "/") for n in names):
                return f"USER_BUILD_STEP: COPY failed: file not found in build context: {source}"
        return None

    def _get(self, request: cb.GetBuildRequest) -> cb.Build:
        if request.id not in self.builds:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"build {request.id} not found")
        build, step = self.builds[request.id]
        if step < 0:
            build.status = cb.Build.Status.FAILURE
            return build
        step = min(step + 1, len(_STEPS) - 1)
        build.status = _STEPS[step]
        missing = sorted({i.split("/")[2] for i in build.images} - self.registry.repositories)
        if build.status == cb.Build.Status.SUCCESS and missing:  # the push, the build's last step, fails
            build.status = cb.Build.Status.FAILURE
            build.failure_info = cb.Build.FailureInfo(type_=cb.Build.FailureInfo.FailureType.PUSH_FAILED,
                                                      detail=f'name unknown: Repository "{missing[0]}" not found')
        if build.status == cb.Build.Status.SUCCESS and not build.results.images:
            source = build.source.storage_source.object_
            digest = "sha256:" + hashlib.sha256(source.encode()).hexdigest()
            for image in build.images:
                self.registry.tag(image, digest)
                build.results.images.append(cb.BuiltImage(name=image, digest=digest))
            context = self.read_object(build.source.storage_source.bucket, source) if self.read_object else None
            if self.on_image is not None and context is not None:
                self.on_image(digest, context)
        self.builds[request.id] = (build, step)
        return build


def _copy_sources(dockerfile: str) -> list[str]:
    """The context paths a Dockerfile's COPY/ADD instructions read (not those of a --from stage)."""
    sources = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD") or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += [a.removeprefix("./").rstrip("/") or "." for a in args[:-1] if a not in (".", "./")]
    return sources
