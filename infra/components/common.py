"""What the components share: placeholders for values deployctl fills in at release time, naming."""

from __future__ import annotations

import re

import pulumi

# Used when the stack's release has no image for a service yet (``deployctl plan`` before a first release).
# deployctl always writes the built image digest to ``deployctl:release`` before ``pulumi up``, so this
# placeholder is only ever seen in plans, where it is shown as "image: set at release".
PLACEHOLDER_IMAGE = "us-docker.pkg.dev/cloudrun/container/hello@sha256:" + "0" * 64
# Used when a secret has no pinned version yet (shown as "pinned at release"); never "latest".
PLACEHOLDER_SECRET_VERSION = "1"

INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
CLOUDSQL_MOUNT = "/cloudsql"


def child(parent: pulumi.Resource) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent)


def account_id(base: str) -> str:
    """A service-account id (6-30 chars of ``[a-z0-9-]``, starting with a letter) derived from *base*."""
    clean = re.sub(r"[^a-z0-9-]", "-", base.lower()).strip("-")[:30].rstrip("-")
    return clean if len(clean) >= 6 else f"{clean}-sa"[:30]


def member(email: pulumi.Output[str]) -> pulumi.Output[str]:
    return email.apply(lambda e: f"serviceAccount:{e}")
