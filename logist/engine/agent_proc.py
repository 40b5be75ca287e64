"""Agent processes: how an agent's execution is recorded, found again and stopped.

Each agent runs under a tiny ``/bin/sh`` wrapper that writes its own pid to
``<run dir>/exec-<transition id>.pid`` before it starts the agent and the agent's exit status to
``exec-<transition id>.exit`` when it ends. Both outlive the runner, so a runner killed at any
point can tell "still running", "finished with code N", "killed" and "never started" apart, and
the agent's work is harvested once instead of being redone. ``agent.json`` (the job's run dir)
names the running agent: its pid, process group, start time and the commit it started from.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logist.core.jobid import JobId
from logist.core.model import Manifest
from logist.store.jobstore import JobStore

# ---- agent execution records -----------------------------------------------------------

# The wrapper every agent runs under (argv: $1 = record base path, then the agent's argv).
# It records its pid, runs the agent as a foreground child (a trapped INT/TERM/HUP reaches the
# whole process group, the agent included, and the wrapper waits for it), records the exit
# status, and then ends the way the agent did (the same signal, or the same exit code).
_WRAPPER = r'''b=$1
shift
echo $$ > "$b.pid.tmp" && mv -f "$b.pid.tmp" "$b.pid"
trap : INT TERM HUP
"$@"
rc=$?
echo $rc > "$b.exit.tmp" && mv -f "$b.exit.tmp" "$b.exit"
if [ "$rc" -gt 128 ] && [ "$rc" -lt 193 ]; then
    trap - INT TERM HUP
    kill -$((rc - 128)) $$
fi
exit $rc'''


def exec_base(store: JobStore, job_id: JobId, transition_id: str) -> Path:
    """Path prefix of one execution's records (``.pid``, ``.exit``) in the job's run dir."""
    safe = "".join(c for c in transition_id if c.isalnum())[:40] or "none"
    return store.run_dir(job_id) / f"exec-{safe}"


def wrap_argv(base: Path, argv: list[str]) -> list[str]:
    """``argv`` run under the recording wrapper (see the module docstring)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    return ["/bin/sh", "-c", _WRAPPER, "logist-agent", str(base), *argv]


def read_exit(base: Path) -> int | None:
    """The recorded exit status of an execution (negative: killed by that signal), or None."""
    try:
        raw = (base.parent / (base.name + ".exit")).read_text().strip()
        rc = int(raw)
    except (OSError, ValueError):
        return None
    return -(rc - 128) if 128 < rc < 193 else rc


def read_pid(base: Path) -> int | None:
    try:
        pid = int((base.parent / (base.name + ".pid")).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 1 else None


def _cmdline_has(pid: int, needle: str) -> bool | None:
    """True/False when /proc/<pid>/cmdline holds ``needle``; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None if not os.path.isdir("/proc/self") else False
    if not raw:  # a process that just started may not show its command line yet
        return None
    return needle.encode() in raw


def find_wrapper(base: Path) -> int | None:
    """The pid of a live wrapper of this execution, found by its command line (/proc)."""
    from logist.core.procs import pid_alive

    if not os.path.isdir("/proc/self"):
        return None
    needle = str(base).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if needle not in fh.read():
                    continue
        except OSError:
            continue
        if pid_alive(int(entry)):
            return int(entry)
    return None


def read_agent_file(store: JobStore, job_id: JobId) -> dict[str, Any] | None:
    try:
        data = json.loads((store.run_dir(job_id) / "agent.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class AgentStatus:
    """What became of the agent of the execution at the tip."""

    kind: str  # "running" | "exited" | "dead" | "not-started"
    pid: int | None = None
    pgid: int | None = None
    start_time: int | None = None
    exit_code: int | None = None

    def describe(self) -> str:
        return {"running": f"its agent still runs (pid {self.pid})",
                "exited": f"its agent finished (exit code {self.exit_code})",
                "dead": "its agent is gone",
                "not-started": "its agent never started"}[self.kind]


def agent_status(store: JobStore, m: Manifest) -> AgentStatus:
    """Running / exited / dead / never started, for the execution ``m.execution`` names."""
    from logist.core.procs import boot_id, pid_alive

    ex = m.execution
    if ex is None:
        return AgentStatus("dead")
    base = exec_base(store, m.id, ex.transition_id)
    code = read_exit(base)
    if code is not None:
        return AgentStatus("exited", exit_code=code)
    info = read_agent_file(store, m.id)
    if not info or info.get("transition_id") != ex.transition_id:
        info = None
    pid_file = read_pid(base)
    here = ex.host == socket.gethostname() and (not ex.boot_id or ex.boot_id == boot_id())
    if not here:  # another machine, or before a reboot: nothing of it runs here now
        return AgentStatus("dead" if (pid_file or info or ex.host != socket.gethostname())
                           else "not-started")
    if not (pid_file or info) and not started_in_this_clone(store, m):
        # Another clone of the repository on this host started it (a worker that died, a job
        # adopted from a remote): its agent, if any, belongs to that clone's worktree and its
        # records to that clone's git dir, so here it is gone, never "not started".
        return AgentStatus("dead")
    candidates: list[tuple[int, int | None, int | None]] = []
    if info and isinstance(info.get("pid"), int):
        candidates.append((info["pid"], info.get("start_time"), info.get("pgid")))
    if pid_file:
        candidates.append((pid_file, None, pid_file))
    for pid, start, pgid in candidates:
        if pid_alive(pid, start) and _cmdline_has(pid, str(base)) is not False:
            return AgentStatus("running", pid=pid, pgid=pgid or pid,
                               start_time=start if start is not None else _start_time(pid))
    wrapper = find_wrapper(base)
    if wrapper:
        return AgentStatus("running", pid=wrapper, pgid=wrapper, start_time=_start_time(wrapper))
    code = read_exit(base)  # it may have ended while we looked
    if code is not None:
        return AgentStatus("exited", exit_code=code)
    started = pid_file is not None or bool(info and info.get("pid"))
    return AgentStatus("dead" if started else "not-started")


def started_in_this_clone(store: JobStore, m: Manifest) -> bool:
    """Whether the execution ``m.execution`` names was started from this clone.

    Executions record their log path, which lies under the starting clone's common git dir
    (``<common dir>/logist/run/<id>/...``, the same place as the agent file and the wrapper's
    records). Another clone of the repository, even on the same host and boot, has another
    common dir. An execution without a log path (older records) counts as this clone's.
    """
    ex = m.execution
    if ex is None or not ex.log:
        return True
    mine = store.run_dir(m.id)
    theirs = Path(ex.log).parent
    if theirs == mine:
        return True
    try:
        return theirs.resolve() == mine.resolve()
    except OSError:
        return False


def _start_time(pid: int) -> int | None:
    from logist.core.procs import process_start_time

    return process_start_time(pid)


def stop_agent(status: AgentStatus, *, grace: float = 3.0) -> None:
    """TERM, then KILL after ``grace`` seconds, the process group of a running agent."""
    from logist.core.procs import pid_alive

    if status.kind != "running" or not status.pgid or status.pgid <= 1 or status.pgid == os.getpgrp():
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(status.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not pid_alive(status.pid or status.pgid, status.start_time):
                return
            time.sleep(0.05)
