"""promote: parse, call deployctl.pipeline.promote, render."""

from __future__ import annotations

import click

from deployctl.commands.common import command_line, json_option, lock_timeout_option, open_stacks, project_root


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
    from deployctl.pipeline.promote import promote as promote_stack
    from deployctl.pipeline.run import Options

    (_, source), (_, target) = open_stacks([src, dst])
    options = Options(command=command_line(), lock_timeout_s=lock_timeout, root=project_root())
    reporter = ConsoleReporter(quiet=as_json)
    record = promote_stack(source, target, options, reporter)
    if as_json:
        emit_json(record.to_dict())
    elif record.outcome == "noop":
        line(f"Nothing changed: {dst} already serves that image ({record.message}).")
    else:
        line(f"Promoted {src} → {dst}: release {record.id} in {reporter.elapsed():.1f}s: {record.message}")
