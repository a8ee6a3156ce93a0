"""The Pulumi policy pack: ``pulumi preview --policy-pack infra/policies``.

It runs the very rule functions ``deployctl audit`` uses (rules.py), through the stack policies in pack.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # Pulumi runs this file with infra/policies/ on the path
    sys.path.insert(0, str(ROOT))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from infra.policies.pack import policies  # noqa: E402

PolicyPack(name="deployctl", enforcement_level=EnforcementLevel.ADVISORY, policies=policies())
