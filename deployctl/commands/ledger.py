"""ledger repair: parse, call deployctl.pipeline.ledger.repair, render what it did."""

from __future__ import annotations

import click

from deployctl.commands.common import command_line, lock_timeout_option, open_stack


@click.group()
def ledger() -> None:
    """Repair a stack's release ledger when a command says it is damaged.

    \b
    Example:
      deployctl ledger repair local
    """


@ledger.command()
@click.argument("stack")
@lock_timeout_option
def repair(stack: str, lock_timeout: float) -> None:
    """Mend STACK's damaged ledger and say what was restored and what was lost.

    A local stack's damaged file is kept aside (ledger.db.damaged-<time>); the backup taken after the
    last finished run (ledger.db.bak) is restored, with the records the damaged file still holds if
    SQLite can read it. What was lost is named: a bad record no copy holds (its id is never given to
    another release), or what was saved after the backup when the file cannot be read at all. On a
    gcp stack, each record object that cannot be read is moved aside to damaged/ in the state bucket.
    A ledger that is not damaged is left alone. Holds the deploy lock while it works.

    \b
    Example:
      deployctl ledger repair local
    """
    from deployctl.output import line
    from deployctl.pipeline.ledger import repair as repair_ledger

    _, target = open_stack(stack)
    for sentence in repair_ledger(target, command_line(), lock_timeout):
        line(sentence)
