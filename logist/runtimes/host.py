"""The host runtime: agent processes on this machine, each in a process group of its own.

:meth:`HostRuntime.spawn` runs argv with :class:`subprocess.Popen` (never ``shell=True``) and
``start_new_session=True``, so the agent leads a new session and process group and every signal
reaches its whole tree. stdout and stderr are appended, unbuffered, to the step log, which the
runtime opens itself; stdin is the given text (written by a helper thread, then closed) or
/dev/null. The child's environment is the current one without repository-selecting ``GIT_*``
variables (the agent works in its worktree, not in whatever repository started logist), plus
``PYTHONUNBUFFERED=1``, plus the given additions.

When the agent itself has exited, :meth:`HostProcess.stop_leftovers` ends what it left running
in its process group (a ``sleep 1000 &``, a server it started): SIGTERM, a short grace, SIGKILL.

:func:`attach` gives a handle on an agent started by an earlier logist process (after a crash):
its liveness is checked by pid *and* start time, and its exit code cannot be known.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from logist.core.errors import AgentError
from logist.core.procs import pidfd_open
from logist.git.gitcmd import no_git_env
from logist.runtimes.base import Leftovers, group_alive, group_members, pid_alive, process_start_time, signal_group

LEFTOVER_GRACE = 1.0  # seconds processes left behind by an agent get between SIGTERM and SIGKILL


def agent_env(additions: dict[str, str]) -> dict[str, str]:
    """The environment of an agent process (see the module docstring)."""
    env = no_git_env()
    env["PYTHONUNBUFFERED"] = "1"
    env.update(additions)
    return env


def _feed(pipe: IO[bytes], text: str) -> None:
    """Write ``text`` to the child's stdin and close it; a child that exits early is fine."""
    try:
        pipe.write(text.encode("utf-8"))
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


