"""The Pulumi policy pack: ``pulumi preview --policy-pack <this directory>`` (docs/infrastructure.md).

It runs the very rule functions ``deployctl audit`` uses (rules.py), through the stack policies in pack.py.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from deployctl.infra.policies.pack import policies

PolicyPack(name="deployctl", enforcement_level=EnforcementLevel.ADVISORY, policies=policies())
