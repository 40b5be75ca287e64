"""Kills that land while git holds a worktree's index.lock (docs/recovery.md#lock-files).

A runner killed (SIGKILL to its process group, so its git dies too) while `git add -A` or
`git update-index` holds `<git dir>/worktrees/<id>/index.lock` leaves the file behind. No live
git can hold it, so the next `logist recover` / `job run` clears it and carries the job on:
same invariants as every crash test (one commit per history entry, clean fsck, no lock left).
A lock file a live git may hold stops the step with exit 4, the file named, nothing written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from _crashkit import (
    admin_dir,
    assert_consistent,
    create,
    kill_group_when_file_appears,
    logist,
    manifest,
    no_traceback,
    sh_step,
    wait_for,
    worktree,
)
from conftest import git

# ~2,000 files: `git add -A` and every `update-index` of the worktree hold index.lock for a
# while, long enough for the kill to land inside it
MANY_FILES = f'{sys.executable} -c "import os; os.makedirs(\'d\', exist_ok=True); ' \
             f'[open(\'d/f%d\' % i, \'w\').write(str(i)) for i in range(2000)]"'


def test_kills_while_git_holds_index_lock_recover(project, procs):
    landed = runs = 0
    for i in range(8):
        job = create(project, f'title = "index lock {i}"\n' + sh_step("many", MANY_FILES)
                     + sh_step("more", "echo B > b.txt"))
        lock = None
        runner = procs.start(project, "job", "run", job)
        dotgit = worktree(project, job) / ".git"
        wait_for(dotgit.is_file, what="the worktree")
        lock = admin_dir(project, job) / "index.lock"
        runs += 1
        hit = kill_group_when_file_appears(runner, lock)
        if not hit and runner.returncode != -signal.SIGKILL:
            assert runner.returncode == 0, runner.stderr.read() if runner.stderr else ""
            continue
        # killed: with git's lock file held (hit), or just after git let go of it (a plain kill
        # mid-step); either way a command that needs the job clears what is left and goes on
        landed += hit
        if hit:
            assert lock.exists()
        rec = logist(project, "recover")
        no_traceback(rec.stdout, rec.stderr)
        assert rec.returncode == 0, rec.stdout + rec.stderr
        if manifest(project, job)["state"] != "SUCCESS":
            run = logist(project, "job", "run", job)
            assert run.returncode == 0, run.stdout + run.stderr
        assert not lock.exists()
        assert_consistent(project, job, files_added_once=("b.txt",))
        if landed >= 4:
            break
    assert landed >= 1, f"no kill landed while index.lock was held in {runs} runs"
    print(f"index.lock kills: {landed} landed in {runs} runs")


def test_a_lock_a_live_git_may_hold_is_exit_4_and_nothing_written(project, tmp_path, procs):
    job = create(project, 'title = "held"\n' + sh_step("s", "echo A > a.txt"))
    assert logist(project, "job", "path", job).returncode == 0  # its worktree, before the first step
    lock = admin_dir(project, job) / "index.lock"
    # a live process named git, working in the worktree, started before the lock file
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    shutil.copy("/bin/sleep", fake)
    holder = procs.popen([str(fake), "300"], cwd=str(worktree(project, job)))
    wait_for(lambda: open(f"/proc/{holder.pid}/comm").read().strip() == "git", what="the holder")
    import time

    time.sleep(0.05)
    lock.write_text("")
    before = git(project, "for-each-ref")
    # each run a process of its own, as a user's: no git child of an earlier command of this
    # test process is left around to be taken for a holder
    r = logist(project, "job", "run", job, process=True)
    assert r.returncode == 4, r.stdout + r.stderr
    assert str(lock) in r.stderr and f"git process {holder.pid}" in r.stderr, r.stderr
    assert git(project, "for-each-ref") == before
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    r = logist(project, "job", "run", job, process=True)
    assert r.returncode == 0, r.stderr
    assert "removed" in r.stderr and str(lock) in r.stderr
    assert_consistent(project, job, files_added_once=("a.txt",))


def test_git_commands_clear_a_dead_lock_or_name_a_live_one(project, tmp_path, procs):
    """Below the engine: logist's git door clears a lock no live git can hold and runs the
    command again; one a live git may hold is GitLockError (exit 4) naming the file."""
    from logist.core.errors import GitLockError
    from logist.git.gitcmd import git as lgit

    (project / "x.txt").write_text("x\n")
    from logist.git.lockfiles import possible_holders

    lock = project / ".git" / "index.lock"
    lock.write_text("")
    # a git the fixture started may still be ending (under load): then the lock is rightly kept
    wait_for(lambda: not possible_holders(lock, [project]), what="the fixture's git processes to end")
    lgit(["add", "x.txt"], cwd=project)
    assert not lock.exists()
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    shutil.copy("/bin/sleep", fake)
    holder = procs.popen([str(fake), "300"], cwd=str(project))
    wait_for(lambda: open(f"/proc/{holder.pid}/comm").read().strip() == "git", what="the holder")
    import time

    time.sleep(0.05)
    lock.write_text("")
    with pytest.raises(GitLockError) as exc:
        lgit(["add", "x.txt"], cwd=project)
    assert str(lock) in exc.value.message and exc.value.exit_code == 4
    assert lock.exists()
    assert subprocess.run(["git", "-C", str(project), "status"], capture_output=True).returncode == 0
    os.kill(holder.pid, signal.SIGKILL)


def test_recover_clears_a_fresh_loose_object_lock_nobody_can_hold(project):
    """A runner killed while dulwich wrote a loose object leaves objects/xx/<sha>.lock (git fsck:
    "bad sha1 file"); `logist recover` removes it at once when no live git or logist process
    that started before it works in the repository."""
    lock = project / ".git" / "objects" / "dc" / ("9137cca3a39ced5c0c8006e9de9613f4f8036f" + ".lock")
    lock.parent.mkdir(exist_ok=True)
    lock.write_bytes(b"partial")
    r = logist(project, "recover")
    assert r.returncode == 0, r.stderr
    assert f"removed stale lock file {lock}" in r.stdout
    assert not lock.exists()
    fsck = subprocess.run(["git", "-C", str(project), "fsck", "--no-dangling"], capture_output=True, text=True)
    assert "bad sha1" not in fsck.stdout + fsck.stderr
