"""Rendering for people (rich: one line per stage with its elapsed time) and for machines (--json).

Rule: only the CLI layer prints; library code reports through a Reporter. Nothing here ever receives a
secret value.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from deployctl.pipeline.model import StageResult, StageStatus
from deployctl.pipeline.plan import Plan

_MARK = {"ok": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]", "warning": "[yellow]![/]"}


class ConsoleReporter:
    """One progress line per stage on stderr; a spinner while a stage runs (on a terminal only)."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = _console(stderr=True)
        self.quiet = quiet
        self.started = time.monotonic()
        self._status: Any = None

    def stage_started(self, name: str) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self._status = self.console.status(f"{name}…")
        self._status.start()

    def stage_finished(self, result: StageResult) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self.quiet:
            return
        mark = _MARK.get(result.status, "?")
        self.console.print(f"{mark} {result.name:<8} {result.elapsed_s:6.2f}s  {_esc(result.detail)}")

    def step_finished(self, stage: str, service: str, status: StageStatus, elapsed_s: float, detail: str) -> None:
        """One line per service as its step ends (the steps of a stage run concurrently)."""
        if self.quiet:
            return
        mark = _MARK.get(status, "?")
        printer = self._status.console if self._status is not None else self.console
        printer.print(f"  {mark} {stage:<8} {service:<12} {elapsed_s:6.2f}s  {_esc(detail)}")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]Warning:[/] {_esc(message)}")

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(_esc(message))

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def show_plan(plan: Plan, as_json: bool, heading: str) -> None:
    """Render a plan: the same object ``up`` executes (``--json`` gives Plan.to_dict(), the one plan shape)."""
    if as_json:
        emit_json(plan.to_dict())
        return
    line(heading)
    for stage, message in plan.lines():
        line(f"  {stage:<8} {message}")
    for warning in plan.warnings:
        line(f"Warning: {warning}")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*[_esc(c) for c in row])
    _console().print(out)


def line(text: str) -> None:
    _console().print(_esc(text))


def _console(stderr: bool = False) -> Console:
    """A terminal gets rich's layout; a pipe or a log gets whole lines (no wrapping at 80 columns)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=240, soft_wrap=True)
    return console
