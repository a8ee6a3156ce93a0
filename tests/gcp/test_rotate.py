"""Secret rotation end to end on the fake cloud (the lead's rotate flow driving a GcpTarget)."""

from __future__ import annotations

import pytest

from deployctl.errors import PreconditionError, StageFailed
from deployctl.pipeline import orchestrator, rotate
from tests.fakes.drongo_ext import secret_values
from tests.gcp.conftest import IMAGE, SERVICE, Cloud

PROJECT = "example-staging"


def _pinned(cloud: Cloud) -> dict[str, str]:
    (revision,) = cloud.run.serving(SERVICE)
    env = cloud.run.revisions[f"{SERVICE}/revisions/{revision}"].containers[0].env
    return {e.name: e.value_source.secret_key_ref.version for e in env if e.value_source}  # the secret env


INSTANCE = "staging-db"


def _credentials(revision) -> tuple[str, str]:
    """The database user and password a revision connects with (from the DATABASE_URL version it pins)."""
    env = {e.name: e.value_source.secret_key_ref.version for e in revision.containers[0].env if e.value_source}
    url = secret_values(PROJECT, "staging-DATABASE_URL")[env["DATABASE_URL"]][1].decode()
    user, _, rest = url.removeprefix("postgresql+psycopg://").partition(":")
    return user, rest.partition("@")[0]


def _connects(cloud: Cloud):
    """Revisions answer /startup 200 only when Cloud SQL accepts their user and password, like the app."""

    def behaviour(path, revision):
        if path == "/startup" and not cloud.sql.accepts(INSTANCE, *_credentials(revision)):
            return 503, '{"checks": {"database": "OperationalError"}}'
        return 200, "healthy"

    return behaviour


def _watch_serving(cloud: Cloud) -> list[str]:
    """After every password change in Cloud SQL, can each serving revision still connect? Returns failures."""
    broken: list[str] = []

    def check(instance: str, user: str) -> None:
        for revision in cloud.run.serving(SERVICE):
            if not cloud.sql.accepts(INSTANCE, *_credentials(cloud.run.revisions[f"{SERVICE}/revisions/{revision}"])):
                broken.append(f"{revision} lost the database when {user}'s password changed")

    cloud.sql.on_change = check
    return broken


def test_rotating_the_database_password_moves_logins_without_breaking_the_serving_revision(
    cloud: Cloud, reporter
) -> None:
    cloud.run.behaviours[IMAGE] = _connects(cloud)
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    assert _pinned(cloud) == {"DATABASE_URL": "1", "SECRET_KEY": "1"}
    broken = _watch_serving(cloud)
    record = rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    assert record.outcome == "succeeded"
    assert broken == []
    assert _pinned(cloud) == {"DATABASE_URL": "2", "SECRET_KEY": "1"}
    password = secret_values(PROJECT, "staging-DB_PASSWORD")
    assert {v: s for v, (s, _) in password.items()} == {"1": "DISABLED", "2": "ENABLED"}
    url = secret_values(PROJECT, "staging-DATABASE_URL")
    assert url["2"][0] == "ENABLED" and url["1"][0] == "DISABLED"
    assert url["2"][1].decode().startswith(f"postgresql+psycopg://app_b:{password['2'][1].decode()}@")
    # the new password went to the idle login; the retired login got one nobody knows
    assert cloud.sql.accepts(INSTANCE, "app_b", password["2"][1].decode())
    assert not cloud.sql.accepts(INSTANCE, "app", password["1"][1].decode())
    assert cloud.sql.calls == [("users.update", f"{INSTANCE}/app_b"), ("users.update", f"{INSTANCE}/app")]
    ledger_text = repr(cloud.target().ledger.history())
    assert password["2"][1].decode() not in ledger_text  # versions in the ledger, never values

    rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)  # and back again
    assert broken == []
    (serving,) = cloud.run.serving(SERVICE)
    assert _credentials(cloud.run.revisions[f"{SERVICE}/revisions/{serving}"])[0] == "app"
    labels = cloud.target().secrets.labels("DB_PASSWORD")
    assert {k: v for k, v in labels.items() if k.startswith("deployctl-login-")} == {"deployctl-login-v3": "app"}


def test_failed_database_password_rotation_keeps_the_serving_login(cloud: Cloud, reporter) -> None:
    cloud.run.behaviours[IMAGE] = _connects(cloud)
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    broken = _watch_serving(cloud)
    cloud.run.broken_images.add(IMAGE)  # the candidate never becomes ready
    with pytest.raises(StageFailed):
        rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    assert broken == []
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    password = secret_values(PROJECT, "staging-DB_PASSWORD")
    assert {v: s for v, (s, _) in password.items()} == {"1": "ENABLED", "2": "DISABLED"}
    assert cloud.sql.accepts(INSTANCE, "app", password["1"][1].decode())
    assert not cloud.sql.accepts(INSTANCE, "app_b", password["2"][1].decode())  # the unused one is scrambled


def test_database_password_rotation_rides_out_a_busy_instance_and_a_lost_response(cloud: Cloud, reporter) -> None:
    cloud.run.behaviours[IMAGE] = _connects(cloud)
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    cloud.sql.faults.add("update", "busy", "lost")
    cloud.sql.faults.add("get", "unavailable")
    assert rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter).outcome == "succeeded"
    password = secret_values(PROJECT, "staging-DB_PASSWORD")
    assert cloud.sql.accepts(INSTANCE, "app_b", password["2"][1].decode())


def test_database_password_rotation_refuses_when_both_logins_are_in_use(cloud: Cloud, reporter) -> None:
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    target = cloud.target()
    target.secrets.set_labels("DB_PASSWORD", {"deployctl-login-v2": "app_b"})
    target.secrets.add("DB_PASSWORD", "made-elsewhere")  # v2, enabled beside v1, on the other login
    before = list(cloud.mutations())
    with pytest.raises(StageFailed, match=r"both database logins \(app, app_b\) have enabled DB_PASSWORD") as error:
        rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
    assert error.value.exit_code == PreconditionError.exit_code
    assert cloud.sql.calls == []
    assert [m for m in cloud.mutations() if m not in before and "locks" not in m[1]] == []


def test_failed_rotation_leaves_the_old_version_serving(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)

    def broken_with_new_key(path, revision):
        versions = {e.name: e.value_source.secret_key_ref.version for e in revision.containers[0].env if e.value_source}
        return (500, "bad key") if versions["SECRET_KEY"] != "1" else (200, "healthy")

    cloud.run.behaviours[IMAGE] = broken_with_new_key
    with pytest.raises(StageFailed):
        rotate.rotate(cloud.target(), "SECRET_KEY", None, cloud.options(None), reporter)
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert _pinned(cloud)["SECRET_KEY"] == "1"
    assert secret_values(PROJECT, "staging-SECRET_KEY")["1"][0] == "ENABLED"
    assert cloud.target().ledger.history()[0].outcome == "failed"
