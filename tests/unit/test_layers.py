"""The import layers STYLE.md asks for, checked on the code as it is.

- The pipeline sees only protocols: importing the deployctl.pipeline modules (in a fresh interpreter, so
  nothing another test loaded counts) imports no storage library (sqlite3, fcntl, psutil) and no cloud
  SDK (google.cloud, pulumi), directly or through another module. Those belong to the targets.
- deployctl has no import circle. The graph is read from the source, so it holds every import: those at
  the top of a module, those inside a function (a lazy import that dodges a circle at run time is still
  one), and those under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "deployctl"
FORBIDDEN = ("sqlite3", "fcntl", "psutil", "google.cloud", "pulumi")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PIPELINE = sorted(m for m in MODULES if m.startswith("deployctl.pipeline."))

# Python's own subprocess imports fcntl, so "is it in sys.modules" cannot tell the pipeline's imports from the
# standard library's plumbing. Every import statement goes through __import__, cached or not, and names the
# module it runs in: a forbidden module imported by anything but the standard library is reported, with the
# pipeline module whose import ran it. A module's body runs once per interpreter, so one interpreter that
# imports every pipeline module in turn sees every import statement that a fresh one per module would
# (at a seventeenth of the start-up cost).
_PROBE = """
import builtins, importlib, json, sys
modules, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
found, loading = set(), ["?"]
real = builtins.__import__

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "?")
    if level == 0 and importer.partition(".")[0] not in sys.stdlib_module_names:
        found.update(f"{name} (imported by {importer}, loading {loading[0]})"
                     for f in forbidden if name == f or name.startswith(f + "."))
    return real(name, globals, locals, fromlist, level)

builtins.__import__ = spy
for module in modules:
    loading[0] = module
    importlib.import_module(module)
print(json.dumps(sorted(found)))
"""


def forbidden_imports(modules: list[str], probe: str = _PROBE) -> list[str]:
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(modules), json.dumps(FORBIDDEN)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    found: list[str] = json.loads(done.stdout)
    return found


def test_the_pipeline_loads_no_storage_library_and_no_cloud_sdk() -> None:
    assert len(PIPELINE) > 10  # the glob found the package
    assert forbidden_imports(PIPELINE) == []


def test_the_probe_sees_an_import_the_standard_library_made_first() -> None:
    """subprocess loads fcntl first (and is not reported); a later import of it by other code still is."""
    probe = _PROBE.replace("importlib.import_module(module)", "import subprocess; import fcntl")
    assert forbidden_imports(["x"], probe) == ["fcntl (imported by __main__, loading x)"]


def imported(path: Path, name: str) -> set[str]:
    """The deployctl modules *path* (module *name*) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles, each as a readable path: the shortest one through each module not yet in one."""
    found: list[list[str]] = []
    for start in sorted(graph):
        circle = None if any(start in c for c in found) else _circle(graph, start)
        if circle:
            found.append(circle)
    return found


def _circle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest path from *start* back to itself (breadth first), or None."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def test_deployctl_has_no_import_circle() -> None:
    graph = {name: imported(path, name) for name, path in MODULES.items()}
    assert [" -> ".join(circle) for circle in cycles(graph)] == []


def test_the_circle_finder_finds_a_circle_and_only_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
