"""One ComponentResource per concern.

Rules (docs/infrastructure.md): a type token ``deployctl:gcp:<Kind>``, the signature ``(name, args, opts)``,
``parent=self`` on every child, child names derived from the component name, no resources inside
``apply``, ``register_outputs`` last. Secret values never enter a component: secrets are referred to by name
and pinned version only.
"""
