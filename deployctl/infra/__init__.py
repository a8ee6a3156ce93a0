"""The Pulumi program for gcp stacks.

Rule: the program reads only the validated stack model (``deployctl.config.load``), never YAML of its own,
and creates resources only through the components in ``deployctl.infra.components`` (one per concern). ``build`` is a
plain function so that ``deployctl plan``/``audit`` can run it offline under Pulumi mocks.
"""
