"""`logist recover` (--check, --list, JOB, --abandon, --cleanup) and the one-line warning
every other command prints about interrupted jobs."""

from __future__ import annotations

import json
import os
import signal

import pytest
from _crashkit import (
    assert_consistent,
    create,
    history,
    logist,
    manifest,
    mock_step,
    no_traceback,
    sh_step,
    wait_agent_running,
    worktree,
)
from conftest import git, wait_for

from logist.core.faults import crash_env


def one_step(name="r", file="r.txt") -> str:
    return f'title = "{name}"\n' + mock_step("write", {file: "x\n"})


def interrupt(repo, point: str, name="r", file="r.txt") -> str:
    job = create(repo, one_step(name, file))
    assert logist(repo, "job", "run", job, env=crash_env(point)).returncode == 137
    return job


def test_nothing_interrupted(project):
    create(project, one_step())
    assert logist(project, "recover", "--check").stdout.strip() == "no interrupted jobs"
    assert logist(project, "recover", "--list").stdout.strip() == "no interrupted jobs"
    assert json.loads(logist(project, "recover", "--list", "--json").stdout) == []
    assert json.loads(logist(project, "recover", "--check", "--json").stdout) == {"by_state": {}, "interrupted": 0}
    r = logist(project, "recover")
    assert r.returncode == 0 and "no interrupted jobs" in r.stdout


def test_check_and_list_describe_each_interrupted_job(project):
    a = interrupt(project, "after-provisioning-commit", "alpha", "a.txt")
    b = interrupt(project, "after-executing-commit", "bravo", "b.txt")
    c = interrupt(project, "after-harvesting-commit", "charlie", "c.txt")
    d = interrupt(project, "after-agent-exit", "delta", "d.txt")
    check = logist(project, "recover", "--check")
    assert check.returncode == 0
    assert "4 interrupted job(s): EXECUTING 2, HARVESTING 1, PROVISIONING 1" in check.stdout
    assert json.loads(logist(project, "recover", "--check", "--json").stdout) == {
        "interrupted": 4, "by_state": {"EXECUTING": 2, "HARVESTING": 1, "PROVISIONING": 1}}
    rows = {e["id"]: e for e in json.loads(logist(project, "recover", "--list", "--json").stdout)}
    assert set(rows) == {a, b, c, d}
    assert rows[a]["action"] == "provision again, then run step 1 (attempt 1)"
    assert rows[b]["action"] == "start the agent of step 1 (attempt 1)"
    assert rows[c]["action"] == "harvest step 1 again from what was saved"
    assert rows[d]["action"] == "harvest the finished agent (exit code 0)"
    for e in rows.values():
        assert e["holder"]["stale"] and e["since"] and e["title"] and e["step"] == 1
    text = logist(project, "recover", "--list").stdout
    for job in (a, b, c, d):
        assert job in text
    assert "RECOVERY WILL" in text and "is gone" in text

    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    for job in (a, b, c, d):
        assert f"{job}: " in rec.stdout and "-> SUCCESS" in rec.stdout
        assert_consistent(project, job)
    assert "took over the lease (holder pid" in rec.stdout
    # harvested, not re-run: one EXECUTING per job
    for job in (a, b, c, d):
        assert [e["to"] for e in history(project, job)].count("EXECUTING") == 1


def test_recover_one_job_only(project):
    a = interrupt(project, "after-provision", "alpha", "a.txt")
    b = interrupt(project, "after-provision", "bravo", "b.txt")
    r = logist(project, "recover", a)
    assert r.returncode == 0, r.stderr
    assert manifest(project, a)["state"] == "SUCCESS"
    assert manifest(project, b)["state"] == "PROVISIONING"


def test_recover_refuses_what_is_not_interrupted(project):
    job = create(project, one_step())
    r = logist(project, "recover", job)
    assert r.returncode == 2 and "not interrupted" in r.stderr
    r = logist(project, "recover", "no-such-job")
    assert r.returncode == 1 and "no job" in r.stderr
    r = logist(project, "recover", "Bad_Id")
    assert r.returncode == 2
    r = logist(project, "recover", "--check", "--list")
    assert r.returncode == 2
    r = logist(project, "recover", "--keep-days", "3")
    assert r.returncode == 2
    for res in (r,):
        no_traceback(res.stderr)


def test_a_live_holder_is_left_alone(project, procs, tmp_path):
    gate = tmp_path / "gate"
    job = create(project, 'title = "busy"\n' + sh_step("wait", f'while [ ! -f "{gate}" ]; do sleep 0.05; done'))
    runner = procs.start(project, "job", "run", job)
    wait_agent_running(project, job)
    assert logist(project, "recover", "--check").stdout.strip() == "no interrupted jobs"
    r = logist(project, "recover", job)
    assert r.returncode == 4 and f"held by pid {runner.pid}" in r.stderr
    r = logist(project, "recover", "--abandon", job)
    assert r.returncode == 4
    assert logist(project, "recover").returncode == 0  # nothing to do, the runner is alive
    gate.write_text("go")
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert_consistent(project, job)


