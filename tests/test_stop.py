"""Stopping a running job (docs/stopping.md): `job stop`, `job cancel`/`suspend` of a running
job, and Ctrl-C in a foreground `job run`. Real runner processes, real agents (the mock agent),
signals sent by pid, results read with git; the commands around them run in process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _core import (
    kill_group,
    pid_gone,
    record_at,
    refs_snapshot,
    subject,
    tip,
)
from conftest import git, run_cli, run_logist, wait_for

HANG = ('title = "Hang"\nagent = "mock"\n{head}\n[[steps]]\nprompt = "hang"\n[steps.mock]\n'
        'scenario = "{scenario}"\n{mock}\n')


def _create(repo: Path, *, head: str = "", mock: str = "", scenario: str = "hang") -> str:
    path = repo.parent / "hang.toml"
    path.write_text(HANG.format(head=head, mock=mock, scenario=scenario))
    r = run_cli("job", "create", "--activate", "--json", "--file", path, cwd=repo)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["id"]


_AGENTS: list[int] = []  # agent process groups a test saw start: killed after it, pass or fail


@pytest.fixture(autouse=True)
def _no_agent_left():
    yield
    while _AGENTS:
        kill_group(_AGENTS.pop())


def _agent_pid(repo: Path, job_id: str) -> int:
    path = repo / ".git" / "logist" / "run" / job_id / "agent.json"

    def pid():
        try:
            return json.loads(path.read_text()).get("pid")
        except (OSError, ValueError):
            return None

    found = wait_for(pid, 30, "the agent to start")
    _AGENTS.append(found)
    return found


def _ignores_sigint(pgid: int) -> bool:
    """Some process of the group ignores SIGINT (the mock agent, once it has set that up)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("SigIgn:") and int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)):
                    return True
        except (OSError, ValueError):
            continue
    return False


def _state(repo: Path, job_id: str) -> str:
    return record_at(repo, f"refs/heads/logist/{job_id}", job_id)["state"]


