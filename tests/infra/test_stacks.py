"""The shipped gcp stacks say what the environments promise, and the model accepts them."""

from __future__ import annotations

from deployctl.config import load
from tests.infra.conftest import ROOT


def test_staging_is_small_scales_to_zero_and_unprotected() -> None:
    stack = load("staging", ROOT)
    assert stack.database and stack.database.tier == "db-f1-micro"
    assert not (stack.database.deletion_protection or stack.database.high_availability)
    assert [(s.min_instances, s.max_instances) for s in stack.services.values()] == [(0, 4)]
    assert stack.gcp.trigger and not stack.gcp.trigger.approval


def test_production_is_ha_protected_recoverable_warm_and_approved() -> None:
    stack = load("production", ROOT)
    db = stack.database
    assert db and db.high_availability and db.deletion_protection
    assert db.backups.enabled and db.backups.point_in_time_recovery and db.backups.retained >= 7
    assert all(s.min_instances >= 1 for s in stack.services.values())
    assert stack.gcp.trigger and stack.gcp.trigger.approval
    assert stack.jobs.migrate and (stack.jobs.migrate.retries, stack.jobs.migrate.timeout_s) == (2, 300)
