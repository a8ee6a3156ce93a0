"""Settings from the environment. Values are never logged or returned; checks report only their state."""

from __future__ import annotations

import os
import re

_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")


def database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def pool() -> tuple[int, int]:
    """(pool size, max overflow) per instance: what deployctl hands over as DB_POOL_SIZE and DB_MAX_OVERFLOW."""
    return int(os.environ.get("DB_POOL_SIZE", "5")), int(os.environ.get("DB_MAX_OVERFLOW", "5"))


def service() -> str:
    return os.environ.get("K_SERVICE", "local")


def revision() -> str:
    return os.environ.get("K_REVISION", "local")


def secret_key_state() -> str:
    """'ok', 'missing' or 'malformed' (hex, at least 32 characters) — never the key itself."""
    key = os.environ.get("SECRET_KEY")
    if not key:
        return "missing"
    return "ok" if _HEX.match(key) else "malformed"
