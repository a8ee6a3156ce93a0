"""Operations that take minutes: deployctl waits once, within Cloud Run's budget, and never re-sends the change
(the twin's operations run on a clock the test moves, as tests/gcp/test_twin_rules.py's propagation does)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from google.cloud import run_v2

from deployctl.errors import DeployctlError
from deployctl.targets.gcp.retry import Propagation
from deployctl.targets.gcp.run_services import CloudRunServices, Spec
from tests.gcp.conftest import FAST, IMAGE, IMAGE2, SERVICE, Cloud
from tests.gcp.test_twin_rules import Clock

_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def _services(cloud: Cloud, operation_s: float) -> tuple[CloudRunServices, Clock]:
    """staging-api serving r1; the twin's UpdateService operations take *operation_s* simulated seconds."""
    template = run_v2.RevisionTemplate(revision="staging-api-r1", containers=[run_v2.Container(image=IMAGE)])
    cloud.run.apply(SERVICE, template, [run_v2.TrafficTarget(type_=_REVISION, revision="staging-api-r1", percent=100)])
    clock = Clock()
    cloud.run.clock, cloud.run.operation_s = clock, operation_s
    policy = replace(FAST, deadline_s=120, operation_s=600, clock=clock, sleep=clock.advance, propagation=Propagation())
    return cloud.target(policy=policy).run, clock


def _updates(cloud: Cloud) -> int:
    return sum(1 for call in cloud.grpc.mutations() if call[0] == "UpdateService")


SPEC = Spec(revision="staging-api-r2", image=IMAGE2, secret_env={}, labels={})


def test_a_revision_that_takes_200_s_is_waited_for_with_one_update(cloud: Cloud) -> None:
    run, clock = _services(cloud, operation_s=200)
    info = run.deploy("api", SPEC)
    assert info.ready and info.name == "staging-api-r2"
    assert _updates(cloud) == 1
    assert 1200 <= clock.now < 1600  # waited past any 120 s client timeout, within the 600 s budget
    assert cloud.run.tags(SERVICE) == {"candidate": "staging-api-r2"}


def test_an_operation_past_the_budget_is_reported_still_running_and_not_sent_again(cloud: Cloud) -> None:
    run, clock = _services(cloud, operation_s=700)
    with pytest.raises(DeployctlError) as exc:
        run.deploy("api", SPEC)
    assert exc.value.message == ("create revision staging-api-r2 of api: still running after 600s "
                                 "(projects/example-staging/locations/europe-central2/operations/op-1)")
    assert exc.value.hint == (
        "Google Cloud goes on with it, so revision staging-api-r2 may still become ready and api may still serve "
        "100 % to staging-api-r1; nothing was sent twice. See where it stands: gcloud run services describe "
        "staging-api --region europe-central2; then run the command again (DEPLOYCTL_OPERATION_TIMEOUT_S sets a "
        "longer wait).")
    assert _updates(cloud) == 1
    assert cloud.run.tags(SERVICE) == {}  # not yet: the operation goes on, and its change may still land
    assert clock.now == 1600
