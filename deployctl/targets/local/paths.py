"""Where a local stack keeps its state: ``<root>/.deployctl/<stack>/`` (or ``$DEPLOYCTL_STATE_DIR/<stack>``).

The dependency venvs are shared between stacks and checkouts, keyed by the requirements' hash, under
``$DEPLOYCTL_CACHE_DIR`` (default ``~/.cache/deployctl``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @classmethod
    def for_stack(cls, project_root: Path, stack: str) -> StatePaths:
        base = os.environ.get("DEPLOYCTL_STATE_DIR")
        return cls((Path(base) if base else project_root / ".deployctl") / stack)

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.db"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def revisions(self) -> Path:
        return self.root / "revisions"

    @property
    def traffic(self) -> Path:
        return self.root / "traffic"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def cache_dir() -> Path:
    base = os.environ.get("DEPLOYCTL_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "deployctl"
