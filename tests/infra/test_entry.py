"""A project reaches the program through the installed package: Pulumi.yaml's ``main: infra/`` runs a
two-line infra/__main__.py that imports deployctl.infra, and the policy pack finds the project's stacks."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import pytest

from deployctl.config import Stack, load
from deployctl.infra.policies import DIRECTORY
from deployctl.infra.policies.pack import load_in_project
from deployctl.targets.gcp.synth import Synthesis, run_mocked
from tests.infra.conftest import ROOT


def _project(tmp: Path) -> Path:
    """A user's repository: its Pulumi.yaml, its stack files and this repository's entry, no program."""
    for name in ("Pulumi.yaml", "infra/__main__.py", "stacks/Pulumi.staging.yaml"):
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp / name)
    return tmp


def _run_entry(infra: Path) -> dict[str, Any]:
    runpy.run_path(str(infra), run_name="__main__")  # what Pulumi's python host does with `main: infra/`
    return {}


def _declared(synthesis: Synthesis) -> list[tuple[str, str]]:
    return sorted((r.type, r.name) for r in synthesis.resources)


def test_the_entry_builds_the_installed_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                staging: tuple[Stack, Synthesis]) -> None:
    stack, synthesized = staging
    project = _project(tmp_path)
    assert (project / "infra" / "__main__.py").read_text().count("\n") <= 5  # an entry, not a copy of the program
    monkeypatch.chdir(project / "infra")  # Pulumi runs a `main:` directory in that directory
    entry = run_mocked(stack, lambda: _run_entry(project / "infra"))
    assert _declared(entry) == _declared(synthesized)


def test_the_entry_names_a_missing_stack_file_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          staging: tuple[Stack, Synthesis]) -> None:
    import pulumi

    project = _project(tmp_path)
    (project / "stacks" / "Pulumi.staging.yaml").unlink()
    monkeypatch.chdir(project / "infra")
    with pytest.raises(pulumi.RunError, match=r"^stacks/Pulumi.staging.yaml: no such stack file\. Create "):
        run_mocked(staging[0], lambda: _run_entry(project / "infra"))


def test_the_policy_pack_reads_the_stacks_of_the_project_it_is_installed_in() -> None:
    assert (DIRECTORY / "PulumiPolicy.yaml").is_file() and (DIRECTORY / "__main__.py").is_file()
    assert load_in_project("staging") == load("staging", ROOT)  # a checkout: the package is in the project
