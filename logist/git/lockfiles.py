"""Lock files git leaves when it is killed (``index.lock``, ``HEAD.lock``, a ref's ``.lock``).

git refuses to run while one exists ("Unable to create '<path>.lock': File exists ... remove the
file manually to continue"). logist decides for itself (docs/recovery.md#lock-files): a lock file
no live git process can hold is cleared and the command tried again; one a live git may hold is
a :class:`~logist.core.errors.GitLockError` (exit 4) naming the file and the process.

A git process can hold a lock file only if it started before the file was last written and it
works in (or on) the repository: its working directory or command line names the repository,
its git dir or the worktree. Where there is no /proc nothing can be known and nothing is
cleared.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

_UNABLE = re.compile(r"Unable to create '([^'\n]+\.lock)': File exists")
SLACK_SECONDS = 1.0  # process start times are in clock ticks; file times can be coarse


def lock_in_error(stderr: str) -> Path | None:
    """The lock file git names in its "Unable to create '...lock': File exists" error."""
    m = _UNABLE.search(stderr or "")
    return Path(m.group(1)) if m else None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _proc_info(pid: int) -> tuple[str, float | None, str] | None:
    """(comm, start time as epoch seconds, state letter) of ``pid`` or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        fields = stat[stat.rindex(b")") + 2:].split()
        state = fields[0].decode()
        ticks = int(fields[19])
    except (ValueError, IndexError):
        return None
    boot = _boot_time()
    start = None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")
    return comm, start, state


def _mentions(pid: int, roots: list[str]) -> bool | None:
    """True if the process's cwd or argv names one of ``roots``; None if unreadable. A process
    with an empty command line is exiting (its memory is gone) and holds nothing: False."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return False  # gone
    except OSError:
        raw = None
    if raw == b"":
        return False
    argv = [a.decode(errors="replace") for a in (raw or b"").split(b"\0") if a]
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    if not argv and not cwd:
        return None
    text = " ".join([cwd, *argv])
    return any(r and (r in text) for r in roots)


def _runs_logist(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read(4096).split(b"\0")
    except OSError:
        return False
    # `python -m logist ...` or the `logist` script (not any program whose path holds "logist",
    # such as an agent started from .git/logist/run/)
    names = [os.path.basename(a) for a in argv[:2]]
    return b"logist" in names or argv[1:3] == [b"-m", b"logist"]


def possible_holders(lock: Path, roots: Iterable[str | Path], *, exclude: Iterable[int] = (),
                     logist_too: bool = False) -> list[int]:
    """Pids of live git processes that may hold ``lock`` (see the module docstring); [-1] when
    it cannot be known (no /proc); [] when the file is gone or nobody can hold it.
    ``logist_too``: logist processes count as well (they write loose objects with dulwich,
    which locks ``objects/xx/<sha>.lock``)."""
    if not os.path.isdir("/proc/self"):
        return [-1]
    try:
        mtime = os.stat(lock).st_mtime
    except OSError:
        return []
    names = set()
    for r in [*roots, lock.parent]:
        try:
            names.add(os.path.realpath(r))
            names.add(os.path.abspath(r))
        except (OSError, ValueError):
            continue
    # a worktree's admin dir (<common>/worktrees/<name>) names its worktree in `gitdir`
    try:
        gitdir = (lock.parent / "gitdir").read_text(errors="replace").strip()
        if gitdir:
            names.add(os.path.dirname(os.path.realpath(gitdir)))
    except OSError:
        pass
    roots_list = sorted(n for n in names if n not in ("", "/"))
    skip = {os.getpid(), *exclude}
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        info = _proc_info(int(entry))
        if info is None:
            continue
        comm, start, state = info
        if comm != "git" and not comm.startswith("git-") and not (logist_too and _runs_logist(int(entry))):
            continue
        if state in ("Z", "X"):
            continue
        if start is not None and start > mtime + SLACK_SECONDS:
            continue  # started after the file was written: it did not create it
        if _mentions(int(entry), roots_list) is False:
            continue
        holders.append(int(entry))
    return holders


def clear_if_stale(lock: Path, roots: Iterable[str | Path], *, exclude: Iterable[int] = ()) -> bool:
    """Remove ``lock`` when no live git can hold it (a killed git left it). True if removed
    (or already gone). Only files named ``*.lock`` are ever removed."""
    if not lock.name.endswith(".lock"):
        return False
    if possible_holders(lock, roots, exclude=exclude):
        return False
    try:
        lock.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def describe_holders(pids: list[int]) -> str:
    if not pids or pids == [-1]:
        return "a git process may still hold it"
    return "git process" + ("es " if len(pids) > 1 else " ") + ", ".join(map(str, pids[:5])) + " may still hold it"


def age(lock: Path) -> float | None:
    try:
        return time.time() - os.stat(lock).st_mtime
    except OSError:
        return None


def check_worktree(wt: Path, *, exclude: Iterable[int] = ()) -> list[Path]:
    """Before a step writes anything: the lock files of worktree ``wt`` (``index.lock``,
    ``HEAD.lock`` in its admin dir) that a killed git left are removed (returned); one a live
    git may hold is a GitLockError (exit 4) naming it."""
    try:
        text = (wt / ".git").read_text(errors="replace")[:4096].strip()
    except OSError:
        return []
    if not text.startswith("gitdir:"):
        return []
    admin = Path(text[len("gitdir:"):].strip())
    cleared = []
    for name in ("index.lock", "HEAD.lock"):
        lock = admin / name
        if not lock.exists():
            continue
        if clear_if_stale(lock, [wt], exclude=exclude):
            cleared.append(lock)
            continue
        from logist.core.errors import GitLockError

        raise GitLockError(f"a git lock file is in the way: {lock} "
                           f"({describe_holders(possible_holders(lock, [wt], exclude=exclude))})",
                           hint="wait for that git command to finish and run this again; nothing was written")
    return cleared
