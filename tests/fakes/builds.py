"""Fake Artifact Registry (tags → digests) and Cloud Build (operations, statuses) over gRPC.

A build created here goes QUEUED → WORKING → SUCCESS over successive GetBuild calls; on success each
image it names is tagged in the fake registry with a digest derived from the uploaded source object, so
the same source gives the same digest. ``fail_next`` makes the next build end in FAILURE.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from typing import Any

import grpc
from google.cloud import artifactregistry_v1 as ar
from google.cloud.devtools import cloudbuild_v1 as cb

from tests.fakes.grpcfake import FakeError, GrpcFake

_STEPS = [cb.Build.Status.QUEUED, cb.Build.Status.WORKING, cb.Build.Status.SUCCESS]


class FakeRegistry:
    def __init__(self, fake: GrpcFake, project: str, region: str, repository: str) -> None:
        self.tags: dict[str, str] = {}  # "service:tag" -> sha256:…
        self.prefix = f"projects/{project}/locations/{region}/repositories/{repository}/packages/"
        self.lock = threading.Lock()
        fake.add("google.devtools.artifactregistry.v1.ArtifactRegistry", "GetTag", self._get_tag, ar.GetTagRequest)

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
    def __init__(self, fake: GrpcFake, registry: FakeRegistry) -> None:
        self.registry = registry
        self.builds: dict[str, tuple[cb.Build, int]] = {}
        self.fail_next = False
        self._ids = itertools.count(1)
        service = "google.devtools.cloudbuild.v1.CloudBuild"
        fake.add(service, "CreateBuild", self._create, cb.CreateBuildRequest)
        fake.add(service, "GetBuild", self._get, cb.GetBuildRequest)

    def _create(self, request: cb.CreateBuildRequest) -> Any:
        from google.longrunning import operations_pb2

        build = cb.Build(request.build)
        build.id = f"b-{next(self._ids)}"
        build.status = cb.Build.Status.QUEUED
        build.log_url = f"https://console.cloud.google.com/cloud-build/builds/{build.id}"
        failing = self.fail_next
        self.fail_next = False
        self.builds[build.id] = (build, -1 if failing else 0)
        op = operations_pb2.Operation(name=f"operations/build/{build.id}", done=False)
        op.metadata.Pack(cb.BuildOperationMetadata.pb(cb.BuildOperationMetadata(build=build)))
        return op

    def _get(self, request: cb.GetBuildRequest) -> cb.Build:
        if request.id not in self.builds:
            raise FakeError(grpc.StatusCode.NOT_FOUND, f"build {request.id} not found")
        build, step = self.builds[request.id]
        if step < 0:
            build.status = cb.Build.Status.FAILURE
            return build
        step = min(step + 1, len(_STEPS) - 1)
        build.status = _STEPS[step]
        if build.status == cb.Build.Status.SUCCESS and not build.results.images:
            source = build.source.storage_source.object_
            digest = "sha256:" + hashlib.sha256(source.encode()).hexdigest()
            for image in build.images:
                self.registry.tag(image, digest)
                build.results.images.append(cb.BuiltImage(name=image, digest=digest))
        self.builds[request.id] = (build, step)
        return build
