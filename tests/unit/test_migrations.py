"""Migration files read without running them: the lint of upgrade(), the revision graph, the safe marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl import config
from deployctl.pipeline import migrations

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
