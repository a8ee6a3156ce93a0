"""Two logins for one database role, so rotating the database password never breaks the serving revision.

PostgreSQL keeps one password per role. Changing it under a serving revision breaks that revision's new
connections until traffic moves; changing it after the move makes the candidate fail its checks. So the
role has two logins (``database.user`` and ``database.alternate_user``, default ``<user>_b``); the second
is a member of the first and sessions of it run as the first (``ALTER ROLE … SET role``), so both see and
own the same objects. Each version of the password secret belongs to one login:

1. a rotation sets the new password on the login that no *enabled* version uses (the idle one) and records
   the new version's login with the version;
2. composed secrets (DATABASE_URL) use the login of the password version they are built from;
3. the candidate deploys, passes its checks and takes traffic, while the serving revision's login and
   password stay valid;
4. when the old version is disabled, its login is idle again and gets a random password nobody knows.

Versions without a recorded login (the first one, made before any rotation) belong to ``database.user``.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Iterable, Mapping

from deployctl.config import Database
from deployctl.errors import PreconditionError


def login_of(db: Database, recorded: Mapping[str, str], version: str) -> str:
    return recorded.get(version, db.user)


def idle_login(db: Database, enabled: Iterable[str], recorded: Mapping[str, str]) -> str:
    """The login no enabled password version uses; the one a new password may go to."""
    busy = {login_of(db, recorded, v) for v in enabled}
    free = [login for login in db.logins if login not in busy]
    if not free:
        raise PreconditionError(
            f"both database logins ({', '.join(db.logins)}) have enabled {db.password_secret} versions",
            "A revision that serves or is tagged still uses the older one; finish or roll back that release, "
            "then rotate again.",
        )
    return free[0]


def freed_logins(
    db: Database, disabled: Iterable[str], enabled: Iterable[str], recorded: Mapping[str, str]
) -> list[str]:
    """Logins whose versions were just disabled and that no enabled version uses any more."""
    busy = {login_of(db, recorded, v) for v in enabled}
    return sorted({login_of(db, recorded, v) for v in disabled} - busy)


def unknown_password() -> str:
    return pysecrets.token_urlsafe(32)
