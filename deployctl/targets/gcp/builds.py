"""Cloud Build + Artifact Registry facade: find an image built from this source, or build one.

Rules:
- Images are addressed by digest. The tag is the source hash, so the same source is built once: when
  Artifact Registry already holds ``IMAGE:<source hash>`` its digest is reused and no build runs.
- The build context is the project root (where Dockerfile.cloudrun and its COPY sources live), less what
  its ``.gcloudignore`` (else ``.dockerignore``) excludes; the source hash covers exactly that upload.
- Sources go to ``gs://<project>_cloudbuild/source/`` as ``gcloud builds submit`` does. The upload comes
  first, so an identity that may only write objects (the trigger's, with bootstrap's storage.objectAdmin)
  can release; only when the bucket is missing (404) does deployctl create it, as gcloud would (that takes
  storage.buckets.create: the first release, from a laptop, usually does it).
- The build runs as the stack's build service account (``<stack>-build``, the program's), not the
  project's default one, which Google changed in 2024 and may hold no roles; with a user-chosen service
  account Cloud Build requires a logging choice, so logs go to Cloud Logging only (Cloud Build docs,
  "Configure user-specified service accounts").
- The build pulls the previous image (``:latest``) and passes it as ``--cache-from``.
- A build is followed until it ends, reporting each status change; its digest comes from the build's
  results, never from a mutable tag.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployctl.errors import DeployctlError
from deployctl.pipeline.model import Artifact
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read

_DONE = {"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"}


class Builds:
    def __init__(
        self,
        builds: Any,
        registry: Any,
        storage: Any,
        project: str,
        region: str,
        repository: str,
        policy: RetryPolicy,
        progress: Callable[[str], None],
        poll_s: float = 3.0,
        service_account: str | None = None,
    ) -> None:
        self.builds, self.registry, self.storage = builds, registry, storage
        self.project, self.region, self.repository = project, region, repository
        self.service_account = service_account  # projects/P/serviceAccounts/EMAIL the build runs as
        self.policy, self.progress, self.poll_s = policy, progress, poll_s

    def image(self, service: str) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}/{service}"

    def find(self, service: str, source_hash: str) -> Artifact | None:
        from google.api_core import exceptions as gexc

        tag = (
            f"projects/{self.project}/locations/{self.region}/repositories/{self.repository}"
            f"/packages/{service}/tags/{_tag(source_hash)}"
        )

        def call() -> Artifact | None:
            try:
                found = self.registry.get_tag(name=tag, retry=None, timeout=self.policy.call_timeout_s)
            except gexc.NotFound:
                return None
            digest = str(found.version).rsplit("/", 1)[-1]
            return Artifact(service, source_hash, f"{self.image(service)}@{digest}", digest)

        return read(call, f"look up {service}:{_tag(source_hash)} in Artifact Registry", self.policy)

    def build(self, service: str, source_hash: str, context: Path, dockerfile: str) -> Artifact:
        obj = f"source/{service}-{source_hash[:16]}.tgz"
        self._upload(f"{self.project}_cloudbuild", obj, pack(context))
        image = self.image(service)
        tagged = f"{image}:{_tag(source_hash)}"
        request = {
            "source": {"storage_source": {"bucket": f"{self.project}_cloudbuild", "object_": obj}},
            "steps": [
                {
                    "name": "gcr.io/cloud-builders/docker",
                    "entrypoint": "bash",
                    "args": ["-c", f"docker pull {image}:latest || true"],
                },
                {
                    "name": "gcr.io/cloud-builders/docker",
                    "args": [
                        "build",
                        "-f",
                        dockerfile,
                        "--cache-from",
                        f"{image}:latest",
                        "-t",
                        tagged,
                        "-t",
                        f"{image}:latest",
                        ".",
                    ],
                },
            ],
            "images": [tagged, f"{image}:latest"],
            "tags": ["deployctl", service],
        }
        if self.service_account:
            request["service_account"] = self.service_account
            request["options"] = {"logging": "CLOUD_LOGGING_ONLY"}
        build = mutate(
            lambda: (
                self.builds.create_build(
                    project_id=self.project, build=request, retry=None, timeout=self.policy.call_timeout_s
                ).metadata.build
            ),
            lambda: None,  # an unknown outcome is retried: a duplicate build of the same source is harmless
            f"start the Cloud Build of {service}",
            self.policy,
        )
        build = self._follow(build)
        digest = next((i.digest for i in build.results.images if i.name == tagged), "")
        if build.status.name != "SUCCESS" or not digest:
            why = f": {build.failure_info.detail}" if build.failure_info.detail else ""
            raise DeployctlError(f"Cloud Build {build.id} of {service} ended {build.status.name}{why}",
                                 f"Build log: {build.log_url}")
        return Artifact(service, source_hash, f"{image}@{digest}", digest)

    def _create_bucket(self, name: str) -> None:
        def lookup() -> Any:
            return self.storage.lookup_bucket(name, timeout=self.policy.call_timeout_s)

        def create() -> Any:
            bucket = self.storage.bucket(name)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            return self.storage.create_bucket(bucket, location=self.region, timeout=self.policy.call_timeout_s)

        mutate(create, lookup, f"create gs://{name} for build sources", self.policy)

    def _upload(self, bucket: str, obj: str, data: bytes) -> None:
        from google.api_core import exceptions as gexc

        blob = self.storage.bucket(bucket).blob(obj)

        def send() -> None:
            try:
                blob.upload_from_string(data, content_type="application/gzip", retry=None,
                                        timeout=self.policy.call_timeout_s)
            except gexc.NotFound:  # no such bucket yet
                self._create_bucket(bucket)
                blob.upload_from_string(data, content_type="application/gzip", retry=None,
                                        timeout=self.policy.call_timeout_s)

        # same name, same bytes: an upload is idempotent
        mutate(send, lambda: None, f"upload the source to gs://{bucket}/{obj}", self.policy)

    def _follow(self, build: Any) -> Any:
        status = ""
        while True:
            if build.status.name != status:
                status = build.status.name
                self.progress(f"Cloud Build {build.id}: {status.lower()}")
            if status in _DONE:
                return build
            time.sleep(self.poll_s)
            build = self._get(build.id)

    def _get(self, build_id: str) -> Any:
        return read(
            lambda: self.builds.get_build(
                project_id=self.project, id=build_id, retry=None, timeout=self.policy.call_timeout_s
            ),
            f"read Cloud Build {build_id}",
            self.policy,
        )


def _tag(source_hash: str) -> str:
    return f"src-{source_hash[:40]}"


def ignore_patterns(source: Path) -> list[str]:
    for name in (".gcloudignore", ".dockerignore"):
        path = source / name
        if path.is_file():
            lines = [line.strip() for line in path.read_text().splitlines()]
            return [line for line in lines if line and not line.startswith("#")]
    return [".git", "__pycache__"]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        parts = rel.split("/")
        hit = fnmatch.fnmatch(rel, pat) or any(
            fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts))
        )
        hit = hit or (("/" not in pat) and any(fnmatch.fnmatch(p, pat) for p in parts))
        if hit:
            ignored = not negate
    return ignored


def pack(source: Path) -> bytes:
    """A reproducible .tgz of *source* without what its ignore file excludes."""
    if not source.is_dir():
        raise DeployctlError(f"{source}: no such source directory", "Check deployctl:services.<name>.source.")
    patterns = ignore_patterns(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                rel = path.relative_to(source).as_posix()
                if _ignored(rel, patterns):
                    continue
                info = tar.gettarinfo(str(path), arcname=rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


def source_hash(source: Path) -> str:
    """A content hash of what a build would upload (the same files, in the same order)."""
    if not source.is_dir():
        raise DeployctlError(f"{source}: no such source directory", "Check deployctl:services.<name>.source.")
    patterns = ignore_patterns(source)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(source).as_posix()
            if not _ignored(rel, patterns):
                digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
