"""Health endpoints: GET routes whose last segment names a health check (/health, /healthz, /ready, …).

Routes are read from decorators (``@app.get``, ``@router.get``, ``@bp.route``), Starlette ``Route``/``Mount``
and Django ``urlpatterns``; a router's full path is put together from the prefixes it is mounted with
(``APIRouter(prefix=…)``, ``include_router(…, prefix=…)``, ``register_blueprint(…, url_prefix=…)``,
Django ``include("mod.urls")``), following imports between the service's modules. A prefix that is not a
literal (nor a settings field with a literal default) leaves the route *unplaced*: reported, never guessed.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeGuard

from deployctl.scaffold.apps import App, django_setting, dotted
from deployctl.scaffold.repo import Repo

HEALTH = ("startup", "startupz", "ready", "readyz", "readiness", "health", "healthz", "health-check", "healthcheck",
          "livez", "live", "liveness", "ping")
_ROUTERS = {"APIRouter": "prefix", "Blueprint": "url_prefix", "FastAPI": "", "Flask": "", "Starlette": ""}
_GET_DECORATORS = {"get", "route", "api_route"}
_MOUNTS = {"include_router": "prefix", "register_blueprint": "url_prefix"}
Ref = tuple[str, str]  # (module, variable)


@dataclass(frozen=True)
class Health:
    path: str
    file: str
    placed: bool  # False: mounted under a prefix that could not be read


@dataclass
class _Graph:
    prefixes: dict[Ref, str] = field(default_factory=dict)  # router -> its own prefix
    roots: list[Ref] = field(default_factory=list)
    routes: dict[Ref, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # (path, file)
    mounts: dict[Ref, list[tuple[Ref, str | None]]] = field(default_factory=lambda: defaultdict(list))


def find(repo: Repo, app: App, source: str, settings: dict[str, str]) -> list[Health]:
    """The health endpoints of *app* (its code under *source*), placed ones first, in HEALTH's order."""
    graph = _Graph()
    files = [f for f in repo.python_files(source) if _may_route(repo.text(f) or "")]
    for rel in files:
        tree = repo.tree(rel)
        if tree is not None:
            _Module(repo, rel, tree, graph, settings).read()
    if app.framework == "django":
        urlconf = django_setting(repo, app, "ROOT_URLCONF") or f"{(app.settings or '').rsplit('.', 1)[0]}.urls"
        graph.roots = [(urlconf, "urlpatterns")]
    found = _place(graph)
    health = [h for h in found if _segment(h.path) in HEALTH]
    return sorted(health, key=lambda h: (not h.placed, HEALTH.index(_segment(h.path)), h.path))


def _may_route(text: str) -> bool:
    return any(word in text for word in ("route", ".get(", "Route(", "urlpatterns", "APIRouter", "Blueprint"))


def _segment(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1].lower()


def _place(graph: _Graph) -> list[Health]:
    placed: dict[Ref, str] = {}

    def visit(ref: Ref, prefix: str) -> None:
        if ref in placed:
            return
        placed[ref] = full = join(prefix, graph.prefixes.get(ref, ""))
        for child, mount_prefix in graph.mounts.get(ref, []):
            if mount_prefix is not None:
                visit(child, join(full, mount_prefix))

    for root in graph.roots:
        visit(root, "")
    found = []
    for ref, routes in graph.routes.items():
        for path, rel in routes:
            where = placed.get(ref)
            found.append(Health(join(where, path) if where is not None else join("", path), rel, where is not None))
    return found


def join(prefix: str, path: str) -> str:
    joined = "/" + "/".join(p for p in (prefix.strip("/"), path.lstrip("/")) if p)
    return re.sub(r"/{2,}", "/", joined)


