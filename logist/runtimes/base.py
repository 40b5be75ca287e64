"""The runtime interface: start an agent process and control it as a whole process group.

A runtime spawns argv (never through a shell) in a directory, with stdout and stderr appended to a
log file, in a process group of its own, and hands back a :class:`ProcessHandle`. Signals go to
the whole group, so an agent's children and grandchildren stop with it.

The ``/proc`` helpers here let logist recognise a process after its own restart: a pid alone can
be reused by the system, a pid plus its start time cannot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Protocol


class ProcessHandle(Protocol):
    """A running (or finished) agent process and its process group."""

    pid: int
    pgid: int

    @property
    def exit_code(self) -> int | None:
        """The exit code once known (negative: killed by that signal); None while running or
        when it cannot be known (a process we did not start)."""
        ...

    def is_alive(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end; its exit code, or None on timeout (or if unknowable)."""
        ...

    def interrupt(self) -> None:
        """SIGINT to the process group."""
        ...

    def terminate(self) -> None:
        """SIGTERM to the process group."""
        ...

    def kill(self) -> None:
        """SIGKILL to the process group."""
        ...

    def stop_leftovers(self, grace: float = ...) -> Leftovers:
        """Once the agent itself has exited: end what it left running in its process group
        (SIGTERM, up to ``grace`` seconds, then SIGKILL)."""
        ...


class Leftovers(NamedTuple):
    """What :meth:`ProcessHandle.stop_leftovers` found: processes the agent left running in
    its group after it exited, and how many of them ignored SIGTERM and were killed."""

    stopped: int = 0
    killed: int = 0


class Runtime(Protocol):
    """Starts agent processes somewhere (the host; later perhaps a container)."""

    name: str

    def spawn(self, argv: list[str], *, cwd: str | Path, env: dict[str, str],
              log_path: str | Path, stdin: str | None = None) -> ProcessHandle:
        """Start ``argv`` in ``cwd`` with ``env`` added to the environment, output appended to
        ``log_path``, ``stdin`` text (or nothing) on its standard input."""
        ...


# --------------------------------------------------------------------------- /proc helpers

def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    return data[data.rfind(")") + 2:].split()


# One implementation of "is this process still the one we started" for the whole package.
from logist.core.procs import pid_alive, process_start_time  # noqa: E402,F401  (re-exported)


def group_members(pgid: int) -> list[int]:
    """The pids of live (non-zombie) processes in process group ``pgid`` (via /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # fields: state, ppid, pgrp, ...
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """True while any live process is left in process group ``pgid``."""
    if pgid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is already gone."""
    if pgid <= 1 or pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True



def escaped_processes(env_marks: dict[str, str], *, pgid: int | None = None,
                      newer_than: int | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of live processes outside process group ``pgid`` whose environment
    holds every ``KEY=value`` of ``env_marks``: what an agent started with ``setsid`` (a
    daemon) that outlives its step. Linux /proc; [] elsewhere. Never this process.

    ``newer_than``: the agent's pid; only higher pids are looked at (pids grow until they wrap
    at pid_max: near it, every pid is), which keeps the scan to the few processes started
    since the agent (a few ms, not one read of every process's environment)."""
    if not os.path.isdir("/proc/self"):
        return []
    wanted = {f"{k}={v}".encode() for k, v in env_marks.items()}
    me = os.getpid()
    floor = 0
    if newer_than is not None:
        try:
            with open("/proc/sys/kernel/pid_max") as fh:
                pid_max = int(fh.read())
        except (OSError, ValueError):
            pid_max = 1 << 22
        floor = newer_than if newer_than < pid_max - pid_max // 16 else 0
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me or int(entry) <= floor:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = set(fh.read(1 << 20).split(b"\0"))
        except OSError:
            continue
        if not wanted <= env:
            continue
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):
            continue
        try:
            if pgid is not None and int(fields[2]) == pgid:
                continue  # still in the agent's group: stop_leftovers deals with those
        except (ValueError, IndexError):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = " ".join(a.decode(errors="replace") for a in fh.read(4096).split(b"\0") if a)
        except OSError:
            cmd = "?"
        out.append((pid, cmd[:120]))
    return sorted(out)
