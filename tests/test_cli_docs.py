"""docs/cli.md is the CLI's own help, rendered: every command has help, appears there, and the file is fresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployctl.cli import COMMANDS
from deployctl.clidoc import helps, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return helps()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_and_has_help(rendered, name):
    text = rendered.get(f"deployctl {name}")
    assert text is not None, f"deployctl {name} does not load ({COMMANDS[name][0]}.{COMMANDS[name][1]})"
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    assert body.strip() and not body.lstrip().startswith("Options:"), f"deployctl {name} has no help text"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_documented(name):
    assert f"## `deployctl {name}`" in DOC.read_text(), f"docs/cli.md lacks deployctl {name}: run scripts/gen-cli-docs"


def test_docs_match_a_fresh_render():
    # rendered in a fresh interpreter, as scripts/gen-cli-docs does: click caches each command's help option
    # from the first context it sees, so other tests in this process could change the rendering
    fresh = subprocess.run([sys.executable, "-c", "from deployctl.clidoc import render; print(render(), end='')"],
                           cwd=DOC.parents[1], capture_output=True, text=True, check=True, timeout=60).stdout
    assert DOC.read_text() == fresh, "docs/cli.md is stale: run scripts/gen-cli-docs"


def test_every_exit_code_is_documented():
    from deployctl import errors

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert all(f"| {code} |" in render() for code in codes)
