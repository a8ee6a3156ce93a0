"""Every test runs hermetically: in its own temporary directories, with a controlled environment.

Before any test module is imported (and so before any subprocess a test starts), each pytest process
points everything deployctl, pip, uv, Pulumi and git might read or write outside the test at one
temporary directory of its own, and narrows PATH to this environment's interpreter and the system's
directories. So no test reads or writes the checkout's .deployctl/ or the user's caches, and no test
passes or fails because of what happens to be installed on PATH (a `pulumi` binary, say). Tests that
need something else set it themselves with monkeypatch.

Shared here too: the ``run_cli`` fixture, which runs ``deployctl`` in-process with click's CliRunner.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from click.testing import Result

    from tests.cli_runner import RunCli

_PASSED = pytest.StashKey[bool]()
# What a test may still see: this environment's own tools, then the system's.
SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
# Anything that could point a test at the user's state or leak the developer's settings into it.
CLEARED = ["DEPLOYCTL_STATE_DIR", "DEPLOYCTL_DEBUG", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
           "PULUMI_ACCESS_TOKEN",
           "PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "GOOGLE_APPLICATION_CREDENTIALS",
           "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT"]


def hermetic_environment(home: Path, shared_cache: Path) -> dict[str, str]:
    """The variables set for every test: a private HOME and state, a shared dependency cache."""
    bin_dir = str(Path(sys.executable).parent)
    paths = [bin_dir, *(p for p in SYSTEM_PATH if p != bin_dir and "pyenv" not in p)]
    return {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PULUMI_HOME": str(home / ".pulumi"),
        "DEPLOYCTL_STATE_DIR": str(home / "deployctl-state"),
        # the local target's dependency venvs, shared by the test processes (built under a file lock)
        "DEPLOYCTL_CACHE_DIR": str(shared_cache / "deployctl"),
        "PIP_CACHE_DIR": str(shared_cache / "pip"),
        "UV_CACHE_DIR": str(shared_cache / "uv"),
        # bytecode of deployctl and the test apps, written once per run for every subprocess, outside the checkout
        "PYTHONPYCACHEPREFIX": str(shared_cache / "pycache"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "PATH": os.pathsep.join(paths),
    }


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background by a shell (`scripts/test &`), which ignores SIGINT for it: the processes the
        # tests start would inherit that, and the tests that interrupt a deploy with SIGINT would see it go on
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if "DEPLOYCTL_TEST_RUN" not in os.environ:  # the first pytest process of a run; workers inherit it
        os.environ["DEPLOYCTL_TEST_RUN"] = tempfile.mkdtemp(prefix="deployctl-tests-")
        os.environ["DEPLOYCTL_TEST_RUN_OWNER"] = str(os.getpid())
    run = os.environ["DEPLOYCTL_TEST_RUN"]
    home = Path(run) / worker
    home.mkdir(parents=True, exist_ok=True)
    for name in CLEARED:
        os.environ.pop(name, None)
    os.environ.update(hermetic_environment(home, Path(run) / "cache"))
    if config.option.basetemp is None:  # xdist hands each worker a directory under the controller's
        # tmp_path directories of our own: another pytest session on this machine prunes only its own
        config.option.basetemp = str(Path(run) / "tmp")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_PASSED] = exitstatus == 0


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that made the run's directory removes it once every worker is done, if the run passed
    (a failed run keeps it, with the failing tests' directories, for a look)."""
    if "PYTEST_XDIST_WORKER" in os.environ or os.environ.get("DEPLOYCTL_TEST_RUN_OWNER") != str(os.getpid()):
        return
    if config.stash.get(_PASSED, False):
        shutil.rmtree(os.environ["DEPLOYCTL_TEST_RUN"], ignore_errors=True)
    else:
        print(f"\ntest directories kept in {os.environ['DEPLOYCTL_TEST_RUN']}")


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """``run_cli(["status", "dev"], project)``: run ``deployctl`` in-process with click's CliRunner from the
    project directory *cwd* (deployctl finds the project from the working directory; pytest restores it)
    through deployctl's real entry point (tests/cli_runner.py), so exit codes and messages are the user's."""
    from tests.cli_runner import invoke

    def run(args: list[str], cwd: Path, input: str | None = None) -> Result:
        monkeypatch.chdir(cwd)
        return invoke(args, input=input)

    return run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<tmp_path>/project``: a copy of the repository's Pulumi.yaml (the app's one definition) and stacks
    (what commands that only read stack files need; run them with ``run_cli(args, project)``), its stacks'
    state in ``<tmp_path>/state``, this test's own. Tests that need another kind of project (the e2e
    ``Project``, a fake Google project) define their own."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "stacks", tmp_path / "project" / "stacks")
    shutil.copy(root / "Pulumi.yaml", tmp_path / "project" / "Pulumi.yaml")
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "project"
