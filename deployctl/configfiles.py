"""Where a stack's settings come from: the app's one definition in Pulumi.yaml, and the stack file's overrides.

Pulumi's own convention (project-level configuration, Pulumi 3.44+): ``Pulumi.yaml`` may hold a ``config:``
mapping that every stack of the project starts from, and ``stacks/Pulumi.<stack>.yaml`` says how one stack
differs. deployctl reads both here and merges them into the one mapping its model validates
(``deployctl.config.load``), which the CLI and the Pulumi program both call.

Rule: maps merge key by key, at every depth; a list, a scalar or ``null`` set by the stack file replaces the
shared value whole, except inside a map keyed by name (``_NAMED``), where ``null`` removes that name, as in a
JSON merge patch (RFC 7386). Pulumi itself replaces a whole top-level key (``pulumi config get deployctl:services``
shows the stack's value only), which cannot matter: the Pulumi program reads deployctl's keys through
deployctl, and the only other keys read here (``gcp:project``, ``gcp:region``) are scalars, for which the
two rules agree. Every value remembers the file it came from, so an error names that file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployctl.errors import ConfigError

PROJECT_FILE = "Pulumi.yaml"
NAMESPACE = "deployctl"
GCP_KEYS = ("gcp:project", "gcp:region")  # pulumi-gcp's own keys, which deployctl also reads
_FORMS = ("value", "default")  # Pulumi's project-level forms of a value (a mapping needs one of them)
_SCHEMA = {"description", "type", "items", "secret"}  # the rest of Pulumi's schema: not values, not read

KeyPath = tuple[str, ...]  # a key path in the merged settings: ("services", "api", "cpu")
# the maps whose keys are names a stack may drop with null ("*": any service)
_NAMED = (("services",), ("secrets",), ("services", "*", "env"), ("services", "*", "secrets"))


@dataclass(frozen=True)
class Layer:
    """One file's settings: deployctl's keys without their namespace, ``project``/``region`` for gcp's."""

    file: str
    config: dict[str, Any]


@dataclass
class Merged:
    config: dict[str, Any] = field(default_factory=dict)
    origin: dict[KeyPath, str] = field(default_factory=dict)  # path -> the file whose value is there
    files: list[str] = field(default_factory=list)

    def file_of(self, path: KeyPath) -> str:
        """The file that set *path* (or the nearest key above it); the stack file for what nobody set."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.origin:
                return self.origin[path[:end]]
        return self.files[-1]

    def blended(self, path: KeyPath) -> bool:
        """Whether the value at *path* merges more than one file (an error there is about their sum)."""
        files = {f for p, f in self.origin.items() if p[: len(path)] == path}
        return len(files) > 1


def merge(layers: list[Layer]) -> Merged:
    out = Merged(files=[layer.file for layer in layers])
    for layer in layers:
        out.config = _merge(out.config, layer.config, (), layer.file, out.origin)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any], path: KeyPath, file: str,
           origin: dict[KeyPath, str]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        here = (*path, str(key))
        if value is None and _named(path):  # a name this file drops from what the files before it said
            out.pop(key, None)
            for p in [p for p in origin if p[: len(here)] == here]:
                del origin[p]
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, here, file, origin)
        else:  # replaced whole: what the shared definition said below this key no longer applies
            for p in [p for p in origin if p[: len(here)] == here]:
                del origin[p]
            out[key] = value
            _claim(value, here, file, origin)
        origin[here] = file
    return out


def _named(path: KeyPath) -> bool:
    return any(len(path) == len(named) and all(n in ("*", p) for p, n in zip(path, named, strict=True))
               for named in _NAMED)


def _claim(value: Any, path: KeyPath, file: str, origin: dict[KeyPath, str]) -> None:
    """Every key path inside *value* came from *file*."""
    if isinstance(value, dict):
        for key, inner in value.items():
            origin[(*path, str(key))] = file
            _claim(inner, (*path, str(key)), file, origin)


def read_yaml(path: Path, shown: str) -> Any:
    """The parsed document at *path*; a ConfigError naming *shown* when it is not UTF-8 YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:  # YAML is UTF-8 here (Pulumi reads it so), whatever the locale says
        raise ConfigError(f"{shown}: not valid UTF-8 (byte {exc.start}: 0x{exc.object[exc.start]:02x})",
                          "Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{shown}: not valid YAML{where}", "Check the indentation and quoting.") from None


