"""Rollback after a rotation on the fake cloud: a revision pinned to a disabled secret version is refused
before any change; --repin deploys its image again pinned to the current versions (issue 12)."""

from __future__ import annotations

import pytest

from deployctl.errors import PreconditionError
from deployctl.pipeline import orchestrator, rollback, rotate
from deployctl.pipeline.rollback_guards import Guard
from deployctl.pipeline.status import stack_status
from tests.fakes.drongo_ext import secret_values
from tests.gcp.conftest import IMAGE, IMAGE2, SERVICE, Cloud


def _env(cloud: Cloud, revision: str) -> dict[str, str]:
    """The secret versions a revision's environment names (what Cloud Run resolves for a new instance)."""
    env = cloud.run.revisions[f"{SERVICE}/revisions/{revision}"].containers[0].env
    return {e.name: e.value_source.secret_key_ref.version for e in env if e.value_source.secret_key_ref.secret}


def test_rollback_refuses_a_revision_pinned_to_a_disabled_version_and_repins(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    orchestrator.release(cloud.target(), cloud.options(IMAGE2), reporter)
    rotate.rotate(cloud.target(), "SECRET_KEY", None, cloud.options(None), reporter)
    assert secret_values("example-staging", "staging-SECRET_KEY")["1"][0] == "DISABLED"
    (rotated,) = cloud.run.serving(SERVICE)
    before = list(cloud.mutations())

    with pytest.raises(PreconditionError) as refused:
        rollback.rollback(cloud.target(), first.id, cloud.options(None), reporter)
    assert refused.value.message == "release r0001 is pinned to SECRET_KEY v1, which is disabled"
    assert refused.value.hint == ("Deploy its code again pinned to the current versions: "
                                  "deployctl rollback staging --to r0001 --repin")
    assert cloud.run.serving(SERVICE) == {rotated: 100}
    assert [m for m in cloud.mutations() if m not in before and "locks" not in m[1]] == []
    assert [r.kind for r in cloud.target().ledger.history()] == ["rotate", "release", "release"]

    record = rollback.rollback(cloud.target(), first.id, cloud.options(None), reporter, Guard(repin=True))
    (repinned,) = cloud.run.serving(SERVICE)
    assert repinned not in (rotated, first.revisions["api"]) and record.revisions == {"api": repinned}
    assert cloud.run.revisions[f"{SERVICE}/revisions/{repinned}"].containers[0].image == IMAGE
    assert _env(cloud, repinned) == {"SECRET_KEY": "2", "DATABASE_URL": "1"}
    assert (record.kind, record.restored, record.artifacts) == ("rollback", "r0001", {"api": IMAGE})
    status = stack_status(cloud.target())  # read from the serving revision's environment
    assert status["secret_versions"] == {"api": {"SECRET_KEY": "2", "DATABASE_URL": "1"}}
