"""Cloud Run Services facade (run_v2 ServicesClient + RevisionsClient): revisions, tags, traffic.

Rules:
- Traffic is always written as explicit revision targets (never LATEST), so a template change made by
  ``pulumi up`` or by :meth:`deploy` never moves users by itself.
- A candidate revision starts at 0 % with the ``candidate`` tag; its tag URL is what smoke checks hit.
- Every mutation reads the service first (etag) and re-reads it before a retry (see retry.py), and every
  traffic change is verified against ``traffic_statuses``, which is what Cloud Run really serves.
- SDK exceptions never escape: they become DeployctlError subclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployctl.errors import DeployctlError
from deployctl.naming import CANDIDATE_TAG
from deployctl.pipeline.model import Split
from deployctl.targets.gcp.retry import RetryPolicy, mutate, read, wait

__all__ = ["CANDIDATE_TAG", "CloudRunServices", "RevisionInfo", "Spec", "set_release"]


@dataclass(frozen=True)
class Spec:
    """What deployctl owns in a revision: its name, image, pinned secret env, labels, and the plain env values
    that depend on the pinned secrets (``{db_user}`` is the login of the pinned password version)."""

    revision: str
    image: str
    secret_env: dict[str, tuple[str, str]]  # ENV -> (secret id, pinned version)
    labels: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)  # ENV -> value, replacing what the template has


@dataclass(frozen=True)
class RevisionInfo:
    name: str  # short revision name (``api-3f2a…``)
    image: str
    ready: bool
    message: str
    secret_env: dict[str, tuple[str, str]]
    env: dict[str, str] = field(default_factory=dict)  # the plain values


class CloudRunServices:
    def __init__(
        self, services: Any, revisions: Any, project: str, region: str, policy: RetryPolicy,
        cloud_name: Callable[[str], str] | None = None, poll_s: float = 1.0,
    ) -> None:
        self.poll_s = poll_s  # the first wait between looks at an update's long-running operation
        self.cloud_name = cloud_name or (lambda service: service)  # stack service key -> Cloud Run name
        self.services = services
        self.revisions = revisions
        self.parent = f"projects/{project}/locations/{region}"
        self.policy = policy

    # -- names ------------------------------------------------------------------------------------
    def service_name(self, service: str) -> str:
        return f"{self.parent}/services/{self.cloud_name(service)}"

    def revision_name(self, service: str, revision: str) -> str:
        return f"{self.service_name(service)}/revisions/{revision}"

    # -- reads ------------------------------------------------------------------------------------
    def get(self, service: str) -> Any | None:
        from google.api_core import exceptions as gexc

        def call() -> Any:
            try:
                return self.services.get_service(
                    name=self.service_name(service), retry=None, timeout=self.policy.call_timeout_s
                )
            except gexc.NotFound:
                return None

        return read(call, f"read Cloud Run service {service}", self.policy)

    def require(self, service: str) -> Any:
        svc = self.get(service)
        if svc is None:
            raise DeployctlError(
                f"Cloud Run service {service!r} does not exist in {self.parent}",
                "Run `deployctl up STACK` once so the infrastructure creates it.",
            )
        return svc

    def url(self, service: str) -> str:
        return str(self.require(service).uri)

    def traffic(self, service: str) -> list[Split]:
        """What Cloud Run serves now, from ``traffic_statuses`` (LATEST resolved to a revision name)."""
        svc = self.get(service)
        return [] if svc is None else _statuses(svc)

    def ready(self, service: str) -> str | None:
        """Why the service is not Ready (its terminal condition is False), or None when it is or cannot say.

        Cloud Run Admin API v2, Service.terminal_condition: "The Condition of this Service, containing its
        readiness status"; its type is ``Ready``."""
        svc = self.get(service)
        if svc is None:
            return "the service does not exist"
        condition = svc.terminal_condition
        if condition.state == condition.State.CONDITION_FAILED:
            return str(condition.message) or str(condition.reason) or "its Ready condition is False"
        return None

    def tag_url(self, service: str, tag: str) -> str | None:
        svc = self.get(service)
        for status in svc.traffic_statuses if svc else []:
            if status.tag == tag:
                return str(status.uri)
        return None

    def revision(self, service: str, revision: str) -> RevisionInfo | None:
        from google.api_core import exceptions as gexc

        def call() -> Any:
            try:
                return self.revisions.get_revision(
                    name=self.revision_name(service, revision), retry=None, timeout=self.policy.call_timeout_s
                )
            except gexc.NotFound:
                return None

        rev = read(call, f"read revision {revision}", self.policy)
        return None if rev is None else _info(rev)

    # -- mutations --------------------------------------------------------------------------------
    def deploy(self, service: str, spec: Spec) -> RevisionInfo:
        """Create (or find) the revision *spec* describes, with 0 % traffic and the candidate tag."""
        existing = self.revision(service, spec.revision)
        if existing is not None and existing.image != spec.image:
            raise DeployctlError(
                f"revision {spec.revision} exists with another image ({existing.image})",
                "Revision names are derived from image, secrets and settings; report this as a bug.",
            )
        svc = self.require(service)
        serving = [s for s in _statuses(svc) if s.percent > 0]
        traffic = [Split(s.revision, s.percent, None if s.tag == CANDIDATE_TAG else s.tag) for s in serving]
        traffic.append(Split(spec.revision, 0, CANDIDATE_TAG))
        if existing is None:
            _apply_spec(svc.template, spec)
        self._update(service, svc, traffic, f"create revision {spec.revision} of {service}")
        info = self.revision(service, spec.revision)
        if info is None or not info.ready:
            why = info.message if info else "it was not created"
            raise DeployctlError(f"revision {spec.revision} is not ready: {why}", _logs_hint(service))
        return info

    def set_traffic(self, service: str, splits: list[Split], keep_tags: bool = True) -> None:
        """Route traffic to exactly *splits*; 0 % entries keep their tags so tag URLs stay reachable."""
        if sum(s.percent for s in splits) != 100:
            raise DeployctlError(f"traffic for {service} must add up to 100 %, got {splits}")
        svc = self.require(service)
        wanted = {s.revision for s in splits}
        tagged = {s.revision: s.tag for s in _statuses(svc) if s.tag}
        traffic = [Split(s.revision, s.percent, s.tag or tagged.get(s.revision)) for s in splits]
        if keep_tags:
            traffic += [Split(rev, 0, tag) for rev, tag in tagged.items() if rev not in wanted]
        self._update(service, svc, traffic, f"route traffic of {service}")
        self.verify(service, splits)

    def drop_tags(self, service: str, revisions: set[str]) -> None:
        """Remove the tags of *revisions* (a discarded candidate, or retired revisions)."""
        svc = self.require(service)
        statuses = _statuses(svc)
        if not any(s.tag and s.revision in revisions for s in statuses):
            return
        traffic = [s for s in statuses if s.percent > 0 or (s.tag and s.revision not in revisions)]
        traffic = [Split(s.revision, s.percent, None if s.revision in revisions else s.tag) for s in traffic]
        self._update(service, svc, traffic, f"remove tags of {', '.join(sorted(revisions))}")

    def verify(self, service: str, splits: list[Split]) -> None:
        actual = {s.revision: s.percent for s in self.traffic(service) if s.percent}
        wanted = {s.revision: s.percent for s in splits if s.percent}
        if actual != wanted:
            raise DeployctlError(
                f"{service} serves {_show(actual)}, not the requested {_show(wanted)}",
                f"Check the service: gcloud run services describe {service} --region {self.parent.split('/')[-1]}",
            )

    def _update(self, service: str, svc: Any, traffic: list[Split], what: str) -> None:
        from google.cloud import run_v2

        del svc.traffic[:]
        for split in traffic:
            svc.traffic.append(
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                    revision=split.revision,
                    percent=split.percent,
                    tag=split.tag or "",
                )
            )
        wanted_revision = svc.template.revision
        wanted = {(s.revision, s.percent, s.tag or "") for s in traffic}

        def send() -> Any:
            return self.services.update_service(service=svc, retry=None, timeout=self.policy.call_timeout_s)

        def applied() -> bool | None:  # a lost answer: whether the update is in place already
            now = self.get(service)
            if now is None:
                return None
            same = {(s.revision, s.percent, s.tag or "") for s in _statuses(now)} == wanted
            return True if same and now.template.revision == wanted_revision else None

        operation = mutate(send, applied, what, self.policy)  # sent once; re-sent only when it did not land
        if operation is True:
            return
        region = self.parent.split("/")[-1]
        serving = _show({s.revision: s.percent for s in traffic if s.percent})
        may_land = f"revision {wanted_revision} may still become ready and {service} may still serve {serving}"
        check = f"gcloud run services describe {self.cloud_name(service)} --region {region}"
        wait(operation, what, self.policy, may_land, check, first_s=self.poll_s)


