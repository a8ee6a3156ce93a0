"""A step that crashes with something other than a DeployctlError (a bug) still ends its run: the stage's
undo runs, the ledger record is `failed` (never left `running`), the user gets one line, and the original
exception stays chained for --debug."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator
from deployctl.pipeline.model import Artifact, Revision
from deployctl.pipeline.run import Options
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter


class CrashingTarget(LatencyTarget):
    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        if service == "svc1":
            raise KeyError("DB_PASSWORD")  # what a bug in a target looks like
        return super().deploy(service, artifact, secret_versions, release_id)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[CrashingTarget]:
    with smoke_server(0.0, set()) as url:
        yield CrashingTarget(make_stack(tmp_path, 2), tmp_path / "state", url, latency=Latency(0, 0, 0, 0))


def test_a_crashing_step_fails_the_run_in_one_line_and_the_record_ends_failed(target: CrashingTarget) -> None:
    with pytest.raises(StageFailed) as failed:
        orchestrator.release(target, Options(command="deployctl up bench"), QuietReporter())
    error = failed.value
    assert error.stage == "deploy" and error.cause.message == "unexpected KeyError: 'DB_PASSWORD'"
    assert error.message == "release r0001 failed at deploy: unexpected KeyError: 'DB_PASSWORD'. Nothing serves yet."
    assert "\n" not in error.message and error.hint and "--debug for the traceback" in error.hint
    assert isinstance(error.cause.__cause__, KeyError)  # what --debug prints, chained
    assert target.discarded == ["svc0-r0001"]  # the undo ran: the other candidate is gone
    record = target.ledger.get("r0001")
    assert record is not None and record.outcome == "failed" and record.finished is not None
    assert [(s.name, s.status) for s in record.stages][-1] == ("deploy", "failed")
