"""Crash at every named point, then `logist recover` and `logist job run`: nothing is lost.

Each crash is a real ``os._exit`` (``LOGIST_CRASH_AT``, through logist/core/faults.py) or a real
SIGKILL of a process group. The
job has a mock step that writes a file and a command step that appends to a counter outside
the worktree, so "each step's work is done and committed once" is checked on both.
"""

from __future__ import annotations

import os
import signal

import pytest
from _crashkit import (
    Lines,
    agent_info,
    assert_consistent,
    create,
    history,
    lock_holder_pid,
    logist,
    manifest,
    mock_step,
    no_traceback,
    sh_step,
    status,
    wait_agent_running,
    worktree,
)
from conftest import ROOT, git, wait_for

from logist.core.faults import POINTS, crash_env


def test_every_crash_point_is_reached_documented_and_exercised():
    """faults.POINTS is the list: each point is a crash_point() call in logist/, is named in
    docs/recovery.md, and is used by at least one test; the code names no other point."""
    import ast

    called = set()
    for path in (ROOT / "logist").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "crash_point":
                (arg,) = node.args
                assert isinstance(arg, ast.Constant), f"{path}: crash_point takes a literal name"
                called.add(arg.value)
    assert called == POINTS
    docs = (ROOT / "docs" / "recovery.md").read_text()
    assert not [p for p in POINTS if f"`{p}`" not in docs]
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert not [p for p in sorted(POINTS) if f'"{p}' not in tests], "crash points no test uses"
    with pytest.raises(ValueError):
        crash_env("no-such-point")


def two_steps(counter) -> str:
    return ('title = "crash test"\n' + mock_step("write", {"a.txt": "A\n"})
            + sh_step("count", f'echo x >> "{counter}"; echo B > b.txt'))


def counter_lines(counter) -> int:
    try:
        return len(counter.read_text().splitlines())
    except FileNotFoundError:
        return 0


# Step points, reached once per step: "#2" crashes in the second (command) step.
STEP_POINTS = ["after-provisioning-commit", "after-provision", "after-executing-commit", "agent-spawned",
               "agent-running", "after-agent-exit", "after-harvesting-commit", "after-worktree-add",
               "before-harvest-commit", "after-harvest-commit"]
# Generic publish points: the N-th transition commit of the run (1..8 for two steps).
PUBLISH_POINTS = ["before-publish#1", "after-publish#3", "before-publish#4", "after-publish#8"]


@pytest.mark.parametrize("point", [p + "#2" for p in STEP_POINTS] + ["agent-running#1"] + PUBLISH_POINTS)
def test_step_crash_point_recovers(project, tmp_path, point):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    r = logist(project, "job", "run", job, env=crash_env(point))
    assert r.returncode == 137, (point, r.returncode, r.stderr)

    st = logist(project, "job", "status", job)
    assert st.returncode == 0, st.stderr
    no_traceback(st.stdout, st.stderr)
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    no_traceback(rec.stdout, rec.stderr)
    run = logist(project, "job", "run", job)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1, f"{point}: the command step ran {counter_lines(counter)} times"
    assert logist(project, "recover", "--check").stdout.strip() == "no interrupted jobs"


def test_crash_points_are_listed_by_recover(project, tmp_path):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    assert logist(project, "job", "run", job, env=crash_env("after-harvesting-commit", 2)
                  ).returncode == 137
    lst = logist(project, "recover", "--list", "--json")
    assert lst.returncode == 0
    import json

    (entry,) = json.loads(lst.stdout)
    assert entry["id"] == job and entry["state"] == "HARVESTING" and entry["step"] == 2
    assert "harvest step 2 again" in entry["action"]
    assert entry["holder"]["stale"] and "is gone" in entry["holder"]["stale_reason"]
    # `job run` alone recovers too (it takes over the dead lease and resumes from the tip)
    run = logist(project, "job", "run", job)
    assert run.returncode == 0, run.stderr
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1


