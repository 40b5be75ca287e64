"""The shipped hooks (docs/sharing.md#hooks): `git pull` (merge or rebase) cleans up integrated jobs quietly;
a hook never fails the user's git command, never prompts, works from linked worktrees and
ignores inherited GIT_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _sharekit import lg, make_job, remote_refs
from conftest import git, wait_for, wtdir
from test_cleanup import server_merge


def hook_runs(repo) -> int:
    """How many cleanup runs the hooks have logged (each ends with one "checked" line)."""
    log = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "logist/hooks.log"
    text = log.read_text() if log.exists() else ""
    return sum(1 for line in text.splitlines() if ": checked " in line or ": error: " in line)


def pull(cwd, *args, env=None) -> subprocess.CompletedProcess:
    """`git pull`, then wait for the cleanup the hook started detached to finish."""
    before = hook_runs(cwd)
    proc = subprocess.run(["git", "-C", str(cwd), "pull", "-q", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: hook_runs(cwd) > before, what="the hook's detached cleanup")
    return proc


def test_post_merge_hook_cleans_up_after_git_pull(net):
    merged = make_job(net.a, "Merged PR", writes={"m.txt": "m\n"})
    unmerged = make_job(net.a, "Open PR", writes={"u.txt": "u\n"})
    pending = make_job(net.a, "Queued", run=False)
    for j in (merged, unmerged, pending):  # worktrees (a person looked at them): only the merged job's goes
        lg(net.a, "job", "path", j)
    lg(net.a, "push")
    tip = git(net.a, "rev-parse", f"logist/{merged}")
    server_merge(net, merged, "merge")
    server_merge(net, pending, "merge")
    proc = pull(net.a)
    assert proc.stdout == ""  # quiet
    assert git(net.a, "rev-parse", f"refs/logist/archive/{merged}") == tip
    assert git(net.a, "branch", "--list", f"logist/{merged}") == ""
    assert not (wtdir(net.a) / merged).exists()
    for j in (unmerged, pending):
        assert git(net.a, "rev-parse", "--verify", f"logist/{j}")
        assert (wtdir(net.a) / j).exists()
    log = (net.a / ".git/logist/hooks.log").read_text()
    assert f"{merged}: deleted branch" in log
    # the remote is never changed by a hook
    assert f"refs/heads/logist/{merged}" in remote_refs(net.remote)


def test_post_rewrite_hook_after_pull_rebase(net):
    jid = make_job(net.a, "Squashed PR", writes={"s.txt": "s\n"})
    lg(net.a, "push")
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    server_merge(net, jid, "squash")
    (net.a / "local.txt").write_text("local commit to rebase\n")
    git(net.a, "add", "local.txt")
    git(net.a, "commit", "-q", "-m", "local work")
    pull(net.a, "--rebase")
    assert git(net.a, "log", "-1", "--format=%s") == "local work"  # rebased
    assert git(net.a, "rev-parse", f"refs/logist/archive/{jid}") == tip
    assert git(net.a, "branch", "--list", f"logist/{jid}") == ""


def test_hook_from_a_linked_worktree(net, tmp_path):
    jid = make_job(net.a, "From a linked worktree", writes={"l.txt": "l\n"})
    lg(net.a, "push")
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    server_merge(net, jid, "ff")
    linked = tmp_path / "feature-wt"
    git(net.a, "worktree", "add", "-q", "-b", "feature", str(linked), "main")
    pull(linked, "--no-rebase", "origin", "main")
    assert git(net.a, "rev-parse", f"refs/logist/archive/{jid}") == tip
    assert git(net.a, "branch", "--list", f"logist/{jid}") == ""
    assert linked.exists()  # the user's own linked worktree is not a job worktree


def test_hook_ignores_inherited_git_variables(net, tmp_path):
    jid = make_job(net.a, "Env", writes={"e.txt": "e\n"})
    lg(net.a, "push")
    server_merge(net, jid, "merge")
    git(net.a, "fetch", "-q", "origin")
    # what a hook inherits from git (pointing elsewhere on purpose)
    env = {**os.environ, "GIT_DIR": str(tmp_path / "nowhere"), "GIT_INDEX_FILE": str(tmp_path / "idx"),
           "GIT_WORK_TREE": str(tmp_path), "GIT_PREFIX": "sub/"}
    shim = net.a / ".git/hooks/post-merge"
    assert "logist hook shim" in shim.read_text()
    before = hook_runs(net.a)
    proc = subprocess.run([str(shim), "0"], cwd=str(net.a), env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    wait_for(lambda: hook_runs(net.a) > before, what="the hook's detached cleanup")
    assert git(net.a, "branch", "--list", f"logist/{jid}") == ""
    # and the hidden command itself, called with those variables, also works
    jid2 = make_job(net.a, "Env 2", writes={"e2.txt": "e\n"})
    lg(net.a, "push")
    server_merge(net, jid2, "merge")
    git(net.a, "fetch", "-q", "origin")
    proc = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge", "0"], cwd=str(net.a),
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == ""
    assert git(net.a, "branch", "--list", f"logist/{jid2}") == ""


def test_hook_never_fails_the_git_command(net, tmp_path):
    jid = make_job(net.a, "Survives", writes={"x.txt": "x\n"})
    lg(net.a, "push")
    server_merge(net, jid, "merge")
    cfg = net.a / ".logist/config.toml"
    good = cfg.read_text()
    cfg.write_text("this is [not toml\n")
    pull(net.a)  # exit 0 even though logist cannot read its config
    assert git(net.a, "rev-parse", "--verify", f"logist/{jid}")  # and nothing was touched
    assert "error" in (net.a / ".git/logist/hooks.log").read_text()
    cfg.write_text(good)
    # outside any repository, and with arguments it does not know
    proc = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge"], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for args in (["hook", "post-checkout", "x"], ["hook", "post-rewrite", "amend"]):
        assert lg(net.a, *args).out == ""
    # an amend (post-rewrite "amend") never cleans anything
    git(net.a, "commit", "-q", "--amend", "-m", "initial (amended)", "--allow-empty")
    assert git(net.a, "rev-parse", "--verify", f"logist/{jid}")


def test_hook_inside_a_job_worktree_does_nothing(net):
    merged = make_job(net.a, "Merged", writes={"m.txt": "m\n"})
    lg(net.a, "push")
    server_merge(net, merged, "merge")
    git(net.a, "fetch", "-q", "origin")
    other = make_job(net.a, "Agent merges here", writes={"o.txt": "o\n"})
    wt = wtdir(net.a) / other
    lg(wt, "hook", "post-merge", "0")
    assert git(net.a, "rev-parse", "--verify", f"logist/{merged}")
    env_proc = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge", "0"], cwd=str(net.a),
                              env={**os.environ, "LOGIST_JOB_ID": other}, capture_output=True, text=True)
    assert env_proc.returncode == 0
    assert git(net.a, "rev-parse", "--verify", f"logist/{merged}")
    lg(net.a, "hook", "post-merge", "0")
    assert git(net.a, "branch", "--list", f"logist/{merged}") == ""
