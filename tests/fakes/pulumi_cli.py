"""A stand-in ``pulumi`` executable for driving the real Automation API without the CLI.

Each call appends one JSON line to ``$FAKE_PULUMI_LOG``: the arguments, and whether the environment carried
a passphrase and whether it equals ``$FAKE_PULUMI_EXPECT_PASSPHRASE`` (never the value itself).
``$FAKE_PULUMI_UP`` decides how ``up`` ends: ``conflict`` (another update holds the stack), ``passphrase``
(the stack's secrets cannot be decrypted) or ``plugin`` (a provider plugin is missing). ``whoami`` fails
when ``$FAKE_PULUMI_LOGGED_OUT`` is set and no gs:// ``$PULUMI_BACKEND_URL`` names the backend. Every other
command succeeds without output.
"""

from __future__ import annotations

import json
import os
import sys

_UP_FAILURES = {
    "conflict": "error: [409] Conflict: Another update is currently in progress.",
    "passphrase": 'error: constructing secrets manager of type "passphrase": incorrect passphrase, please set '
                  "PULUMI_CONFIG_PASSPHRASE to the correct passphrase",
    "plugin": "error: no resource plugin 'gcp-v8.10.0' found in the workspace or on your $PATH",
}


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--non-interactive"]  # the Automation API's global flag
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
        log.write(json.dumps({
            "args": args,
            "has_passphrase": passphrase is not None,
            "passphrase_matches": passphrase == os.environ.get("FAKE_PULUMI_EXPECT_PASSPHRASE"),
        }) + "\n")
    if args[:1] == ["version"]:
        print("v3.140.0")
    # PULUMI_BACKEND_URL selects the state backend instead of `pulumi login` (Pulumi docs, "Environment
    # variables": PULUMI_BACKEND_URL); a diy backend such as gs://… needs no Pulumi Cloud token
    elif args[:1] == ["whoami"] and os.environ.get("FAKE_PULUMI_LOGGED_OUT") and not os.environ.get(
            "PULUMI_BACKEND_URL", "").startswith("gs://"):
        print("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions", file=sys.stderr)
        return 255
    elif args[:1] == ["whoami"]:
        print("deployer")
    elif args[:1] == ["up"]:
        with open(args[args.index("--event-log") + 1], "a") as events:  # the engine ends its log with a cancel
            events.write(json.dumps({"sequence": 0, "timestamp": 0, "cancelEvent": {}}) + "\n")
        print(_UP_FAILURES[os.environ.get("FAKE_PULUMI_UP", "conflict")], file=sys.stderr)
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
