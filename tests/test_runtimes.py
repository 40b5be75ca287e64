"""The host runtime with real processes: logs, stdin, env, waiting, process-group signals,
re-attaching by pid and start time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for

from logist.core.errors import AgentError
from logist.runtimes import HostRuntime, attach, get_runtime, group_alive, pid_alive, process_start_time, runtime_names
from logist.runtimes.base import signal_group


@pytest.fixture
def spawn(tmp_path):
    """Spawn python code through HostRuntime; every group started is killed afterwards."""
    handles = []

    def start(code: str, *, stdin: str | None = None, env: dict | None = None,
              log: Path | None = None, cwd: Path | None = None):
        handle = HostRuntime().spawn([sys.executable, "-c", code], cwd=cwd or tmp_path,
                                     env=env or {}, log_path=log or tmp_path / "out.log",
                                     stdin=stdin)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.kill()
        handle.wait(5)


# A child that starts a grandchild in its own process group, records the grandchild's pid,
# then waits. SIGINT ends it quietly with 130.
FAMILY = """
import signal, subprocess, sys, time, os
signal.signal(signal.SIGINT, lambda *a: os._exit(130))
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"])
open("grandchild.pid", "w").write(str(child.pid))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def family(spawn, tmp_path):
    handle = spawn(FAMILY)
    pidfile = tmp_path / "grandchild.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="grandchild pid")
    grandchild = int(pidfile.read_text())
    wait_for(lambda: "ready" in (tmp_path / "out.log").read_text(), what="ready")
    return handle, grandchild