@pytest.mark.parametrize("point", ["create-before-ref", "create-after-ref"])
def test_create_crash_points(project, tmp_path, point):
    counter = tmp_path / "counter"
    toml = two_steps(counter)
    path = tmp_path / "job.toml"
    path.write_text(toml)
    r = logist(project, "job", "create", "--file", path, "--activate", "--id", "crashy-1",
               env=crash_env(point))
    assert r.returncode == 137
    exists = logist(project, "job", "status", "crashy-1").returncode == 0
    assert exists == (point == "create-after-ref")
    assert logist(project, "recover").returncode == 0
    if not exists:  # nothing was created: creating it again works
        assert logist(project, "job", "create", "--file", path, "--activate", "--id", "crashy-1").returncode == 0
    run = logist(project, "job", "run", "crashy-1")
    assert run.returncode == 0, run.stderr
    assert_consistent(project, "crashy-1", files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1


@pytest.mark.parametrize("point", ["human-after-lock", "before-publish", "after-publish", "human-after-commit"])
def test_human_transition_crash_points(project, tmp_path, point):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    r = logist(project, "job", "suspend", job, env=crash_env(point))
    assert r.returncode == 137
    lst = logist(project, "recover", "--list", "--json")
    import json

    (entry,) = json.loads(lst.stdout)
    assert entry["kind"] == "dead-lock" and entry["action"] == "release the dead lock"
    rec = logist(project, "recover", job)
    assert rec.returncode == 0, rec.stderr
    assert "released the dead lock" in rec.stdout
    committed = point in ("after-publish", "human-after-commit")
    assert manifest(project, job)["state"] == ("SUSPENDED" if committed else "PENDING")
    if committed:
        assert logist(project, "job", "resume", job).returncode == 0
    run = logist(project, "job", "run", job)
    assert run.returncode == 0, run.stderr
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))


def test_crash_inside_recover(project, tmp_path):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    assert logist(project, "job", "run", job, env=crash_env("after-agent-exit", 2)).returncode == 137
    assert logist(project, "recover", env=crash_env("recover-after-takeover")).returncode == 137
    assert logist(project, "recover", job, env=crash_env("after-publish")).returncode == 137
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    assert logist(project, "job", "run", job).returncode == 0
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1


def test_crash_during_rerun_recovers(project, tmp_path):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    assert logist(project, "job", "run", job).returncode == 0
    r = logist(project, "job", "rerun", job, env=crash_env("after-publish"))
    assert r.returncode == 137, r.stderr
    assert logist(project, "recover").returncode == 0
    run = logist(project, "job", "run", job)
    assert run.returncode == 0, run.stderr
    assert manifest(project, job)["state"] == "SUCCESS"
    assert manifest(project, job)["run"] == 2
    assert_consistent(project, job)
    assert counter_lines(counter) == 2  # once per run


# ---- real kills --------------------------------------------------------------------------

def gate_job(tmp_path, *, hang_on_attempt_1: bool = False) -> tuple[str, object, object]:
    counter = tmp_path / "counter"
    gate = tmp_path / "gate"
    wait = f'while [ ! -f "{gate}" ]; do sleep 0.05; done'
    if hang_on_attempt_1:
        script = f'echo x >> "{counter}"; if [ "$LOGIST_ATTEMPT" = 1 ]; then sleep 600; fi; echo B > b.txt'
    else:
        script = f'{wait}; echo x >> "{counter}"; echo B > b.txt'
    toml = 'title = "gated"\n' + mock_step("write", {"a.txt": "A\n"}) + sh_step("wait", script)
    return toml, counter, gate


def test_sigkill_runner_group_then_reattach(project, tmp_path, procs):
    """The runner's whole process group is killed mid-step; the agent (its own session) lives
    on; recovery re-attaches to it and harvests its work once."""
    toml, counter, gate = gate_job(tmp_path)
    job = create(project, toml)
    runner = procs.start(project, "job", "run", job)
    wait_for(lambda: "step2" in ((agent_info(project, job) or {}).get("log") or ""), what="step 2 to run")
    info = wait_agent_running(project, job)
    procs.pids.append(info["pid"])
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    st = status(project, job)
    assert st["state"] == "EXECUTING" and st["interrupted"]
    rec = procs.start(project, "recover", job)
    lines = Lines(rec)
    lines.wait_for("re-attaching")
    assert lock_holder_pid(project, job) == rec.pid
    gate.write_text("go")
    code, err = lines.finish()
    assert code == 0, err
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1


def test_sigkill_everything_then_reexecute(project, tmp_path, procs):
    """Runner and agent are both killed (a laptop dies): the step runs again, attempt 2."""
    toml, counter, _ = gate_job(tmp_path, hang_on_attempt_1=True)
    job = create(project, toml)
    runner = procs.start(project, "job", "run", job)
    wait_for(lambda: counter_lines(counter) == 1, what="attempt 1 to start")
    info = wait_agent_running(project, job)
    os.killpg(runner.pid, signal.SIGKILL)
    os.killpg(info["pgid"], signal.SIGKILL)
    runner.wait(timeout=10)
    lst = logist(project, "recover", "--list")
    assert "re-execute step 2 (attempt 2 of 3)" in lst.stdout, lst.stdout
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    assert manifest(project, job)["state"] == "SUCCESS"
    h = assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    moves = [(e.get("from"), e.get("to")) for e in h]
    assert ("EXECUTING", "RECOVERING") in moves and ("RECOVERING", "EXECUTING") in moves
    assert manifest(project, job)["steps"][1]["attempt"] == 2
    assert counter_lines(counter) == 2  # the killed attempt and the re-execution


