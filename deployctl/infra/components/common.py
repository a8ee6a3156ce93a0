"""What the components share: the placeholder image for a stack without a release, and small helpers."""

from __future__ import annotations

import pulumi

# The image a service or job gets while the release deployctl hands the program has none for it (a plan
# before the first build, or a hand-run first `pulumi up`): Google's public Cloud Run sample container, pinned by the
# digest Google's own Cloud Deploy quickstarts use. It serves any path on $PORT, so the service becomes
# ready with the configured probes; the service's command is not applied to it (it has no Python). Plans
# and audits show it as "image: set at release"; deployctl replaces it with the built digest on every
# `deployctl up`, before `pulumi up` runs.
PLACEHOLDER_IMAGE = (
    "us-docker.pkg.dev/cloudrun/container/hello@sha256:95ade4b17adcd07623b0a0c68359e344fe54e65d0cb01b989e24c39f2fcd296a"
)

INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
CLOUDSQL_MOUNT = "/cloudsql"
CLOUDSQL_VOLUME = "cloudsql"


def member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.from_input(email).apply(lambda e: f"serviceAccount:{e}")

