"""What ``deployctl status`` reports, read-only: what serves and whether it answers.

Its own module because it stands on both run.py (what serves) and health.py (whether it answers), and
health.py stands on run.py.
"""

from __future__ import annotations

from typing import Any

from deployctl.pipeline import health
from deployctl.pipeline import run as runmod
from deployctl.pipeline.target import Target


def stack_status(target: Target) -> dict[str, Any]:
    """Read-only: what ``deployctl status`` reports — what serves (and any split), URLs, database, the
    secret versions the serving revisions run with and the latest ones, the lock, and whether what serves
    answers (``health``: a dead router, revision or database is shown dead). Versions and names only, never a
    secret value."""
    services = target.stack.services
    serving = runmod.serving_release(target)
    revisions = runmod.serving_revisions(target)
    holder = target.lock.holder()
    state = target.migration_state()
    return {
        "stack": target.stack.name,
        "target": target.name,
        "serving_release": serving.id if serving else None,
        "revisions": revisions,
        "traffic": {svc: [{"revision": s.revision, "percent": s.percent} for s in target.traffic(svc) if s.percent]
                    for svc in services},
        "urls": {svc: target.service_url(svc) for svc in services},
        "migration_head": state.head if state else None,
        "migration": state.describe() if state else None,  # the head and its tool, or how many tables
        "secret_versions": {svc: target.revision_secret_versions(svc, rev) or {} for svc, rev in revisions.items()},
        "latest_secret_versions": target.current_secret_versions(),
        "lock": None if holder is None else {**holder.__dict__, "stale": target.lock.is_stale(holder)},
        "health": health.check(target, revisions).to_dict(),
        "facts": target.describe(),
    }
