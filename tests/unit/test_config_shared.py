"""One definition of the app in Pulumi.yaml, stacks as overrides (deployctl.configfiles, config.load)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployctl import config
from deployctl.errors import ConfigError
from tests.cli_runner import RunCli

ROOT = Path(__file__).resolve().parents[2]
FULL_COPIES = ROOT / "tests" / "fixtures" / "fullcopy"  # the sample's stacks as they were: each the whole app
STACKS = ("local", "staging", "production")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """The shipped sample: Pulumi.yaml, its three stacks and the app they release."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _checked_in(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in [root / "Pulumi.yaml", *sorted((root / "stacks").iterdir())]}


def test_a_one_line_fix_in_the_shared_definition_reaches_every_stacks_plan(sample: Path, run_cli: RunCli) -> None:
    shared = sample / "Pulumi.yaml"
    line = ('      migrate: {command: ["alembic", "-c", "app/alembic.ini", "upgrade", "head"], retries: 2, '
            'timeout_s: 300}')
    assert shared.read_text().count(line) == 1
    shared.write_text(shared.read_text().replace(line, line.replace('"head"', '"heads"')))  # the one-line fix
    before = _checked_in(sample)

    local = json.loads(run_cli(["plan", "local", "--json"], sample).stdout)
    migrate = next(s for s in local["stages"] if s["name"] == "migrate")
    assert [s["message"] for s in migrate["steps"]] == [
        "run `alembic -c app/alembic.ini upgrade heads` (retries 2, timeout 300s)"]
    for stack in ("staging", "production"):
        plan = json.loads(run_cli(["plan", stack, "--json"], sample).stdout)
        job = next(r for r in plan["resources"] if r["name"] == f"{stack}-api-migrate-job")
        containers = job["inputs"]["template"]["template"]["containers"]
        assert containers[0]["commands"] == ["alembic", "-c", "app/alembic.ini", "upgrade", "heads"], stack
        assert plan["policy"]["failing_mandatory"] == []
    assert _checked_in(sample) == before  # a plan writes neither Pulumi.yaml nor a stack file