def test_other_commands_warn_about_interrupted_jobs(project):
    other = create(project, one_step("other", "o.txt"))
    job = interrupt(project, "after-executing-commit")
    for args in (("job", "list"), ("job", "status", other), ("job", "run", other)):
        r = logist(project, *args)
        assert r.returncode == 0, r.stderr
        lines = [line for line in r.stderr.splitlines() if "interrupted" in line]
        assert lines == [f"logist: warning: job {job} was interrupted in EXECUTING; run `logist recover` "
                         "to resume it"], (args, r.stderr)
    # the job being run is not warned about: `job run` resumes it
    r = logist(project, "job", "run", job)
    assert r.returncode == 0 and "interrupted" not in r.stderr
    # json output stays clean
    assert "warning" not in logist(project, "job", "status", job, "--json").stdout


def test_several_interrupted_jobs_make_one_warning_line(project):
    jobs = [interrupt(project, "after-provision", f"w{i}", f"{i}.txt") for i in range(3)]
    r = logist(project, "job", "list")
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "3 jobs were interrupted" in warnings[0]
    for j in jobs:
        assert j in warnings[0]


def test_dead_lock_on_a_resting_job(project):
    job = create(project, one_step())
    assert logist(project, "job", "path", job).returncode == 0  # a worktree (the first step would make it)
    assert logist(project, "job", "suspend", job, env=crash_env("after-publish")).returncode == 137
    # the worktree was left behind the branch: its index shows the old record as a change
    wt = worktree(project, job)
    assert git(wt, "status", "--porcelain") != ""
    r = logist(project, "job", "list")
    assert f"job {job} was left locked by a process that is gone" in r.stderr
    rec = logist(project, "recover")
    assert rec.returncode == 0
    assert "released the dead lock" in rec.stdout
    assert git(wt, "status", "--porcelain") == ""
    assert manifest(project, job)["state"] == "SUSPENDED"
    assert git(project, "for-each-ref", "refs/logist/locks/") == ""


def test_abandon_stops_a_running_orphan_agent(project, procs, tmp_path):
    gate = tmp_path / "gate"
    job = create(project, 'title = "orphan"\n'
                 + sh_step("wait", f'echo partial > partial.txt; while [ ! -f "{gate}" ]; do sleep 0.05; done'))
    runner = procs.start(project, "job", "run", job)
    info = wait_agent_running(project, job)
    procs.pids.append(info["pgid"])
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    wait_for(lambda: (worktree(project, job) / "partial.txt").exists(), what="partial work")
    rows = json.loads(logist(project, "recover", "--list", "--json").stdout)
    assert rows[0]["action"].startswith("re-attach to the running agent")
    r = logist(project, "recover", "--abandon", job, "--message", "not worth it")
    assert r.returncode == 0, r.stderr
    assert f"stopped the agent (pid {info['pid']})" in r.stdout
    assert "EXECUTING -> INTERVENTION_REQUIRED" in r.stdout
    from logist.store.locks import pid_alive

    assert not pid_alive(info["pid"])
    m = manifest(project, job)
    assert m["state"] == "INTERVENTION_REQUIRED" and m["reason"] == "not worth it"
    h = assert_consistent(project, job, state="INTERVENTION_REQUIRED", files_added_once=("partial.txt",))
    assert [e["to"] for e in h][-2:] == ["RECOVERING", "INTERVENTION_REQUIRED"]
    # brought back: resubmit and run (the agent is told to continue; the gate is open now)
    gate.write_text("go")
    assert logist(project, "job", "resubmit", job).returncode == 0
    assert logist(project, "job", "run", job).returncode == 0
    assert_consistent(project, job)


@pytest.mark.parametrize("point,state", [("after-provisioning-commit", "PROVISIONING"),
                                         ("after-harvesting-commit", "HARVESTING"),
                                         ("after-executing-commit", "EXECUTING")])
