"""A stage stopped by a signal reports the time it ran, as every other stage does (it said 0.00 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.pipeline import orchestrator
from deployctl.pipeline.model import Artifact, Revision
from deployctl.pipeline.run import Options
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

DEPLOY_S = 0.3


class SignalledTarget(LatencyTarget):
    """Its deploy takes DEPLOY_S, then the command gets SIGINT (deployctl.interrupts turns SIGTERM into it too)."""

    def deploy(self, service: str, artifact: Artifact, secret_versions: dict[str, str], release_id: str) -> Revision:
        super().deploy(service, artifact, secret_versions, release_id)
        raise KeyboardInterrupt


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SignalledTarget]:
    with smoke_server(0.0, set()) as url:
        yield SignalledTarget(make_stack(tmp_path, 1), tmp_path / "state", url,
                              latency=Latency(build_s=0, job_s=0, deploy_s=DEPLOY_S, smoke_s=0))


def test_a_stage_stopped_by_a_signal_reports_its_real_elapsed_time(target: SignalledTarget) -> None:
    with pytest.raises(KeyboardInterrupt):
        orchestrator.release(target, Options(command="deployctl up bench"), QuietReporter())
    record = target.ledger.get("r0001")
    assert record is not None
    stage = record.stages[-1]
    assert (stage.name, stage.status, stage.detail) == ("deploy", "failed", "stopped by a signal")
    assert DEPLOY_S <= stage.elapsed_s < DEPLOY_S + 5
