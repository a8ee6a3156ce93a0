"""Migration files read without running them: the lint of upgrade(), the revision graph, the safe marker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl import config
from deployctl.pipeline import migrations, orchestrator
from deployctl.pipeline.model import ReleaseRecord, StageResult
from deployctl.pipeline.run import Options
from tests.fakes.latency import Latency, LatencyTarget, make_stack, smoke_server
from tests.fakes.reporter import QuietReporter

FAST = Latency(build_s=0.0, job_s=0.0, deploy_s=0.0, smoke_s=0.0)

REPO = Path(__file__).resolve().parents[2]


def _migration(tmp_path: Path, upgrade: str) -> Path:
    body = "\n".join(f"    {line}" for line in upgrade.strip().splitlines())
    path = tmp_path / "0005_change.py"
    path.write_text(f'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "0005"\n\n\n'
                    f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n"
                    '    op.drop_table("everything")\n')
    return path


def _lint(tmp_path: Path, upgrade: str) -> list[str]:
    return [f.what for f in migrations.lint(_migration(tmp_path, upgrade))]


@pytest.mark.parametrize(("upgrade", "found"), [
    ('op.drop_column("users", "email")', ["drops column users.email"]),
    ('op.drop_table("sessions")', ["drops table sessions"]),
    ('op.rename_table("users", "accounts")', ["renames table users to accounts"]),
    ('op.alter_column("users", "mail", new_column_name="email")', ["renames column users.mail to email"]),
    ('op.alter_column("users", "age", type_=sa.BigInteger())', ["changes the type of users.age to sa.BigInteger()"]),
    ('op.alter_column("users", "email", nullable=False)', ["makes users.email NOT NULL without a server default"]),
    ('op.add_column("users", sa.Column("plan", sa.Text, nullable=False))',
     ["adds NOT NULL column users.plan without a server default"]),
    ('with op.batch_alter_table("users") as batch_op:\n    batch_op.drop_column("email")',
     ["drops column users.email"]),
    ('op.alter_column("users", "email", nullable=False, type_=sa.Text)',
     ["changes the type of users.email to sa.Text", "makes users.email NOT NULL without a server default"]),
])
def test_lint_flags_what_the_release_before_cannot_survive(tmp_path: Path, upgrade: str, found: list[str]) -> None:
    assert _lint(tmp_path, upgrade) == found


@pytest.mark.parametrize("upgrade", [
    'op.add_column("users", sa.Column("plan", sa.Text, nullable=True))',
    'op.add_column("users", sa.Column("plan", sa.Text, nullable=False, server_default="free"))',
    'op.alter_column("users", "email", nullable=False, server_default="")',
    'op.alter_column("users", "email", nullable=True)',
    'op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))',
    'op.create_index("ix_users_email", "users", ["email"])',
    'other.drop_column("users", "email")',  # not an alembic operation
])
def test_lint_lets_expand_steps_through(tmp_path: Path, upgrade: str) -> None:
    assert _lint(tmp_path, upgrade) == []  # and downgrade()'s drop_table is never looked at


def test_a_finding_names_the_file_and_line_and_gives_the_expand_contract_hint(tmp_path: Path) -> None:
    (finding,) = migrations.lint(_migration(tmp_path, 'op.execute("SELECT 1")\nop.drop_column("users", "email")'))
    assert finding.message() == (
        "migration 0005_change (line 9) drops column users.email: stop using it in one release, drop it in a "
        "later one (expand/contract: the serving release's code still runs on this schema during the release "
        "and after a rollback (docs/runbook.md, Migration rules))")


def test_unparsable_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def upgrade(:\n")
    assert migrations.lint(tmp_path / "broken.py") == []
    assert migrations.read_all(tmp_path) == {}


def test_the_graph_the_safe_marker_and_what_a_rollback_crosses(tmp_path: Path) -> None:
    (tmp_path / "0003_a.py").write_text('revision = "0003"\ndown_revision = "0002"\nrollback_safe = True\n')
    (tmp_path / "0002_b.py").write_text('revision = "0002"\ndown_revision = None\n')
    (tmp_path / "0004_c.py").write_text('revision = "0004"\ndown_revision = ("0003",)\nrollback_safe = "yes"\n')
    graph = migrations.read_all(tmp_path)
    assert {r: (m.name, m.down, m.rollback_safe) for r, m in graph.items()} == {
        "0002": ("0002_b", (), False), "0003": ("0003_a", ("0002",), True), "0004": ("0004_c", ("0003",), False)}
    assert migrations.files_head(graph) == "0004"
    assert migrations.crossed(graph, "0004", "0002") == ["0004", "0003"]
    assert migrations.crossed(graph, "0002", "0004") == []  # going forward crosses nothing
    assert migrations.crossed(graph, "0009", "0004") == ["0009"]  # a head no file describes stands alone
    assert migrations.crossed(graph, "0004", None) == ["0004", "0003", "0002"]


def test_the_sample_app_migrations_are_found_through_alembic_ini_and_are_expand_only() -> None:
    stack = config.load("local", REPO)
    directory = migrations.versions_dir(stack, REPO)
    assert directory == REPO / "app" / "migrations" / "versions"
    graph = migrations.read_all(directory)
    assert migrations.files_head(graph) == "0002" and set(graph) == {"0001", "0002"}
    assert [f for m in graph.values() for f in migrations.lint(m.path)] == []


# -- the migrate stage's rule: skipped only when its files and the database head are the serving release's ----
def _revision(root: Path, number: int, body: str = "pass") -> None:
    versions = root / "app" / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    down = repr(f"{number - 1:04d}") if number > 1 else "None"
    (versions / f"{number:04d}_step.py").write_text(
        f'revision = "{number:04d}"\ndown_revision = {down}\n\n\ndef upgrade() -> None:\n    {body}\n')


@pytest.fixture
def database(tmp_path: Path) -> Iterator[LatencyTarget]:
    """A two-migration project on a target whose database head can be read; its migrate job takes it to 0002."""
    _revision(tmp_path, 1)
    _revision(tmp_path, 2)
    with smoke_server(0.0, set()) as url:
        yield LatencyTarget(make_stack(tmp_path, 1), tmp_path / "state", url, latency=FAST, migrate_to="0002")


def _release(target: LatencyTarget, root: Path) -> ReleaseRecord:
    return orchestrator.release(target, Options(command="deployctl up bench", force=True, root=root), QuietReporter())


def _migrate(record: ReleaseRecord) -> StageResult:
    return next(stage for stage in record.stages if stage.name == "migrate")


def test_the_migrate_job_is_skipped_when_its_files_and_the_database_head_are_the_serving_releases(
        database: LatencyTarget, tmp_path: Path) -> None:
    first = _release(database, tmp_path)
    assert _migrate(first).status == "ok" and database.calls["job"] == 1 and first.migration_after == "0002"
    plan = orchestrator.plan_release(database, Options(force=True, root=tmp_path))
    reason = f"migrations unchanged since release {first.id} and the database is at their head 0002"
    assert ("migrate", f"skip: {reason}") in plan.lines()
    second = _release(database, tmp_path)
    assert database.calls["job"] == 1  # not run again
    assert (_migrate(second).status, _migrate(second).detail) == ("skipped", reason)
    assert (second.migration_before, second.migration_after, second.migrations) == ("0002", "0002", first.migrations)
    assert second.outcome == "succeeded"
    third = _release(database, tmp_path)  # a release that skipped it is as good a reference as one that ran it
    assert _migrate(third).status == "skipped" and database.calls["job"] == 1


@pytest.mark.parametrize("change", ["edit 0002", "add 0003", "env.py"])
def test_a_changed_migration_file_runs_the_migrate_job(database: LatencyTarget, tmp_path: Path, change: str) -> None:
    _release(database, tmp_path)
    if change == "edit 0002":  # the head stays 0002: only the content says it changed
        _revision(tmp_path, 2, 'print("backfill")')
    elif change == "add 0003":
        _revision(tmp_path, 3)
        database.migrate_to = "0003"
    else:
        (tmp_path / "app" / "migrations" / "env.py").write_text("# how every migration runs\n")
    second = _release(database, tmp_path)
    assert _migrate(second).status == "ok" and database.calls["job"] == 2


@pytest.mark.parametrize("head", ["0001", None])
def test_a_database_head_other_than_the_serving_releases_runs_the_migrate_job(
        database: LatencyTarget, tmp_path: Path, head: str | None) -> None:
    _release(database, tmp_path)
    database.head = head  # downgraded by hand, or a head this target cannot read
    second = _release(database, tmp_path)
    assert _migrate(second).status == "ok" and database.calls["job"] == 2


def test_a_release_of_an_image_runs_the_migrate_job(database: LatencyTarget, tmp_path: Path) -> None:
    """An image holds migrations of its own: the files here say nothing about them."""
    _release(database, tmp_path)
    image = "registry.example/api@sha256:" + "0" * 64
    orchestrator.release(database, Options(force=True, root=tmp_path, image=image), QuietReporter())
    assert database.calls["job"] == 2


def test_a_database_moved_to_the_files_head_by_hand_runs_the_migrate_job(database: LatencyTarget,
                                                                         tmp_path: Path) -> None:
    """The serving release left 0001 (its job stopped short of the head); someone took the database on to 0002:
    the head is the files' own, but not the one the serving release recorded."""
    database.migrate_to = "0001"
    _release(database, tmp_path)
    database.head = "0002"
    second = _release(database, tmp_path)
    assert _migrate(second).status == "ok" and database.calls["job"] == 2
