"""Alembic migrations read without running them: the revision graph, the rollback-safe marker, and a lint.

Rules:
- Migration files are parsed with ``ast``, never imported (a migration imports the app and its drivers).
- The files are the project's: the ``script_location`` of the alembic config the migrate job names
  (``-c app/alembic.ini``), else ``<job service source>/migrations``; their ``versions/`` directory.
- A migration is **rollback-safe** when its file says so at module level: ``rollback_safe = True``. Its
  author states that the code of the release before it runs on the schema after it (an expand step, or a
  contract step whose column the previous release no longer used). Rollback crosses those freely; it
  refuses to cross any other migration, or a head no file describes, without ``--accept-schema``.
- The migrate job need not run (``kept``) when the serving release ran it on these very files (their content
  hash, ``files_hash``) and the database is still at the head those files end in and that release left: an
  upgrade to head would change nothing. Anything else (a file changed or added, another head, a head that
  cannot be read, an ``--image`` whose files are not these) runs the job.
- The lint flags, in ``upgrade()`` only, what breaks the release before it (expand/contract,
  docs/runbook.md): dropping or renaming a table or column, changing a column's type, and NOT NULL
  without a server default.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deployctl.config import Stack
from deployctl.errors import PreconditionError
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.target import Target

MARKER = "rollback_safe"
_HINT = ("expand/contract: the serving release's code still runs on this schema during the release and "
         "after a rollback (docs/runbook.md, Migration rules)")
_WHY = {
    "drop": "stop using it in one release, drop it in a later one",
    "rename": "add the new name beside the old, move the code over, drop the old in a later release",
    "type": "add a column of the new type, backfill it, switch the code, drop the old one later",
    "not null": "give it a server_default, or add NOT NULL in a later release",
}


@dataclass(frozen=True)
class Migration:
    revision: str
    down: tuple[str, ...]  # its down_revision(s); empty for the first
    name: str  # the file's stem, e.g. 0005_drop_email
    rollback_safe: bool
    path: Path


@dataclass(frozen=True)
class Finding:
    migration: str
    line: int
    what: str  # "drops column users.email"
    kind: str  # a key of _WHY

    def message(self) -> str:
        return f"migration {self.migration} (line {self.line}) {self.what}: {_WHY[self.kind]} ({_HINT})"


def versions_dir(stack: Stack, root: Path) -> Path | None:
    """Where the migrate job's revision files are, if it has any."""
    job = stack.jobs.migrate
    if job is None:
        return None
    found = root / stack.services[stack.job_service(job)].source / "migrations"
    for flag in ("-c", "--config"):
        if flag in job.command[:-1]:
            ini = root / job.command[job.command.index(flag) + 1]
            parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
            if parser.read(ini) and parser.has_option("alembic", "script_location"):
                found = Path(parser.get("alembic", "script_location"))
    versions = found / "versions"
    return versions if versions.is_dir() else None


