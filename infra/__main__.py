"""Pulumi's entry for this project (``main: infra/`` in Pulumi.yaml): the program installed with deployctl."""

from deployctl.infra.main import run

run()
