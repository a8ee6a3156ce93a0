"""Click commands, one module per area. Rule: a command parses, calls one library function, renders.

Each module is imported only when its command runs (see deployctl.cli.COMMANDS), so ``deployctl --help``
stays as fast as importing click.
"""
