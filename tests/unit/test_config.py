"""The stack model: the shipped stacks load, and bad input gets one line naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl import config
from deployctl.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]
FILE = "stacks/Pulumi.t.yaml"


def _base(**extra: object) -> dict:  # type: ignore[type-arg]
    cfg: dict[str, object] = {
        "deployctl:target": "local",
        "deployctl:services": {"api": {}},
        "deployctl:secrets": {"DB_PASSWORD": {"source": "generated"}},
    }
    cfg.update(extra)
    return {"config": cfg}


@pytest.mark.parametrize("name", ["local", "staging", "production"])
def test_shipped_stacks_load(name: str) -> None:
    stack = config.load(name, ROOT)
    assert stack.name == name and "api" in stack.services
    assert stack.jobs.migrate is not None and stack.jobs.migrate.retries == 2 and stack.jobs.migrate.timeout_s == 300


def test_production_is_stricter_than_staging() -> None:
    staging, production = config.load("staging", ROOT), config.load("production", ROOT)
    assert staging.database and production.database
    assert production.database.high_availability and production.database.deletion_protection
    assert not staging.database.deletion_protection
    assert production.services["api"].min_instances >= 1 and staging.services["api"].min_instances == 0
    assert production.gcp.trigger and production.gcp.trigger.approval


CASES = [
    ({"deployctl:services": {"api": {"cpu": 3}}},
     "deployctl:services.api.cpu: must be one of 1, 2, 4, 8", None),
    ({"deployctl:services": {"api": {"cpus": 2}}},
     "deployctl:services.api.cpus: unknown key", "Did you mean 'cpu'?"),
    ({"deployctl:servics": {}}, "deployctl:servics: unknown key", "Did you mean 'services'?"),
    ({"deployctl:services": {"api": {"probes": {"startup": {"pth": "/x"}}}}},
     "deployctl:services.api.probes.startup.pth: unknown key", "Did you mean 'path'?"),
    ({"deployctl:services": {"api": {"secrets": {"X": "NOPE"}}}},
     "deployctl:services.api.secrets.X: secret 'NOPE' is not declared under secrets", None),
    ({"deployctl:services": {"api": {"min_instances": 9, "max_instances": 2}}},
     "deployctl:services.api: min_instances (9) is above max_instances (2)", None),
    ({"deployctl:database": {"version": 12}}, "deployctl:database.version: must be one of 13, 14, 15, 16, 17", None),
    ({"deployctl:rollout": {"steps": [50, 10]}}, "deployctl:rollout.steps: must rise strictly and end at 100", None),
    ({"deployctl:target": "gcp"}, "gcp:project: missing: a gcp stack needs gcp:project and gcp:region", None),
    ({"deployctl:smoke": [{"path": "/x", "expect_statu": 200}]},
     "deployctl:smoke.0.expect_statu: unknown key", "Did you mean 'expect_status'?"),
    ({"deployctl:secrets": {"DB_PASSWORD": {"source": "generated"}, "URL": {"source": "composed"}}},
     "deployctl:secrets.URL: a composed secret needs a template", None),
    ({"deployctl:secrets": {"DB_PASSWORD": {"source": "generated"},
                            "URL": {"source": "composed", "template": "{db_user}:{DB_PASSWORD}@{db_hots}"}}},
     "deployctl:secrets.URL.template: {db_hots} is neither a secret nor one of db_connection, db_host, db_name, "
     "db_port, db_socket, db_user", None),
    ({"deployctl:secrets": {"DB_PASSWORD": {"source": "generated"},
                            "URL": {"source": "composed", "template": "{db_user}:{DB_PASSWORD}"}},
      "deployctl:database": None},
     "deployctl:secrets.URL.template: {db_user} is a database fact, and there is no deployctl:database", None),
    ({"deployctl:services": {"api": {"memory": 12}}},
     "deployctl:services.api.memory: 12 is not a size like 512Mi or 1Gi",
     "Write a whole number followed by Mi (mebibytes) or Gi (gibibytes), e.g. memory: 512Mi."),
    ({"deployctl:services": {"api": {"memory": "1GB"}}},
     "deployctl:services.api.memory: '1GB' is not a size like 512Mi or 1Gi",
     "Write a whole number followed by Mi (mebibytes) or Gi (gibibytes), e.g. memory: 512Mi."),
    ({"deployctl:smoke": [{"path": "/health"}, {"path": "ready"}]},
     'deployctl:smoke.1.path: must start with "/"', 'Write the path from the root: "/ready".'),
    ({"deployctl:services": {"api": {"probes": {"startup": {"path": "startup"}}}}},
     'deployctl:services.api.probes.startup.path: must start with "/"', 'Write the path from the root: "/startup".'),
    ({"deployctl:release": {"images": {"api": "gcr.io/p/api@sha256:" + "a" * 64}}},
     "deployctl:release: runtime state does not belong in a stack file",
     "Delete it: pulumi config rm --path deployctl:release --stack t"),
]


@pytest.mark.parametrize(("extra", "message", "hint"), CASES)
def test_bad_config_names_file_and_key(extra: dict, message: str, hint: str | None) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        config.parse(_base(**extra), stack="t", file=FILE)
    assert caught.value.message == f"{FILE}: {message}"
    assert caught.value.hint == (hint or "Every key is described in docs/configuration.md.")
    assert caught.value.exit_code == 3


def test_missing_target_and_secure_settings() -> None:
    with pytest.raises(ConfigError, match=r"deployctl:target: missing"):
        config.parse({"config": {"deployctl:services": {"api": {}}}}, stack="t", file=FILE)
    with pytest.raises(ConfigError, match=r"deployctl:local: is a secure value"):
        config.parse(_base(**{"deployctl:local": {"secure": "v1:abc"}}), stack="t", file=FILE)


def test_load_reports_missing_stack_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        config.load("nope", tmp_path)
    assert caught.value.message == "stacks/Pulumi.nope.yaml: no such stack file"
    assert caught.value.hint == "Known stacks: dev."
    with pytest.raises(ConfigError) as caught:
        config.load("dev", tmp_path)
    assert caught.value.message == "stacks/Pulumi.dev.yaml: not valid YAML (line 2)"


@pytest.mark.parametrize("name", ["local", "0", "eu-west-1", "a" * 63])
def test_stack_names_that_are_accepted(name: str) -> None:
    assert config.check_stack_name(name) == name
    assert config.stack_file(name, ROOT) == ROOT / "stacks" / f"Pulumi.{name}.yaml"


@pytest.mark.parametrize("name", ["", "a" * 64, "-x", "A", "a.b", "a_b", "a/b", "..", "x\n", "é"])
def test_a_stack_name_that_cannot_be_one_is_a_usage_error_in_load_and_parse(name: str) -> None:
    for call in (lambda: config.load(name, ROOT), lambda: config.parse(_base(), stack=name, file=FILE)):
        with pytest.raises(UsageError) as caught:
            call()
        assert caught.value.exit_code == 2 and caught.value.message.startswith(f"stack name {name!r}: ")


def test_fingerprint_ignores_release_facts() -> None:
    a = config.parse(_base(), stack="t", file=FILE)
    digest = "gcr.io/p/api@sha256:" + "a" * 64
    b = a.model_copy(update={"release": config.Release(phase="release", images={"api": digest})})
    c = config.parse(_base(**{"deployctl:services": {"api": {"cpu": 2}}}), stack="t", file=FILE)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_configuration_doc_is_current() -> None:
    from deployctl import configdoc

    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == configdoc.render() + "\n", "run: python -m deployctl.configdoc > docs/configuration.md"


def test_state_bucket_is_the_setting_or_the_project_default() -> None:
    gcp = {"deployctl:target": "gcp", "gcp:project": "acme-prod", "gcp:region": "europe-west1"}
    default = config.parse(_base(**gcp), stack="t", file=FILE)
    assert default.gcp.state_bucket is None and default.state_bucket == "acme-prod-deployctl"
    named = config.parse(_base(**gcp, **{"deployctl:gcp": {"state_bucket": "acme-state"}}), stack="t", file=FILE)
    assert named.state_bucket == "acme-state"
    assert config.load("staging", ROOT).state_bucket == "example-staging-deployctl"  # set in the stack file