class _Module:
    """What one module adds to the graph: routers and apps, their routes, and what they mount."""

    def __init__(self, repo: Repo, rel: str, tree: ast.Module, graph: _Graph, settings: dict[str, str]) -> None:
        self.repo, self.rel, self.tree, self.graph, self.settings = repo, rel, tree, graph, settings
        self.module = repo.module_name(rel)[1]
        self.nodes = repo.nodes(rel)
        self.text = repo.text(rel) or ""
        self.imports = _imports(self.nodes, self.module)
        self.constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name)
                          and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}

    def read(self) -> None:
        for node in self.nodes:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                self._router(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._decorators(node)
            elif isinstance(node, ast.Call):
                self._call(node)
        if "Route(" in self.text:
            self._starlette_routes()
        if "urlpatterns" in self.text:
            self._urlpatterns()

    def _router(self, node: ast.Assign) -> None:
        call = node.value
        assert isinstance(call, ast.Call)
        cls = (dotted(call.func) or "").rsplit(".", 1)[-1]
        target = node.targets[0]
        if cls not in _ROUTERS or not isinstance(target, ast.Name):
            return
        ref = (self.module, target.id)
        keyword = _ROUTERS[cls]
        prefix = next((self._text(kw.value) for kw in call.keywords if keyword and kw.arg == keyword), "")
        self.graph.prefixes[ref] = prefix or ""
        if not keyword:
            self.graph.roots.append(ref)

    def _decorators(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                    and deco.func.attr in _GET_DECORATORS and isinstance(deco.func.value, ast.Name) and deco.args):
                continue
            path = self._text(deco.args[0])
            if path is not None and _allows_get(deco):
                self.graph.routes[(self.module, deco.func.value.id)].append((path, self.rel))

    def _call(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) and node.args):
            return
        parent = (self.module, node.func.value.id)
        if node.func.attr in _MOUNTS:
            child = self._resolve(node.args[0])
            keyword = _MOUNTS[node.func.attr]
            prefix: str | None = ""
            for kw in node.keywords:
                if kw.arg == keyword:
                    prefix = self._text(kw.value)
            if child is not None:
                self.graph.mounts[parent].append((child, prefix))
        elif node.func.attr == "add_route":
            path = self._text(node.args[0])
            if path is not None:
                self.graph.routes[parent].append((path, self.rel))

    def _starlette_routes(self) -> None:
        """``Route("/p", …)`` calls, under the prefix of the ``Mount("/m", routes=[…])`` they sit in."""
        mounted: set[int] = set()
        for node in self.nodes:
            if _call_named(node, "Mount") and node.args:
                prefix = self._text(node.args[0])
                for inner in ast.walk(node):
                    if _call_named(inner, "Route") and inner.args:
                        mounted.add(id(inner))
                        self._starlette_route(inner, prefix)
        for node in self.nodes:
            if id(node) not in mounted and _call_named(node, "Route") and node.args:
                self._starlette_route(node, "")

    def _starlette_route(self, call: ast.Call, prefix: str | None) -> None:
        path = self._text(call.args[0])
        if path is None:
            return
        ref = (self.module, "<routes>")
        if prefix is None:
            self.graph.routes[(self.module, "<unplaced>")].append((path, self.rel))
            return
        if ref not in self.graph.roots:
            self.graph.roots.append(ref)
        self.graph.routes[ref].append((join(prefix, path), self.rel))

    def _urlpatterns(self) -> None:
        """Django: ``path("health/", view)`` and ``path("api/", include("api.urls"))`` in urlpatterns."""
        ref = (self.module, "urlpatterns")
        for node in self.nodes:
            if not ((_call_named(node, "path") or _call_named(node, "re_path")) and len(node.args) >= 2):
                continue
            route = self._text(node.args[0])
            if route is None:
                continue
            route = _regex_path(route) if _call_named(node, "re_path") else route
            target = node.args[1]
            if _call_named(target, "include") and target.args:
                included = self._text(target.args[0])
                if included:
                    self.graph.mounts[ref].append(((included, "urlpatterns"), route))
            elif route is not None and "<" not in route:
                self.graph.routes[ref].append((route, self.rel))

    def _text(self, expr: ast.expr) -> str | None:
        """A literal string, a module constant, or a settings field with a literal default."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name):
            return self.constants.get(expr.id)
        if isinstance(expr, ast.Attribute):
            return self.settings.get(expr.attr)
        return None

    def _resolve(self, expr: ast.expr) -> Ref | None:
        if isinstance(expr, ast.Name):
            if expr.id in self.imports:
                module, attr = self.imports[expr.id]
                return (module, attr) if attr else None
            return (self.module, expr.id)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in self.imports:
            module, attr = self.imports[expr.value.id]
            return (f"{module}.{attr}" if attr else module, expr.attr)
        return None


def _imports(nodes: list[ast.AST], module: str) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, attribute); attribute None when the name is a module."""
    names: dict[str, tuple[str, str | None]] = {}
    package = module.split(".")
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level], *([base] if base else [])])
            for alias in node.names:
                names[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = (alias.name, None)
    return names


def _call_named(node: ast.AST, name: str) -> TypeGuard[ast.Call]:
    return isinstance(node, ast.Call) and (dotted(node.func) or "").rsplit(".", 1)[-1] == name


def _allows_get(deco: ast.Call) -> bool:
    assert isinstance(deco.func, ast.Attribute)
    if deco.func.attr == "get":
        return True
    for kw in deco.keywords:
        if kw.arg == "methods" and isinstance(kw.value, ast.List | ast.Tuple | ast.Set):
            return any(isinstance(e, ast.Constant) and str(e.value).upper() == "GET" for e in kw.value.elts)
    return True


def _regex_path(route: str) -> str | None:
    cleaned = route.removeprefix("^").removesuffix("$").replace("/?", "/")
    return None if re.search(r"[\\()\[\]*+?{}|]", cleaned) else cleaned
