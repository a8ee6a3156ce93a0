"""The Google Cloud target: one small facade per Google API, the Pulumi engine, and GcpTarget composing them.

Rule: only this package imports google.cloud.* and pulumi.automation, and only inside the functions that
need them (never at import time of deployctl.cli). Every facade takes its client as a constructor
argument, turns SDK exceptions into DeployctlError subclasses, retries transient errors under a deadline
(retry.py), and re-reads before retrying a mutation whose outcome is unknown.
"""

from deployctl.extras import require

require("gcp", "the Google Cloud target")
