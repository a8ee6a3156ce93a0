"""End to end on the fake cloud: the lead's orchestrator drives a GcpTarget."""

from __future__ import annotations

import pytest

from deployctl.errors import StageFailed
from deployctl.pipeline import orchestrator, rollback
from tests.fakes import drongo_ext
from tests.gcp.conftest import IMAGE, IMAGE2, IMAGE3, SERVICE, Cloud, mint_id_token


def _up(cloud: Cloud, reporter, image: str = IMAGE, **kw):
    return orchestrator.release(cloud.target(), cloud.options(image, **kw), reporter)


def test_up_staging_happy_path(cloud: Cloud, reporter) -> None:
    record = _up(cloud, reporter)
    assert record.outcome == "succeeded"
    revision = record.revisions["api"]
    assert cloud.run.serving(SERVICE) == {revision: 100}
    served = cloud.run.revisions[f"{SERVICE}/revisions/{revision}"]
    assert served.containers[0].image == IMAGE
    pinned = {e.name: e.value_source.secret_key_ref.version for e in served.containers[0].env
              if e.value_source}  # the secret env (LOG_LEVEL is plain)
    assert pinned == {"DATABASE_URL": "1", "SECRET_KEY": "1"}  # numbers, never "latest"
    ledger = cloud.target().ledger
    assert [r.id for r in ledger.history()] == [record.id]
    assert ledger.get(record.id).artifacts == {"api": IMAGE}
    assert ("staging-api-migrate", True) in [
        (k.rsplit("/", 1)[-1].rsplit("-", 1)[0], not v) for k, v in drongo_ext.JOBS.failed.items()
    ]
    assert cloud.target().lock.holder() is None
    stages = {s.name: (s.status, s.detail) for s in ledger.get(record.id).stages}
    # staging's init job is non-blocking: whether it already finished or is left running, it is not a failure
    assert stages["init"][0] == "ok"
    assert stages["init"][1].endswith(("succeeded", "started, not awaited (non-blocking)"))


