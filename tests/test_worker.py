"""Workers on several clones sharing one bare remote (docs/sharing.md, workers): claims are compare-and-swap
pushes of the lock ref, so every job runs exactly once; a dead worker's lease expires and another
worker finishes its job; untrusted command jobs are never taken; a worker that lost its lease
cannot publish anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from _sharekit import (
    COMMAND_TOML,
    lg,
    make_job,
    remote_manifest,
    remote_refs,
    transitions,
)
from conftest import git, wait_for

from logist.core.faults import crash_env


def start_worker(clone: Path, *args, env=None) -> subprocess.Popen:
    """`logist worker --json` in its own session; report in <clone>.worker.json, log in .err."""
    out = open(clone.parent / f"{clone.name}.worker.json", "w")
    err = open(clone.parent / f"{clone.name}.worker.err", "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "logist", "worker", "--json", "--poll", "0.2", *args],
                                cwd=str(clone), stdout=out, stderr=err, start_new_session=True,
                                env={**os.environ, **(env or {})})
    finally:
        out.close()
        err.close()


def report_of(clone: Path) -> dict:
    return json.loads((clone.parent / f"{clone.name}.worker.json").read_text())


def kill_tree(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def starts(remote: Path, jid: str) -> int:
    """How many times the job's step was started (PENDING -> PROVISIONING commits)."""
    out = subprocess.run(["git", "--git-dir", str(remote), "log", "--format=%(trailers:key=Logist-From,"
                          "valueonly,separator=%x2C)>%(trailers:key=Logist-To,valueonly,separator=%x2C)",
                          f"refs/heads/logist/{jid}"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line == "PENDING>PROVISIONING")


def test_claim_is_a_compare_and_swap_on_the_remote(net):
    from logist.share.fetch import fetch
    from logist.share.remote_lock import Counters, claim
    from logist.share.survey import survey
    from logist.store.jobstore import JobStore

    jid = make_job(net.a, "Contested", run=False)
    lg(net.a, "push")
    b, c = net.clone("b"), net.clone("c")
    stores = [JobStore.discover(x) for x in (b, c)]
    for s in stores:
        fetch(s, "origin")
    cands = [survey(s, "origin").claimable for s in stores]
    assert [[x.job_id for x in cs] for cs in cands] == [[jid], [jid]]
    won = [claim(s, "origin", jid, cs[0].tip, cs[0].lock, 60, Counters()) for s, cs in zip(stores, cands, strict=True)]
    assert won[0] is not None and won[1] is None  # the remote arbitrates: one winner
    lock = remote_refs(net.remote)[f"refs/logist/locks/{jid}"]
    assert lock == won[0].oid
    holder = json.loads(git(b, "cat-file", "-p", lock))
    assert holder["lease_seconds"] == 60 and "logist worker" in holder["command"]
    # c sees the job as busy now
    fetch(stores[1], "origin")
    sv = survey(stores[1], "origin")
    assert sv.claimable == [] and jid in sv.busy
    # the winner's lease lost to a takeover (as if it had expired): it can publish nothing more
    taker = claim(stores[1], "origin", jid, cands[1][0].tip, won[0].oid, 60, Counters())
    assert taker is not None
    from logist.share.remote_lock import LeaseLost

    with pytest.raises(LeaseLost):
        won[0].refresh()
    with pytest.raises(LeaseLost):
        won[0].release()
    assert remote_refs(net.remote)[f"refs/logist/locks/{jid}"] == taker.oid
    taker.release()
    assert f"refs/logist/locks/{jid}" not in remote_refs(net.remote)


def test_a_job_changed_on_the_remote_behind_the_lock_is_given_up(net):
    from logist.share.adopt import import_job
    from logist.share.fetch import fetch
    from logist.share.remote_lock import Counters, LeaseLost, claim
    from logist.share.survey import survey
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    jid = make_job(net.a, "Changed behind the lock", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    store = JobStore.discover(b)
    fetch(store, "origin")
    cand = survey(store, "origin").claimable[0]
    rl = claim(store, "origin", jid, cand.tip, cand.lock, 60, Counters())
    with acquire(store, jid) as lease:
        import_job(store, "origin", jid, lease)  # a new local commit (origin/trust record)
    lg(net.a, "job", "suspend", jid)  # a person changes the job and pushes, ignoring the worker
    lg(net.a, "push")
    suspended = remote_refs(net.remote)[f"refs/heads/logist/{jid}"]
    with pytest.raises(LeaseLost):
        rl.refresh()
    theirs = remote_refs(net.remote)
    assert theirs[f"refs/heads/logist/{jid}"] == suspended  # nothing of the worker's got through
    assert f"refs/logist/locks/{jid}" not in theirs  # and its lock is gone, not left to expire


def test_three_workers_in_three_clones_share_twelve_jobs(net):
    jobs = [make_job(net.a, f"Queued {i}", run=False) for i in range(12)]
    lg(net.a, "push")
    clones = [net.clone(n) for n in ("w1", "w2", "w3")]
    env = {"LOGIST_NO_WATCHER": "1"}  # keep the 2-core CI box for the workers themselves
    procs = [start_worker(c, "--until-idle", env=env) for c in clones]
    try:
        for p in procs:
            p.wait(timeout=240)
    finally:
        for p in procs:
            kill_tree(p)
    assert [p.returncode for p in procs] == [0, 0, 0], [
        (c.parent / f"{c.name}.worker.err").read_text()[-2000:] for c in clones]
    reports = [report_of(c) for c in clones]
    ran = [j for r in reports for j in r["ran"]]
    assert sorted(ran) == sorted(jobs), reports  # every job exactly once, across the workers
    theirs = remote_refs(net.remote)
    assert not any(r.startswith("refs/logist/locks/") for r in theirs)
    for jid in jobs:
        m = remote_manifest(net.remote, jid)
        assert m["state"] == "SUCCESS" and m["origin"] == "remote:origin"
        assert starts(net.remote, jid) == 1
    # every step log reached the remote as a note on its harvest commit
    for jid in jobs:
        tip = theirs[f"refs/heads/logist/{jid}"]
        note = subprocess.run(["git", "--git-dir", str(net.remote), "notes", "--ref",
                               "refs/notes/logist/logs", "show", tip], capture_output=True, text=True)
        assert note.returncode == 0 and "mock" in note.stdout, jid
    # the creator sees the results with a fetch
    lg(net.a, "fetch")
    rows = lg(net.a, "job", "list", "--remote", "origin", "--json", "--all").json()
    assert {r["id"]: r["state"] for r in rows} == {j: "SUCCESS" for j in jobs}


def test_a_killed_workers_job_is_finished_by_another_after_the_lease_expires(net):
    toml = """\
title = "Slow"
[[steps]]
name = "slow"
prompt = "take your time"
[steps.mock]
delay_s = 2
writes = { "slow.txt" = "done\\n" }
"""
    jid = make_job(net.a, "Slow", toml=toml, run=False)
    lg(net.a, "push")
    w1, w2 = net.clone("w1"), net.clone("w2")
    env = {"LOGIST_LEASE_SECONDS": "3", "LOGIST_NO_WATCHER": "1"}
    p1 = start_worker(w1, "--until-idle", env=env)
    p2 = None
    try:
        wait_for(lambda: (remote_manifest(net.remote, jid) or {}).get("state") == "EXECUTING",
                 timeout=60, what="worker 1 to push EXECUTING")
        lock_before = remote_refs(net.remote)[f"refs/logist/locks/{jid}"]
        agent = json.loads((w1 / ".git/logist/run" / jid / "agent.json").read_text())
        killed_at = time.time()
        kill_tree(p1)
        try:
            os.killpg(agent["pgid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        # the dead worker's lock is still on the remote
        assert remote_refs(net.remote)[f"refs/logist/locks/{jid}"] == lock_before
        p2 = start_worker(w2, "--until-idle", env=env)
        assert p2.wait(timeout=120) == 0, (w2.parent / "w2.worker.err").read_text()
    finally:
        kill_tree(p1)
        if p2 is not None:
            kill_tree(p2)
    report = report_of(w2)
    assert report["ran"] == [jid]
    err = (w2.parent / "w2.worker.err").read_text()
    assert "lease taken over" in err
    holder = json.loads(git(w1, "cat-file", "-p", lock_before))
    assert holder["lease_seconds"] == 3
    # w2 took the job over only once the dead holder's lease had run out (its last heartbeat on
    # the remote + lease_seconds), as its own RECOVERING entry's time says
    history = git(net.remote, "show", f"refs/heads/logist/{jid}:.logist/jobs/{jid}/history.jsonl")
    (takeover,) = [e for e in map(json.loads, history.splitlines())
                   if (e.get("from"), e.get("to")) == ("EXECUTING", "RECOVERING")]
    taken_at = datetime.fromisoformat(takeover["t"].replace("Z", "+00:00")).timestamp()
    assert taken_at - holder["heartbeat_at"] >= holder["lease_seconds"], (takeover, holder)
    assert taken_at >= killed_at
    m = remote_manifest(net.remote, jid)
    assert m["state"] == "SUCCESS"
    trans = transitions(w2, f"logist/{jid}")
    assert trans[-1] == ("HARVESTING", "SUCCESS")
    # w2 resumed from the EXECUTING tip w1 had pushed (no second PENDING -> PROVISIONING)
    assert starts(net.remote, jid) == 1
    assert trans.count(("PROVISIONING", "EXECUTING")) == 1
    # w1's execution is another clone's (same host, other common dir): w2 never takes it for
    # "never started" (attempt 1) but goes through RECOVERING and re-executes it as attempt 2
    assert "re-executing step 1 (attempt 2)" in err and "never started" not in err
    assert trans.count(("EXECUTING", "RECOVERING")) == 1
    assert trans.count(("RECOVERING", "EXECUTING")) == 1
    assert m["attempt"] == 2 and m["steps"][0]["attempt"] == 2
    assert f"refs/logist/locks/{jid}" not in remote_refs(net.remote)
    assert subprocess.run(["git", "--git-dir", str(net.remote), "show", f"logist/{jid}:slow.txt"],
                          capture_output=True, text=True).stdout == "done\n"


def test_worker_runs_only_what_this_clone_may_run(net):
    cmd = make_job(net.a, "Command", toml=COMMAND_TOML.format(title="Command", python=sys.executable),
                   run=False)
    mock = make_job(net.a, "Prompt", run=False)
    draft = make_job(net.a, "Draft", activate=False)
    lg(net.a, "push")
    b = net.clone("b")
    env = {"LOGIST_NO_WATCHER": "1"}
    res = lg(b, "worker", "--until-idle", "--json", "--poll", "0.2").json()
    assert res["ran"] == [mock] and res["untrusted"] == [cmd]
    assert remote_manifest(net.remote, cmd)["state"] == "PENDING"
    assert remote_manifest(net.remote, draft)["state"] == "DRAFT"
    # trusted here (before this clone even has the branch): now the worker takes it
    lg(b, "job", "trust", cmd, "--remote", "origin")
    res = lg(b, "worker", "--until-idle", "--json", "--poll", "0.2").json()
    assert res["ran"] == [cmd] and res["untrusted"] == []
    assert remote_manifest(net.remote, cmd)["state"] == "SUCCESS"
    assert subprocess.run(["git", "--git-dir", str(net.remote), "show", f"logist/{cmd}:ran.txt"],
                          capture_output=True, text=True).stdout == "ran"
    assert env


def test_worker_max_jobs_and_pushes_every_transition(net):
    j1 = make_job(net.a, "First", run=False)
    j2 = make_job(net.a, "Second", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    res = lg(b, "worker", "--max-jobs", "1", "--json", "--poll", "0.2").json()
    assert len(res["ran"]) == 1 and res["stopped"].startswith("ran --max-jobs")
    done = res["ran"][0]
    left = ({j1, j2} - {done}).pop()
    assert remote_manifest(net.remote, left)["state"] == "PENDING"
    # every transition of the job it ran reached the remote (not only the last one)
    out = subprocess.run(["git", "--git-dir", str(net.remote), "log", "--format=%H", f"logist/{done}"],
                         capture_output=True, text=True, check=True).stdout.split()
    local = git(b, "log", "--format=%H", f"logist/{done}").split()
    assert out == local
    assert res["pushes"] >= 3 and res["fetches"] >= 1
    # the run's commits name the lease they were made under
    assert git(b, "log", "-1", "--format=%(trailers:key=Logist-Lease,valueonly)", f"logist/{done}")


def test_worker_refuses_bad_options(net):
    assert lg(net.a, "worker", "--max-jobs", "0", code=2).err
    assert lg(net.a, "worker", "--remote", "x;y", code=2).err
    res = lg(net.a, "worker", "--remote", "nosuch", "--until-idle", code=1)
    assert "no remote named" in res.err


def test_worker_until_idle_with_nothing_to_do(net):
    res = lg(net.a, "worker", "--until-idle", "--json").json()
    assert res["ran"] == [] and res["stopped"].startswith("idle")


def test_another_clones_interrupted_step_is_resumed_as_attempt_two(net):
    """Two clones of one bare remote on one host: clone a's runner dies right after its
    EXECUTING commit (its agent never ran); clone b adopts the pushed job and resumes it.
    The execution is a's (its records live in a's git dir), so b judges its agent gone, not
    "never started": RECOVERING, then attempt 2, as the state table says."""
    from logist.engine import agent_proc, settle
    from logist.store.jobstore import JobStore

    toml = """\
title = "Other clone"
[[steps]]
name = "write"
prompt = "write it"
[steps.mock]
writes = { "w.txt" = "w\\n" }
"""
    jid = make_job(net.a, "Other clone", toml=toml, run=False)
    r = subprocess.run([sys.executable, "-m", "logist", "-C", str(net.a), "job", "run", jid],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, **crash_env("after-executing-commit")})
    assert r.returncode == 137, r.stderr
    lg(net.a, "push")
    assert remote_manifest(net.remote, jid)["state"] == "EXECUTING"
    b = net.clone("b")
    lg(b, "fetch")
    lg(b, "job", "adopt", jid)
    # the same execution, judged from each clone
    store_a, store_b = JobStore.discover(net.a), JobStore.discover(b)
    _, m_a = settle.own_tip(store_a, jid)
    _, m_b = settle.own_tip(store_b, jid)
    assert m_a.execution.transition_id == m_b.execution.transition_id
    assert agent_proc.started_in_this_clone(store_a, m_a) is True
    assert agent_proc.agent_status(store_a, m_a).kind == "not-started"
    assert agent_proc.started_in_this_clone(store_b, m_b) is False
    assert agent_proc.agent_status(store_b, m_b).kind == "dead"
    [row] = json.loads(lg(b, "recover", "--list", "--json").out)
    assert row["id"] == jid and row["action"] == "re-execute step 1 (attempt 2 of 3)", row
    res = lg(b, "recover", jid, "--json")
    assert json.loads(res.out)["jobs"][0]["after"] == "SUCCESS", res.out
    trans = transitions(b, f"logist/{jid}")
    assert trans[-4:] == [("EXECUTING", "RECOVERING"), ("RECOVERING", "EXECUTING"),
                          ("EXECUTING", "HARVESTING"), ("HARVESTING", "SUCCESS")], trans
    m = json.loads(git(b, "show", f"logist/{jid}:.logist/jobs/{jid}/manifest.json"))
    assert m["state"] == "SUCCESS" and m["attempt"] == 2 and m["steps"][0]["attempt"] == 2
    assert git(b, "show", f"logist/{jid}:w.txt") == "w"
    assert git(b, "for-each-ref", "refs/logist/locks/") == ""
    fsck = subprocess.run(["git", "-C", str(b), "fsck", "--no-progress", "--no-dangling"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stdout + fsck.stderr, fsck.stderr


def test_another_clones_interrupted_restep_of_a_command_step_needs_trust(net):
    """Clone a's restep dies before its agent ran; clone b adopts the job. Finishing the restep
    executes the command again (attempt 2: a's execution is another clone's), so b refuses it
    until the job is trusted here (exit 1, no ref moved), then `recover --trust` finishes it."""
    counter = net.tmp / "calls"
    script = f"open({str(counter)!r}, 'a').write('x\\n')"
    argv = json.dumps([sys.executable, "-c", script])
    toml = f'title = "Restep elsewhere"\n[[steps]]\nname = "count"\nagent = "command"\ncommand = {argv}\n'
    jid = make_job(net.a, "Restep elsewhere", toml=toml)
    assert counter.read_text() == "x\n"
    r = subprocess.run([sys.executable, "-m", "logist", "-C", str(net.a), "job", "restep", jid, "1"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, **crash_env("restep-after-start")})
    assert r.returncode == 137, r.stderr
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "fetch")
    lg(b, "job", "adopt", jid)
    [row] = json.loads(lg(b, "recover", "--list", "--json").out)
    assert row["kind"] == "restep" and row["action"] == "re-execute restep 1 of step 1 (attempt 2 of 3)"
    before = git(b, "for-each-ref", "--format=%(refname) %(objectname)")
    res = lg(b, "recover", jid, code=1)
    assert "not executed again until you trust the job" in res.err and "logist job trust" in res.err
    assert git(b, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert counter.read_text() == "x\n"
    lg(b, "recover", jid, "--trust")
    assert counter.read_text() == "x\nx\n"
    m = json.loads(git(b, "show", f"logist/{jid}:.logist/jobs/{jid}/manifest.json"))
    assert m["execution"] is None and m["state"] == "SUCCESS" and m["steps"][0]["status"] == "SUCCESS"
    phases = [(e["data"]["phase"], e["data"]["attempt"])
              for e in map(json.loads, git(b, "show", f"logist/{jid}:.logist/jobs/{jid}/history.jsonl").splitlines())
              if e["event"] == "restep"]
    assert phases == [("start", 1), ("restart", 2), ("done", 2)], phases
    assert git(b, "for-each-ref", "refs/logist/locks/") == ""


@pytest.mark.parametrize("point", ["after-executing-commit", "after-provisioning-commit"])
def test_another_clones_interrupted_command_step_needs_trust(net, point):
    """Clone a's runner dies in the middle of a command step; clone b adopts the job. Resuming
    it would run the command here, so b refuses (exit 1, no ref moved, the command not run)
    until the job is trusted; `recover --trust` then finishes it."""
    counter = net.tmp / f"calls-{point}"
    script = f"open({str(counter)!r}, 'a').write('x\\n')"
    argv = json.dumps([sys.executable, "-c", script])
    toml = f'title = "Run elsewhere"\n[[steps]]\nname = "count"\nagent = "command"\ncommand = {argv}\n'
    jid = make_job(net.a, "Run elsewhere", toml=toml, run=False)
    r = subprocess.run([sys.executable, "-m", "logist", "-C", str(net.a), "job", "run", jid],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, **crash_env(point)})
    assert r.returncode == 137, r.stderr
    assert not counter.exists()
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "fetch")
    lg(b, "job", "adopt", jid)
    before = git(b, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/remotes/")
    for cmd in (["recover", jid], ["job", "run", jid]):
        res = lg(b, *cmd, code=1)
        assert "until you trust the job" in res.err and "logist job trust" in res.err, res.err
        assert git(b, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/",
                   "refs/remotes/") == before
        assert not counter.exists()
    lg(b, "recover", jid, "--trust")
    assert counter.read_text() == "x\n"
    m = json.loads(git(b, "show", f"logist/{jid}:.logist/jobs/{jid}/manifest.json"))
    assert m["state"] == "SUCCESS"
    assert git(b, "for-each-ref", "refs/logist/locks/") == ""


def test_a_lost_lease_stops_the_agent_only_if_it_is_still_the_process_started(cli, tmp_path):
    """The worker that lost its lease stops the agent's group named in agent.json, but only when
    the pid still has the recorded start time: a pid alone is never believed."""
    from logist.core.procs import process_start_time
    from logist.share.worker import _stop_agent
    from logist.store.jobstore import JobStore

    store = JobStore.discover(cli.repo)
    job_id = "some-job"
    store.run_dir(job_id).mkdir(parents=True, exist_ok=True)
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        info = {"pid": agent.pid, "pgid": agent.pid, "start_time": process_start_time(agent.pid) + 1}
        (store.run_dir(job_id) / "agent.json").write_text(json.dumps(info))
        _stop_agent(store, job_id)  # another process with the same pid: left alone
        assert agent.poll() is None
        info["start_time"] -= 1
        (store.run_dir(job_id) / "agent.json").write_text(json.dumps(info))
        _stop_agent(store, job_id)
        assert agent.wait(timeout=30) == -signal.SIGTERM
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
