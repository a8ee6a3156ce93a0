"""Promotion: release the exact image digest that serves one stack to another, with no build.

Rule: the destination goes through the same plan as ``up --image DIGEST`` (build reuses the digest,
then migrate, deploy, smoke, promote, init); the commit recorded is the source release's.
"""

from __future__ import annotations

from dataclasses import replace

from deployctl.errors import DeployctlError
from deployctl.pipeline import orchestrator
from deployctl.pipeline import run as runmod
from deployctl.pipeline.model import ReleaseRecord
from deployctl.pipeline.run import Options, Reporter
from deployctl.pipeline.target import Target


def promotion_options(src: Target, dst: Target, options: Options) -> Options:
    """Read-only: the release options that deploy what serves *src* to *dst*."""
    serving = runmod.serving_release(src)
    if serving is None:
        raise DeployctlError(
            f"nothing serves in {src.stack.name} to promote",
            f"Release it first: deployctl up {src.stack.name}",
        )
    if set(serving.artifacts) != set(dst.stack.services) or len(set(serving.artifacts.values())) != 1:
        raise DeployctlError(
            f"release {serving.id} of {src.stack.name} does not map onto {dst.stack.name}'s services",
            "Promote works for stacks with the same single service; deploy others with `up --image`.",
        )
    image = next(iter(serving.artifacts.values()))
    if "@sha256:" not in image:
        raise DeployctlError(
            f"release {serving.id} ran {image!r}, which is not an image digest", "Promote between gcp stacks."
        )
    return replace(options, image=image, git_sha=serving.git_sha, git_dirty=serving.git_dirty)


def promote(src: Target, dst: Target, options: Options, reporter: Reporter) -> ReleaseRecord:
    """Release *dst* with the exact image digest that serves *src* (migrate, deploy, smoke, promote)."""
    return orchestrator.release(dst, promotion_options(src, dst, options), reporter)
