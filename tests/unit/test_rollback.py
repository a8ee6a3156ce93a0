"""Which release `rollback` without --to goes to: what served before the serving revisions were deployed.

A rollback deploys nothing, so a second rollback keeps walking back (r3 → r2 → r1) instead of returning to
the release the first one left; at the first release it refuses and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.errors import DeployctlError
from deployctl.pipeline import orchestrator, rollback
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.rollback_guards import Guard
from deployctl.pipeline.run import Options, serving_release, serving_revisions
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

FAST = Latency(build_s=0.0, job_s=0.0, deploy_s=0.0, smoke_s=0.0)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LatencyTarget]:
    with smoke_server(0.0, set()) as url:
        yield LatencyTarget(make_stack(tmp_path, 2), tmp_path / "state", url, latency=FAST)


def release(target: LatencyTarget) -> ReleaseRecord:
    return orchestrator.release(target, Options(command="deployctl up bench", force=True), QuietReporter())


def back(target: LatencyTarget, to: str | None = None) -> ReleaseRecord:
    return rollback.rollback(target, to, Options(command="deployctl rollback bench"), QuietReporter())


def test_repeated_rollbacks_walk_back_one_release_at_a_time(target: LatencyTarget) -> None:
    r1, r2, r3 = release(target), release(target), release(target)
    first = back(target)
    assert serving_revisions(target) == r2.revisions != r3.revisions
    assert (first.restored, first.repinned) == (r2.id, False)  # routed back to r2's own revisions
    assert first.message.startswith(f"rolled back to release {r2.id} ")
    assert serving_release(target) == first  # the rollback record is what serves now
    second = back(target)
    assert serving_revisions(target) == r1.revisions  # not r3's again
    assert second.message.startswith(f"rolled back to release {r1.id} ")
    records = len(target.ledger.history())
    with pytest.raises(DeployctlError) as nothing:
        back(target)
    assert nothing.value.message == f"nothing served bench before release {r1.id}: there is no older release " \
                                    "to roll back to"
    assert nothing.value.hint == "rollback never goes forward; pick a release from `deployctl releases bench` " \
                                 "with --to."
    assert serving_revisions(target) == r1.revisions and len(target.ledger.history()) == records
    back(target, to=r3.id)  # forward only when asked by name
    assert serving_revisions(target) == r3.revisions


def test_after_a_rollback_and_a_new_release_rollback_skips_the_release_rolled_back_from(
    target: LatencyTarget,
) -> None:
    _, r2, r3 = release(target), release(target), release(target)
    back(target)  # r3 was bad: r2 serves
    r5 = release(target)
    assert r5.previous == r2.revisions
    assert rollback.choose(target, None) == target.ledger.get(r2.id)
    back(target)
    assert serving_revisions(target) == r2.revisions != r3.revisions


def test_after_rollback_to_an_older_release_rollback_goes_to_the_one_before_it(target: LatencyTarget) -> None:
    r1, r2, r3 = release(target), release(target), release(target)
    back(target, to=r1.id)
    with pytest.raises(DeployctlError, match=f"nothing served bench before release {r1.id}"):
        rollback.choose(target, None)
    back(target, to=r3.id)
    assert rollback.choose(target, None) == target.ledger.get(r2.id)


def test_nothing_to_roll_back_before_the_first_release(target: LatencyTarget) -> None:
    with pytest.raises(DeployctlError) as caught:
        back(target)
    assert (caught.value.message, caught.value.hint) == (
        "nothing serves bench yet: there is no release to roll back to", "Release it first: deployctl up bench")
    assert target.ledger.history() == []


def test_after_a_repinned_rollback_rollback_walks_on_from_the_release_it_restored(target: LatencyTarget) -> None:
    r1, r2, r3 = release(target), release(target), release(target)
    repinned = rollback.rollback(target, r2.id, Options(command="deployctl rollback bench --repin"),
                                 QuietReporter(), Guard(repin=True))
    assert repinned.restored == r2.id and repinned.revisions not in (r2.revisions, r3.revisions)
    assert target.ledger.get(repinned.id).repinned  # type: ignore[union-attr]
    assert serving_revisions(target) == repinned.revisions  # new revisions of r2's artifacts
    assert rollback.choose(target, None) == target.ledger.get(r1.id)  # not forward to r3, not r2 again
    back(target)
    assert serving_revisions(target) == r1.revisions


UNSAFE = 'revision = "0002"\ndown_revision = "0001"\n'  # no rollback_safe marker: crossing it is a risk


def _as_old_rotation(target: LatencyTarget, record: ReleaseRecord) -> ReleaseRecord:
    """*record* (a forced release of the serving code) as a rotation was written before rotations recorded
    the migration head they ran with: no migration state, no migrate step."""
    record.kind, record.migration_before, record.migration_after = "rotate", None, None
    record.plan = [step for step in record.plan if step.get("stage") != "migrate"]
    target.ledger.save(record)
    return record


def test_rollback_across_rotations_compares_like_with_like_and_never_goes_forward(
    target: LatencyTarget, tmp_path: Path,
) -> None:
    versions = tmp_path / "app" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions / "0001_notes.py").write_text('revision = "0001"\nrollback_safe = True\n')
    (versions / "0002_drop.py").write_text(UNSAFE)
    target.migrate_to = "0001"
    r1 = release(target)
    target.migrate_to = "0002"
    r2 = release(target)
    r3 = _as_old_rotation(target, release(target))  # a ledger written by an older deployctl
    r4 = _as_old_rotation(target, release(target))
    assert (r3.migration_after, r4.migration_after) == (None, None)

    def repinned_back() -> ReleaseRecord:
        return rollback.rollback(target, None, Options(command="deployctl rollback bench --repin", root=tmp_path),
                                 QuietReporter(), Guard(repin=True))

    first = repinned_back()  # r3's code ran on 0002, as r2's did: nothing is crossed
    assert (first.restored, first.accepted_risks, first.migration_after) == (r3.id, [], "0002")
    second = repinned_back()
    assert (second.restored, second.accepted_risks, second.migration_after) == (r2.id, [], "0002")
    assert rollback.choose(target, None) == target.ledger.get(r1.id)  # still back, never forward to r3 or r4
    with pytest.raises(DeployctlError) as crossing:  # r1's code ran on 0001: that crossing is real
        repinned_back()
    assert crossing.value.message == f"rollback to {r1.id} crosses migration 0002_drop ({r2.id}): release " \
                                     f"{r1.id}'s code ran on 0001"
    assert serving_revisions(target) == second.revisions
