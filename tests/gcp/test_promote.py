"""promote staging → production on the fake cloud: the digest that passed staging, no rebuild."""

from __future__ import annotations

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator
from deployctl.pipeline.promote import promote as promote_release
from tests.fakes.iam import Project
from tests.gcp.conftest import IMAGE, IMAGE2, Cloud

PRODUCTION = "projects/example-production/locations/europe-central2/services/production-api"


def test_promote_reuses_the_staging_digest_through_canary_steps(cloud: Cloud, reporter) -> None:
    existing = orchestrator.release(cloud.target("production"), cloud.options(IMAGE2), reporter)
    staged = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    hits = len(cloud.http.hits)
    record = promote_release(cloud.target(), cloud.target("production"), cloud.options(None), reporter)
    assert record.outcome == "succeeded"
    assert record.artifacts == staged.artifacts == {"api": IMAGE}
    (revision,) = cloud.run.serving(PRODUCTION)
    assert cloud.run.revisions[f"{PRODUCTION}/revisions/{revision}"].containers[0].image == IMAGE
    assert cloud.cloudbuild.builds == {}  # nothing was built
    assert [s.name for s in record.stages][:2] == ["build", "migrate"]
    assert record.previous == existing.revisions
    # production's canary steps (10 → 50 → 100) each checked the service URL: both revisions answered
    assert {rev for rev, _ in cloud.http.hits[hits:]} == {revision, existing.revisions["api"]}
    assert cloud.target("production").ledger.get(record.id) is not None
    assert [r.id for r in cloud.target().ledger.history()] == [staged.id]  # each stack has its own ledger


def test_promoting_into_another_project_needs_its_run_agent_to_read_the_image(cloud: Cloud, reporter) -> None:
    """Production is another project (stacks/Pulumi.production.yaml): Cloud Run imports staging's image there
    as production's Cloud Run Service Agent, which may not read staging's repository until it is granted."""
    project = Project.legacy("example-staging", other_ids=("example-production",), agents_pull=False)
    cloud.use(project)
    staged = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    own = "europe-central2-docker.pkg.dev/example-production/production-deployctl/api@sha256:" + "d" * 64
    existing = orchestrator.release(cloud.target("production"), cloud.options(own), reporter)
    before = cloud.run.serving(PRODUCTION)
    with pytest.raises(StageFailed) as failed:
        promote_release(cloud.target(), cloud.target("production"), cloud.options(None), reporter)
    error = failed.value
    agent = project.run_agent("example-production").removeprefix("serviceAccount:")
    repository = "staging-deployctl --project example-staging --location europe-central2"
    assert error.stage == "migrate" and error.serving  # before any change: production serves as it did
    assert f"{agent} cannot read the image {IMAGE}" in error.message
    assert error.cause.hint == (f"Grant it once (docs/runbook.md, Promote): gcloud artifacts repositories "
                                f"add-iam-policy-binding {repository} --member serviceAccount:{agent} "
                                "--role roles/artifactregistry.reader")
    assert cloud.run.serving(PRODUCTION) == before == {existing.revisions["api"]: 100}
    # the grant the hint gives, then the same promotion
    project.grant(f"serviceAccount:{agent}", "roles/artifactregistry.reader",
                  "projects/example-staging/locations/europe-central2/repositories/staging-deployctl", now=True)
    record = promote_release(cloud.target(), cloud.target("production"), cloud.options(None), reporter)
    assert record.outcome == "succeeded" and record.artifacts == staged.artifacts == {"api": IMAGE}
    (revision,) = cloud.run.serving(PRODUCTION)
    assert cloud.run.revisions[f"{PRODUCTION}/revisions/{revision}"].containers[0].image == IMAGE
