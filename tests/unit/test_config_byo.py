"""Keys an app brought from elsewhere needs (issue 11): templated env, workdir, a source inside the project,
smoke checks with a method, headers and expected JSON. Each mistake is one line naming the file and key."""

from __future__ import annotations

import pytest

from deployctl import config
from deployctl.errors import ConfigError
from deployctl.facts import db_facts, render_env, uses_db_facts

FILE = "stacks/Pulumi.t.yaml"
DOCS = "Every key is described in docs/configuration.md."


def _stack(service: dict, **extra: object) -> dict:  # type: ignore[type-arg]
    cfg: dict[str, object] = {
        "deployctl:target": "local",
        "deployctl:services": {"api": service},
        "deployctl:secrets": {"DB_PASSWORD": {"source": "generated"}},
    }
    cfg.update(extra)
    return {"config": cfg}


def _error(raw: dict) -> tuple[str, str | None]:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        config.parse(raw, stack="t", file=FILE)
    assert caught.value.exit_code == 3
    return caught.value.message.removeprefix(f"{FILE}: "), caught.value.hint


ENV = {"POSTGRES_SERVER": "{db_host}", "POSTGRES_PORT": "{db_port}", "POSTGRES_USER": "{db_user}",
       "POSTGRES_DB": "{db_name}", "SOCKET": "{db_socket}", "LITERAL": "{{db_host}}", "JSON": '{"a": {"b": 1}}'}


def test_env_may_use_the_database_facts_and_keeps_other_braces() -> None:
    stack = config.parse(_stack({"env": ENV}), stack="t", file=FILE)
    facts = db_facts(user="app_b", name="app", connection="local", socket="/s", port="6543", host="127.0.0.1")
    assert render_env(stack.services["api"].env, facts) == {
        "POSTGRES_SERVER": "127.0.0.1", "POSTGRES_PORT": "6543", "POSTGRES_USER": "app_b", "POSTGRES_DB": "app",
        "SOCKET": "/s", "LITERAL": "{db_host}", "JSON": '{"a": {"b": 1}}'}
    assert uses_db_facts(ENV) and not uses_db_facts({"A": "{{db_host}}", "B": "plain"})


@pytest.mark.parametrize(("env", "message", "hint"), [
    ({"DB_HOST": "{db_hots}"},
     "deployctl:services.api.env.DB_HOST: {db_hots} is not one of db_connection, db_host, db_name, db_port, "
     "db_socket, db_user", "Write {{name}} for a literal {name}."),
    ({"PASSWORD": "x{DB_PASSWORD}"},
     "deployctl:services.api.env.PASSWORD: {DB_PASSWORD} is a secret, and env values are plain text",
     "Map the variable to the secret instead: services.api.secrets.PASSWORD: DB_PASSWORD"),
])
def test_unknown_or_secret_names_in_env_are_refused(env: dict, message: str, hint: str) -> None:  # type: ignore[type-arg]
    assert _error(_stack({"env": env})) == (message, hint)


def test_a_database_fact_needs_a_database() -> None:
    assert _error(_stack({"env": {"H": "{db_host}"}}, **{"deployctl:database": None})) == (
        "deployctl:services.api.env.H: {db_host} is a database fact, and there is no deployctl:database", DOCS)


@pytest.mark.parametrize("source", ["../app", "/srv/app", "app/../../x", "~/app"])
def test_a_source_outside_the_project_root_is_refused(source: str) -> None:
    assert _error(_stack({"source": source})) == (
        f"deployctl:services.api.source: {source!r} is outside the project root",
        "Write a path under the project root, e.g. source: backend.")


def test_workdir_is_relative_to_the_source_and_stays_inside_it() -> None:
    stack = config.parse(_stack({"source": "backend", "workdir": "."},
                                **{"deployctl:jobs": {"migrate": {"command": ["alembic", "upgrade", "head"],
                                                                  "workdir": "app"}}}), stack="t", file=FILE)
    assert stack.services["api"].workdir == "." and stack.jobs.migrate and stack.jobs.migrate.workdir == "app"
    assert config.parse(_stack({}), stack="t", file=FILE).services["api"].workdir is None  # the artifact root
    assert _error(_stack({"workdir": "../other"})) == (
        "deployctl:services.api.workdir: '../other' is outside the service's source",
        "Write a path under the service's source, e.g. workdir: . (the source itself).")
    message, _ = _error(_stack({}, **{"deployctl:jobs": {"migrate": {"command": ["x"], "workdir": "/tmp"}}}))
    assert message == "deployctl:jobs.migrate.workdir: '/tmp' is outside the service's source"


def test_smoke_checks_take_a_method_headers_and_expected_json() -> None:
    smoke = [{"path": "/api/v1/utils/health-check/", "method": "POST", "headers": {"Accept": "application/json"},
              "expect_status": 201, "json": {"status": "ok", "db": {"ok": True}}}]
    [check] = config.parse(_stack({}, **{"deployctl:smoke": smoke}), stack="t", file=FILE).smoke
    assert (check.method, check.headers, check.expect_status) == ("POST", {"Accept": "application/json"}, 201)
    assert check.expect_json == {"status": "ok", "db": {"ok": True}}
    assert config.SmokeCheck(path="/x").method == "GET"


@pytest.mark.parametrize(("check", "message", "hint"), [
    ({"path": "/x", "method": "FETCH"},
     "deployctl:smoke.0.method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", DOCS),
    ({"path": "/x", "jsn": {"status": "ok"}}, "deployctl:smoke.0.jsn: unknown key", "Did you mean 'json'?"),
    ({"path": "/x", "json": ["ok"]}, "deployctl:smoke.0.json: input should be a valid dictionary", DOCS),
    ({"path": "/x", "headers": {"Bad Header": "1"}},
     "deployctl:smoke.0.headers.Bad Header: 'Bad Header' does not match ^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", DOCS),
    ({"path": "/x", "method": "HEAD", "json": {"status": "ok"}},
     "deployctl:smoke.0: a HEAD response has no body to check: use GET, or drop body_contains and json", DOCS),
])
def test_bad_smoke_checks_name_the_key(check: dict, message: str, hint: str) -> None:  # type: ignore[type-arg]
    assert _error(_stack({}, **{"deployctl:smoke": [check]})) == (message, hint)
