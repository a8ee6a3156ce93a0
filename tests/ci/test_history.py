"""The history rule (docs/development.md, History): scripts/check-history refuses a commit subject of 72
characters or more, over a range of commits (CI) and for one message (the commit-msg hook), and
scripts/install-hooks points git at that hook only where no other hooks are set up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check-history"
SHORT = "Heal a dead router on a no-op up"
LONG = "A subject that goes on to explain every reason for the change instead of leaving them to the body"


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    git(tmp_path / "repo", "init", "-q", "-b", "main")
    commit(tmp_path / "repo", LONG)  # before the baseline: grandfathered
    return tmp_path / "repo"


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), *args], cwd=repo, capture_output=True, text=True, check=False)


def test_short_subjects_since_the_base_pass(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, f"{SHORT}\n\nThe body says why, at any length: {LONG}.")
    commit(repo, "x" * 71)
    out = check(repo, "--since", base)
    assert (out.returncode, out.stderr) == (0, "")


def test_a_subject_of_72_characters_since_the_base_fails_naming_it(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, SHORT)
    sha = commit(repo, "y" * 72)
    out = check(repo, "--since", base)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == f"{sha[:7]}: 72 characters: {'y' * 72}"
    assert "1 commit subject(s) of 72 characters or more" in out.stderr


def test_a_base_outside_the_history_fails(repo: Path) -> None:
    out = check(repo, "--since", "0" * 40)
    assert out.returncode == 1 and "is not in this history" in out.stderr


def test_the_recorded_baseline_is_in_this_repository() -> None:
    out = subprocess.run([str(CHECK)], cwd=ROOT, capture_output=True, text=True, check=False)
    if "is not in this history" in out.stderr:
        pytest.skip("not a git checkout with the full history")
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize(("message", "code"), [
    (f"{SHORT}\n\n{LONG}\n", 0),
    (f"# Please enter the commit message\n\n{LONG}\n", 1),  # git's comments are not the subject
    ("Merge remote-tracking branch 'origin/a-branch-with-a-long-descriptive-name' into main\n", 0),
])
def test_the_hook_judges_the_message_being_written(tmp_path: Path, message: str, code: int) -> None:
    path = tmp_path / "COMMIT_EDITMSG"
    path.write_text(message)
    out = subprocess.run([str(ROOT / "scripts" / "hooks" / "commit-msg"), str(path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == code, out.stderr


def test_a_commit_through_the_hook_is_refused(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", str(ROOT / "scripts" / "hooks"))
    with pytest.raises(subprocess.CalledProcessError) as refused:
        git(repo, "commit", "-q", "--allow-empty", "-m", LONG)
    assert f"the subject has {len(LONG)} characters; keep it under 72" in refused.value.stderr
    git(repo, "commit", "-q", "--allow-empty", "-m", SHORT)
    assert git(repo, "log", "-1", "--format=%s").strip() == SHORT


def install_hooks(where: Path) -> subprocess.CompletedProcess[str]:
    """scripts/install-hooks as a copy in *where*/scripts (it works on the checkout it sits in)."""
    (where / "scripts").mkdir(exist_ok=True)
    script = where / "scripts" / "install-hooks"
    script.write_bytes((ROOT / "scripts" / "install-hooks").read_bytes())
    script.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)


def hooks_path(repo: Path) -> str:
    return subprocess.run(["git", "config", "--get", "core.hooksPath"], cwd=repo, capture_output=True, text=True,
                          check=False).stdout.strip()


def test_install_hooks_sets_the_hooks_path_of_a_plain_checkout(repo: Path) -> None:
    assert install_hooks(repo).returncode == 0
    assert hooks_path(repo) == "scripts/hooks"


def test_install_hooks_leaves_hooks_set_up_otherwise(repo: Path, tmp_path: Path) -> None:
    (repo / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\n")
    out = install_hooks(repo)
    assert out.returncode == 0 and "has hooks of its own" in out.stderr and hooks_path(repo) == ""
    git(repo, "config", "core.hooksPath", "elsewhere")
    assert (install_hooks(repo).returncode, hooks_path(repo)) == (0, "elsewhere")
    plain = tmp_path / "not-a-checkout"  # beside the repository, not in it
    plain.mkdir()
    out = install_hooks(plain)
    assert (out.returncode, out.stderr, (plain / ".git").exists()) == (0, "", False)
