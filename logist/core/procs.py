"""Facts about processes from /proc (Linux): is a pid still the process we started, and
this machine's boot id. One implementation for the whole package (locks, recovery, runtimes,
the sentinel and the watcher); it imports only ``os``, so the side process can load it at
start.

Where there is no /proc, ``pid_alive`` falls back to ``kill(pid, 0)`` alone and
``process_start_time`` / ``boot_id`` know nothing (None / "").
"""

from __future__ import annotations

import os
from pathlib import Path


def hostname() -> str:
    """``socket.gethostname()`` (the name locks and stop requests record), without importing
    socket on POSIX: gethostname(2) is uname's nodename there (tests/test_locks.py checks)."""
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - not POSIX
        import socket

        return socket.gethostname()


def boot_id() -> str:
    """This machine's boot id (Linux), "" where there is none.

    ``LOGIST_BOOT_ID`` overrides it: test-only, to simulate a reboot.
    """
    forced = os.environ.get("LOGIST_BOOT_ID")
    if forced:
        return forced[:64]
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None if it is gone."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True when ``pid`` runs, is not a zombie, and (if given) started at ``start_time``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    except OverflowError:
        return False
    if not os.path.exists("/proc/self/stat"):
        return True  # no /proc: kill(0) is all we can know
    fields = _stat_fields(pid)
    if fields is None:
        return False
    if fields[0] in (b"Z", b"X"):  # a zombie is not a holder
        return False
    if start_time is not None:
        try:
            return int(fields[19]) == start_time
        except (ValueError, IndexError):
            return False
    return True


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it has exited), or None where there is none. Taken
    while the process runs (or before our child is reaped), it cannot name a later process that
    reuses the pid."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def group_id_reused(pidfd: int | None, pgid: int) -> bool:
    """True when ``pgid``, the process group the process behind ``pidfd`` leads, is provably
    not that group any more: that process is gone and reaped, and a live process now has the
    id. A group id stays taken while any member lives, so it names another group only once the
    whole group is gone and a new session leader got the same pid (pids wrap: 32,768 by
    default). False when it cannot be told (no pidfd) or the leader or its zombie remains."""
    import signal

    if pidfd is None:
        return False
    try:
        signal.pidfd_send_signal(pidfd, 0)
        return False  # the leader (or its unreaped zombie) still holds the id
    except ProcessLookupError:
        pass
    except (AttributeError, OSError):
        return False
    return os.path.exists(f"/proc/{pgid}")


def processes_in(path: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``path`` (Linux /proc; else [])."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return []
    try:
        target = str(path.resolve())
    except OSError:
        return []
    pids = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == target or cwd.startswith(target + os.sep):
            pids.append(int(entry.name))
    return pids
