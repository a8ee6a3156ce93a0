"""The infrastructure engine: Pulumi's Automation API over this repository's Pulumi project.

Rules:
- The release as deployctl sees it (image digests, pinned secret versions, revision names, live traffic)
  reaches the program of an ``up`` in the ``DEPLOYCTL_PULUMI_RELEASE`` environment variable, so the program
  applies exactly what deployctl decided and never moves traffic on its own. Nothing is written to the
  stack's config: stacks/*.yaml are the user's, checked in, and no deployctl command changes them.
- Preconditions are checked before anything changes: a missing ``pulumi`` binary, plugin or login is a
  PreconditionError with the command that fixes it.
- A concurrent update is a LockedError ("stack … is being updated by …"), never a half-applied state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from deployctl.config import Release
from deployctl.errors import DeployctlError, LockedError, PreconditionError
from deployctl.naming import RELEASE_ENV
from deployctl.targets.gcp.retry import download_refusal, image_refusal

INSTALL_HINT = "Install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh, then `pulumi login`."
LOGIN_HINT = "Log in to the state backend: `pulumi login` (or `pulumi login gs://BUCKET`)."


class Engine(Protocol):
    def check(self) -> None:
        """Read-only: raise PreconditionError when the engine cannot run (nothing is changed)."""
        ...

    def up(self, release: Release) -> dict[str, Any]:
        """Apply the program with *release* handed to it; return the stack outputs."""
        ...

    def outputs(self) -> dict[str, Any]: ...

    def refresh(self) -> None: ...


class PulumiEngine:
    def __init__(
        self,
        stack_name: str,
        root: Path,
        progress: Callable[[str], None] | None = None,
        passphrase: Callable[[], str | None] | None = None,
        backend_url: str | None = None,
    ) -> None:
        self.stack_name = stack_name
        self.root = root
        # the stack's state backend (gs://<state bucket>), so no `pulumi login` is needed on a laptop or in
        # Cloud Build; a PULUMI_BACKEND_URL the caller set wins
        self.backend_url = None if os.environ.get("PULUMI_BACKEND_URL") else backend_url
        self.progress = progress or (lambda line: print(line, file=sys.stderr))
        # where the stack's passphrase comes from when the environment has none (bootstrap's secret)
        self.passphrase = passphrase
        self.caller = ""  # the IAM member Pulumi's provider calls Google as, when known (for a refusal's grant)
        self._stack: Any = None

    def workspace_env(self) -> dict[str, str]:
        """Environment for the Automation API's workspace: the passphrase from Secret Manager, unless the
        caller set PULUMI_CONFIG_PASSPHRASE(_FILE) or uses another secrets provider (then it is absent)."""
        backend = {"PULUMI_BACKEND_URL": self.backend_url} if self.backend_url else {}
        if any(k in os.environ for k in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")):
            return backend
        value = self.passphrase() if self.passphrase else None
        return {**backend, "PULUMI_CONFIG_PASSPHRASE": value} if value else backend

    def check(self) -> None:
        binary = shutil.which("pulumi") or _in_pulumi_home()
        if binary is None:
            raise PreconditionError(
                "the pulumi CLI is not installed (deployctl drives it for gcp stacks)", INSTALL_HINT
            )
        try:
            env = {**os.environ, **({"PULUMI_BACKEND_URL": self.backend_url} if self.backend_url else {})}
            who = subprocess.run([binary, "whoami"], cwd=self.root, env=env, capture_output=True, text=True,
                                 timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PreconditionError(f"could not run pulumi: {type(exc).__name__}", INSTALL_HINT) from None
        if who.returncode != 0:
            raise PreconditionError("pulumi is not logged in to a state backend", LOGIN_HINT)

    def _select(self) -> Any:
        if self._stack is None:
            import pulumi.automation as auto

            options = auto.LocalWorkspaceOptions(env_vars=self.workspace_env())
            self._stack = self._guard(
                lambda: auto.create_or_select_stack(stack_name=self.stack_name, work_dir=str(self.root), opts=options)
            )
        return self._stack

    def up(self, release: Release) -> dict[str, Any]:
        stack = self._select()
        env = stack.workspace.env_vars  # the CLI, and so the program it starts, run with these variables
        env[RELEASE_ENV] = release.model_dump_json()
        try:
            result = self._guard(lambda: stack.up(on_event=self._event, color="never", suppress_progress=True))
        finally:
            env.pop(RELEASE_ENV, None)
        self.progress(f"pulumi up: {_summary(result.summary.resource_changes or {})}")
        return {key: out.value for key, out in result.outputs.items() if not out.secret}

    def outputs(self) -> dict[str, Any]:
        stack = self._select()
        return {key: out.value for key, out in self._guard(stack.outputs).items() if not out.secret}

    def refresh(self) -> None:
        stack = self._select()
        self._guard(lambda: stack.refresh(on_event=self._event, color="never", suppress_progress=True))

    def _event(self, event: Any) -> None:
        outputs = getattr(event, "res_outputs_event", None)
        if outputs is not None and outputs.metadata.op not in ("same", "read"):
            meta = outputs.metadata
            self.progress(f"  {meta.op} {meta.type} {meta.urn.rsplit('::', 1)[-1]}")

    def _guard(self, fn: Callable[[], Any]) -> Any:
        import pulumi.automation as auto

        try:
            return fn()
        except auto.ConcurrentUpdateError:
            raise LockedError(
                f"stack {self.stack_name} is being updated by another `pulumi up` (or a crashed one)",
                f"Wait for it; if it is stuck: pulumi cancel --stack {self.stack_name}",
            ) from None
        except auto.CommandError as exc:
            raise command_error(str(exc), self.caller) from None
        except FileNotFoundError:
            raise PreconditionError("the pulumi CLI is not installed", INSTALL_HINT) from None


def command_error(text: str, caller: str = "") -> DeployctlError:
    """The one line a failed pulumi command becomes; *caller* is the IAM member it ran as, when known."""
    lower = text.lower()
    if (refused := image_refusal(text, "pulumi") or download_refusal(text, "pulumi", caller)) is not None:
        return refused
    # an organization policy (constraints/iam.allowedPolicyMemberDomains, "domain restricted sharing") refuses
    # allUsers as the invoker of a public service: Google answers 400 "One or more users named in the policy do
    # not belong to a permitted customer, perhaps due to an organization policy"
    if "do not belong to a permitted customer" in lower:
        return PreconditionError(
            "an organization policy (domain restricted sharing, constraints/iam.allowedPolicyMemberDomains) "
            "forbids a public service here: allUsers may not invoke it",
            "Make the service private (services.<svc>.public: false; smoke checks then send an ID token), or ask "
            "the organization's admins for an exception for this project.",
        )
    if "no resource plugin" in lower or "could not find plugin" in lower:
        return PreconditionError("a Pulumi plugin is missing", "Run `pulumi install` in the repository root.")
    if "passphrase" in lower:
        return PreconditionError(
            "Pulumi cannot decrypt the stack's secrets: no passphrase, or the wrong one",
            "deployctl reads it from the secret STACK-pulumi-passphrase (made by `deployctl bootstrap`); "
            "grant access to it, or set PULUMI_CONFIG_PASSPHRASE.",
        )
    if any(s in lower for s in ("pulumi login", "access token", "pulumi_access_token", "unauthorized")):
        return PreconditionError("pulumi is not logged in to a state backend", LOGIN_HINT)
    if "could not find default credentials" in lower or "application-default" in lower:
        return PreconditionError(
            "Pulumi found no Google Cloud credentials", "Run `gcloud auth application-default login`."
        )
    stderr = next((line for line in text.splitlines() if "error:" in line), "pulumi failed")
    first = stderr.strip().removeprefix("stderr:").strip()  # the Automation API's "stderr: " framing
    return DeployctlError(f"pulumi: {first[:300]}", "Run `pulumi preview` in the repository for details.")


def _in_pulumi_home() -> str | None:
    home = os.environ.get("PULUMI_HOME") or str(Path.home() / ".pulumi")
    candidate = Path(home) / "bin" / "pulumi"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _summary(changes: dict[str, int]) -> str:
    shown = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if op != "same")
    return shown or "no changes"


def preview(stack_name: str, root: Path, on_output: Callable[[str], None]) -> str:
    """A live ``pulumi preview --diff`` through the Automation API, once the CLI and a login are there."""
    PulumiEngine(stack_name, root).check()  # the CLI and a state-backend login, each with the command that fixes it
    import pulumi.automation as auto

    try:
        stack: Any = auto.create_or_select_stack(stack_name=stack_name, work_dir=str(root))
        result = stack.preview(diff=True, on_output=on_output, color="never")
    except auto.CommandError as exc:
        first = next((s for s in str(exc).splitlines() if "error:" in s), "pulumi preview failed").strip()
        hint = f"Run `pulumi preview --stack {stack_name}` for details."
        raise DeployctlError(f"pulumi preview: {first[:300]}", hint) from None
    return f"pulumi preview: {result.change_summary}"