def test_spawn_runs_in_cwd_and_reports_exit_code(spawn, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    handle = spawn("import os; print(os.getcwd())", cwd=work)
    assert handle.wait(10) == 0 and handle.exit_code == 0 and not handle.is_alive()
    assert (tmp_path / "out.log").read_text().strip() == str(work)
    assert handle.pgid == handle.pid and os.getpgid(os.getpid()) != handle.pgid


@pytest.mark.parametrize("code,expected", [("raise SystemExit(5)", 5),
                                           ("import os; os.kill(os.getpid(), 9)", -9)])
def test_exit_codes(spawn, code, expected):
    assert spawn(code).wait(10) == expected


def test_stdout_and_stderr_are_appended_to_the_log(spawn, tmp_path):
    log = tmp_path / "logs" / "deep" / "step.log"
    log.parent.mkdir(parents=True)
    log.write_text("earlier\n")
    handle = spawn("import sys; print('out'); print('err', file=sys.stderr); print('out2')",
                   log=log)
    assert handle.wait(10) == 0
    assert log.read_text() == "earlier\nout\nerr\nout2\n"


def test_log_streams_while_the_process_runs(spawn, tmp_path):
    gate = tmp_path / "gate"
    code = (f"import os, time\nprint('first line')\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\nprint('second line')")
    handle = spawn(code)
    wait_for(lambda: "first line" in (tmp_path / "out.log").read_text(), what="first line")
    assert handle.is_alive() and "second" not in (tmp_path / "out.log").read_text()
    gate.touch()
    assert handle.wait(10) == 0
    assert (tmp_path / "out.log").read_text() == "first line\nsecond line\n"


def test_wait_times_out_with_none(spawn):
    handle = spawn("import time; time.sleep(30)")
    started = time.monotonic()
    assert handle.wait(0.2) is None
    assert time.monotonic() - started < 5
    assert handle.is_alive() and handle.exit_code is None


def test_stdin_text_is_delivered_then_closed(spawn, tmp_path):
    text = "line one\nprompt ü\n" + "z" * 200_000  # bigger than a pipe buffer
    handle = spawn("import sys; data = sys.stdin.read(); print(len(data), data[:9])",
                   stdin=text)
    assert handle.wait(10) == 0
    assert (tmp_path / "out.log").read_text() == f"{len(text)} line one\n\n"


def test_no_stdin_is_dev_null(spawn, tmp_path):
    handle = spawn("import sys; print(repr(sys.stdin.read()))")
    assert handle.wait(10) == 0
    assert (tmp_path / "out.log").read_text() == "''\n"


def test_stdin_the_child_never_reads_does_not_block(spawn):
    handle = spawn("print('bye')", stdin="x" * 1_000_000)
    assert handle.wait(10) == 0


def test_environment(spawn, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_DIR", "/somewhere/else/.git")
    monkeypatch.setenv("GIT_INDEX_FILE", "/somewhere/index")
    monkeypatch.setenv("KEEP_ME", "kept")
    code = ("import os; print(os.environ.get('GIT_DIR'), os.environ.get('GIT_INDEX_FILE'), "
            "os.environ['KEEP_ME'], os.environ['ADDED'], os.environ['PYTHONUNBUFFERED'])")
    handle = spawn(code, env={"ADDED": "yes"})
    assert handle.wait(10) == 0
    assert (tmp_path / "out.log").read_text() == "None None kept yes 1\n"


@pytest.mark.parametrize("method,code", [("interrupt", 130), ("terminate", -15), ("kill", -9)])
def test_signals_reach_the_whole_process_group(spawn, tmp_path, method, code):
    handle, grandchild = family(spawn, tmp_path)
    assert pid_alive(grandchild) and os.getpgid(grandchild) == handle.pgid
    assert group_alive(handle.pgid) and handle.group_alive()
    getattr(handle, method)()
    assert handle.wait(10) == code
    wait_for(lambda: not pid_alive(grandchild), what="grandchild gone")
    wait_for(lambda: not group_alive(handle.pgid), what="group gone")
    getattr(handle, method)()  # signalling a finished group is a no-op, not an error


def test_leftover_children_are_still_reached_after_the_leader_exits(spawn, tmp_path):
    code = ("import subprocess, sys\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "open('orphan.pid', 'w').write(str(c.pid))")
    handle = spawn(code)
    assert handle.wait(10) == 0
    orphan = int((tmp_path / "orphan.pid").read_text())
    assert pid_alive(orphan) and handle.group_alive()
    handle.kill()
    wait_for(lambda: not pid_alive(orphan), what="orphan gone")
    assert not handle.group_alive()


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_processes_an_agent_leaves_behind_are_stopped_after_it_exits(tmp_path):
    """A real shell agent that backgrounds a sleeper and exits: the sleeper is found in its
    group and stopped with SIGTERM; a second call finds nothing."""
    handle = HostRuntime().spawn(["/bin/sh", "-c", "sleep 1000 & echo $! > sleeper.pid; echo bye"],
                                 cwd=tmp_path, env={}, log_path=tmp_path / "out.log")
    sleeper = None
    try:
        assert handle.wait(10) == 0
        sleeper = int((tmp_path / "sleeper.pid").read_text())
        assert pid_alive(sleeper) and group_alive(handle.pgid)
        left = handle.stop_leftovers()
        assert left == (1, 0) and left.stopped == 1 and left.killed == 0
        wait_for(lambda: not pid_alive(sleeper), what="the sleeper to be gone")
        assert not group_alive(handle.pgid)
        assert handle.stop_leftovers() == (0, 0)
    finally:
        if sleeper:
            _kill_pid(sleeper)


def test_a_leftover_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    code = ("import subprocess, sys\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); open(\"ready\", \"w\").close(); "
            "time.sleep(1000)'])\n"
            "open('stubborn.pid', 'w').write(str(c.pid))\n")
    handle = HostRuntime().spawn([sys.executable, "-c", code], cwd=tmp_path, env={},
                                 log_path=tmp_path / "out.log")
    stubborn = None
    try:
        assert handle.wait(10) == 0
        stubborn = int((tmp_path / "stubborn.pid").read_text())
        wait_for(lambda: (tmp_path / "ready").exists(), what="SIGTERM to be ignored")
        started = time.monotonic()
        assert handle.stop_leftovers(grace=0.3) == (1, 1)
        assert 0.3 <= time.monotonic() - started < 5
        wait_for(lambda: not pid_alive(stubborn), what="the stubborn child to be gone")
    finally:
        if stubborn:
            _kill_pid(stubborn)


def test_stop_leftovers_leaves_a_running_agent_and_an_empty_group_alone(spawn, tmp_path):
    handle = spawn("import time; time.sleep(30)")
    assert handle.stop_leftovers() == (0, 0) and handle.is_alive()  # it still runs: not touched
    handle.kill()
    handle.wait(10)
    started = time.monotonic()
    assert handle.stop_leftovers() == (0, 0)
    assert time.monotonic() - started < 0.5
    # an attached handle whose group is unknown never signals a group
    assert attach(handle.pid, start_time=handle.start_time).stop_leftovers() == (0, 0)


def test_wait_wakes_when_the_agent_exits(spawn):
    handle = spawn("import time; time.sleep(0.3)")
    started = time.monotonic()
    assert handle.wait(0.05) is None  # still running
    assert handle.wait(10) == 0
    assert time.monotonic() - started < 5


def test_attach_by_pid_and_start_time(spawn, tmp_path):
    handle, grandchild = family(spawn, tmp_path)
    attached = attach(handle.pid, start_time=handle.start_time)
    assert attached.is_alive() and attached.pgid == handle.pgid and attached.exit_code is None
    started = time.monotonic()
    assert attached.wait(0.2) is None and attached.is_alive()
    assert time.monotonic() - started < 5
    assert not attach(handle.pid, start_time=handle.start_time + 1).is_alive()  # a reused pid
    attached.terminate()
    attached.wait(10)
    assert not attached.is_alive() and attached.exit_code is None
    assert handle.wait(10) == -15
    wait_for(lambda: not pid_alive(grandchild), what="grandchild gone")


def test_attach_to_a_process_we_did_not_spawn_and_to_a_dead_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    try:
        attached = attach(proc.pid)
        assert attached.is_alive() and attached.start_time == process_start_time(proc.pid)
        attached.kill()
        assert proc.wait(10) == -9
        assert not attached.is_alive()
        assert attached.wait(1) is None
    finally:
        proc.kill()
        proc.wait()
    dead = attach(proc.pid, start_time=attached.start_time)
    assert not dead.is_alive() and not dead.group_alive()
    dead.interrupt()
    dead.terminate()
    dead.kill()  # nothing left to signal: no error


def test_proc_helpers():
    me = process_start_time(os.getpid())
    assert isinstance(me, int) and me > 0
    assert process_start_time(2**22 + 12345) is None
    assert pid_alive(os.getpid()) and pid_alive(os.getpid(), me)
    assert not pid_alive(os.getpid(), me + 1) and not pid_alive(0) and not pid_alive(-1)
    assert group_alive(os.getpgrp()) and not group_alive(0)
    with pytest.raises(ValueError):
        signal_group(os.getpgrp(), signal.SIGTERM)


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: not pid_alive(proc.pid), what="zombie")  # exited, not yet reaped
        assert os.path.exists(f"/proc/{proc.pid}")
    finally:
        proc.wait()


def test_spawn_errors_are_agent_errors(tmp_path):
    runtime = HostRuntime()
    with pytest.raises(AgentError, match="cannot start 'no-such-binary-xyz'"):
        runtime.spawn(["no-such-binary-xyz"], cwd=tmp_path, env={}, log_path=tmp_path / "l")
    with pytest.raises(AgentError, match="cannot start"):
        runtime.spawn([sys.executable, "-c", "pass"], cwd=tmp_path / "missing", env={},
                      log_path=tmp_path / "l")
    with pytest.raises(AgentError, match="non-empty list"):
        runtime.spawn([], cwd=tmp_path, env={}, log_path=tmp_path / "l")


def test_registry():
    assert runtime_names() == ["host"]
    assert isinstance(get_runtime("host"), HostRuntime) and get_runtime().name == "host"
    with pytest.raises(AgentError, match="unknown runtime 'docker'; known runtimes: host"):
        get_runtime("docker")
