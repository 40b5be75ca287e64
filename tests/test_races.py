"""Races between real processes (docs/architecture.md#invariants, 2 and 4; docs/recovery.md).

- 8 processes race for one job's lock, round after round: exactly one winner every round, on
  a free lock and on a stale one (takeover by compare-and-swap);
- 8 processes make transitions on 8 jobs: no lost update, a linear history per job;
- 2 runners on one job: each step runs exactly once; the loser exits 4 without a traceback;
- 2 `job run --parallel 2` (no id) over the same jobs: each step exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _crashkit import (
    assert_consistent,
    create,
    dead_pid,
    fsck_clean,
    init_project,
    mock_step,
    no_traceback,
    sh_step,
)
from conftest import git, kill_leftovers, wait_for

N = 8


@pytest.fixture
def store(repo):
    from logist.store.jobstore import JobStore

    init_project(repo)
    return JobStore.discover(repo)


LOCK_WORKER = r"""
import sys, time
from pathlib import Path
from logist.store.jobstore import JobStore
from logist.store.locks import acquire
from logist.core.errors import BusyError
repo, d, wid, job = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[6]
rounds, n = int(sys.argv[4]), int(sys.argv[5])
store = JobStore.discover(repo)
def put(name, text):
    tmp = d / (name + ".tmp")
    tmp.write_text(text)
    tmp.rename(d / name)
for r in range(rounds):
    while not (d / f"go-{r}").exists():
        time.sleep(0.001)
    try:
        lease = acquire(store, job, command=f"worker {wid}")
        res = "win " + (lease.takeover_reason or "")
    except BusyError as exc:
        lease, res = None, "lose " + exc.message
    put(f"r{r}-w{wid}", res)
    if lease is not None:
        deadline = time.monotonic() + 60
        while len(list(d.glob(f"r{r}-w*[0-9]"))) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        lease.release()
        put(f"released-{r}", "1")
"""


def test_eight_processes_race_for_one_lock(store, procs, tmp_path):
    """One winner per round, over many rounds; every other round starts from a stale lock
    (a dead holder) that all eight try to take over."""
    from logist.store.locks import Holder, boot_id, read_lock

    rounds = 24
    d = tmp_path / "coord"
    d.mkdir()
    job = "race-job"
    env = {**os.environ}
    for w in range(N):
        procs.popen([sys.executable, "-c", LOCK_WORKER, str(store.root), str(d), str(w), str(rounds),
                     str(N), job], env=env)
    for r in range(rounds):
        stale = r % 2 == 1
        if stale:
            now = time.time()
            h = Holder(pid=dead_pid(), host=socket.gethostname(), boot_id=boot_id(), start_time=None,
                       command="crashed", acquired_at=now, heartbeat_at=now, lease_seconds=120)
            git(store.root, "update-ref", f"refs/logist/locks/{job}", store.writer.blob(h.to_bytes()).decode())
        (d / f"go-{r}").write_text("go")
        results = wait_for(lambda r=r: [p.read_text() for p in d.glob(f"r{r}-w*[0-9]")]
                           if len(list(d.glob(f"r{r}-w*[0-9]"))) == N else None,
                           timeout=60, what=f"round {r}")
        winners = [x for x in results if x.startswith("win")]
        assert len(winners) == 1, (r, results)
        if stale:
            assert "is gone" in winners[0]
        wait_for(lambda r=r: (d / f"released-{r}").exists(), timeout=60, what=f"release of round {r}")
        assert read_lock(store, job) is None
    for p in procs.procs:
        assert p.wait(timeout=30) == 0


TRANSITION_WORKER = r"""
import json, sys, time, random
from pathlib import Path
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import acquire
from logist.store.job_state import Update, apply_update
from logist.core.errors import BusyError
repo, out, wid, jobs, k = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(","), int(sys.argv[5])
store = JobStore.discover(repo)
done = {j: 0 for j in jobs}
busy = 0
rng = random.Random(wid)
for it in range(k):
    order = jobs[wid % len(jobs):] + jobs[:wid % len(jobs)]
    for j in order:
        try:
            lease = acquire(store, j, command=f"worker {wid}")
        except BusyError:
            busy += 1
            continue
        try:
            tip, m = store.read(j)
            event = "suspend" if m.state.value == "PENDING" else "resume"
            new, entry = apply_update(m, Update(event=event, reason=f"w{wid} i{it}"), now=utcnow(),
                                      transition_id=new_transition_id())
            store.commit_transition(j, tip, new, [entry], lease=lease.oid)
            done[j] += 1
        finally:
            lease.release()