def test_abandon_from_each_transient_state(project, point, state):
    job = interrupt(project, point)
    assert manifest(project, job)["state"] == state
    r = logist(project, "recover", "--abandon", job, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["jobs"][0]
    assert data["before"] == state and data["after"] == "INTERVENTION_REQUIRED"
    before = len(history(project, job))
    # killed before its first step made the worktree: there is none to check (job path makes it)
    provisioned = point != "after-provisioning-commit"
    assert_consistent(project, job, state="INTERVENTION_REQUIRED", check_worktree=provisioned)
    assert provisioned == (f"logist/{job}\n" in git(project, "worktree", "list", "--porcelain") + "\n")
    assert logist(project, "recover", "--abandon", job).returncode == 2  # nothing left to abandon
    assert logist(project, "job", "resubmit", job).returncode == 0
    assert logist(project, "job", "run", job).returncode == 0
    h = assert_consistent(project, job, files_added_once=("r.txt",))
    assert len(h) > before


KEEP_FINISHED = "[worktrees]\nkeep_finished = true\n"  # finished jobs keep their worktrees until cleanup


def test_cleanup_archives_then_removes_finished_worktrees(project):
    (project / ".logist" / "config.local.toml").write_text(KEEP_FINISHED)
    done = create(project, one_step("done", "d.txt"))
    assert logist(project, "job", "run", done).returncode == 0
    dirty = create(project, one_step("dirty", "x.txt"))
    assert logist(project, "job", "run", dirty).returncode == 0
    (worktree(project, dirty) / "scratch.txt").write_text("uncommitted\n")
    pending = create(project, one_step("pending", "p.txt"))
    assert logist(project, "job", "path", pending).returncode == 0  # a worktree cleanup must not touch

    r = logist(project, "recover", "--cleanup", "--keep-days", "1")
    assert r.returncode == 0 and "nothing to clean up" in r.stdout  # all too recent
    dry = logist(project, "recover", "--cleanup", "--keep-days", "0", "--dry-run")
    assert "would archive and remove the worktree" in dry.stdout
    assert worktree(project, done).exists()
    assert git(project, "for-each-ref", "refs/logist/archive/") == ""

    r = logist(project, "recover", "--cleanup", "--keep-days", "0", "--json")
    assert r.returncode == 0, r.stderr
    res = {c["id"]: c for c in json.loads(r.stdout)}
    assert set(res) == {done, dirty}
    assert res[done]["worktree_removed"] and not res[dirty]["worktree_removed"]
    assert "uncommitted" in res[dirty]["reason"]
    for j in (done, dirty):
        assert git(project, "rev-parse", f"refs/logist/archive/{j}") == git(project, "rev-parse", f"logist/{j}")
    assert not worktree(project, done).exists()
    assert worktree(project, dirty).exists() and worktree(project, pending).exists()
    assert manifest(project, done)["state"] == "SUCCESS"  # branch and history kept
    assert len(history(project, done)) == 5
    assert logist(project, "job", "status", done).returncode == 0
    assert str(worktree(project, done)) not in git(project, "worktree", "list")


def test_cleanup_never_overwrites_an_archive_that_keeps_other_commits(project):
    """recover --cleanup keeps the rule of gc (logist.store.archive): an archive ref that keeps
    a commit the job's tip does not contain is left as it is, and so is the worktree."""
    (project / ".logist" / "config.local.toml").write_text(KEEP_FINISHED)
    job = create(project, one_step("done", "d.txt"))
    assert logist(project, "job", "run", job).returncode == 0
    elsewhere = git(project, "commit-tree", "-m", "kept elsewhere",
                    git(project, "rev-parse", "HEAD^{tree}"))
    git(project, "update-ref", f"refs/logist/archive/{job}", elsewhere)
    r = logist(project, "recover", "--cleanup", "--keep-days", "0", "--json")
    assert r.returncode == 0, r.stderr
    (res,) = [c for c in json.loads(r.stdout) if c["id"] == job]
    assert not res["worktree_removed"] and "not overwriting" in res["reason"]
    assert git(project, "rev-parse", f"refs/logist/archive/{job}") == elsewhere
    assert worktree(project, job).exists()


def test_recover_finishes_a_harvest_with_warnings_kept(project):
    job = create(project, 'title = "w"\n' + sh_step("edit", 'rm -rf .logist; echo w > w.txt'))
    assert logist(project, "job", "run", job, env=crash_env("after-harvesting-commit")).returncode == 137
    assert logist(project, "recover").returncode == 0
    h = assert_consistent(project, job, files_added_once=("w.txt",))
    final = h[-1]
    assert any("job record" in w for w in final["data"]["warnings"])
    body = git(project, "log", "-1", "--format=%B", f"logist/{job}")
    assert "Warning: the agent changed the job record" in body


def test_recovery_unit_own_tip_and_agent_status(project):
    from logist.engine import agent_proc, settle
    from logist.store.jobstore import JobStore

    job = interrupt(project, "after-executing-commit")
    store = JobStore.discover(project)
    own, m = settle.own_tip(store, job)
    assert own == store.tip(job) and m.state.value == "EXECUTING"
    assert agent_proc.agent_status(store, m).kind == "not-started"
    base = agent_proc.exec_base(store, job, m.execution.transition_id)
    (base.parent / (base.name + ".pid")).write_text(str(os.getpid() + 10 ** 6))
    assert agent_proc.agent_status(store, m).kind == "dead"
    (base.parent / (base.name + ".exit")).write_text("143\n")
    st = agent_proc.agent_status(store, m)
    assert st.kind == "exited" and st.exit_code == -15
    assert agent_proc.read_exit(base) == -15