def _foreground_run(repo: Path, job_id: str) -> tuple[subprocess.Popen, Path]:
    out = repo.parent / "run.out"
    fh = open(out, "w")
    proc = subprocess.Popen([sys.executable, "-m", "logist", "job", "run", job_id], cwd=repo,
                            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    fh.close()
    return proc, out


def test_job_stop_suspends_a_job_run_by_a_background_runner(project):
    repo = project
    job_id = _create(repo)
    r = run_logist("job", "run", "--detach", job_id, cwd=repo)
    assert r.returncode == 0, r.stderr
    runner = int(re.search(r"pid (\d+)", r.stdout).group(1))
    try:
        agent = _agent_pid(repo, job_id)
        wait_for(lambda: _state(repo, job_id) == "EXECUTING", 30, "EXECUTING")
        started = time.monotonic()
        r = run_cli("job", "stop", job_id, "--message", "wrong approach", cwd=repo)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - started < 15
        assert f"{job_id}: SUSPENDED" in r.stdout and "job resume" in r.stdout
        assert pid_gone(agent)
        # the runner committed it under its lease, then let the job go
        assert subject(repo, f"logist/{job_id}") == f"logist({job_id}): EXECUTING -> SUSPENDED (step 1/1)"
        assert "Logist-Lease" in git(repo, "log", "-1", "--format=%B", f"logist/{job_id}")
        assert "wrong approach" in git(repo, "log", "-1", "--format=%B", f"logist/{job_id}")
        wait_for(lambda: pid_gone(runner), 20, "the runner to exit")
        assert git(repo, "for-each-ref", f"refs/logist/locks/{job_id}", f"refs/logist/stop/{job_id}") == ""
        git(repo, "fsck", "--no-progress")
    finally:
        kill_group(runner)


def test_cancel_of_a_running_job_stops_it_instead_of_refusing(project):
    repo = project
    job_id = _create(repo)
    proc, out = _foreground_run(repo, job_id)
    try:
        agent = _agent_pid(repo, job_id)
        r = run_cli("job", "cancel", job_id, "--message", "not needed", cwd=repo)
        assert r.returncode == 0, r.stderr
        assert _state(repo, job_id) == "CANCELED"
        assert pid_gone(agent)
        assert proc.wait(timeout=30) == 6  # the job it ran was canceled (docs/exit-codes.md)
        assert "EXECUTING -> CANCELED" in subject(repo, f"logist/{job_id}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_once_stops_the_agent_and_leaves_the_job_suspended(project):
    repo = project
    job_id = _create(repo)
    proc, out = _foreground_run(repo, job_id)
    try:
        agent = _agent_pid(repo, job_id)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        text = out.read_text()
        assert "Traceback" not in text
        assert "Ctrl-C again within 2 s" in text
        assert f"logist job resume {job_id}" in text
        assert pid_gone(agent)
        assert _state(repo, job_id) == "SUSPENDED"
        assert git(repo, "for-each-ref", f"refs/logist/locks/{job_id}") == ""
        # resumable: resume makes it PENDING again
        r = run_cli("job", "resume", job_id, cwd=repo)
        assert r.returncode == 0 and _state(repo, job_id) == "PENDING"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_twice_leaves_at_once_and_the_agent_runs_on(project):
    repo = project
    # the agent ignores SIGINT, so the first press's ladder is still waiting at the second press
    # (and SIGTERM, so a slow machine has the ladder's two graces, 20 s, for the second press)
    graces = repo / ".logist" / "config.local.toml"
    graces.write_text("[sentinel]\ninterrupt_grace_seconds = 10\nterminate_grace_seconds = 10\n")
    job_id = _create(repo, mock='ignore_signals = ["INT", "TERM"]')
    proc, out = _foreground_run(repo, job_id)
    runner = None
    try:
        agent = _agent_pid(repo, job_id)
        wait_for(lambda: _ignores_sigint(agent), 20, "the agent to ignore SIGINT")
        os.kill(proc.pid, signal.SIGINT)
        wait_for(lambda: "Ctrl-C again within 2 s" in out.read_text(), 20, "the first press to be seen")
        # the background runner the second press starts reads the config afresh: its ladder
        # (the `job stop` below) need not wait 20 s for an agent that ignores both signals
        graces.write_text("[sentinel]\ninterrupt_grace_seconds = 0.2\nterminate_grace_seconds = 0.2\n")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        text = out.read_text()
        assert "Traceback" not in text
        assert f"logist job attach {job_id}" in text and f"logist job stop {job_id}" in text
        runner = int(re.search(r"background runner \(pid (\d+)", text).group(1))
        assert not pid_gone(agent)
        assert _state(repo, job_id) == "EXECUTING"
        # the background runner holds it now, and honours a stop
        r = run_cli("job", "stop", job_id, cwd=repo)
        assert r.returncode == 0, r.stderr
        assert _state(repo, job_id) == "SUSPENDED"
        wait_for(lambda: pid_gone(agent), 10, "the agent to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if runner:
            kill_group(runner)


def test_stop_of_a_job_that_is_not_running_is_refused_and_changes_nothing(project):
    repo = project
    job_id = _create(repo)
    before = refs_snapshot(repo)
    r = run_cli("job", "stop", job_id, cwd=repo)
    assert r.returncode == 1
    assert "not running" in r.stderr and f"logist job suspend {job_id}" in r.stderr
    assert refs_snapshot(repo) == before


def test_stop_request_for_a_holder_on_another_machine_is_a_ref_it_honours_later(project):
    repo = project
    job_id = _create(repo)
    holder = {"pid": 4242, "host": "elsewhere.invalid", "boot_id": "", "start_time": None,
              "command": "logist worker", "acquired_at": time.time(), "heartbeat_at": time.time(),
              "lease_seconds": 600.0}
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], check=True,
                          input=json.dumps(holder).encode(), capture_output=True).stdout.decode().strip()
    git(repo, "update-ref", f"refs/logist/locks/{job_id}", blob)
    before = tip(repo, job_id)
    r = run_cli("job", "stop", job_id, "--cancel", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "another machine" in r.stdout and "elsewhere.invalid" in r.stdout
    req = json.loads(git(repo, "cat-file", "blob", f"refs/logist/stop/{job_id}"))
    assert req["event"] == "cancel" and req["host"] == socket.gethostname()
    assert tip(repo, job_id) == before  # only the holder writes the record
    # the holder's lease ends; whoever runs the job next honours the request before any step
    git(repo, "update-ref", "-d", f"refs/logist/locks/{job_id}")
    r = run_cli("job", "run", job_id, cwd=repo)
    assert r.returncode == 6, r.stderr  # canceled instead of run (docs/exit-codes.md)
    assert _state(repo, job_id) == "CANCELED"
    assert "PENDING -> CANCELED" in subject(repo, f"logist/{job_id}")
    assert git(repo, "for-each-ref", f"refs/logist/stop/{job_id}") == ""


def test_a_malformed_stop_request_is_ignored(project):
    repo = project
    job_id = _create(repo, scenario="success")
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], check=True,
                          input=b"{not json", capture_output=True).stdout.decode().strip()
    git(repo, "update-ref", f"refs/logist/stop/{job_id}", blob)
    r = run_cli("job", "run", job_id, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert _state(repo, job_id) == "SUCCESS"


def test_job_stop_remote_reaches_a_worker_on_another_clone(net):
    """Clone b asks; the worker in clone a (its lock is on the shared remote) honours the request
    at its next heartbeat, pushes SUSPENDED and deletes the request there."""
    from test_sharing import lg, remote_manifest, remote_refs
    from test_worker import kill_tree, start_worker

    toml = net.tmp / "hang.toml"
    toml.write_text(HANG.format(head="", mock="", scenario="hang"))
    job_id = lg(net.a, "job", "create", "--file", toml, "--activate").out.strip()
    lg(net.a, "push")
    b = net.clone("b")
    worker = start_worker(net.a, "--until-idle", env={"LOGIST_LEASE_SECONDS": "3"})
    try:
        wait_for(lambda: (remote_manifest(net.remote, job_id) or {}).get("state") == "EXECUTING", 60,
                 "the worker to run the job")
        _agent_pid(net.a, job_id)
        lg(b, "fetch")
        r = lg(b, "job", "stop", job_id, "--remote", "origin", "--message", "not now", "--timeout", "60")
        assert f"{job_id}: SUSPENDED on origin" in r.out
        assert remote_manifest(net.remote, job_id)["state"] == "SUSPENDED"
        assert "not now" in git(net.remote, "log", "-1", "--format=%B", f"logist/{job_id}")
        assert worker.wait(timeout=60) == 0
        assert f"refs/logist/stop/{job_id}" not in remote_refs(net.remote)
        assert f"refs/logist/locks/{job_id}" not in remote_refs(net.remote)
    finally:
        kill_tree(worker)
    r = lg(b, "job", "stop", "no-such-job", "--remote", "origin", code=1)
    assert "logist fetch origin" in r.err
