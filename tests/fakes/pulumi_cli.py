"""A stand-in ``pulumi`` executable for driving the real Automation API without the CLI.

Each call appends one JSON line to ``$FAKE_PULUMI_LOG``: the arguments, whether the environment carried a
passphrase and whether it equals ``$FAKE_PULUMI_EXPECT_PASSPHRASE`` (never the value itself), and the
release the program of an ``up`` would get (``$DEPLOYCTL_PULUMI_RELEASE``).

Behaviour kept from the real CLI where deployctl could depend on it:
- ``config set`` and ``config set-all`` write the stack file, ``<stackConfigDir>/Pulumi.<stack>.yaml``
  (Pulumi docs, "Project file": stackConfigDir). With ``--path`` a value that looks like a number or a
  boolean is written as a YAML number or boolean (pulumi/pulumi#17586, documented in pulumi/pulumi#18285),
  so a string map read back from the file no longer holds strings. deployctl must never call them: a test
  compares the stack files before and after.
- ``$FAKE_PULUMI_UP`` decides how ``up`` ends: ``conflict`` (another update holds the stack; the default),
  ``passphrase`` (the stack's secrets cannot be decrypted), ``plugin`` (a provider plugin is missing) or
  ``ok`` (an update with no changes: ``stack output`` and ``stack history`` then answer as after one).
- ``whoami`` fails when ``$FAKE_PULUMI_LOGGED_OUT`` is set and no gs:// ``$PULUMI_BACKEND_URL`` names the
  backend (Pulumi docs, "Environment variables": PULUMI_BACKEND_URL selects a diy backend, no token).
Every other command succeeds without output.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

_UP_FAILURES = {
    "conflict": "error: [409] Conflict: Another update is currently in progress.",
    "passphrase": 'error: constructing secrets manager of type "passphrase": incorrect passphrase, please set '
                  "PULUMI_CONFIG_PASSPHRASE to the correct passphrase",
    "plugin": "error: no resource plugin 'gcp-v8.10.0' found in the workspace or on your $PATH",
}
_HISTORY = [{"kind": "update", "startTime": "2026-01-01T00:00:00.000Z", "message": "", "environment": {},
             "config": {}, "result": "succeeded", "endTime": "2026-01-01T00:00:01.000Z",
             "resourceChanges": {"same": 1}, "version": 1}]


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--non-interactive"]  # the Automation API's global flag
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
        log.write(json.dumps({
            "args": args,
            "has_passphrase": passphrase is not None,
            "passphrase_matches": passphrase == os.environ.get("FAKE_PULUMI_EXPECT_PASSPHRASE"),
            "release": json.loads(os.environ.get("DEPLOYCTL_PULUMI_RELEASE") or "null"),
        }) + "\n")
    if args[:1] == ["version"]:
        print("v3.140.0")
    elif args[:1] == ["whoami"] and os.environ.get("FAKE_PULUMI_LOGGED_OUT") and not os.environ.get(
            "PULUMI_BACKEND_URL", "").startswith("gs://"):
        print("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions", file=sys.stderr)
        return 255
    elif args[:1] == ["whoami"]:
        print("deployer")
    elif args[:2] in (["config", "set"], ["config", "set-all"]):
        _set_config(args)
    elif args[:1] == ["up"]:
        return _up(args)
    elif args[:2] == ["stack", "output"]:
        print("{}")
    elif args[:2] == ["stack", "history"]:
        print(json.dumps(_HISTORY))
    return 0


def _up(args: list[str]) -> int:
    outcome = os.environ.get("FAKE_PULUMI_UP", "conflict")
    if outcome == "ok":
        return 0
    with open(args[args.index("--event-log") + 1], "a") as events:  # the engine ends its log with a cancel
        events.write(json.dumps({"sequence": 0, "timestamp": 0, "cancelEvent": {}}) + "\n")
    print(_UP_FAILURES[outcome], file=sys.stderr)
    return 255


def _set_config(args: list[str]) -> None:
    stack = args[args.index("--stack") + 1]
    path = "--path" in args
    if args[1] == "set":
        pairs = [(args[2], args[3])]
    else:
        pairs = [tuple(args[i + 1].split("=", 1)) for i, a in enumerate(args) if a in ("--plaintext", "--secret")]
    project = yaml.safe_load(Path("Pulumi.yaml").read_text()) or {}
    file = Path(project.get("stackConfigDir", ".")) / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(file.read_text()) if file.is_file() else {}
    config = document.setdefault("config", {})
    for key, value in pairs:
        _put(config, key, _typed(value) if path else value, path)
    file.write_text(yaml.safe_dump(document, sort_keys=False))


def _typed(value: str) -> Any:
    """What ``--path`` writes (pulumi/pulumi#17586): numbers and booleans lose their quotes."""
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in ("true", "false"):
        return value == "true"
    return value


def _put(config: dict[str, Any], key: str, value: Any, path: bool) -> None:
    if not path:
        config[key] = value
        return
    namespace, _, rest = key.partition(":")
    first, *parts = rest.split(".")
    node = config.setdefault(f"{namespace}:{first}", {})
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if parts:
        node[parts[-1]] = value
    else:
        config[f"{namespace}:{first}"] = value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
