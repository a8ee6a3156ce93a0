"""cloudbuild.yaml: a valid Build (unknown fields rejected), a sound step graph, no secrets in
substitutions, and every deployctl command line in it accepted by the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud.devtools.cloudbuild_v1.types import Build

from tests.ci.cli_lines import SAMPLE_IMAGE, deployctl_lines, parse_with_cli

ROOT = Path(__file__).resolve().parents[2]
_SECRETISH = re.compile(
    r"(?i)(password|secret|token|api[_-]?key|private[_-]?key|BEGIN [A-Z ]*KEY|AIza[0-9A-Za-z_-]{20})"
)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def _steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in doc["steps"]}


def test_parses_as_a_build_with_no_unknown_fields(doc):
    build = Build.from_json(json.dumps(doc), ignore_unknown_fields=False)
    assert build.options.machine_type.name == "E2_HIGHCPU_8"
    assert build.options.logging.name == "CLOUD_LOGGING_ONLY"
    assert build.timeout.total_seconds() == 1800
    assert dict(build.substitutions) == {"_STACK": "staging", "_REGION": "europe-central2",
                                         "_REPOSITORY": "staging-deployctl", "_PULUMI_VERSION": "3.140.0"}


def test_a_misspelt_field_is_rejected():
    # the check above would be worthless if the parser accepted anything
    with pytest.raises(Exception, match=r"waitfor|Cannot find field"):
        Build.from_json(json.dumps({"steps": [{"name": "x", "waitfor": ["-"]}]}), ignore_unknown_fields=False)


def test_step_ids_are_unique_and_every_step_has_one(doc):
    ids = [step.get("id") for step in doc["steps"]]
    assert None not in ids
    assert len(ids) == len(set(ids))


def test_wait_for_names_existing_steps_and_has_no_cycle(doc):
    steps = _steps(doc)
    for sid, step in steps.items():
        for dep in step.get("waitFor", []):
            assert dep == "-" or dep in steps, f"{sid} waits for unknown step {dep}"
    assert _has_cycle(steps) is None


def test_cycle_detection_finds_a_cycle():
    steps = {"a": {"waitFor": ["b"]}, "b": {"waitFor": ["a"]}}
    assert _has_cycle(steps) is not None


def _has_cycle(steps: dict[str, dict[str, Any]]) -> str | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(sid: str) -> str | None:
        if state.get(sid) == 1:
            return sid
        if state.get(sid) == 2:
            return None
        state[sid] = 1
        for dep in steps[sid].get("waitFor", []):
            if dep != "-" and (found := visit(dep)):
                return found
        state[sid] = 2
        return None

    for sid in steps:
        if found := visit(sid):
            return found
    return None


def _ancestors(steps: dict[str, dict[str, Any]], sid: str) -> set[str]:
    seen: set[str] = set()
    todo = [d for d in steps[sid].get("waitFor", []) if d != "-"]
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += [d for d in steps[dep].get("waitFor", []) if d != "-"]
    return seen


def test_checks_start_together_and_in_parallel(doc):
    steps = _steps(doc)
    checks = ["lint", "typecheck", "security"]
    waits = {sid: tuple(steps[sid]["waitFor"]) for sid in checks}
    assert len(set(waits.values())) == 1, waits  # the same prerequisites: they start at the same moment
    for sid in checks:
        assert not (_ancestors(steps, sid) & set(checks)), f"{sid} waits for another check"
        for dep in _ancestors(steps, sid):  # only a setup step that itself starts at once
            assert steps[dep]["waitFor"] == ["-"], dep
    assert "ruff" in json.dumps(steps["lint"]) and "mypy" in json.dumps(steps["typecheck"])
    assert steps["security"]["args"] == ["-r", "deployctl", "-ll"]


def test_nothing_is_pushed_or_released_before_every_check_passed(doc):
    steps = _steps(doc)
    for sid in ("push", "release"):
        assert {"lint", "typecheck", "security", "unit-tests", "build"} <= _ancestors(steps, sid)
    assert "push" in _ancestors(steps, "release")


def test_unit_test_step_deselects_exactly_the_e2e_tests(doc):
    """The step's marker expression must select something real: every test under tests/e2e, nothing else."""
    args = _steps(doc)["unit-tests"]["args"]
    marker = args[args.index("-m", 2) + 1]
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]
    deselected = subprocess.run([*collect, "-m", f"not ({marker})"], cwd=ROOT, capture_output=True, text=True)
    ids = [line for line in deselected.stdout.splitlines() if "::" in line]
    assert ids and all(i.startswith("tests/e2e/") for i in ids)
    everything = subprocess.run([*collect, "tests/e2e"], cwd=ROOT, capture_output=True, text=True)
    assert sorted(ids) == sorted(line for line in everything.stdout.splitlines() if "::" in line)


