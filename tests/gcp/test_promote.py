"""promote staging → production on the fake cloud: the digest that passed staging, no rebuild."""

from __future__ import annotations

from deployctl.pipeline import orchestrator
from deployctl.pipeline.promote import promote as promote_release
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
