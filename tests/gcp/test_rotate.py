"""Secret rotation end to end on the fake cloud (the lead's rotate flow driving a GcpTarget)."""

from __future__ import annotations

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator, rotate
from tests.fakes.drongo_ext import secret_values
from tests.gcp.conftest import IMAGE, SERVICE, Cloud

PROJECT = "example-staging"


def _pinned(cloud: Cloud) -> dict[str, str]:
    (revision,) = cloud.run.serving(SERVICE)
    env = cloud.run.revisions[f"{SERVICE}/revisions/{revision}"].containers[0].env
    return {e.name: e.value_source.secret_key_ref.version for e in env}


def test_rotating_the_database_password_recomposes_and_disables_old_versions(cloud: Cloud, reporter) -> None:
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    assert _pinned(cloud) == {"DATABASE_URL": "1", "SECRET_KEY": "1"}
    record = rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    assert record.outcome == "succeeded"
    assert _pinned(cloud) == {"DATABASE_URL": "2", "SECRET_KEY": "1"}
    password = secret_values(PROJECT, "staging-DB_PASSWORD")
    assert {v: s for v, (s, _) in password.items()} == {"1": "DISABLED", "2": "ENABLED"}
    url = secret_values(PROJECT, "staging-DATABASE_URL")
    assert url["2"][0] == "ENABLED" and password["2"][1] in url["2"][1]
    assert url["1"][0] == "DISABLED"
    ledger_text = repr(cloud.target().ledger.history())
    assert password["2"][1].decode() not in ledger_text  # versions in the ledger, never values


def test_failed_rotation_leaves_the_old_version_serving(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)

    def broken_with_new_key(path, revision):
        versions = {e.name: e.value_source.secret_key_ref.version for e in revision.containers[0].env}
        return (500, "bad key") if versions["SECRET_KEY"] != "1" else (200, "healthy")

    cloud.run.behaviours[IMAGE] = broken_with_new_key
    with pytest.raises(StageFailed):
        rotate.rotate(cloud.target(), "SECRET_KEY", None, cloud.options(None), reporter)
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert _pinned(cloud)["SECRET_KEY"] == "1"
    assert secret_values(PROJECT, "staging-SECRET_KEY")["1"][0] == "ENABLED"
    assert cloud.target().ledger.history()[0].outcome == "failed"
