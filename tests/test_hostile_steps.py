"""What a step's agent can do to its job, and what logist does about it: a branch switch or a
detached HEAD is put back (commits kept), a daemon that escapes with `setsid` is recorded, a
malformed history line refuses the run before anything is written, and `recover --cleanup`
never drops a worktree whose HEAD holds commits the job branch lacks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from _crashkit import (
    assert_consistent,
    assert_released,
    create,
    init_project,
    logist,
    manifest,
    no_traceback,
    sh_step,
)
from conftest import git, wait_for


@pytest.fixture
def project(repo):
    init_project(repo)
    return repo


def test_a_branch_switch_in_a_step_is_put_back_and_warned(project):
    toml = ('title = "switch"\n'
            + sh_step("other", "git checkout -q -b other; echo A > a.txt; git add a.txt; git commit -qm agent-a; "
                               "echo B > b.txt")
            + sh_step("detach", "git checkout -q --detach; echo C > c.txt; git add c.txt; git commit -qm agent-c"))
    job = create(project, toml)
    r = logist(project, "job", "run", job)
    no_traceback(r.stderr)
    assert r.returncode == 0, r.stderr
    assert manifest(project, job)["state"] == "SUCCESS"
    # given back at SUCCESS, which needs its HEAD back on the job branch and nothing uncommitted
    assert_released(project, job)
    bodies = git(project, "log", "--format=%B", f"logist/{job}")
    assert "moved the worktree to branch 'other'" in bodies
    assert "detached HEAD" in bodies and f"refs/logist/displaced/{job}/1" in bodies
    # nothing lost: the agent's files are in the job, its commits on `other` and the displaced ref
    for f, text in (("a.txt", "A"), ("b.txt", "B"), ("c.txt", "C")):
        assert git(project, "show", f"logist/{job}:{f}") == text
    assert git(project, "log", "-1", "--format=%s", "other") == "agent-a"
    assert git(project, "log", "-1", "--format=%s", f"refs/logist/displaced/{job}/1") == "agent-c"


def test_a_setsid_daemon_that_outlives_the_step_is_recorded(project, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' > /dev/null 2>&1 < /dev/null & " \
             f"while [ ! -s {pidfile} ]; do sleep 0.01; done; echo done"
    job = create(project, 'title = "daemon"\n' + sh_step("s", script))
    try:
        r = logist(project, "job", "run", job)
        assert r.returncode == 0, r.stderr
        pid = int(pidfile.read_text())
        assert os.path.exists(f"/proc/{pid}")
        body = git(project, "log", "-1", "--format=%B", f"logist/{job}")
        assert "outside its process group" in body and f"pid {pid}" in body, body
        hist = json.loads(git(project, "show", f"logist/{job}:.logist/jobs/{job}/history.jsonl").splitlines()[-1])
        assert any("setsid" in w for w in hist["data"]["warnings"]), hist
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_malformed_history_line_refuses_the_run_before_writing(project):
    job = create(project, 'title = "history"\n' + sh_step("s", "echo A > a.txt"))
    wt = Path(logist(project, "job", "path", job).stdout.strip())
    with open(wt / f".logist/jobs/{job}/history.jsonl", "a") as fh:
        fh.write('{"t": "x", "event": "bogus"\n')
    git(wt, "commit", "-qam", "tamper the history")
    tampered = git(project, "rev-parse", f"logist/{job}")
    before = git(project, "for-each-ref")
    for args in (["job", "run", job], ["job", "step", job]):
        r = logist(project, *args)
        no_traceback(r.stderr)
        assert r.returncode == 1, r.stderr
        assert f"history at {tampered[:12]} is invalid (line 2:" in r.stderr, r.stderr
        assert "git revert" in r.stderr
        assert git(project, "for-each-ref") == before
    # undone, the job runs
    git(wt, "revert", "--no-edit", "HEAD")
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stderr
    assert manifest(project, job)["state"] == "SUCCESS"


def test_recover_cleanup_keeps_a_worktree_whose_detached_head_has_a_commit(project):
    job = create(project, 'title = "finished"\n' + sh_step("s", "echo A > a.txt"))
    assert logist(project, "job", "run", job).returncode == 0
    wt = Path(logist(project, "job", "path", job).stdout.strip())  # brought back after SUCCESS
    git(wt, "checkout", "-q", "--detach")
    (wt / "precious.txt").write_text("only here\n")
    git(wt, "add", "precious.txt")
    git(wt, "commit", "-qm", "precious")
    precious = git(wt, "rev-parse", "HEAD")
    r = logist(project, "recover", "--cleanup", "--keep-days", "0", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = [c for c in json.loads(r.stdout) if c["id"] == job]
    assert not row["worktree_removed"] and "not on the job branch" in row["reason"], row
    assert (wt / "precious.txt").exists()
    assert git(wt, "rev-parse", "HEAD") == precious
    assert git(project, "cat-file", "-t", precious) == "commit"
    # a clean worktree on the job branch is still cleaned
    other = create(project, 'title = "plain"\n' + sh_step("s", "echo B > b.txt"))
    assert logist(project, "job", "run", other).returncode == 0
    assert logist(project, "job", "path", other).returncode == 0  # brought back after SUCCESS
    r = logist(project, "recover", "--cleanup", "--keep-days", "0", "--json")
    rows = {c["id"]: c for c in json.loads(r.stdout)}
    assert rows[other]["worktree_removed"] and not rows[job]["worktree_removed"]
    assert_consistent(project, other, check_worktree=False)


def test_hostile_steps_leave_no_process_behind(project, tmp_path):
    """A step's ordinary background child (same process group) is still stopped by logist."""
    job = create(project, 'title = "bg"\n' + sh_step("s", f"sleep 300 & echo $! > {tmp_path}/bg.pid"))
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "bg.pid").read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z", what="the child to end")
    assert "outside its process group" not in git(project, "log", "-1", "--format=%B", f"logist/{job}")
