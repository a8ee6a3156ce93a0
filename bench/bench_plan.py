"""Benchmarks for the offline infrastructure plan.

Budgets: ``deployctl plan staging`` within 2x the time of just importing the pulumi_gcp modules the program
uses (synthesis itself must be cheap next to the SDK import), and synthesizing 20 services within 3x
synthesizing one (no quadratic work per resource).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.common import Result, report, timed, timed_call

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# pulumi_gcp's submodules load lazily: touching one name per module is what really imports it
GCP_IMPORTS = "import pulumi, pulumi_gcp as g; " + "; ".join(
    f"g.{m}.__name__" for m in ("cloudrunv2", "sql", "secretmanager", "artifactregistry", "cloudbuild",
                                "monitoring", "projects", "serviceaccount")
) + "; g.cloudrunv2.Service"


def _stack(services: int) -> Any:
    import yaml

    from deployctl.config import parse

    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.staging.yaml").read_text())
    api = raw["config"]["deployctl:services"]["api"]
    raw["config"]["deployctl:services"] = {("api" if i == 0 else f"svc{i}"): dict(api) for i in range(services)}
    return parse(raw, stack="staging", file="stacks/Pulumi.staging.yaml")


def run() -> bool:
    sys.path.insert(0, str(ROOT))
    from deployctl.targets.gcp.synth import synthesize

    imports_s = timed([PY, "-c", GCP_IMPORTS], runs=3, cwd=ROOT)
    plan_s = timed([PY, "-m", "deployctl", "plan", "staging"], runs=3, cwd=ROOT)
    one, twenty = _stack(1), _stack(20)
    synthesize(one)  # warm the imports
    one_s = timed_call(lambda: synthesize(one), runs=5)
    twenty_s = timed_call(lambda: synthesize(twenty), runs=3)
    return report("infrastructure plan (offline synthesis)", [
        Result("deployctl plan staging", plan_s, 2 * imports_s, f"2 x import pulumi_gcp modules ({imports_s:.3f}s)"),
        Result("synthesize 20 services", twenty_s, 3 * one_s, f"3 x synthesize 1 service ({one_s:.3f}s)"),
    ])


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
