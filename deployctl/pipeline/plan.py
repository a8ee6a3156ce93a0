"""A plan is data: what a release, rollback, rotation or promotion will do, made once and then executed.

The shape (after chalice's planner/executor split):

- A ``Plan`` is a list of ``Stage``s (build, migrate, deploy, smoke, promote, init), run in order.
- A stage is a list of *waves*; the steps of one wave run concurrently (one per service: all builds,
  all candidates, all smoke checks, all traffic switches), and a wave starts when the one before it is
  done. A stage with no waves is skipped, with the reason it carries (and its ``on_skip`` step, if any,
  records what the skip kept).
- A ``Step`` has a read-only ``describe()`` (the line ``up --dry-run``, ``plan`` and the ledger show) and a
  mutating ``run(ctx)``. Steps read and write the run's ``Context`` (artifacts, pinned versions,
  candidates), never globals.
- A stage may carry ``undo`` actions: what makes a failure of that stage safe (discard the candidates,
  route traffic back). They run after the failing wave has stopped, before the failure is reported.

A plan's ``facts`` are what it was made from and what it decided, typed per plan kind (``ReleaseFacts``,
``RollbackFacts``, ``RotateFacts``, each beside its planner). Control flow reads their attributes; nothing
decides from a rendered plan.

``Plan.to_dict()`` is the one JSON shape of every plan (docs/architecture.md describes it):
``{"kind", "stack", "target", "noop", "reason", "facts", "stages": [{"name", "skipped", "steps":
[{"stage", "service", "action", "message"}]}], "warnings"}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar

from deployctl.pipeline.model import STAGES, Artifact, ReleaseRecord, Revision, StageStatus
from deployctl.pipeline.run import Options
from deployctl.pipeline.target import Target

PlanKind = Literal["release", "rollback", "rotate", "heal"]


class Action(StrEnum):
    RUN = "run"
    REUSE = "reuse"


@dataclass
class Context:
    """The state one execution of a plan builds up. Steps of one wave write disjoint keys (their service's)."""

    target: Target
    record: ReleaseRecord
    options: Options
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, Revision] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)  # service -> the revision that served before
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when a sibling step failed
    rolled_back: bool = False  # set by an undo that moved traffic back to what served before
    warnings: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  # secret versions this run disabled ("KEY v1")

    def versions_for(self, service: str) -> dict[str, str]:
        """The pinned versions of the secrets *service* references."""
        wanted = set(self.target.stack.services[service].secrets.values())
        return {name: v for name, v in self.versions.items() if name in wanted}


@dataclass(frozen=True)
class StepOutcome:
    detail: str
    status: StageStatus = "ok"


class Step:
    """One unit of work. Subclasses are frozen dataclasses (the plan's data, never changed by running) with a
    ``stage`` and, for per-service steps, a ``service``."""

    stage: str

    @property
    def action(self) -> Action:
        return Action.RUN

    @property
    def for_service(self) -> str | None:
        return getattr(self, "service", None)

    def describe(self) -> str:
        raise NotImplementedError

    def run(self, ctx: Context) -> StepOutcome:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "service": self.for_service, "action": str(self.action),
                "message": self.describe()}


Undo = Callable[[Context], "str | None"]  # makes a failed stage safe; returns a note for the error, if any


@dataclass
class Stage:
    name: str
    waves: Sequence[Sequence[Step]] = field(default_factory=list)
    skip_reason: str = ""  # why a stage with no steps does nothing
    on_skip: Step | None = None  # run when the stage is skipped: records what the skip kept (KeepSchema)
    undo: tuple[Undo, ...] = ()

    @property
    def steps(self) -> list[Step]:
        return [step for wave in self.waves for step in wave]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "skipped": self.skip_reason or None, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class Facts:
    """What a plan was made from and what it decided (hashes, versions, what serves). Each plan kind has its
    own frozen dataclass of them; their fields, by name, are the ``facts`` of the plan's JSON."""

    kind: ClassVar[PlanKind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


F = TypeVar("F", bound=Facts)


@dataclass
class Plan(Generic[F]):
    stack: str
    target: str
    facts: F
    stages: list[Stage] = field(default_factory=list)
    noop: bool = False
    reason: str = ""  # why a no-op plan does nothing
    warnings: list[str] = field(default_factory=list)  # what the plan may break (the migration lint)

    def __post_init__(self) -> None:
        assert all(stage.name in STAGES for stage in self.stages), [s.name for s in self.stages]

    @property
    def kind(self) -> PlanKind:
        return self.facts.kind

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stack": self.stack,
            "target": self.target,
            "noop": self.noop,
            "reason": self.reason or None,
            "facts": self.facts.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "warnings": list(self.warnings),
        }

    def lines(self) -> list[tuple[str, str]]:
        """(stage, message) rows in execution order: what ``--dry-run`` and ``plan`` print."""
        if self.noop:
            return [("all", self.reason)]
        rows = []
        for stage in self.stages:
            if not stage.waves:
                rows.append((stage.name, f"skip: {stage.skip_reason}"))
            rows.extend((stage.name, step.describe()) for step in stage.steps)
        return rows