def stack_config(raw: Any, file: str) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file's document."""
    config = raw.get("config", {}) if isinstance(raw, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{file}: config: must be a mapping of 'namespace:key' to values")
    return config


def project_config(root: Path) -> dict[str, Any]:
    """Pulumi.yaml's project-level values of the keys deployctl reads, unwrapped from Pulumi's forms
    (``key: scalar-or-list``, ``key: {value: …}``; ``{default: …}`` in the project's own namespace only);
    {} without a Pulumi.yaml or its ``config:``."""
    path = root / PROJECT_FILE
    if not path.is_file():
        return {}
    raw = read_yaml(path, PROJECT_FILE)
    config = raw.get("config") if isinstance(raw, dict) else None
    if config is None or isinstance(config, str):  # a string is Pulumi's old spelling of stackConfigDir
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{PROJECT_FILE}: config: must be a mapping of 'namespace:key' to values")
    project = str(raw.get("name", ""))
    return {str(key): _project_value(str(key), value, project) for key, value in config.items()
            if str(key).startswith(f"{NAMESPACE}:") or key in GCP_KEYS}


def _project_value(key: str, value: Any, project: str) -> Any:
    if value is None or (isinstance(value, dict) and set(value) & set(_FORMS) and
                         all(value.get(form) is None for form in _FORMS)):
        raise ConfigError(f"{PROJECT_FILE}: {key}: has no value",
                          "Pulumi refuses a project-level key without a value: to have none, set it to null in each "
                          "stack file, or leave it out here.")
    if not isinstance(value, dict):
        return value  # Pulumi's shorthand: a scalar or a list is the value itself
    forms = [form for form in _FORMS if form in value]
    example = f"{key}: {{value: {{…}}}}"
    if not forms:
        raise ConfigError(f"{PROJECT_FILE}: {key}: a mapping here must be nested under value:",
                          f"Pulumi reads a project-level mapping as a schema (value, default, type): write {example} "
                          "(docs/configuration.md, One definition, stack overrides).")
    if len(forms) == 2:
        raise ConfigError(f"{PROJECT_FILE}: {key}: has both value and default", "Pulumi refuses that: keep value.")
    if forms == ["default"] and not key.startswith(f"{project}:"):
        raise ConfigError(f"{PROJECT_FILE}: {key}: default is only for keys in the project's namespace ({project})",
                          "Pulumi refuses a default for another namespace's key: write value: instead.")
    extra = sorted(set(value) - set(_FORMS) - _SCHEMA)
    if extra:
        raise ConfigError(f"{PROJECT_FILE}: {key}.{extra[0]}: beside {forms[0]}: (nest it under {forms[0]}:)",
                          f"Write {example}.")
    return value[forms[0]]


def as_stack_file(config: dict[str, Any]) -> dict[str, Any]:
    """Merged settings written back as one stack file would hold them (``{"config": {"deployctl:…": …}}``):
    what a stack gets, and a document ``deployctl.config.parse`` reads to the same model."""
    gcp = {f"gcp:{key}": config[key] for key in ("project", "region") if key in config}
    ours = {f"{NAMESPACE}:{key}": value for key, value in config.items() if key not in ("project", "region")}
    first = {key: ours.pop(key) for key in [f"{NAMESPACE}:target"] if key in ours}
    return {"config": {**first, **gcp, **ours}}


def dump(document: dict[str, Any]) -> str:
    """*document* as YAML in the shape of deployctl's own stack files (what init writes, what --show-config prints)."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=200)


class _Dumper(yaml.SafeDumper):
    """Block style, except for lists of scalars and small mappings of scalars (``{source: generated, bytes: 32}``),
    as deployctl's own stacks are written."""


def _flow(values: list[Any]) -> bool:
    return all(not isinstance(v, dict | list) for v in values)


_Dumper.add_representer(dict, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data, flow_style=len(data) <= 3 and _flow(list(data.values()))))
_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=_flow(data)))