def _project(tmp_path: Path, shared: dict[str, Any] | None, stack: dict[str, Any], name: str = "t") -> Path:
    if shared is not None:
        (tmp_path / "Pulumi.yaml").write_text(yaml.safe_dump({"name": "app", "runtime": "python", "config": shared}))
    (tmp_path / "stacks").mkdir(exist_ok=True)
    (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": stack}))
    return tmp_path


SHARED: dict[str, Any] = {
    "deployctl:services": {"value": {"api": {"cpu": 1, "memory": "1Gi", "env": {"A": "1", "B": "2"},
                                             "probes": {"startup": {"path": "/ready"}}}}},
    "deployctl:database": {"value": {"tier": "db-f1-micro", "extensions": ["vector"]}},
    "deployctl:secrets": {"value": {"DB_PASSWORD": {"source": "generated"}}},
    "deployctl:smoke": {"value": [{"path": "/health"}, {"path": "/ready"}]},
    "deployctl:jobs": {"value": {"migrate": None}},
    "deployctl:target": "local",  # Pulumi's shorthand: a scalar is the value itself
}


def test_a_stack_override_wins_for_what_it_overrides_and_nothing_else(tmp_path: Path) -> None:
    root = _project(tmp_path, SHARED, {
        "deployctl:target": "gcp", "gcp:project": "p", "gcp:region": "europe-central2",
        "deployctl:services": {"api": {"cpu": 2, "env": {"B": "3"}}},  # maps merge key by key
        "deployctl:database": {"extensions": []},  # a list replaces the shared one whole
        "deployctl:smoke": [{"path": "/"}],
    })
    stack = config.load("t", root)
    api = stack.services["api"]
    assert (stack.target, stack.project, api.cpu, api.memory) == ("gcp", "p", 2, "1Gi")
    assert api.env == {"A": "1", "B": "3"} and api.probes.startup.path == "/ready"
    assert stack.database is not None and (stack.database.tier, stack.database.extensions) == ("db-f1-micro", [])
    assert [c.path for c in stack.smoke] == ["/"] and stack.jobs.migrate is None
    assert set(stack.secrets) == {"DB_PASSWORD"}


def test_null_in_a_stack_replaces_a_shared_value(tmp_path: Path) -> None:
    root = _project(tmp_path, SHARED, {"deployctl:database": None, "deployctl:secrets": {}})
    stack = config.load("t", root)
    assert stack.database is None and set(stack.secrets) == {"DB_PASSWORD"}  # an empty map merges nothing


def test_null_in_a_map_of_names_drops_that_name_only(tmp_path: Path) -> None:
    shared = {**SHARED, "deployctl:services": {"value": {
        "api": {**SHARED["deployctl:services"]["value"]["api"], "secrets": {"DB": "DB_PASSWORD"}},
        "worker": {"cpu": 1}}}}
    root = _project(tmp_path, shared, {
        "deployctl:services": {"worker": None, "api": {"env": {"A": None}, "secrets": {"DB": None}}},
        "deployctl:secrets": {"DB_PASSWORD": None},  # a secret this stack does not use
        "deployctl:database": None,  # (the database's password is that secret)
    })
    stack = config.load("t", root)
    assert list(stack.services) == ["api"] and stack.services["api"].env == {"B": "2"}
    assert stack.services["api"].secrets == {} and stack.secrets == {}
    assert stack.services["api"].memory == "1Gi"  # nothing else of the shared service went


@pytest.mark.parametrize(("shared", "stack", "error", "hint"), [
    ({**SHARED, "deployctl:services": {"value": {"api": {"cpu": 3}}}}, {},
     "Pulumi.yaml: deployctl:services.api.cpu: must be one of 1, 2, 4, 8", None),
    (SHARED, {"deployctl:services": {"api": {"cpu": 3}}},
     "stacks/Pulumi.t.yaml: deployctl:services.api.cpu: must be one of 1, 2, 4, 8", None),
    ({**SHARED, "deployctl:servcies": {"value": {}}}, {}, "Pulumi.yaml: deployctl:servcies: unknown key",
     "Did you mean 'services'?"),
    (SHARED, {"deployctl:services": {"api": {"memroy": "1Gi"}}},
     "stacks/Pulumi.t.yaml: deployctl:services.api.memroy: unknown key", "Did you mean 'memory'?"),
    ({**SHARED, "deployctl:smoke": {"value": [{"path": "health"}]}}, {},
     'Pulumi.yaml: deployctl:smoke.0.path: must start with "/"', 'Write the path from the root: "/health".'),
    (SHARED, {"deployctl:services": {"api": {"secrets": {"TOKEN": "TOKEN"}}}},
     "stacks/Pulumi.t.yaml: deployctl:services.api.secrets.TOKEN: secret 'TOKEN' is not declared under secrets",
     None),
    ({**SHARED, "deployctl:services": {"api": {"cpu": 1}}}, {},
     "Pulumi.yaml: deployctl:services: a mapping here must be nested under value:", None),
    ({**SHARED, "deployctl:database": {"default": {"tier": "x"}}}, {},
     "Pulumi.yaml: deployctl:database: default is only for keys in the project's namespace (app)",
     "Pulumi refuses a default for another namespace's key: write value: instead."),
    ({**SHARED, "deployctl:database": None}, {}, "Pulumi.yaml: deployctl:database: has no value", None),
    ({**SHARED, "deployctl:release": {"value": {}}}, {},
     "Pulumi.yaml: deployctl:release: runtime state does not belong in a stack file", None),
])
def test_a_config_error_names_the_file_that_holds_the_key(tmp_path: Path, shared: dict[str, Any],
                                                          stack: dict[str, Any], error: str, hint: str | None) -> None:
    root = _project(tmp_path, shared, stack)
    with pytest.raises(ConfigError) as caught:
        config.load("t", root)
    assert caught.value.message == error
    if hint:
        assert caught.value.hint == hint


def test_an_error_in_a_value_both_files_make_says_so(tmp_path: Path) -> None:
    root = _project(tmp_path, {**SHARED, "deployctl:services": {"value": {"api": {"max_instances": 2}}}},
                    {"deployctl:services": {"api": {"min_instances": 3}}})
    with pytest.raises(ConfigError) as caught:
        config.load("t", root)
    assert caught.value.message == ("stacks/Pulumi.t.yaml: deployctl:services.api: min_instances (3) is above "
                                    "max_instances (2)")
    assert caught.value.hint.endswith("The value merges Pulumi.yaml's shared definition and stacks/Pulumi.t.yaml: "
                                      "`deployctl plan t --show-config` prints it.")


@pytest.mark.parametrize("stack", STACKS)
def test_an_old_full_copy_stack_loads_to_the_same_model(stack: str, tmp_path: Path) -> None:
    """The sample's stacks as earlier versions shipped them (each the whole app, no Pulumi.yaml config): the
    same model as the shared definition with today's slim overrides; beside today's Pulumi.yaml, still."""
    full = config.load(stack, FULL_COPIES)
    assert not (FULL_COPIES / "Pulumi.yaml").exists()
    assert full.model_dump() == config.load(stack, ROOT).model_dump()
    shutil.copytree(FULL_COPIES / "stacks", tmp_path / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    assert config.load(stack, tmp_path) == full


@pytest.mark.parametrize("stack", STACKS)
def test_show_config_prints_a_stack_file_that_loads_to_the_same_model(stack: str, sample: Path, tmp_path: Path,
                                                                      run_cli: RunCli) -> None:
    result = run_cli(["plan", stack, "--show-config"], sample)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first == (f"# {stack}'s settings: Pulumi.yaml, then stacks/Pulumi.{stack}.yaml (maps merged key by key; "
                     "lists and scalars replaced)")
    alone = tmp_path / "alone"
    (alone / "stacks").mkdir(parents=True)
    (alone / "stacks" / f"Pulumi.{stack}.yaml").write_text(result.stdout)
    assert config.load(stack, alone) == config.load(stack, sample)
    data = json.loads(run_cli(["plan", stack, "--show-config", "--json"], sample).stdout)
    assert (data["kind"], data["stack"], data["files"]) == ("config", stack,
                                                            ["Pulumi.yaml", f"stacks/Pulumi.{stack}.yaml"])
    assert data["config"] == config.effective(stack, sample)["config"]