def files_hash(stack: Stack, root: Path) -> str | None:
    """The content hash of what the migrate job runs: its definition and every file of the directory that holds
    ``versions/`` (alembic's env.py with the revisions) and of the alembic config it names. None without files."""
    versions = versions_dir(stack, root)
    job = stack.jobs.migrate
    if versions is None or job is None:
        return None
    digest = hashlib.sha256(repr(job).encode())
    ini = [root / job.command[job.command.index(f) + 1] for f in ("-c", "--config") if f in job.command[:-1]]
    files = sorted(p for p in versions.parent.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    named = [(path.name, path) for path in ini] + [(str(p.relative_to(versions.parent)), p) for p in files]
    for name, path in named:
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def kept(files: str | None, head: str | None, serving: ReleaseRecord | None, root: Path, stack: Stack) -> str | None:
    """Why the migrate job need not run (None: it must): see the module's rule. *files* is ``files_hash`` of
    the release's source, *head* the database's head as read from it now, *serving* the serving release."""
    if files is None or head is None or serving is None or serving.migrations != files:
        return None
    if serving.migration_after != head or files_head(read_all(versions_dir(stack, root))) != head:
        return None
    return f"migrations unchanged since release {serving.id} and the database is at their head {head}"


def read_all(directory: Path | None) -> dict[str, Migration]:
    """revision -> Migration for every file that declares a ``revision``."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.py")) if directory else []:
        module = _parse(path)
        values = _assignments(module) if module else {}
        revision, down = values.get("revision"), values.get("down_revision")
        if isinstance(revision, str):
            downs = tuple(down) if isinstance(down, tuple | list) else (down,) if isinstance(down, str) else ()
            found[revision] = Migration(revision, downs, path.stem, values.get(MARKER) is True, path)
    return found


def lineage(migrations: dict[str, Migration], head: str | None) -> list[str]:
    """*head* and every revision below it, newest first (a head no file describes stands alone)."""
    order: list[str] = []
    todo = [head] if head else []
    while todo:
        revision = todo.pop(0)
        if revision not in order:
            order.append(revision)
            todo.extend(migrations[revision].down if revision in migrations else ())
    return order


def files_head(migrations: dict[str, Migration]) -> str | None:
    """The one revision no other revises (None when there is none, or several: unmerged branches)."""
    below = {down for m in migrations.values() for down in m.down}
    heads = [r for r in migrations if r not in below]
    return heads[0] if len(heads) == 1 else None


def crossed(migrations: dict[str, Migration], newer: str | None, older: str | None) -> list[str]:
    """The revisions a schema at *newer* has that one at *older* has not, newest first."""
    below = set(lineage(migrations, older))
    return [r for r in lineage(migrations, newer) if r not in below]


def lint(path: Path) -> list[Finding]:
    """What ``upgrade()`` of one migration file does that the release before it may not survive."""
    module = _parse(path)
    upgrade = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None) \
        if module else None
    if upgrade is None:
        return []
    batches = _batch_tables(upgrade)
    findings = []
    for node in ast.walk(upgrade):
        receiver = _receiver(node)
        if isinstance(node, ast.Call) and receiver in ("op", *batches):
            args = [*([batches[receiver]] if receiver in batches else []), *node.args]  # a batch names its table
            findings += [Finding(path.stem, node.lineno, what, kind) for what, kind in _judge(node, args)]
    return findings


def pending_findings(target: Target, root: Path, head: str | None = None) -> list[Finding]:
    """The lint of every migration the database has not run yet (newer than its head: *head* when the caller
    read it already). With nothing serving and no head known there is no older code to break, and nothing
    is flagged."""
    head = head or database_head(target)
    if head is None and not any(r.revisions for r in target.ledger.history(limit=1)):
        return []
    migrations = read_all(versions_dir(target.stack, root))
    applied = set(lineage(migrations, head))
    return [f for m in sorted(migrations.values(), key=lambda m: m.name) if m.revision not in applied
            for f in lint(m.path)]


def database_head(target: Target) -> str | None:
    """The database's migration head: read from it, or else the newest head the ledger recorded."""
    head = target.migration_head()
    if head is not None:
        return head
    return next((r.migration_after for r in target.ledger.history(limit=50) if r.migration_after), None)


EMPTY_DATABASE = "empty-database"  # the risk a release accepts to start again from an empty database


def check_data_kept(target: Target, accept: bool) -> list[str]:
    """Read-only: an empty database under a stack whose ledger recorded a migration head lost its data; it
    is not a new one to migrate. Refuse before any change, naming where the data was and how to restore
    it, unless *accept* (``up --accept-empty-database``); returns the risks accepted, for the ledger."""
    recorded = next((r for r in target.ledger.history(limit=50) if r.migration_after), None)
    loss = target.database_lost() if recorded is not None else None
    if recorded is None or loss is None:
        return []
    if accept:
        return [EMPTY_DATABASE]
    stack = target.stack.name
    raise PreconditionError(
        f"the {stack} database is empty, but release {recorded.id} left it at migration {recorded.migration_after}: "
        f"{loss.where}",
        f"{loss.restore}; to start again from an empty database (its data is lost): "
        f"deployctl up {stack} --accept-empty-database",
    )


def applied_by(history: Iterable[ReleaseRecord], migrations: dict[str, Migration], revision: str) -> str | None:
    """The newest release whose migrate job took the database past *revision*."""
    for record in history:
        if record.kind == "release" and revision in crossed(migrations, record.migration_after,
                                                             record.migration_before):
            return record.id
    return None


# -- parsing ------------------------------------------------------------------------------------------
def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def _assignments(module: ast.Module) -> dict[str, object]:
    """Module-level ``name = <literal>`` assignments (``revision``, ``down_revision``, the marker)."""
    values: dict[str, object] = {}
    for node in module.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for name in (t.id for t in targets if isinstance(t, ast.Name)):
                try:
                    values[name] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return values


def _batch_tables(function: ast.FunctionDef) -> dict[str, ast.expr]:
    """``with op.batch_alter_table("t") as batch_op``: alias -> the table expression."""
    aliases = {}
    for node in ast.walk(function):
        for item in node.items if isinstance(node, ast.With) else []:
            call, alias = item.context_expr, item.optional_vars
            if _receiver(call) == "op" and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and call.func.attr == "batch_alter_table" and call.args and isinstance(alias, ast.Name):
                aliases[alias.id] = call.args[0]
    return aliases


def _receiver(node: ast.AST) -> str | None:
    """``op`` for a call ``op.drop_column(…)``; the name a method is called on."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        return node.func.value.id
    return None


def _judge(call: ast.Call, args: list[ast.expr]) -> list[tuple[str, str]]:
    """(what, kind) for each risky thing one ``op.<operation>(…)`` call does."""
    assert isinstance(call.func, ast.Attribute)
    operation, kw = call.func.attr, {k.arg: k.value for k in call.keywords if k.arg}
    table, column = (_text(args[i]) if len(args) > i else "?" for i in (0, 1))
    if operation == "drop_column":
        return [(f"drops column {table}.{column}", "drop")]
    if operation == "drop_table":
        return [(f"drops table {table}", "drop")]
    if operation == "rename_table":
        return [(f"renames table {table} to {column}", "rename")]
    if operation == "add_column" and len(args) > 1 and isinstance(args[1], ast.Call):
        col = args[1]
        col_kw = {k.arg: k.value for k in col.keywords if k.arg}
        if _is_false(col_kw.get("nullable")) and "server_default" not in col_kw:
            name = _text(col.args[0]) if col.args else "?"
            return [(f"adds NOT NULL column {table}.{name} without a server default", "not null")]
    if operation != "alter_column":
        return []
    found = []
    if "new_column_name" in kw:
        found.append((f"renames column {table}.{column} to {_text(kw['new_column_name'])}", "rename"))
    if "type_" in kw:
        found.append((f"changes the type of {table}.{column} to {_text(kw['type_'])}", "type"))
    if _is_false(kw.get("nullable")) and "server_default" not in kw:
        found.append((f"makes {table}.{column} NOT NULL without a server default", "not null"))
    return found


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _text(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ast.unparse(node)