def test_reboot_simulation(project, tmp_path, procs):
    """A holder and an agent recorded under another boot id: nothing of them is trusted, even
    a live pid; the step re-executes."""
    toml, counter, _ = gate_job(tmp_path, hang_on_attempt_1=True)
    job = create(project, toml)
    runner = procs.start(project, "job", "run", job, env={"LOGIST_BOOT_ID": "boot-before-reboot"})
    wait_for(lambda: counter_lines(counter) == 1, what="attempt 1 to start")
    info = wait_agent_running(project, job)
    # The reboot ends the runner; its agent's pid is kept alive here on purpose: after a real
    # reboot that pid could belong to any process, and must not be re-attached to.
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    procs.pids.append(info["pgid"])
    assert manifest(project, job)["execution"]["boot_id"] == "boot-before-reboot"
    lst = logist(project, "recover", "--list", "--json")
    import json

    (entry,) = json.loads(lst.stdout)
    assert entry["holder"]["stale_reason"] == "holder ran before the last reboot"
    assert "re-execute step 2" in entry["action"]
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    assert "re-attaching" not in rec.stderr
    # the old agent's process still works in the worktree: it is kept, and recover says so
    (kept,) = [line for line in rec.stderr.splitlines() if "worktree kept: process(es)" in line]
    assert str(info["pgid"]) in kept, rec.stderr
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"), check_worktree=False)
    assert git(worktree(project, job), "status", "--porcelain") == ""
    assert counter_lines(counter) == 2


def test_sigkill_during_a_mock_slow_step(project, tmp_path, procs):
    toml = ('title = "slow mock"\n' + mock_step("slowly", {"s.txt": "S\n"}, scenario="slow", delay_s=1.0))
    job = create(project, toml)
    runner = procs.start(project, "job", "run", job)
    info = wait_agent_running(project, job)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    procs.pids.append(info["pgid"])
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    assert_consistent(project, job, files_added_once=("s.txt",))
    assert [e["to"] for e in history(project, job)].count("EXECUTING") == 1  # harvested, not re-run


def test_agent_running_crash_with_watcher_on(project, tmp_path):
    counter = tmp_path / "counter"
    job = create(project, two_steps(counter))
    env = {"LOGIST_NO_WATCHER": "0", **crash_env("agent-running", 2)}
    assert logist(project, "job", "run", job, env=env).returncode == 137
    rec = logist(project, "recover", env={"LOGIST_NO_WATCHER": "0"})
    assert rec.returncode == 0, rec.stderr
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1


def test_paused_runner_is_fenced_off(project, tmp_path, procs):
    """SIGSTOP a runner mid-step; once its lease expired, `logist recover` takes over, re-attaches
    to the agent and finishes the step; SIGCONT the runner: its write is refused (exit 4, no
    traceback) and the record is the recoverer's."""
    toml, counter, gate = gate_job(tmp_path)
    job = create(project, toml)
    runner = procs.start(project, "job", "run", job, env={"LOGIST_LEASE_SECONDS": "1"})
    wait_for(lambda: "step2" in ((agent_info(project, job) or {}).get("log") or ""), what="step 2 to run")
    wait_agent_running(project, job)
    os.kill(runner.pid, signal.SIGSTOP)
    wait_for(lambda: status(project, job)["holder"]["stale"], what="the paused runner's lease to expire")
    rec = procs.start(project, "recover", job)
    lines = Lines(rec)
    lines.wait_for("re-attaching")
    gate.write_text("go")
    code, err = lines.finish()
    assert code == 0, err
    assert "took over the lease (lease expired" in rec.stdout.read()
    tip = manifest(project, job)
    assert tip["state"] == "SUCCESS"
    before = history(project, job)
    os.kill(runner.pid, signal.SIGCONT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 4, err
    assert "lost its lease" in err
    no_traceback(out, err)
    assert history(project, job) == before
    assert_consistent(project, job, files_added_once=("a.txt", "b.txt"))
    assert counter_lines(counter) == 1
