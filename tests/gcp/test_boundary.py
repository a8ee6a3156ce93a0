"""The boundary between what Pulumi owns and what deployctl owns (docs/gcp.md, "Who owns what"), on the fake
cloud: no command writes a stack file, a code-only release makes no `pulumi up`, a change of settings makes
one, each release makes exactly one revision per service, and a hand-run `pulumi preview` afterwards shows
nothing to change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from deployctl.config import Release, load
from deployctl.pipeline import orchestrator, rollback, rotate
from deployctl.pipeline.promote import promote as promote_release
from deployctl.pipeline.rollback_guards import Guard
from tests.gcp.conftest import SERVICE, Cloud

PRODUCTION = "projects/example-production/locations/europe-central2/services/production-api"


def _stack_files(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "stacks").iterdir())}


def _change_code(cloud: Cloud, note: str) -> None:
    main = cloud.root / "app" / "main.py"
    main.write_text(main.read_text() + f"# {note}\n")


def _up(cloud: Cloud, reporter, stack: str = "staging"):
    return orchestrator.release(cloud.target(stack), cloud.options(None), reporter)


def test_a_fresh_stacks_first_release_applies_the_infrastructure_builds_then_makes_one_revision(
        cloud: Cloud, reporter) -> None:
    record = _up(cloud, reporter)
    assert record.outcome == "succeeded"
    # the repository the build pushes to exists only once the program made it: the infrastructure comes first,
    # with no service (nothing may start before its migrations); the candidate comes with the release's up
    releases = cloud.pulumi.releases("staging")
    assert [(r.phase, r.existing) for r in releases] == [("infra", []), ("release", [])]
    assert cloud.registry.repositories == {"staging-deployctl"}
    assert len(cloud.cloudbuild.builds) == 1
    assert cloud.run.revision_names(SERVICE) == [record.revisions["api"]]  # one revision, not R0 and R1
    assert cloud.run.serving(SERVICE) == {record.revisions["api"]: 100}
    assert cloud.preview() == []


def test_a_code_only_release_builds_migrates_deploys_and_shifts_with_no_pulumi_up(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    ups, builds, grpc_before = cloud.engine_calls().count("up"), len(cloud.cloudbuild.builds), len(cloud.grpc.calls)
    from tests.fakes import drongo_ext

    jobs_before = len(drongo_ext.RECORDER.mutations("run_job"))
    _change_code(cloud, "a code change")
    second = _up(cloud, reporter)
    assert second.outcome == "succeeded" and second.revisions["api"] != first.revisions["api"]
    assert cloud.engine_calls().count("up") == ups  # no pulumi up
    assert len(cloud.cloudbuild.builds) == builds + 1  # one build
    runs = [path.rsplit("/", 1)[-1] for _, path in drongo_ext.RECORDER.mutations("run_job")[jobs_before:]]
    assert runs == ["staging-api-migrate:run", "staging-api-init:run"]  # one migrate execution (and init)
    updates = [m for m, _ in cloud.grpc.calls[grpc_before:] if m in ("UpdateService", "CreateBuild")]
    # the build, the candidate revision (with its tag), the traffic shift to it, retiring the old tags
    assert updates.count("CreateBuild") == 1
    assert len(cloud.run.revision_names(SERVICE)) == 2  # exactly one new revision
    assert cloud.run.serving(SERVICE) == {second.revisions["api"]: 100}
    assert cloud.preview() == []
    # each update was a long-running operation that was not done when UpdateService answered: it was awaited
    methods = [m for m, _ in cloud.grpc.calls[grpc_before:]]
    assert methods.count("UpdateService") >= 2  # the candidate, the traffic shift
    assert methods.count("GetOperation") >= 2 * methods.count("UpdateService")  # still running, then done


def test_a_settings_change_makes_one_pulumi_up_and_one_revision(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    stack_file = cloud.root / "stacks" / "Pulumi.staging.yaml"
    stack_file.write_text(stack_file.read_text().replace("max_instances: 4", "max_instances: 3"))
    # a hand-run preview shows nothing of a service: its settings reach it through `deployctl up` (the
    # fingerprint changed), never through a hand-run up, which could only send its state's stale template
    assert cloud.preview() == []
    ups = cloud.engine_calls().count("up")
    second = _up(cloud, reporter)
    # one up before the migrations (the infrastructure, the existing service as it is), one after (the candidate)
    assert second.outcome == "succeeded" and cloud.engine_calls().count("up") == ups + 2
    assert [(r.phase, r.existing) for r in cloud.pulumi.releases("staging")[-2:]] == [("infra", ["api"]),
                                                                                      ("release", [])]
    assert len(cloud.run.revision_names(SERVICE)) == 2  # the program's revision is the candidate
    served = cloud.run.revisions[f"{SERVICE}/revisions/{second.revisions['api']}"]
    assert served.scaling.max_instance_count == 3 and second.revisions["api"] != first.revisions["api"]
    assert cloud.run.serving(SERVICE) == {second.revisions["api"]: 100}
    assert cloud.preview() == []
    again = _up(cloud, reporter)  # nothing changed: a no-op, and no pulumi up
    assert again.outcome == "noop" and cloud.engine_calls().count("up") == ups + 2


def test_no_command_writes_a_stack_file_and_preview_stays_empty(cloud: Cloud, reporter) -> None:
    before = _stack_files(cloud.root)
    first = _up(cloud, reporter)
    _change_code(cloud, "second")
    _up(cloud, reporter)
    for secret in ("SECRET_KEY", "DB_PASSWORD"):
        assert rotate.rotate(cloud.target(), secret, None, cloud.options(None), reporter).outcome == "succeeded"
        assert cloud.preview() == []
    back = rollback.rollback(cloud.target(), first.id, cloud.options(None), reporter, Guard(repin=True))
    assert back.outcome == "succeeded"
    assert cloud.preview() == []
    promoted = promote_release(cloud.target(), cloud.target("production"), cloud.options(None), reporter)
    assert promoted.outcome == "succeeded"
    assert cloud.preview() == [] and cloud.preview("production") == []
    assert _stack_files(cloud.root) == before
    # every release revision exists once: the revisions Cloud Run holds are the ones deployctl recorded
    ledger = cloud.target().ledger.history()
    recorded = {r.revisions["api"] for r in ledger if r.outcome == "succeeded"}
    assert set(cloud.run.revision_names(SERVICE)) == recorded


def test_a_settings_change_outside_the_service_after_a_code_only_release_makes_one_revision(cloud: Cloud,
                                                                                            reporter) -> None:
    """A job's timeout changes after a code-only release. A revision is named after the settings its template
    carries (the last up's fingerprint), so the release's candidate is a new name: Pulumi never sends the
    serving revision's name again with its own configuration (Cloud Run refuses that: deployctl's labels are on
    the revision), and the release makes exactly one revision."""
    _up(cloud, reporter)
    _change_code(cloud, "code")
    second = _up(cloud, reporter)
    shared = cloud.root / "Pulumi.yaml"  # the app's one definition, the migrate job's with it
    before = shared.read_text()
    after = before.replace("retries: 2, timeout_s: 300}", "retries: 2, timeout_s: 400}", 1)  # the migrate job
    assert after != before
    shared.write_text(after)
    ups = cloud.engine_calls().count("up")
    third = _up(cloud, reporter)
    assert third.outcome == "succeeded" and cloud.engine_calls().count("up") == ups + 2
    assert third.revisions != second.revisions and len(cloud.run.revision_names(SERVICE)) == 3
    assert cloud.run.serving(SERVICE) == {third.revisions["api"]: 100}
    assert cloud.preview() == []


def test_a_service_setting_never_moves_users_before_its_release_and_a_hand_run_up_never_does(cloud: Cloud,
                                                                                              reporter) -> None:
    """Pulumi fills an ignored property from its state, and Cloud Run's UpdateService takes the whole service:
    an up that touched a service for another setting (ingress) would send the template and traffic of the last
    Pulumi up and move users back. Outside deployctl's release up a service is left exactly as it is."""
    from tests.fakes import drongo_ext
    from tests.fakes.engine import FakeEngine

    _up(cloud, reporter)
    _change_code(cloud, "code")
    second = _up(cloud, reporter)  # through the API: Pulumi's state still holds the first release's template
    serving = {second.revisions["api"]: 100}
    tags = cloud.run.tags(SERVICE)
    stack_file = cloud.root / "stacks" / "Pulumi.staging.yaml"
    stack_file.write_text(stack_file.read_text().replace("      public: true\n",
                                                        "      public: true\n      ingress: internal\n", 1))
    by_hand = FakeEngine(load("staging", cloud.root), cloud.run, cloud.pulumi, cloud.sql, cloud.registry)
    by_hand.up(Release())  # a hand-run `pulumi up`
    assert cloud.run.serving(SERVICE) == serving and cloud.run.tags(SERVICE) == tags
    during_migrate: list[dict[str, int]] = []
    drongo_ext.JOBS.before_run = lambda job: during_migrate.append(cloud.run.serving(SERVICE)) if job.endswith(
        "-migrate") else None
    third = _up(cloud, reporter)
    assert third.outcome == "succeeded" and during_migrate == [serving]  # the infra up moved nobody
    assert cloud.run.serving(SERVICE) == {third.revisions["api"]: 100}
    assert cloud.preview() == []


def test_a_rotation_leaves_a_pending_settings_change_to_the_next_up(cloud: Cloud, reporter) -> None:
    _up(cloud, reporter)
    stack_file = cloud.root / "stacks" / "Pulumi.staging.yaml"
    stack_file.write_text(stack_file.read_text().replace("max_instances: 4", "max_instances: 3"))
    ups = cloud.engine_calls().count("up")
    assert rotate.rotate(cloud.target(), "SECRET_KEY", None, cloud.options(None), reporter).outcome == "succeeded"
    assert cloud.engine_calls().count("up") == ups  # a rotation applies no infrastructure
    applied = _up(cloud, reporter)  # not "nothing changed": the settings are still to apply
    assert applied.outcome == "succeeded"
    served = cloud.run.revisions[f"{SERVICE}/revisions/{applied.revisions['api']}"]
    assert served.scaling.max_instance_count == 3
