"""deployctl: release Python services to Cloud Run (or to this machine) with migrations, smoke tests and
automatic rollback. See docs/architecture.md for the pipeline and its rules."""

__version__ = "0.1.0"
