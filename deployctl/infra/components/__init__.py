"""One ComponentResource per concern.

Rules (docs/infrastructure.md): a type token ``deployctl:gcp:<Kind>``, the signature ``(name, args, opts)``,
``parent=self`` on every child, child names derived from the component name, no resources inside
``apply``, ``register_outputs`` last. Args are frozen dataclasses built by deployctl.infra.program from the stack
model; a secret value travels only as a secret Output (Secrets -> Database), workloads get names and
pinned versions.
"""