def test_rerun_without_change_is_a_noop(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    assert cloud.engine_calls().count("up") == 2  # the infrastructure before the migrations, the candidate after
    before, calls = len(cloud.mutations()), len(cloud.engine_calls())
    again = _up(cloud, reporter)
    assert again.outcome == "noop"
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    lock_writes = [c for c in cloud.mutations()[before:] if "lock.json" in c[1] or c[0] == "upload_object"]
    assert len(cloud.mutations()) - before == len(lock_writes)  # only the lock was touched
    assert "up" not in cloud.engine_calls()[calls:]  # nor the stack: no pulumi up


def test_smoke_failure_never_serves_the_candidate(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    cloud.run.behaviours[IMAGE2] = lambda path, rev: (500, "boom") if path == "/health" else (200, "ok")
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter, IMAGE2)
    assert failed.value.stage == "smoke", failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert "candidate" not in cloud.run.tags(SERVICE)
    served_by = {rev for rev, path in cloud.http.hits if path == "/health"}
    assert len(served_by) == 2  # the candidate was hit only through its tag URL
    assert cloud.target().ledger.history()[0].outcome == "failed"


def test_migration_failure_deploys_nothing(cloud: Cloud, reporter) -> None:
    first = _up(cloud, reporter)
    drongo_ext.JOBS.outcomes["staging-api-migrate"] = [False]
    hits = len(cloud.http.hits)
    with pytest.raises(StageFailed) as failed:
        _up(cloud, reporter, IMAGE2)
    assert failed.value.stage == "migrate"
    # its one task failed once its 2 retries (stacks/Pulumi.staging.yaml) were spent: 3 attempts
    assert "migration failed after 3 attempt(s)" in failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert "candidate" not in cloud.run.tags(SERVICE) or cloud.run.tags(SERVICE)["candidate"] == first.revisions["api"]
    assert len(cloud.http.hits) == hits  # no smoke check ran: nothing was deployed to check
    assert "console.cloud.google.com" in (failed.value.hint or "")


def test_rollback_to_previous_and_to_a_chosen_release(cloud: Cloud, reporter) -> None:
    r1 = _up(cloud, reporter)
    r2 = _up(cloud, reporter, IMAGE2)
    r3 = _up(cloud, reporter, IMAGE3)
    assert cloud.run.serving(SERVICE) == {r3.revisions["api"]: 100}
    assert cloud.engine_calls().count("up") == 2  # the first release's two; code-only releases make none
    before = len(cloud.grpc.mutations())
    back = rollback.rollback(cloud.target(), None, cloud.options(None), reporter)
    assert cloud.run.serving(SERVICE) == {r2.revisions["api"]: 100}
    assert back.kind == "rollback"
    assert len(cloud.grpc.mutations()) - before == 1  # exactly one traffic update, no build
    assert cloud.engine_calls().count("up") == 2  # and no pulumi up
    assert cloud.preview() == []  # a hand-run `pulumi preview` shows nothing to change
    before = len(cloud.grpc.mutations())
    rollback.rollback(cloud.target(), r1.id, cloud.options(None), reporter)
    assert cloud.run.serving(SERVICE) == {r1.revisions["api"]: 100}
    assert len(cloud.grpc.mutations()) - before == 1
    assert cloud.engine_calls().count("up") == 2
    assert cloud.preview() == []


def test_build_once_per_source_then_reuse_the_digest(cloud: Cloud, reporter) -> None:
    ignore = cloud.root / ".dockerignore"  # the build context is the project root, filtered by its ignore file
    ignore.write_text(ignore.read_text() + "*.log\n")
    (cloud.root / "app" / "debug.log").write_text("noise")
    original = (cloud.root / "app" / "main.py").read_text()
    target = cloud.target()
    before = target.source_hash("api")
    (cloud.root / "app" / "debug.log").write_text("other noise")  # ignored: same source hash
    assert target.source_hash("api") == before
    first = orchestrator.release(target, cloud.options(None), reporter)
    image = first.artifacts["api"]
    # the repository the program creates, <stack>-<gcp.repository> (naming.repository), not gcp.repository
    assert "@sha256:" in image and image.startswith("europe-central2-docker.pkg.dev/example-staging/staging-deployctl/")
    assert len(cloud.cloudbuild.builds) == 1
    uploaded = [c for c in drongo_ext.RECORDER.calls if c[0] == "upload_object"]
    assert uploaded
    (cloud.root / "app" / "main.py").write_text(original + "# changed\n")
    second = orchestrator.release(cloud.target(), cloud.options(None), reporter)
    assert len(cloud.cloudbuild.builds) == 2 and second.artifacts["api"] != image
    third = rollback.rollback(cloud.target(), first.id, cloud.options(None), reporter)
    assert third.outcome == "succeeded"
    (cloud.root / "app" / "main.py").write_text(original)  # back to the first source
    again = orchestrator.release(cloud.target(), cloud.options(None), reporter)
    assert len(cloud.cloudbuild.builds) == 2  # the registry already had this source's image
    assert again.outcome == "noop", again.outcome
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}


def _private(cloud: Cloud) -> None:
    path = cloud.root / "stacks" / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("      public: true\n", "      public: false\n", 1))


def test_a_private_service_is_smoke_tested_with_an_id_token_for_its_url(cloud: Cloud, reporter) -> None:
    _private(cloud)
    audiences: list[str] = []

    def mint(audience: str) -> str:
        audiences.append(audience)
        return mint_id_token(audience)

    record = orchestrator.release(cloud.target(id_token=mint), cloud.options(IMAGE), reporter)
    assert record.outcome == "succeeded" and cloud.run.serving(SERVICE) == {record.revisions["api"]: 100}
    assert "staging-api" not in cloud.http.public and cloud.http.denied == []
    assert audiences == [f"{cloud.http.base}/_s/staging-api"]  # the service URL, minted once per command
    assert any(path == "/health" for _, path in cloud.http.hits)


def test_a_token_for_another_audience_is_refused_and_nothing_moves(cloud: Cloud, reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)  # public: no token needed
    assert cloud.http.denied == []
    _private(cloud)  # the next pulumi up removes the allUsers binding
    wrong = cloud.target(id_token=lambda audience: mint_id_token("https://example.com"))
    with pytest.raises(StageFailed) as failed:
        orchestrator.release(wrong, cloud.options(IMAGE2), reporter)
    assert failed.value.stage == "smoke" and not failed.value.rolled_back
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}
    assert {why for _, why in cloud.http.denied} == {"audience 'https://example.com' is not the service URL"}


