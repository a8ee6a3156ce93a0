"""deployctl's own errors.

Rule: library code raises a DeployctlError subclass carrying a one-line message and a hint; only the CLI
entry point prints them (``Error: …`` / ``Hint: …``) and turns them into the exit codes defined here.
Secret values never go into a message or a hint.
"""

from __future__ import annotations

# Exit codes, in one place (documented in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1  # a release or command ran and failed (rolled back / left on the last good revision)
EXIT_USAGE = 2  # click's own code for bad command-line usage
EXIT_CONFIG = 3  # the stack file is invalid
EXIT_LOCKED = 4  # another deploy holds the stack's lock
EXIT_PRECONDITION = 5  # a tool, credential or state the command needs is missing, or the ledger is damaged
EXIT_POLICY = 6  # a mandatory policy rule fails


class DeployctlError(Exception):
    """An error the user can act on: a one-line message and a hint."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DeployctlError):
    """The command line itself is wrong (a stack name that cannot be one); nothing was read or changed."""

    exit_code = EXIT_USAGE


class ConfigError(DeployctlError):
    """The stack file is missing or invalid; the message names the file and the key path."""

    exit_code = EXIT_CONFIG


class LockedError(DeployctlError):
    exit_code = EXIT_LOCKED


class LockLost(LockedError):  # noqa: N818 - reads as what happened, like StageFailed
    """The deploy lock this command took is no longer on the store (deleted, broken or taken by another):
    it stops before its next step, changing nothing more that another command may now be changing."""


class PreconditionError(DeployctlError):
    """A binary, credential or piece of state the command needs is not there; nothing was changed."""

    exit_code = EXIT_PRECONDITION


class LedgerDamaged(PreconditionError):  # noqa: N818 - reads as what was found, like StageFailed
    """A stack's ledger, or one of its records, cannot be read; the message names the file or the object.
    No command writes to it until ``deployctl ledger repair`` has mended it."""


class PolicyError(DeployctlError):
    exit_code = EXIT_POLICY


class StageFailed(DeployctlError):  # noqa: N818 - reads as what happened, like click.Abort
    """A stage of a release, rollback or rotation failed. Its fields say what happened: the stage, the
    cause (the error the step raised, unchanged), whether traffic was moved back, and what serves now.
    The message is composed once from them; the exit code is the cause's (a missing tool stays 5)."""

    def __init__(
        self,
        stage: str,
        cause: DeployctlError,
        *,
        run: str,
        notes: list[str],
        where: str,
        recover: str,
        rolled_back: bool,
        serving: dict[str, str],
    ) -> None:
        self.stage, self.cause, self.rolled_back, self.serving = stage, cause, rolled_back, dict(serving)
        self.exit_code = cause.exit_code
        said = [f"{run} failed at {stage}: {cause.message}", *notes]
        hint = (cause.hint.rstrip(".") + ". " if cause.hint else "") + recover
        super().__init__(" ".join(s.rstrip(".") + "." for s in said) + f" {where}", hint)
