"""Shared by the CI-file tests: find the ``deployctl …`` command lines in a pipeline's shell scripts and
parse each with the real CLI (click's own parser), so a renamed option breaks the test, not the release."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

import click

SAMPLE_IMAGE = "europe-central2-docker.pkg.dev/p/r/api@sha256:" + "0123456789abcdef" * 4
SAMPLES = {
    "$(cat /workspace/image.txt)": SAMPLE_IMAGE,
    "${{ steps.image.outputs.ref }}": SAMPLE_IMAGE,
    "${{ env.STACK }}": "staging",
    "$_STACK": "staging",
    "${_STACK}": "staging",
}
_LINE = re.compile(r"^\s*(?:exec\s+)?(deployctl\s.*)$")


def deployctl_lines(scripts: Iterable[str]) -> list[str]:
    """Every line of the given shell scripts that runs deployctl, with sample values substituted."""
    found = []
    for script in scripts:
        for raw in script.splitlines():
            match = _LINE.match(raw)
            if not match:
                continue
            text = match.group(1)
            for placeholder, value in SAMPLES.items():
                text = text.replace(placeholder, value)
            found.append(text)
    return found


def parse_with_cli(line: str) -> click.Context:
    """Parse a ``deployctl NAME …`` line with the real command; raises click's error when it does not parse."""
    from deployctl.cli import cli

    args = shlex.split(line)
    assert args[0] == "deployctl", line
    args = args[1:]
    assert "$" not in " ".join(args), f"unsubstituted variable left in {line!r}"
    # a parent context with the group's settings, as `deployctl …` builds it (click caches the help option
    # a command first sees: a bare Context would make later help renders in this process show no -h)
    root = click.Context(cli, info_name="deployctl", **cli.context_settings)
    command = cli.get_command(root, args[0])
    assert command is not None, f"deployctl has no command {args[0]!r}"
    return command.make_context(args[0], args[1:], parent=root)
