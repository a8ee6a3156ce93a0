"""Executes a plan: stages in order, the steps of each wave concurrently, every stage recorded as it ends.

Rules:
- At most ``Options.workers`` steps of a wave run at once. When one fails, the wave's steps that have not
  started are cancelled, the running ones are told to stop at their next check (``ctx.cancelled``) and
  are waited for, and then the stage's undo actions run: a failed wave never leaves half its services
  on a new revision.
- A stage's outcome is written to the ledger before the next stage starts, so an interrupted run leaves
  an honest record.
- A failure is raised once, as a StageFailed whose fields say what happened (the stage, the cause, whether
  traffic was moved back, which revisions serve now); no exception's message is edited on the way up.
- A step that raises something other than a DeployctlError (a bug) fails its stage the same way: the undo
  runs, the record ends ``failed`` and the user gets one line; the original exception stays chained to it,
  so ``--debug`` shows its traceback. A run never stays ``running`` because a step crashed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from deployctl import interrupts
from deployctl.errors import DeployctlError, LockLost, StageFailed
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import ReleaseRecord, StageResult, StageStatus
from deployctl.pipeline.plan import Context, Plan, Stage, Step, StepOutcome
from deployctl.pipeline.run import Reporter


class _WaveFailed(Exception):  # noqa: N818 - internal signal between a wave and its stage
    def __init__(self, step: Step, cause: DeployctlError) -> None:
        super().__init__(cause.message)
        self.step, self.cause = step, cause


class Executor:
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def execute(self, plan: Plan, ctx: Context) -> None:
        """Run every stage; on a failure, undo what the failing stage asks for and raise StageFailed."""
        ctx.record.plan = [step for stage in plan.to_dict()["stages"] for step in stage["steps"]]
        ctx.target.ledger.save(ctx.record)
        for stage in plan.stages:
            self.run_stage(plan, stage, ctx)

    def run_stage(self, plan: Plan, stage: Stage, ctx: Context) -> None:
        if not stage.waves:
            if stage.on_skip is not None:
                stage.on_skip.run(ctx)
            self._record(ctx, StageResult(stage.name, "skipped", 0.0, stage.skip_reason))
            return
        self.reporter.stage_started(stage.name)
        start = time.monotonic()
        outcomes: list[StepOutcome] = []
        try:
            for wave in stage.waves:
                if ctx.record.holder:  # the lock may have been deleted or broken under us
                    ctx.target.lock.check(ctx.record.holder)
                outcomes += self._wave(stage.name, wave, ctx)
        except LockLost as lost:
            self._record(ctx, StageResult(stage.name, "failed", time.monotonic() - start, lost.message))
            raise self._lost_lock(plan, stage.name, lost, ctx) from None
        except _WaveFailed as failed:
            self._record(ctx, StageResult(stage.name, "failed", time.monotonic() - start, failed.cause.message))
            notes = [note for undo in stage.undo if (note := undo(ctx))]
            raise self._failure(plan, stage.name, failed.cause, ctx, notes) from failed.cause
        except KeyboardInterrupt:  # SIGINT, or SIGTERM (deployctl.cli turns it into one)
            self._interrupted(stage, ctx, time.monotonic() - start)
            raise
        status: StageStatus = "warning" if any(o.status == "warning" for o in outcomes) else "ok"
        detail = "; ".join(o.detail for o in outcomes if o.detail)
        self._record(ctx, StageResult(stage.name, status, time.monotonic() - start, detail))

    def _wave(self, stage: str, wave: Sequence[Step], ctx: Context) -> list[StepOutcome]:
        if len(wave) == 1:
            return [self._step(stage, wave[0], ctx)]
        workers = max(1, min(ctx.options.workers, len(wave)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"deployctl-{stage}") as pool:
            futures = [pool.submit(self._step, stage, step, ctx) for step in wave]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            first = next((f for f in futures if f in done and f.exception() is not None), None)
            if first is not None:
                ctx.cancelled.set()
                for future in pending:
                    future.cancel()
                wait(pending)
                _raise(first)
            return [f.result() for f in futures]

    def _step(self, stage: str, step: Step, ctx: Context) -> StepOutcome:
        if ctx.cancelled.is_set():
            raise _WaveFailed(step, DeployctlError(f"{step.for_service or stage}: cancelled, a sibling step failed"))
        start = time.monotonic()
        try:
            outcome = step.run(ctx)
        except DeployctlError as exc:
            raise _WaveFailed(step, exc) from exc
        except Exception as exc:
            raise _WaveFailed(step, _unexpected(exc)) from exc
        if step.for_service:
            self.reporter.step_finished(stage, step.for_service, outcome.status, time.monotonic() - start,
                                        outcome.detail)
        return outcome

    def _interrupted(self, stage: Stage, ctx: Context, elapsed_s: float) -> None:
        """Stopped by a signal: the stage's running job was stopped where it ran (its process group) or, on a
        target whose jobs run on their own (Cloud Run), left running and said so; the stage's undo runs as for
        a failure, and then the run is settled by what serves, as a dead run is
        (``runmod.settle``): its traffic switch done → succeeded; otherwise interrupted."""
        ctx.cancelled.set()
        with interrupts.held():  # a second Ctrl-C waits until the undo is done and recorded
            self._record(ctx, StageResult(stage.name, "failed", elapsed_s, "stopped by a signal"))
            for undo in stage.undo:
                undo(ctx)
            runmod.settle(ctx.target, ctx.record)
            job = ""
            if stage.name in ("migrate", "init"):
                job = (f"; its {stage.name} job was left running where it runs (a rerun's job waits for it)"
                       if ctx.target.jobs_outlive_the_cli else f"; its {stage.name} job was stopped")
            ctx.record.message = f"stopped by a signal during {stage.name}{job}; {ctx.record.message}"
            ctx.target.ledger.save(ctx.record)

    def _record(self, ctx: Context, result: StageResult) -> None:
        ctx.record.stages.append(result)
        ctx.target.ledger.save(ctx.record)
        self.reporter.stage_finished(result)

    def _lost_lock(self, plan: Plan, stage: str, lost: LockLost, ctx: Context) -> StageFailed:
        """Stop with the lock gone: no undo moves traffic (another command may hold the stack now); only
        this run's candidates that get no traffic are stopped, as nobody else knows of them."""
        left = []
        for svc, rev in ctx.candidates.items():
            if any(s.revision == rev.name and s.percent for s in ctx.target.traffic(svc)):
                left.append(rev.name)
            else:
                ctx.target.discard(svc, rev.name)
        serving = runmod.serving_revisions(ctx.target)
        notes = [f"{', '.join(left)} kept the traffic it had"] if left else []
        finish(ctx.target, ctx.record, "interrupted", f"stopped before {stage}: {lost.message}")
        return StageFailed(stage, lost, run=f"{runmod.RUN_NAMES[plan.kind]} {ctx.record.id}", notes=notes,
                           where=runmod.where_traffic_is(ctx.target, serving),
                           recover=f"See `deployctl status {plan.stack}` and run `{ctx.record.command}` again.",
                           rolled_back=False, serving=serving)

    def _failure(self, plan: Plan, stage: str, cause: DeployctlError, ctx: Context, notes: list[str]) -> StageFailed:
        """Record how the run ended and say, in fields, where traffic is and what recovers."""
        serving = runmod.serving_revisions(ctx.target)
        finish(ctx.target, ctx.record, "rolled_back" if ctx.rolled_back else "failed",
               f"failed at {stage}: {cause.message}")
        return StageFailed(
            stage,
            cause,
            run=f"{runmod.RUN_NAMES[plan.kind]} {ctx.record.id}",
            notes=notes,
            where=runmod.where_traffic_is(ctx.target, serving),
            recover=_recovery(ctx.record, plan.stack, bool(serving)),
            rolled_back=ctx.rolled_back,
            serving=serving,
        )




def _unexpected(exc: Exception) -> DeployctlError:
    said = next(iter(str(exc).splitlines()), "")[:200]
    error = DeployctlError(f"unexpected {type(exc).__name__}" + (f": {said}" if said else ""),
                           "This is a bug in deployctl: run the command again with --debug for the traceback.")
    error.__cause__ = exc
    return error


def _raise(future: Future[StepOutcome]) -> None:
    error = future.exception()
    assert error is not None
    raise error


def _recovery(record: ReleaseRecord, stack: str, serving: bool) -> str:
    retry = f"Fix the cause and run `{record.command}` again"
    return f"{retry}, or `deployctl rollback {stack}` to go back further." if serving else f"{retry}."


def finish(target: runmod.Target, record: ReleaseRecord, outcome: str, message: str) -> ReleaseRecord:
    record.outcome = outcome  # type: ignore[assignment]
    record.message = message
    record.finished = time.time()
    target.ledger.save(record)
    return record
