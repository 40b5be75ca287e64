"""Locking a worktree by its admin dir's ``locked`` file is what `git worktree lock` does:
checked with git itself (`git worktree list --porcelain`, `git worktree remove/prune`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import git

from logist.git import worktree_lock


def porcelain(repo: Path) -> dict[str, dict[str, str]]:
    out, cur = {}, None
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        key, _, val = line.partition(" ")
        if key == "worktree":
            cur = out.setdefault(str(Path(val).resolve()), {})
        elif cur is not None and key:
            cur[key] = val
    return out


def test_lock_and_unlock_are_what_git_sees(repo, tmp_path):
    common = (repo / ".git").resolve()
    wts = []
    for name in ("a", "b"):
        wt = tmp_path / "wts" / name
        git(repo, "worktree", "add", "-q", "--detach", str(wt))
        wts.append(wt)
    # a second worktree whose basename is taken: git names its admin dir b1
    other = tmp_path / "elsewhere" / "b"
    git(repo, "worktree", "add", "-q", "--detach", str(other))
    assert (common / "worktrees" / "b1").is_dir()

    assert worktree_lock.lock(common, other, "logist: a step of job-b is running")
    seen = porcelain(repo)
    assert seen[str(other.resolve())]["locked"] == "logist: a step of job-b is running"
    assert "locked" not in seen[str(wts[1].resolve())]  # the other "b" is untouched
    proc = subprocess.run(["git", "-C", str(repo), "worktree", "remove", str(other)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "locked" in proc.stderr  # git honours it
    assert worktree_lock.is_locked(common, other)

    assert worktree_lock.unlock(common, other)
    assert "locked" not in porcelain(repo)[str(other.resolve())]
    assert not worktree_lock.unlock(common, other)  # nothing to unlock
    git(repo, "worktree", "remove", str(other))


def test_an_overwritten_dot_git_file_does_not_mislead_it(repo, tmp_path):
    common = (repo / ".git").resolve()
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(wt))
    (wt / ".git").write_text("gitdir: /etc\n")  # what a hostile agent can do
    assert worktree_lock.lock(common, wt, "logist")
    assert (common / "worktrees" / "wt" / "locked").read_text() == "logist\n"
    assert not list(Path("/etc").glob("locked*"))
    assert worktree_lock.unlock(common, wt)


def test_an_unknown_worktree_is_refused(repo, tmp_path):
    common = (repo / ".git").resolve()
    assert not worktree_lock.lock(common, tmp_path / "nowhere", "x")
    assert not worktree_lock.is_locked(common, tmp_path / "nowhere")


def test_a_running_step_holds_the_lock_git_sees(cli, monkeypatch):
    """The step's own command asks git: its worktree is locked with logist's reason while it
    runs, and unlocked afterwards."""
    import json
    import sys

    from _core import create_from_toml

    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")
    prog = "import subprocess; print(subprocess.run(['git', 'worktree', 'list', '--porcelain'], " \
           "capture_output=True, text=True).stdout)"
    text = (f'title = "Locked while running"\n[[steps]]\nprompt = "look"\n'
            f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(prog)}]\n')
    job = create_from_toml(cli, text, "--activate")
    cli.ok("job", "run", job)
    log = cli.ok("job", "log", job).out
    wt = cli.ok("job", "path", job).out.strip()
    entry = log.split(f"worktree {wt}\n", 1)[1].split("\n\n", 1)[0]
    assert f"locked logist: a step of {job} is running" in entry, log
    lines = git(cli.repo, "worktree", "list", "--porcelain").splitlines()
    assert not [line for line in lines if line.startswith("locked")]
