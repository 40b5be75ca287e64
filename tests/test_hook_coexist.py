"""logist's hooks next to other hook managers (docs/sharing.md#hooks): the real `pre-commit` from
PyPI in both install orders and re-running either installer, a husky-style `core.hooksPath`, a
plain user script. `git merge` always finishes, every tool's hook runs, nobody's hook is renamed,
rewritten or deleted, and `logist init` is idempotent in every state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pre_commit  # noqa: F401 - the real package (the test extra): these tests are about it
import pytest
from _core import tree_digest, write
from conftest import git, run_cli, wait_for

from logist.share.install import wire_line

PRE_COMMIT_CONFIG = """\
repos:
- repo: local
  hooks:
  - id: mark
    name: mark
    entry: sh -c 'echo "$0" >> .git/pre-commit-ran' post-merge
    language: system
    stages: [post-merge, post-rewrite]
    always_run: true
    pass_filenames: false
"""
HOOK_TYPES = ("post-merge", "post-rewrite")


@pytest.fixture
def project(repo, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    write(repo / ".pre-commit-config.yaml", PRE_COMMIT_CONFIG)
    git(repo, "add", ".pre-commit-config.yaml")
    git(repo, "commit", "-q", "-m", "pre-commit config")
    return repo


def pre_commit_install(repo: Path, *extra: str) -> str:
    args = [a for t in HOOK_TYPES for a in ("--hook-type", t)]
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "install", *args, *extra], cwd=str(repo),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def init(repo: Path) -> str:
    proc = run_cli("init", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def hooks(repo: Path) -> dict[str, str]:
    return tree_digest(repo / ".git" / "hooks")


def runs(repo: Path) -> int:
    log = repo / ".git/logist/hooks.log"
    return log.read_text().count(": checked ") if log.exists() else 0


def merge_a_topic(repo: Path, name: str) -> None:
    """A real `git merge --no-ff` (post-merge), that must finish: a hook calling itself never does."""
    git(repo, "checkout", "-q", "-b", name)
    write(repo / f"{name}.txt", name + "\n")
    git(repo, "add", f"{name}.txt")
    git(repo, "commit", "-q", "-m", name)
    git(repo, "checkout", "-q", "main")
    before = runs(repo)
    proc = subprocess.run(["git", "merge", "-q", "--no-ff", "-m", f"merge {name}", name], cwd=str(repo),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: runs(repo) > before, what="logist's hook run")  # logist's part ran


def pre_commit_runs(repo: Path) -> int:
    f = repo / ".git" / "pre-commit-ran"
    return len(f.read_text().splitlines()) if f.exists() else 0


def assert_both_run(repo: Path, name: str) -> None:
    before = pre_commit_runs(repo)
    merge_a_topic(repo, name)
    assert pre_commit_runs(repo) == before + 1  # and pre-commit's part ran once


def test_pre_commit_first_then_logist(project):
    pre_commit_install(project)
    theirs = {t: (project / ".git/hooks" / t).read_text() for t in HOOK_TYPES}
    out = init(project)
    for t in HOOK_TYPES:
        assert (project / ".git/hooks" / t).read_text() == theirs[t]  # pre-commit's hook untouched
        assert "logist hook shim" in (project / ".git/hooks" / f"{t}.legacy").read_text()
        assert f"{t} installed as {t}.legacy" in out
    assert_both_run(project, "one")
    # re-running either installer, in any order, any number of times
    state = hooks(project)
    assert "already set up" in init(project)
    assert hooks(project) == state
    out = pre_commit_install(project)
    assert "migration mode" in out  # pre-commit keeps running the .legacy hook: logist's
    assert hooks(project) == state
    assert "already set up" in init(project)
    assert hooks(project) == state
    assert_both_run(project, "two")
    wired = json.loads(run_cli("doctor", "--json", cwd=project).stdout)["hooks"]
    assert all(w["wired"] for w in wired.values()) and set(wired) == set(HOOK_TYPES)


def test_logist_first_then_pre_commit(project):
    init(project)
    merge_a_topic(project, "before")
    pre_commit_install(project)  # moves logist's shim to .legacy and runs it from its own hook
    for t in HOOK_TYPES:
        assert "logist hook shim" in (project / ".git/hooks" / f"{t}.legacy").read_text()
    state = hooks(project)
    out = init(project)
    assert "already set up" in out and wire_line("post-merge") not in out
    assert hooks(project) == state
    assert_both_run(project, "after")  # no recursion: the merge finishes, each hook runs once
    pre_commit_install(project)
    init(project)
    assert hooks(project) == state
    assert_both_run(project, "again")
    # pre-commit uninstall gives the .legacy hook (logist's) its place back
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "uninstall", "--hook-type", "post-merge",
                           "--hook-type", "post-rewrite"], cwd=str(project), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "logist hook shim" in (project / ".git/hooks/post-merge").read_text()
    assert "already set up" in init(project)
    merge_a_topic(project, "uninstalled")


def test_pre_commit_overwrite_then_logist_again(project):
    init(project)
    pre_commit_install(project, "--overwrite")  # pre-commit deletes the .legacy hook (logist's)
    assert not (project / ".git/hooks/post-merge.legacy").exists()
    doctor = run_cli("doctor", cwd=project)
    assert doctor.returncode == 0 and "post-merge hook does not run logist" in doctor.stdout
    assert "installed as post-merge.legacy" in init(project)
    assert_both_run(project, "rewired")


def test_a_hook_pre_commit_moved_aside_is_never_touched(project):
    hooks_dir = project / ".git/hooks"
    hooks_dir.mkdir(exist_ok=True)
    user = "#!/bin/sh\necho user >> .git/user-ran\n"
    write(hooks_dir / "post-merge", user)
    (hooks_dir / "post-merge").chmod(0o755)
    pre_commit_install(project)  # the user's hook becomes post-merge.legacy (pre-commit's doing)
    out = init(project)
    assert (hooks_dir / "post-merge.legacy").read_text() == user
    assert str(hooks_dir / "post-merge.legacy") in out and wire_line("post-merge") in out
    assert "already set up" in init(project)
    assert (hooks_dir / "post-merge.legacy").read_text() == user
    # the person adds the line to their hook: all three run
    write(hooks_dir / "post-merge.legacy", user + wire_line("post-merge") + "\n")
    assert_both_run(project, "three")
    assert (project / ".git/user-ran").read_text().count("user") == 1


def test_husky_style_hooks_path(repo):
    """husky (v9) sets core.hooksPath to .husky/_, whose stubs run the tracked .husky/<hook>."""
    husky = repo / ".husky"
    write(husky / "_" / "h", '#!/bin/sh\nn=$(basename "$0")\ns=$(dirname "$(dirname "$0")")/$n\n'
          '[ ! -f "$s" ] && exit 0\nsh -e "$s" "$@"\n')
    write(husky / "_" / ".gitignore", "*\n")
    for t in HOOK_TYPES:
        write(husky / "_" / t, '#!/bin/sh\n. "$(dirname "$0")/h"\n')
    for p in (husky / "_").iterdir():
        p.chmod(0o755)
    write(husky / "post-merge", "echo husky >> .git/husky-ran\n")
    git(repo, "add", ".husky")
    git(repo, "commit", "-q", "-m", "husky")
    git(repo, "config", "core.hooksPath", ".husky/_")
    before = tree_digest(husky)
    out = init(repo)
    assert tree_digest(husky) == before
    assert git(repo, "status", "--porcelain", "--", ".husky") == ""
    assert f"add this line to {husky / 'post-merge'}" in out and wire_line("post-merge") in out
    assert not (repo / ".git/hooks/post-merge").exists()  # git does not look there: not written either
    assert "already set up" in init(repo) and tree_digest(husky) == before
    write(husky / "post-merge", "echo husky >> .git/husky-ran\n" + wire_line("post-merge") + "\n")
    wired = json.loads(run_cli("doctor", "--json", cwd=repo).stdout)["hooks"]
    assert wired["post-merge"]["wired"] is True and wired["post-rewrite"]["wired"] is False
    merge_a_topic(repo, "husky")
    assert (repo / ".git/husky-ran").read_text() == "husky\n"


def test_an_amend_starts_nothing(repo):
    init(repo)
    shim = repo / ".git/hooks/post-rewrite"
    env = {**os.environ, "PATH": "/nonexistent"}  # an amend must not even need git or python
    proc = subprocess.run(["/bin/sh", str(shim), "amend"], cwd=str(repo), env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    git(repo, "commit", "-q", "--amend", "--allow-empty", "-m", "amended")
    assert not (repo / ".git/logist/hooks.log").exists()
