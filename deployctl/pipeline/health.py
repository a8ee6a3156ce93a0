"""What serves is checked, not assumed: whether what the ledger says serves answers, and the steps that
heal it.

Rules:
- A stack answers when, for each service, its front end answers (``Target.router_healthy``: local, the
  router process and its port; Cloud Run, the service's Ready condition) and the revision that gets its
  traffic answers (``Target.revision_healthy``), and its database server runs where the target can tell.
- ``up`` with nothing changed but something dead heals it as plan steps, so ``up --dry-run`` shows them and
  the ledger records them (deployctl.pipeline.orchestrator makes that plan): a dead front end is restarted,
  a stopped database started, and a dead revision replaced by a new one from the same artifact, which
  passes its smoke checks before it gets the traffic.
- Traffic never goes back onto something dead: a failed traffic switch routes each service back to the
  newest revision that answers and that a succeeded run deployed (``fallbacks``), and a candidate splits
  traffic only with a previous revision that answers (else it goes straight to 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployctl.errors import DeployctlError
from deployctl.pipeline import run as runmod
from deployctl.pipeline.plan import Context, Step, StepOutcome
from deployctl.pipeline.steps import require_checks
from deployctl.pipeline.target import Target

_HISTORY = 50  # records searched for a revision to fall back to


@dataclass(frozen=True)
class Health:
    """What of the serving revisions, their front ends and the database answers now."""

    revisions: dict[str, str]  # service -> the revision that gets its traffic
    dead_revisions: tuple[str, ...] = ()  # services whose revision does not answer
    routers_down: tuple[str, ...] = ()  # services whose front end does not answer
    database: bool | None = None  # whether the database server runs (None: cannot tell, or none)

    @property
    def answers(self) -> bool:
        return not self.dead_revisions and not self.routers_down and self.database is not False

    def problems(self) -> list[str]:
        said = [f"the router of {svc} does not answer" for svc in self.routers_down]
        said += [f"revision {self.revisions[svc]} of {svc} does not answer" for svc in self.dead_revisions]
        return said + (["the database is not running"] if self.database is False else [])

    def to_dict(self) -> dict[str, Any]:
        services = {svc: {"revision": rev, "revision_alive": svc not in self.dead_revisions,
                          "router_alive": svc not in self.routers_down} for svc, rev in self.revisions.items()}
        return {"answers": self.answers, "services": services, "database_alive": self.database}


def check(target: Target, revisions: dict[str, str]) -> Health:
    """Read-only: probe every serving revision, every front end and the database."""
    if not revisions:
        return Health({}, database=target.database_healthy())
    return Health(
        dict(revisions),
        tuple(svc for svc, rev in revisions.items() if not target.revision_healthy(svc, rev)),
        tuple(svc for svc in revisions if not target.router_healthy(svc)),
        target.database_healthy(),
    )


def fallbacks(target: Target, previous: dict[str, str]) -> dict[str, str]:
    """Read-only: service -> the revision a failed traffic switch routes back to: the one that served before
    when it answers, else the newest revision a succeeded run deployed that answers. A service with none
    alive is left out: routing it back would route it onto a corpse."""
    history = target.ledger.history(limit=_HISTORY)
    chosen: dict[str, str] = {}
    for svc, rev in previous.items():
        tried = [rev, *(r.revisions[svc] for r in history if r.outcome == "succeeded" and svc in r.revisions)]
        found = next((name for name in dict.fromkeys(tried) if target.revision_healthy(svc, name)), None)
        if found:
            chosen[svc] = found
    return chosen


@dataclass(frozen=True)
class RouteBack:
    """Undo of a traffic switch: each service goes straight back to the revision planned for it
    (``fallbacks``, decided when the plan was made)."""

    to: tuple[tuple[str, str], ...]  # (service, revision)

    def __call__(self, ctx: Context) -> str | None:
        if not self.to:
            return None
        runmod.route_all(ctx.target, dict(self.to))
        ctx.rolled_back = True
        return f"rolled back automatically to {', '.join(rev for _, rev in self.to)}"


@dataclass(frozen=True)
class RestartRouter(Step):
    """Bring a service's front end back, then check the service URL."""

    service: str
    url: str
    stage: str = "promote"

    def describe(self) -> str:
        return f"restart the router of {self.service} (it does not answer), then check {self.url}"

    def run(self, ctx: Context) -> StepOutcome:
        ctx.target.restart_router(self.service)
        said = require_checks(ctx.target, self.service, self.url, f"failed its checks through {self.url}")
        return StepOutcome(f"restarted the router of {self.service}; {said}")


@dataclass(frozen=True)
class StartDatabase(Step):
    """Start the stack's database server again, its login on the serving release's password version."""

    pins: tuple[tuple[str, str], ...]  # the serving release's secret versions
    stage: str = "build"

    def describe(self) -> str:
        return "start the database (it is not running)"

    def run(self, ctx: Context) -> StepOutcome:
        ctx.target.prepare({}, dict(self.pins), infrastructure=False)
        if ctx.target.database_healthy() is False:
            raise DeployctlError("the database did not start")
        return StepOutcome("started the database")