def test_a_context_without_what_the_dockerfile_copies_fails_the_build_and_nothing_moves(cloud: Cloud,
                                                                                        reporter) -> None:
    first = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    ignore = cloud.root / ".dockerignore"
    ignore.write_text(ignore.read_text() + "app/requirements.txt\n")  # COPY app/requirements.txt has no source
    with pytest.raises(StageFailed) as failed:
        orchestrator.release(cloud.target(), cloud.options(None), reporter)
    assert failed.value.stage == "build"
    assert "COPY failed: file not found in build context: app/requirements.txt" in failed.value.message
    assert cloud.run.serving(SERVICE) == {first.revisions["api"]: 100}


def test_the_build_runs_as_the_stacks_build_account_in_a_source_bucket_it_made(cloud: Cloud, reporter) -> None:
    assert cloud.storage.lookup_bucket("example-staging_cloudbuild") is None  # as on a fresh project
    record = orchestrator.release(cloud.target(), cloud.options(None), reporter)
    assert record.outcome == "succeeded"
    assert cloud.storage.lookup_bucket("example-staging_cloudbuild") is not None
    [(build, _)] = cloud.cloudbuild.builds.values()
    assert build.service_account == ("projects/example-staging/serviceAccounts/"
                                     "staging-build@example-staging.iam.gserviceaccount.com")
    assert build.options.logging.name == "CLOUD_LOGGING_ONLY"


def test_the_fake_refuses_a_user_service_account_without_a_logging_choice(cloud: Cloud) -> None:
    from google.api_core import exceptions as gexc

    client = cloud.target().builds.builds  # the real CloudBuildClient, bound to the fake
    build = {"steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["version"]}],
             "service_account": "projects/example-staging/serviceAccounts/x@example-staging.iam.gserviceaccount.com"}
    with pytest.raises(gexc.InvalidArgument, match="CLOUD_LOGGING_ONLY"):
        client.create_build(project_id="example-staging", build=build)


def test_the_first_release_makes_one_revision_per_service(cloud: Cloud, reporter) -> None:
    """pulumi up creates the secrets (version 1) and the service's revision; deploy() names the same revision
    and finds it, instead of making a second one with another name (issue 10's review found two)."""
    record = orchestrator.release(cloud.target(), cloud.options(IMAGE), reporter)
    revisions = [name.rsplit("/", 1)[-1] for name in cloud.run.revisions if name.startswith(SERVICE + "/revisions/")]
    assert revisions == [record.revisions["api"]]
    assert cloud.run.serving(SERVICE) == {record.revisions["api"]: 100}


def test_a_revision_that_crashed_after_promotion_is_shown_dead_and_replaced(cloud: Cloud, reporter) -> None:
    from deployctl.pipeline.status import stack_status

    first = _up(cloud, reporter)
    dead = first.revisions["api"]
    cloud.run.crash(SERVICE, dead)
    health = stack_status(cloud.target())["health"]
    assert health["answers"] is False
    assert health["services"]["api"] == {"revision": dead, "revision_alive": False, "router_alive": True}
    plan = orchestrator.plan_release(cloud.target(), cloud.options(IMAGE))
    assert plan.kind == "heal" and plan.warnings == [f"revision {dead} of api does not answer"]
    healed = _up(cloud, reporter)  # nothing changed, but what serves does not answer
    new = healed.revisions["api"]
    assert healed.kind == "heal" and healed.outcome == "succeeded" and new != dead
    assert healed.message == f"healed: replaced dead revision {dead} with {new}"
    assert cloud.run.serving(SERVICE) == {new: 100}  # straight to 100 %: nothing alive to split with
    assert cloud.run.revisions[f"{SERVICE}/revisions/{new}"].containers[0].image == IMAGE  # the same artifact
    assert stack_status(cloud.target())["health"]["answers"] is True
    assert _up(cloud, reporter).outcome == "noop"
