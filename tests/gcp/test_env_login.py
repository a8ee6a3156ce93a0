"""Templated env on the fake cloud: POSTGRES_USER: "{db_user}" is the login of the pinned password version,
so a revision's separate user and password variables still match after a rotation moves to the other login."""

from __future__ import annotations

import yaml

from deployctl.pipeline import orchestrator, rotate
from tests.fakes.drongo_ext import secret_values
from tests.gcp.conftest import IMAGE, SERVICE, Cloud

INSTANCE = "staging-db"


def _env(revision) -> dict[str, str]:  # type: ignore[no-untyped-def]
    values = {e.name: e.value for e in revision.containers[0].env if not e.value_source}
    for e in revision.containers[0].env:
        if e.value_source:
            ref = e.value_source.secret_key_ref
            values[e.name] = secret_values("example-staging", ref.secret)[ref.version][1].decode()
    return values


def test_db_user_in_env_follows_the_pinned_password_through_rotations(cloud: Cloud, reporter) -> None:  # type: ignore[no-untyped-def]
    path = cloud.root / "stacks" / "Pulumi.staging.yaml"
    raw = yaml.safe_load(path.read_text())
    api = raw["config"]["deployctl:services"]["api"]
    # merged into Pulumi.yaml's env and secrets of the service, key by key
    api.setdefault("env", {}).update(POSTGRES_USER="{db_user}", POSTGRES_SERVER="{db_host}")
    api.setdefault("secrets", {})["POSTGRES_PASSWORD"] = "DB_PASSWORD"
    path.write_text(yaml.safe_dump(raw))

    def connects(path: str, revision) -> tuple[int, str]:  # type: ignore[no-untyped-def]
        env = _env(revision)
        ok = cloud.sql.accepts(INSTANCE, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
        return (200, "healthy") if ok or path != "/startup" else (503, "database")

    cloud.run.behaviours[IMAGE] = connects
    orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    users = []
    for _ in range(2):
        (revision,) = cloud.run.serving(SERVICE)
        env = _env(cloud.run.revisions[f"{SERVICE}/revisions/{revision}"])
        assert env["POSTGRES_SERVER"] == "/cloudsql/example-staging:europe-central2:staging-db"
        users.append(env["POSTGRES_USER"])
        record = rotate.rotate(cloud.target(), "DB_PASSWORD", None, cloud.options(None), reporter)
        assert record.outcome == "succeeded"  # its candidate connected with the new login and password
    (revision,) = cloud.run.serving(SERVICE)
    users.append(_env(cloud.run.revisions[f"{SERVICE}/revisions/{revision}"])["POSTGRES_USER"])
    assert users == ["app", "app_b", "app"]
