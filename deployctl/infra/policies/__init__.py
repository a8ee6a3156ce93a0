"""The policy pack: pure rule functions over synthesized resources and the stack model.

Rule: a rule is a pure function ``(resources, stack) -> list[Finding]`` (no I/O, no Pulumi runtime), so the
same functions back ``deployctl audit``/``plan``, the release gate, and ``pulumi preview --policy-pack``.
"""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent  # the pack as Pulumi runs it: `pulumi preview --policy-pack DIRECTORY`
