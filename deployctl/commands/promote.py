"""promote: deploy the image that passed one stack to another, through the same pipeline, without a build."""

from __future__ import annotations

from dataclasses import replace

import click

from deployctl.commands.common import command_line, json_option, lock_timeout_option, open_stack, project_root
from deployctl.errors import DeployctlError
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.target import Target


def promote_release(src: Target, dst: Target, options: Options, reporter: Reporter) -> ReleaseRecord:
    """Release *dst* with the exact image digest that serves *src* (migrate, deploy, smoke, promote)."""
    from deployctl.pipeline import orchestrator

    serving = orchestrator.serving_release(src)
    if serving is None:
        raise DeployctlError(
            f"nothing serves in {src.stack.name} to promote",
            f"Release it first: deployctl up {src.stack.name}",
        )
    if set(serving.artifacts) != set(dst.stack.services) or len(set(serving.artifacts.values())) != 1:
        raise DeployctlError(
            f"release {serving.id} of {src.stack.name} does not map onto {dst.stack.name}'s services",
            "Promote works for stacks with the same single service; deploy others with `up --image`.",
        )
    image = next(iter(serving.artifacts.values()))
    if "@sha256:" not in image:
        raise DeployctlError(
            f"release {serving.id} ran {image!r}, which is not an image digest", "Promote between gcp stacks."
        )
    return orchestrator.release(dst, replace(options, image=image, git_sha=serving.git_sha), reporter)


@click.command()
@click.argument("src")
@click.argument("dst")
@lock_timeout_option
@json_option
def promote(src: str, dst: str, lock_timeout: float, as_json: bool) -> None:
    """Deploy the image digest that serves SRC to DST, with no rebuild.

    DST goes through the same stages as `up`: migrate, deploy a candidate, smoke-test it, shift traffic.

    \b
    Example:
      deployctl promote staging production
    """
    from deployctl.output import ConsoleReporter, emit_json, line

    _, source = open_stack(src)
    _, target = open_stack(dst)
    options = Options(command=command_line(), lock_timeout_s=lock_timeout, root=project_root())
    reporter = ConsoleReporter(quiet=as_json)
    record = promote_release(source, target, options, reporter)
    if as_json:
        emit_json(record.to_dict())
    elif record.outcome == "noop":
        line(f"Nothing changed: {dst} already serves that image ({record.message}).")
    else:
        line(f"Promoted {src} → {dst}: release {record.id} in {reporter.elapsed():.1f}s: {record.message}")
