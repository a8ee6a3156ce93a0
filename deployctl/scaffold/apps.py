"""Which web framework the service uses, where its application object is, and how it is served.

FastAPI and Starlette apps are served by uvicorn, Django and Flask apps by gunicorn; either way the
command binds ``$HOST`` (the local target sets it; 0.0.0.0 on Cloud Run) and ``$PORT``, and runs from the
directory the app imports from.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from typing import Literal

from deployctl.scaffold.repo import Repo, parent

Framework = Literal["fastapi", "starlette", "django", "flask"]
TITLES: dict[Framework, str] = {"fastapi": "FastAPI", "starlette": "Starlette", "django": "Django", "flask": "Flask"}
SERVER: dict[Framework, str] = {"fastapi": "uvicorn", "starlette": "uvicorn", "django": "gunicorn", "flask": "gunicorn"}
DEFAULT_PORT = 8000  # uvicorn's and gunicorn's own default
# the class that makes an application object, by framework, and the modules it is imported from
_CLASSES: dict[str, tuple[Framework, tuple[str, ...]]] = {
    "FastAPI": ("fastapi", ("fastapi",)),
    "Starlette": ("starlette", ("starlette", "starlette.applications")),
    "Flask": ("flask", ("flask",)),
}
_SETTINGS_MODULE = re.compile(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""")


@dataclass(frozen=True)
class App:
    framework: Framework
    file: str  # the file holding the application object (manage.py for Django)
    workdir: str  # the directory the app imports from (relative to the repository root)
    module: str  # the dotted module of the application object (Django: the WSGI module)
    attr: str  # the object, or the factory function that returns it
    factory: bool = False
    settings: str | None = None  # Django: the settings module
    port: int = DEFAULT_PORT
    port_from: str = "default"

    @property
    def title(self) -> str:
        return TITLES[self.framework]

    @property
    def server(self) -> str:
        return SERVER[self.framework]

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def serve(self) -> str:
        """The shell command that serves the app from its workdir (``$PORT`` needs a shell to expand)."""
        if self.server == "uvicorn":
            factory = " --factory" if self.factory else ""
            return f"exec uvicorn {self.target}{factory} --host ${{HOST:-0.0.0.0}} --port ${{PORT:-{self.port}}}"
        target = f"'{self.target}()'" if self.factory else self.target
        return f"exec gunicorn --bind ${{HOST:-0.0.0.0}}:${{PORT:-{self.port}}} {target}"


def find(repo: Repo) -> App | None:
    """The service's application object: a Django project's manage.py, else a FastAPI, Starlette or Flask app."""
    django = _django(repo)
    if django is not None:
        return django
    found = [app for f in repo.python_files() for app in _apps_in(repo, f)]
    if not found:
        return None
    order = list(_CLASSES)
    found.sort(key=lambda a: (a.factory, order.index(TITLES[a.framework]), a.file.count("/"),
                              a.file.rsplit("/", 1)[-1] not in ("main.py", "app.py", "__init__.py"), a.file))
    return found[0]


def _django(repo: Repo) -> App | None:
    for manage in repo.named("manage.py"):
        text = repo.text(manage) or ""
        m = _SETTINGS_MODULE.search(text)
        if not m or "django" not in text:
            continue
        workdir, settings = parent(manage), m.group(1)
        package = settings.rsplit(".", 1)[0]
        wsgi = _django_setting(repo, workdir, settings, "WSGI_APPLICATION") or f"{package}.wsgi.application"
        module, _, attr = wsgi.rpartition(".")
        return App("django", manage, workdir, module, attr, settings=settings)
    return None


def django_setting(repo: Repo, app: App, name: str) -> str | None:
    return _django_setting(repo, app.workdir, app.settings or "", name)


def _django_setting(repo: Repo, workdir: str, settings: str, name: str) -> str | None:
    """A string setting assigned literally in the settings module (or its package's modules)."""
    base = settings.replace(".", "/")
    prefix = "" if workdir == "." else f"{workdir}/"
    in_package = (f for f in repo.files if f.startswith(f"{prefix}{base}/") and f.endswith(".py"))
    candidates = [f"{prefix}{base}.py", *in_package]
    for rel in candidates:
        tree = repo.tree(rel) if repo.exists(rel) else None
        for node in tree.body if tree else []:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets) \
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    return None


def _apps_in(repo: Repo, rel: str) -> list[App]:
    text = repo.text(rel) or ""
    if not any(f"{cls}(" in text for cls in _CLASSES):
        return []
    tree = repo.tree(rel)
    if tree is None:
        return []
    imported = _imported_classes(tree)
    workdir, module = repo.module_name(rel)
    apps = []
    for owner, node in _assignments(tree):
        framework = _constructs(node.value, imported)
        if framework is None:
            continue
        target = node.targets[0]
        if owner is None and isinstance(target, ast.Name):
            apps.append(App(framework, rel, workdir, module, target.id))
        elif owner is not None:
            apps.append(App(framework, rel, workdir, module, owner, factory=True))
    return apps


def _imported_classes(tree: ast.Module) -> dict[str, Framework]:
    """Local name -> framework, for the application classes this module imports (or reaches by module)."""
    names: dict[str, Framework] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                spec = _CLASSES.get(alias.name)
                if spec and node.module in spec[1]:
                    names[alias.asname or alias.name] = spec[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                for cls, (framework, modules) in _CLASSES.items():
                    if alias.name in modules:
                        names[f"{alias.asname or alias.name}.{cls}"] = framework
    return names


def _assignments(tree: ast.Module) -> list[tuple[str | None, ast.Assign]]:
    """Module-level assignments (owner None) and those inside module-level functions (owner: the function)."""
    found: list[tuple[str | None, ast.Assign]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            found.append((None, node))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [(node.name, n) for n in ast.walk(node) if isinstance(n, ast.Assign)]
    return found


def _constructs(value: ast.expr, imported: dict[str, Framework]) -> Framework | None:
    if not isinstance(value, ast.Call):
        return None
    return imported.get(dotted(value.func) or "")


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name or an Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def with_port(repo: Repo, app: App, source: str) -> App:
    """*app* with the port its own code or gunicorn config under *source* names (``uvicorn.run(port=…)``,
    ``app.run(port=…)``, ``bind = "0.0.0.0:N"``), else the server's default."""
    for rel in repo.python_files(source):
        text = repo.text(rel) or ""
        if "port=" not in text and "port =" not in text and "bind" not in text:
            continue
        port = _port_in(repo, rel)
        if port:
            return replace(app, port=port, port_from=rel)
    return app


def _port_in(repo: Repo, rel: str) -> int | None:
    for node in repo.nodes(rel):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run":
            for kw in node.keywords:
                if kw.arg == "port":
                    return _first_port(kw.value)
        if rel.endswith("gunicorn.conf.py") and isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and any(isinstance(t, ast.Name) and t.id == "bind" for t in node.targets):
            m = re.search(r":(\d+)$", str(node.value.value))
            if m:
                return int(m.group(1))
    return None


def _first_port(expr: ast.expr) -> int | None:
    """The literal port in ``8000`` or ``int(os.environ.get("PORT", "8000"))``."""
    for node in ast.walk(expr):
        if isinstance(node, ast.Constant) and str(node.value).isdigit() and 0 < int(str(node.value)) < 65536:
            return int(str(node.value))
    return None