def _apply_spec(template: Any, spec: Spec) -> None:
    from google.cloud import run_v2

    template.revision = spec.revision
    template.labels.update(spec.labels)
    if not template.containers:
        template.containers.append(run_v2.Container(image=spec.image))
    set_release(template.containers[0], spec.image, spec.secret_env, spec.env)


def set_release(container: Any, image: str, secret_env: dict[str, tuple[str, str]], env: dict[str, str]) -> None:
    """A service's or a job's container runs a release: its image, pinned secrets and the env values that
    follow them; the rest of its env (the settings Pulumi applied) stays as it is."""
    from google.cloud import run_v2

    container.image = image
    keep = [e for e in container.env if e.name not in secret_env and e.name not in env]
    del container.env[:]
    container.env.extend(keep)
    container.env.extend(run_v2.EnvVar(name=name, value=value) for name, value in sorted(env.items()))
    for name, (secret, version) in sorted(secret_env.items()):
        ref = run_v2.SecretKeySelector(secret=secret, version=version)
        container.env.append(run_v2.EnvVar(name=name, value_source=run_v2.EnvVarSource(secret_key_ref=ref)))


def _statuses(svc: Any) -> list[Split]:
    latest = str(svc.latest_ready_revision).rsplit("/", 1)[-1]
    out = []
    for status in svc.traffic_statuses:
        revision = status.revision or latest  # a LATEST entry names no revision
        out.append(Split(revision, int(status.percent), status.tag or None))
    return out


def _info(rev: Any) -> RevisionInfo:
    ready = next((c for c in rev.conditions if c.type_ == "Ready"), None)
    container = rev.containers[0] if rev.containers else None
    secret_env, plain = {}, {}
    for env in container.env if container else []:
        ref = env.value_source.secret_key_ref if env.value_source else None
        if ref and ref.secret:
            secret_env[env.name] = (str(ref.secret).rsplit("/", 1)[-1], str(ref.version))
        else:
            plain[env.name] = str(env.value)
    return RevisionInfo(
        name=str(rev.name).rsplit("/", 1)[-1],
        image=str(container.image) if container else "",
        ready=bool(ready and ready.state == ready.State.CONDITION_SUCCEEDED),
        message=str(ready.message) if ready else "no Ready condition",
        secret_env=secret_env,
        env=plain,
    )


def _show(traffic: dict[str, int]) -> str:
    return ", ".join(f"{p} % to {r}" for r, p in sorted(traffic.items())) or "nothing"


def _logs_hint(service: str) -> str:
    return f"See the revision's logs: gcloud run services logs read {service}"
