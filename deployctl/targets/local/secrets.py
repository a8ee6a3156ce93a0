"""A versioned secret store on this machine, shaped like Secret Manager (versions 1, 2, 3…, enabled or
disabled, never deleted). The file is written atomically with mode 0600 and is the only place a local
secret value is kept; everything else sees names and version numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deployctl.targets.local.fs import atomic_write


class SecretStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return {}

    def _save(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)

    def latest(self, name: str) -> str | None:
        enabled = self.enabled(name)
        return enabled[-1] if enabled else None

    def versions(self, name: str) -> list[dict[str, str]]:
        """Version metadata (number, state, created) without values."""
        return [
            {"version": v["version"], "state": v["state"], "created": v["created"]}
            for v in self._load().get(name, {}).get("versions", [])
        ]

    def value(self, name: str, version: str) -> str:
        for v in self._load().get(name, {}).get("versions", []):
            if v["version"] == version:
                if v["state"] != "enabled":
                    raise KeyError(f"{name} v{version} is disabled")
                return str(v["value"])
        raise KeyError(f"{name} v{version} does not exist")

    def states(self, name: str) -> dict[str, str]:
        """version -> ``enabled`` or ``disabled`` (a local version is never destroyed)."""
        return {v["version"]: v["state"] for v in self._load().get(name, {}).get("versions", [])}

    def enabled(self, name: str) -> list[str]:
        return [v["version"] for v in self._load().get(name, {}).get("versions", []) if v["state"] == "enabled"]

    def logins(self, name: str) -> dict[str, str]:
        """The database login each version of a password secret belongs to, where one was recorded."""
        return {v["version"]: v["login"] for v in self._load().get(name, {}).get("versions", []) if "login" in v}

    def add(self, name: str, value: str, login: str | None = None) -> str:
        data = self._load()
        versions = data.setdefault(name, {"versions": []})["versions"]
        number = str(int(versions[-1]["version"]) + 1 if versions else 1)
        record = {"version": number, "value": value, "state": "enabled", "created": time.time()}
        versions.append({**record, **({"login": login} if login else {})})
        self._save(data)
        return number

    def disable(self, name: str, keep: list[str]) -> list[str]:
        data = self._load()
        done = []
        for v in data.get(name, {}).get("versions", []):
            if v["state"] == "enabled" and v["version"] not in keep:
                v["state"] = "disabled"
                done.append(v["version"])
        if done:
            self._save(data)
        return done

    def all_values(self) -> list[str]:
        """Every value ever stored (for redacting process output), longest first."""
        values = {str(v["value"]) for s in self._load().values() for v in s.get("versions", [])}
        return sorted((v for v in values if len(v) >= 6), key=len, reverse=True)
