"""The cloud names a stack's resources get, and the database facts' values on Cloud Run.

Rule: pure functions of the stack model (no Pulumi import), so the program (deployctl.infra), the policy
rules, deployctl's targets and bootstrap name things the same way. Every name is ``<stack>-<what>``; a name
Google would refuse is a ConfigError naming the stack file and the key, raised before any resource is
declared. The database facts themselves are named in deployctl.facts, which config.py reads too (so the
config model does not import this module, which reads the config model).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import TYPE_CHECKING

from deployctl.errors import ConfigError
from deployctl.facts import CLOUDSQL_MOUNT, db_facts

if TYPE_CHECKING:
    from deployctl.config import Stack

_STACK = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # leaves room for the suffixes below within Google's limits
RUN_MAX = 63  # Cloud Run service and job names (RFC 1035 labels)
# Cloud Run Admin API v2, CreateServiceRequest.service_id: "must contain fewer than 50 characters"
SERVICE_ID_MAX = 49
# Cloud Run refuses a traffic tag whose tag URL label would not fit: "Combined traffic tag and service name cannot
# exceed 46 characters" (gcloud run deploy's error; firebase-tools#6137, PolicyEngine/policyengine-api#3729)
TAG_AND_SERVICE_MAX = 46
# Cloud Run Admin API v2, RevisionTemplate.revision: an RFC 1035 label, "<service name>-<suffix>", 63 at most
REVISION_MAX = 63
CANDIDATE_TAG = "candidate"  # the tag a new revision gets at 0 % (its tag URL is what smoke checks hit)
ACCOUNT_MAX = 30  # service-account ids: 6-30 characters
RELEASE_ENV = "DEPLOYCTL_PULUMI_RELEASE"  # the release deployctl hands its own `pulumi up` (config.Release JSON)


# The Google APIs a stack's resources need: the program enables them, and bootstrap enables them (with the
# few it needs itself) before the first pulumi up.
PROGRAM_APIS = (
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "secretmanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "containerscanning.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
)

def service(stack: Stack, svc: str) -> str:
    """The Cloud Run service name; Cloud Run names every revision ``<service name>-<suffix>``."""
    return f"{stack.name}-{svc}"


def revision(stack: Stack, svc: str, digest: str) -> str:
    """The name deployctl gives a revision: Cloud Run wants ``<service name>-<suffix>``."""
    return f"{service(stack, svc)}-{digest}"


def job(stack: Stack, owner: str, kind: str) -> str:
    return f"{stack.name}-{owner}-{kind}"


def instance(stack: Stack) -> str:
    return f"{stack.name}-db"


def connection(stack: Stack) -> str:
    """The Cloud SQL connection name Google gives the instance: ``project:region:instance``."""
    return f"{stack.project}:{stack.region}:{instance(stack)}"


def secret(stack: Stack, name: str) -> str:
    return f"{stack.name}-{name}"


def repository(stack: Stack) -> str:
    """The Artifact Registry repository id: the stack's prefix before ``gcp.repository``."""
    return f"{stack.name}-{stack.gcp.repository}"


def trigger(stack: Stack) -> str:
    return f"{stack.name}-release"


def account(stack: Stack, role: str) -> str:
    """A service-account id (``<stack>-<role>``), shortened with a hash when it would pass 30 characters."""
    base = re.sub(r"[^a-z0-9-]", "-", f"{stack.name}-{role}".lower())
    if len(base) <= ACCOUNT_MAX:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[: ACCOUNT_MAX - 7].rstrip('-')}-{digest}"


def runtime_account(stack: Stack, svc: str) -> str:
    return account(stack, f"{svc}-run")


def working_dir(stack: Stack, service: str, workdir: str | None) -> str | None:
    """The container's working_dir on Cloud Run for *workdir* (relative to the service's source), or None: the
    image's own WORKDIR. The image holds the project root at ``gcp.image_root`` (the local target runs the
    same command from the same place in its artifact)."""
    if workdir is None:
        return None
    return posixpath.normpath(posixpath.join(stack.gcp.image_root, stack.services[service].source, workdir))


def cloud_sql_facts(stack: Stack, user: str) -> dict[str, str]:
    """DB_FACTS on Cloud Run, logged in as *user*: the instance's socket where Cloud Run mounts it."""
    assert stack.database is not None  # config.py refuses a database fact in a stack without a database
    name = connection(stack)
    return db_facts(user=user, name=stack.database.name, connection=name, socket=f"{CLOUDSQL_MOUNT}/{name}")


def check(stack: Stack) -> None:
    """Raise ConfigError when a derived name, or a revision in the release deployctl handed the program, is
    one Google would refuse."""
    if not _STACK.match(stack.name):
        raise ConfigError(
            f"{stack.file}: stack name {stack.name!r} cannot prefix Google Cloud resource names",
            "Use 1-20 lowercase letters, digits and hyphens, starting with a letter (e.g. staging).",
        )
    for svc in stack.services:
        name = service(stack, svc)
        key = f"{stack.file}: deployctl:services.{svc}"
        if len(name) > SERVICE_ID_MAX:
            raise ConfigError(f"{key}: Cloud Run service name {name!r} has {len(name)} characters; Cloud Run "
                              f"allows fewer than {SERVICE_ID_MAX + 1}",
                              "Shorten the service key or the stack name ('<stack>-<service>' is the name).")
        for tag in _tags(stack, svc):
            if len(tag) + len(name) > TAG_AND_SERVICE_MAX:
                raise ConfigError(f"{key}: traffic tag {tag!r} and service name {name!r} together have "
                                  f"{len(tag) + len(name)} characters; Cloud Run allows {TAG_AND_SERVICE_MAX}",
                                  "Shorten the service key or the stack name: the tag URL is "
                                  "'<tag>---<service name>'.")
        if len(job(stack, svc, "migrate")) > RUN_MAX:
            raise ConfigError(f"{key}: {name!r} is too long for Cloud Run",
                              f"Keep '<stack>-<service>-migrate' within {RUN_MAX} characters.")
        # deployctl's own revision names (revision(): the name and 11 more) fit whenever the service id does
        _check_revisions(stack, svc, name)


def _tags(stack: Stack, svc: str) -> list[str]:
    """The traffic tags a service gets: the candidate's, and those of the release handed to the program."""
    return [CANDIDATE_TAG] + [t.tag for t in stack.release.traffic.get(svc, []) if t.tag]


def _check_revisions(stack: Stack, svc: str, name: str) -> None:
    named = [("revisions", stack.release.revisions.get(svc))]
    named += [(f"traffic.{svc}[{i}].revision", t.revision) for i, t in enumerate(stack.release.traffic.get(svc, []))]
    for key, revision in named:
        where = f"revisions.{svc}" if key == "revisions" else key
        if revision is not None and not revision.startswith(f"{name}-"):
            raise ConfigError(
                f"{RELEASE_ENV}: {where}: {revision!r} is not a revision of {name}",
                f"Cloud Run revision names start with the service name: {name}-<suffix>.",
            )
        if revision is not None and len(revision) > REVISION_MAX:
            raise ConfigError(f"{RELEASE_ENV}: {where}: revision name {revision!r} has {len(revision)} characters; "
                              f"Cloud Run allows {REVISION_MAX}",
                              "Revision names are RFC 1035 labels: '<service name>-<suffix>', 63 at most.")