out.write_text(json.dumps({"done": done, "busy": busy}))
"""


def test_eight_processes_transition_eight_jobs(store, procs, tmp_path):
    from logist.core.jobfile import JobFile, StepFile
    from logist.engine.jobs import create_job

    jobs = [create_job(store, JobFile(title=f"race {i}", steps=[StepFile(prompt="x")]), activate=True,
                       job_id=f"race-{i}").id for i in range(N)]
    for j in jobs:  # worktrees whose copy of the record every transition keeps in step
        store.ensure_worktree(j)
    outs = [tmp_path / f"out-{w}.json" for w in range(N)]
    for w in range(N):
        procs.popen([sys.executable, "-c", TRANSITION_WORKER, str(store.root), str(outs[w]), str(w),
                     ",".join(jobs), "4"])
    for p in procs.procs:
        assert p.wait(timeout=240) == 0
    totals = {j: 0 for j in jobs}
    for o in outs:
        for j, n in json.loads(o.read_text())["done"].items():
            totals[j] += n
    assert sum(totals.values()) > 0
    for j in jobs:
        h = assert_consistent(store.root, j, state="SUSPENDED" if totals[j] % 2 else "PENDING")
        assert len(h) == 1 + totals[j], f"{j}: {len(h) - 1} transitions recorded, {totals[j]} made"
        base = json.loads(git(store.root, "show", f"logist/{j}:.logist/jobs/{j}/manifest.json"))["base"]
        assert int(git(store.root, "rev-list", "--count", f"{base}..logist/{j}")) == 1 + totals[j]
        assert git(store.root, "rev-list", "--merges", f"logist/{j}") == ""
    fsck_clean(store.root)


def gated_job(repo: Path, tmp_path: Path) -> tuple[str, Path, Path]:
    counter = tmp_path / "counter"
    gate = tmp_path / "gate"
    toml = ('title = "two runners"\n'
            + sh_step("first", f'while [ ! -f "{gate}" ]; do sleep 0.05; done; echo 1 >> "{counter}"; '
                               'echo 1 > one.txt')
            + mock_step("second", {"two.txt": "2\n"})
            + sh_step("third", f'echo 3 >> "{counter}"; echo 3 > three.txt'))
    return create(repo, toml), counter, gate


def test_two_runners_on_one_job(store, procs, tmp_path):
    job, counter, gate = gated_job(store.root, tmp_path)
    a = procs.start(store.root, "job", "run", job)
    b = procs.start(store.root, "job", "run", job)
    # the loser gives up at once; the winner waits at the gate inside step 1
    loser = wait_for(lambda: next((p for p in (a, b) if p.poll() is not None), None), timeout=60,
                     what="one runner to give up")
    winner = b if loser is a else a
    out, err = loser.communicate(timeout=10)
    assert loser.returncode == 4, err
    assert "busy: held by pid" in err and f"pid {winner.pid}" in err
    no_traceback(out, err)
    assert winner.poll() is None
    gate.write_text("go")
    out, err = winner.communicate(timeout=120)
    assert winner.returncode == 0, err
    assert counter.read_text().split() == ["1", "3"]  # each command step exactly once
    assert_consistent(store.root, job, files_added_once=("one.txt", "two.txt", "three.txt"))


def test_two_parallel_run_alls_run_each_step_once(store, procs, tmp_path):
    counters = []
    for i in range(4):
        c = tmp_path / f"counter-{i}"
        counters.append(c)
        create(store.root, f'title = "many {i}"\n'
               + sh_step("a", f'echo a >> "{c}"; echo a > a.txt')
               + sh_step("b", f'sleep 0.2; echo b >> "{c}"; echo b > b.txt'), job_id=f"many-{i}")
    a = procs.start(store.root, "job", "run", "--parallel", "2")
    b = procs.start(store.root, "job", "run", "--parallel", "2")
    for p in (a, b):
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        no_traceback(out, err)
    for i, c in enumerate(counters):
        assert c.read_text().split() == ["a", "b"], (i, c.read_text())
        assert_consistent(store.root, f"many-{i}", files_added_once=("a.txt", "b.txt"))


def test_a_step_shell_left_by_a_killed_runner_is_killed_at_teardown(tmp_path):
    """The step's shell runs in a session of its own, so killing `logist job run` leaves it
    waiting at its gate; conftest's no_process_left fixture ends every process that names the
    test's tmp path or works inside it."""
    work = tmp_path / "wt"
    work.mkdir()
    named = subprocess.Popen(["sh", "-c", f'while [ ! -f "{tmp_path}/gate" ]; do sleep 0.05; done'],
                             start_new_session=True)
    inside = subprocess.Popen(["sleep", "600"], cwd=work, start_new_session=True)
    elsewhere = subprocess.Popen(["sleep", "600"], cwd="/", start_new_session=True)
    try:
        killed = kill_leftovers(tmp_path)
        assert named.wait(timeout=10) == -9 and inside.wait(timeout=10) == -9
        assert {named.pid, inside.pid} <= set(killed) and elsewhere.pid not in killed
        assert elsewhere.poll() is None
    finally:
        elsewhere.kill()
        elsewhere.wait()


