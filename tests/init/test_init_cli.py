"""``deployctl init``'s own behaviour: it asks before writing unless --yes, skips what exists unless
--force, and says what it could not detect in an empty repository."""

from __future__ import annotations

import shutil

import pytest
import yaml

from deployctl import config
from deployctl.scaffold.stacks import STACKS
from tests.init.conftest import FIXTURES, WRITTEN, report


def test_without_yes_it_asks_and_a_no_writes_nothing(byo, run_cli):
    repo = byo("flask-poetry")
    result = run_cli(["init"], repo, input="n\n")
    assert result.exit_code == 130
    assert f"Write {len(WRITTEN)} file(s) in {repo}? [Y/n]: n" in result.stdout
    assert result.stderr == "Aborted.\n"
    assert not any((repo / f).exists() for f in WRITTEN)


def test_without_yes_a_yes_writes(byo, run_cli):
    repo = byo("flask-poetry")
    result = run_cli(["init"], repo, input="y\n")
    assert result.exit_code == 0, result.output
    assert all((repo / f).is_file() for f in WRITTEN)


def test_the_question_counts_only_the_files_it_would_write(byo, run_cli):
    repo = byo("flask-poetry")
    (repo / ".dockerignore").write_text("mine\n")
    result = run_cli(["init"], repo, input="y\n")
    assert f"Write {len(WRITTEN) - 1} file(s)" in result.stdout
    assert "skipped (exists; --force overwrites): .dockerignore" in result.stdout.splitlines()
    assert (repo / ".dockerignore").read_text() == "mine\n"


def test_force_overwrites_existing_files(byo, run_cli):
    repo = byo("django-pip")
    (repo / "stacks").mkdir()
    (repo / "stacks" / "Pulumi.staging.yaml").write_text("config: {}\n")
    result = run_cli(["init", "--yes", "--force"], repo)
    assert result.exit_code == 0, result.output
    assert "wrote stacks/Pulumi.staging.yaml" in result.stdout.splitlines()
    assert "skipped" not in result.stdout
    assert "deployctl:target: gcp" in (repo / "stacks" / "Pulumi.staging.yaml").read_text()


def test_a_directory_argument_names_the_repository(byo, run_cli, tmp_path):
    repo = byo("starlette-pep621")
    result = run_cli(["init", "--yes", str(repo)], tmp_path)
    assert result.exit_code == 0, result.output
    assert (repo / "Dockerfile.cloudrun").is_file() and not (tmp_path / "Dockerfile.cloudrun").exists()


def test_an_empty_repository_gets_files_and_a_line_for_everything_it_lacks(run_cli, tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    result = run_cli(["init", "--yes"], repo)
    assert result.exit_code == 0, result.output
    detected, undetected = report(result.stdout)
    assert detected == ["dependencies: none found", "python: 3.12 (default)"]
    assert [line.split(":")[0] for line in undetected] == ["dependencies", "framework", "gcp",
                                                          "gcp.trigger.repository", "migrations", "database"]
    assert undetected[1] == ("framework: no FastAPI, Starlette, Django or Flask app found: set "
                             "deployctl:services.web.command and the CMD of Dockerfile.cloudrun (written as "
                             "python -m app)")
    assert run_cli(["plan", "staging"], repo).exit_code == 0


def test_the_written_pipeline_pushes_to_the_repository_the_program_creates(byo, run_cli):
    import yaml

    from deployctl import config, naming

    repo = byo("starlette-pep621")
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    pipeline = yaml.safe_load((repo / "cloudbuild.yaml").read_text())
    staging = config.load("staging", repo)
    assert pipeline["substitutions"]["_STACK"] == "staging"
    assert pipeline["substitutions"]["_REPOSITORY"] == naming.repository(staging)


@pytest.mark.parametrize("name", ["django-pip", "starlette-pep621"])
def test_init_defines_the_app_once_and_what_it_writes_round_trips(byo, run_cli, tmp_path, name):
    repo = byo(name)
    assert run_cli(["init", "--yes"], repo).exit_code == 0
    shared = yaml.safe_load((repo / "Pulumi.yaml").read_text())["config"]
    assert {"deployctl:services", "deployctl:secrets", "deployctl:jobs"} <= set(shared)
    assert all(set(value) == {"value"} for value in shared.values())  # Pulumi's form for another namespace's key
    models = {}
    for stack in STACKS:
        overrides = yaml.safe_load((repo / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert not {"deployctl:secrets", "deployctl:jobs", "deployctl:smoke"} & set(overrides)  # not copied
        models[stack] = config.load(stack, repo)
        whole = config.effective(stack, repo)  # what `plan STACK --show-config` prints
        assert config.parse(whole, stack=stack, file=f"stacks/Pulumi.{stack}.yaml") == models[stack]
    # a project with a Pulumi.yaml of its own keeps it: each stack then holds the whole app, to the same model
    own = tmp_path / "own" / name
    shutil.copytree(FIXTURES / name, own, ignore=shutil.ignore_patterns("__pycache__"))
    (own / "Pulumi.yaml").write_text(f"name: {name}\nruntime: python\n")
    result = run_cli(["init", "--yes"], own)
    assert "skipped (exists; --force overwrites): Pulumi.yaml" in result.stdout.splitlines()
    assert (own / "Pulumi.yaml").read_text() == f"name: {name}\nruntime: python\n"
    for stack in STACKS:
        assert config.load(stack, own) == models[stack]
