"""The local target: real processes, an embedded Postgres and a router, on this machine."""

from deployctl.extras import require

require("local", "the local target")