CREATE_WORKER = """
import sys
from logist.cli import main
root, w, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    code = main(["-C", root, "job", "create", "--title", f"made by {w}", "--id", f"w{w}-{i}", "--step", "x"])
    code = code or main(["-C", root, "job", "path", f"w{w}-{i}"])  # the worktree, as a first step makes it
    if code != 0:
        sys.exit(code)
"""


def test_parallel_job_creates_each_get_their_worktree(store, procs):
    """Creates and worktrees made in parallel (`job path` makes one as a first step does), with
    `git worktree prune` running all the while (as another maker ran it before every add): a
    prune that meets a `git worktree add` half-way removes the new entry (git writes it in
    steps) and the add fails ("could not open .git/worktrees/<id>/locked"); logist prunes only
    after a failed add and adds again, so every job gets its worktree."""
    workers, each = 3, 4
    pruner = procs.popen(["sh", "-c", 'while :; do git -C "$0" worktree prune; done', str(store.root)],
                         start_new_session=True)
    makers = [procs.popen([sys.executable, "-c", CREATE_WORKER, str(store.root), str(w), str(each)])
              for w in range(workers)]
    for p in makers:
        assert p.wait(timeout=240) == 0
    os.killpg(pruner.pid, signal.SIGKILL)  # the loop and its git, by the group the test started
    pruner.wait(timeout=30)
    listed = {}
    for block in git(store.root, "worktree", "list", "--porcelain").split("\n\n"):
        fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
        listed[fields.get("branch")] = fields["worktree"]
    for w in range(workers):
        for i in range(each):
            wt = Path(listed[f"refs/heads/logist/w{w}-{i}"])
            assert (wt / ".logist" / "jobs" / f"w{w}-{i}" / "manifest.json").is_file()
    fsck_clean(store.root)


def test_a_runner_finding_the_job_busy_says_busy_not_the_winners_index_lock(store, procs, tmp_path):
    """The job's lease is taken before the worktree's lock files are looked at: while the
    winner's own git holds the worktree's index.lock, a second runner is told who holds the
    job (exit 4), not that a git lock file is in the way (what a race under load once showed)."""
    from logist.core.jobid import JobId
    from logist.store.locks import acquire

    job, _counter, _gate = gated_job(store.root, tmp_path)
    wt = Path(subprocess.run([sys.executable, "-m", "logist", "-C", str(store.root), "job", "path", job],
                             capture_output=True, text=True, check=True).stdout.strip())
    admin = Path((wt / ".git").read_text().split("gitdir:", 1)[1].strip())
    before = git(store.root, "for-each-ref", "--format=%(refname) %(objectname)")
    lease = acquire(store, JobId(job))  # the "winner": this process, alive
    live_git = procs.popen(["git", "-C", str(wt), "hash-object", "--stdin"], stdin=subprocess.PIPE)
    (admin / "index.lock").write_text("")
    try:
        loser = procs.start(store.root, "job", "run", job)
        out, err = loser.communicate(timeout=120)
        assert loser.returncode == 4, err
        assert "busy: held by pid" in err and f"pid {os.getpid()}" in err, err
        assert "index.lock" not in err
        no_traceback(out, err)
    finally:
        (admin / "index.lock").unlink()
        live_git.kill()
        lease.release()
    after = git(store.root, "for-each-ref", "--format=%(refname) %(objectname)")
    assert after == before


def test_the_leftover_sweep_takes_the_path_whole(tmp_path):
    """pytest numbers its tmp dirs (test_x1, test_x10): the sweep of test_x1 spares test_x10's."""
    from conftest import kill_leftovers

    mine, theirs = tmp_path / "test_x1", tmp_path / "test_x10"
    theirs.mkdir(parents=True)
    other = subprocess.Popen(["sh", "-c", f'while [ ! -f "{theirs}/gate" ]; do sleep 0.05; done'],
                             start_new_session=True)
    try:
        assert other.pid not in kill_leftovers(mine) and other.poll() is None
        assert other.pid in kill_leftovers(theirs)
        assert other.wait(timeout=10) == -9
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