class _GroupSignals:
    """interrupt/terminate/kill of a handle's process group, safe once it is gone."""

    pid: int
    pgid: int

    def is_alive(self) -> bool:
        raise NotImplementedError

    def group_alive(self) -> bool:
        """True while any process of the group (the agent or a child it left) is alive."""
        return self.is_alive() or group_alive(self.pgid)

    def _signal(self, sig: int) -> bool:
        if not self.group_alive():
            return False
        return signal_group(self.pgid, sig)

    def interrupt(self) -> None:
        """SIGINT to the process group (a no-op once it is gone)."""
        self._signal(signal.SIGINT)

    def terminate(self) -> None:
        """SIGTERM to the process group (a no-op once it is gone)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the process group (a no-op once it is gone)."""
        self._signal(signal.SIGKILL)

    def _group_is_ours(self) -> bool:
        return True

    def stop_leftovers(self, grace: float = LEFTOVER_GRACE) -> Leftovers:
        """After the agent itself has exited, end what it left running in its process group
        (a background job, a server it started): SIGTERM to the group, up to ``grace`` seconds
        for them to end, then SIGKILL. Returns how many processes were left and how many of
        them needed SIGKILL; (0, 0) while the agent still runs or when nothing is left (the
        usual case costs one ``killpg(pgid, 0)``)."""
        if self.is_alive() or not self._group_is_ours():
            return Leftovers()
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return Leftovers()  # no process left in the group (or none of ours)
        left = set(group_members(self.pgid))  # without zombies waiting for their parent
        if not left or not signal_group(self.pgid, signal.SIGTERM):
            return Leftovers()
        still = self._await_empty(grace, left)
        if not still:
            return Leftovers(len(left))
        signal_group(self.pgid, signal.SIGKILL)
        self._await_empty(LEFTOVER_GRACE, left)
        return Leftovers(len(left), len(still))

    def _await_empty(self, timeout: float, seen: set[int]) -> list[int]:
        """Wait up to ``timeout`` seconds for the group to have no live process; what is left
        (each pid seen is added to ``seen``)."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            members = group_members(self.pgid)
            seen.update(members)
            if not members or time.monotonic() >= deadline:
                return members
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


class HostProcess(_GroupSignals):
    """A child process started by :class:`HostRuntime`; it leads its own process group."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the child leads its own group
        self.start_time = process_start_time(popen.pid)
        self.log_path = log_path

    @property
    def exit_code(self) -> int | None:
        """The exit code once it has ended (negative: killed by that signal), else None."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        """True until the agent process itself has exited."""
        return self._popen.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code, or None if it still runs after ``timeout`` seconds (woken at once
        when it exits, through a pidfd where the system has them)."""
        code = self._popen.poll()
        if code is not None or timeout is None:
            return code if code is not None else self._popen.wait()
        fd = pidfd_open(self.pid)  # not reaped yet (only we reap it): the pidfd names our child
        if fd is None:
            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        try:
            select.select([fd], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
        return self._popen.poll()

    def __repr__(self) -> str:
        return f"<HostProcess pid={self.pid} exit_code={self.exit_code}>"


class AttachedProcess(_GroupSignals):
    """A process logist did not start in this run, recognised by pid and start time."""

    def __init__(self, pid: int, *, pgid: int | None = None,
                 start_time: int | None = None) -> None:
        self.pid = pid
        self.start_time = start_time if start_time is not None else process_start_time(pid)
        # The group may only be signalled without its leader when we know it is ours.
        self._pgid_known = pgid is not None
        if pgid is None and pid_alive(pid, self.start_time):
            try:
                pgid, self._pgid_known = os.getpgid(pid), True
            except ProcessLookupError:
                pass
        self.pgid = pid if pgid is None else pgid

    @property
    def exit_code(self) -> int | None:
        """Always None: only a parent can learn a process's exit status."""
        return None

    def is_alive(self) -> bool:
        """True while the pid runs, is not a zombie, and started when the original did."""
        return pid_alive(self.pid, self.start_time)

    def group_alive(self) -> bool:
        """True while the process, or a member of its group, is alive."""
        return self.is_alive() or (self._pgid_known and group_alive(self.pgid))

    def _group_is_ours(self) -> bool:
        return self._pgid_known

    def wait(self, timeout: float | None = None) -> int | None:
        """Poll until it ends or ``timeout`` passes; None either way (the code is unknowable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while self.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                break
            left = pause if deadline is None else min(pause, max(deadline - time.monotonic(), 0))
            time.sleep(left)
            pause = min(pause * 2, 0.2)
        return None

    def __repr__(self) -> str:
        return f"<AttachedProcess pid={self.pid} alive={self.is_alive()}>"


def attach(pid: int, *, pgid: int | None = None, start_time: int | None = None) -> AttachedProcess:
    """A handle on a running process we did not start (re-attach after a crash).

    Give the ``start_time`` recorded when it was spawned (:attr:`HostProcess.start_time`) so that
    a reused pid is not mistaken for the agent, and its ``pgid`` so that children it left behind
    can still be signalled after it died.
    """
    return AttachedProcess(pid, pgid=pgid, start_time=start_time)


class HostRuntime:
    """Runs agents as child processes on this machine."""

    name: str = "host"

    def spawn(self, argv: list[str], *, cwd: str | Path, env: dict[str, str],
              log_path: str | Path, stdin: str | None = None) -> HostProcess:
        """Start ``argv`` in ``cwd``, in a new process group, output appended to ``log_path``."""
        if not argv or not all(isinstance(a, str) for a in argv):
            raise AgentError(f"cannot start an agent: argv must be a non-empty list of strings, "
                             f"got {argv!r}")
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab", buffering=0) as out:
            try:
                popen = subprocess.Popen(
                    argv, cwd=str(cwd), env=agent_env(env), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    start_new_session=True, close_fds=True)
            except ValueError as exc:  # a NUL byte in argv, cwd or the environment
                raise AgentError(f"cannot start {argv[0][:80]!r}: {exc} (a NUL byte in the command, "
                                 "its arguments or environment)",
                                 hint="fix the job's command; it cannot run as it is") from None
            except OSError as exc:
                what = exc.filename or argv[0]
                raise AgentError(f"cannot start {argv[0]!r} in {cwd}: "
                                 f"{exc.strerror or exc} ({what})",
                                 hint="check that the program is installed and the worktree "
                                      "exists") from None
        if stdin is not None and popen.stdin is not None:
            threading.Thread(target=_feed, args=(popen.stdin, stdin), daemon=True,
                             name=f"stdin-{popen.pid}").start()
        return HostProcess(popen, log)