def test_the_release_step_runs_a_pinned_pulumi(doc):
    image = _steps(doc)["release"]["name"]
    assert image == "pulumi/pulumi-python-3.11:$_PULUMI_VERSION"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(doc["substitutions"]["_PULUMI_VERSION"]))


def test_image_is_tagged_by_commit_source_and_latest_and_released_by_digest(doc):
    steps = _steps(doc)
    build = steps["build"]["args"][-1]
    for tag in (":$COMMIT_SHA", ":src-$(cat /workspace/src.txt)", ":latest"):
        assert tag in build
    assert "--cache-from" in build and "-f Dockerfile.cloudrun" in build
    assert "/workspace/src.txt" in steps["src-hash"]["args"][-1]
    push = steps["push"]["args"][-1]
    assert "docker push --all-tags" in push and "RepoDigests" in push and "> /workspace/image.txt" in push


def test_no_substitution_looks_like_a_secret(doc):
    for key, value in doc["substitutions"].items():
        assert not _SECRETISH.search(f"{key}={value}"), key
    assert _SECRETISH.search("_DB_PASSWORD=hunter2")  # the pattern does catch one


def test_every_deployctl_line_parses_with_the_cli(doc):
    scripts = [arg for step in doc["steps"] for arg in step.get("args", []) if isinstance(arg, str)]
    lines = deployctl_lines(scripts)
    assert lines, "cloudbuild.yaml runs no deployctl command"
    for line in lines:
        ctx = parse_with_cli(line)
        assert ctx.command.name == "up"
        assert ctx.params["stack"] == "staging"
        assert ctx.params["image"] == SAMPLE_IMAGE


def test_a_wrong_option_would_not_parse():
    import click

    with pytest.raises(click.UsageError):
        parse_with_cli("deployctl up staging --imag x")


def test_the_release_step_reaches_the_state_backend_without_a_login_or_a_secret(doc):
    """deployctl's engine points Pulumi at gs://<state bucket> itself (PULUMI_BACKEND_URL, tests/gcp/test_engine.py)
    and reads the passphrase from Secret Manager as the build's identity; a `pulumi login` or a
    PULUMI_BACKEND_URL here would be redundant, or (the variable wins over the engine's) point elsewhere."""
    script = _steps(doc)["release"]["args"][-1]
    for absent in ("pulumi login", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN"):
        assert absent not in script
    assert not any("env" in step or "secretEnv" in step for step in doc["steps"])


def test_the_trigger_runs_this_file_as_the_account_bootstrap_grants():
    from deployctl.config import load
    from deployctl.targets.gcp.bootstrap import build_account
    from deployctl.targets.gcp.synth import synthesize

    stack = load("staging", ROOT)
    [trigger] = synthesize(stack).of_type("gcp:cloudbuild/trigger:Trigger")

    assert trigger.inputs["filename"] == "cloudbuild.yaml"
    email = f"{build_account(stack)}@{stack.project}.iam.gserviceaccount.com"
    assert trigger.inputs["serviceAccount"] == f"projects/{stack.project}/serviceAccounts/{email}"
    defaults = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["substitutions"]
    assert set(trigger.inputs["substitutions"]) == set(defaults) - {"_PULUMI_VERSION"}
