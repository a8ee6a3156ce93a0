"""A Reporter (deployctl.pipeline.run) that keeps what it is told, for tests and benchmarks."""

from __future__ import annotations

from deployctl.pipeline.model import StageResult, StageStatus


class QuietReporter:
    """Keeps one line per stage, step, warning and note, in the order they came."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage_started(self, name: str) -> None:
        pass

    def stage_finished(self, result: StageResult) -> None:
        self.lines.append(f"{result.name} {result.status} {result.detail}")

    def step_finished(self, stage: str, service: str, status: StageStatus, elapsed_s: float, detail: str) -> None:
        self.lines.append(f"{stage} {service} {status} {detail}")

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def info(self, message: str) -> None:
        self.lines.append(message)
