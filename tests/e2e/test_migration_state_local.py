"""Migrations proven on the stack's own database (issue 18): the Django fixture reads its database from
DATABASE_URL and falls back to a SQLite file without it. With the variable missing from what deployctl
sets, ``manage.py migrate`` exits 0 having written that file; the migrate stage fails, says why, and
nothing is deployed. With it set, status shows the head Django recorded in the stack's Postgres."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.e2e.test_init_apps_local import InitApp, init_app  # noqa: F401

pytestmark = pytest.mark.e2e

DJANGO_HEAD = re.compile(r"polls\.0001_initial \(\d+ applied\)")


def test_a_migrate_job_that_writes_elsewhere_fails_the_stage(init_app) -> None:  # noqa: F811
    app: InitApp = init_app("django-pip")
    stack_file = app.root / "Pulumi.yaml"  # init defines the app once, for every stack
    stack = yaml.safe_load(stack_file.read_text())
    web = stack["config"]["deployctl:services"]["value"]["web"]
    web["env"] = {**(web.get("env") or {}), "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    wired = web["secrets"].pop("DATABASE_URL")  # the settings' switch to Postgres, not set
    stack_file.write_text(yaml.safe_dump(stack))

    out = app.run("up", "local", rc=1, timeout=300)
    assert app.error(out) == (
        "Error: release r0001 failed at migrate: the job exited 0 but the stack's database has no tables: the app "
        "may be reading its database settings from a variable deployctl does not set. Nothing serves yet.")
    hint = next(line for line in out.stderr.splitlines() if line.startswith("Hint: "))
    assert "(deployctl:services.web env and secrets): DJANGO_ALLOWED_HOSTS, DJANGO_SECRET_KEY." in hint, hint
    assert "Nothing was deployed." in hint
    assert not list((app.state / "revisions").glob("*.json"))  # no revision was started
    [record] = app.ledger()
    assert (record["outcome"], record["revisions"], record["migration_after"]) == ("failed", {}, None)
    assert [(s["name"], s["status"]) for s in record["stages"]][-1] == ("migrate", "failed")
    status = app.status()
    assert (status["serving_release"], status["migration"]) == (None, "empty (no tables)")

    web["secrets"]["DATABASE_URL"] = wired  # the fix: the job now migrates the stack's database
    stack_file.write_text(yaml.safe_dump(stack))
    app.run("up", "local", timeout=300)
    assert app.get("/").status_code == 200
    status = app.status()
    assert DJANGO_HEAD.fullmatch(status["migration_head"]), status
    assert status["migration"] == f"{status['migration_head']} (django)"
    assert f"  migration  {status['migration']}\n" in app.run("status", "local").stdout
    latest = app.ledger()[0]
    assert (latest["outcome"], latest["migration_before"], latest["migration_after"]) == (
        "succeeded", None, status["migration_head"])
