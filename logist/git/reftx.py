"""Ref transactions: every ``git update-ref --stdin`` logist runs, by repository path.

:func:`update_ref` runs one transaction, retrying briefly when a ref's ``.lock`` file is in the
way; when the ``.lock`` is still there after the retries and it is stale (older than a minute,
no live git in the repository: a killed git left it), it is removed and the transaction tried
once more (docs/architecture.md, locks).

Fencing: a lease's value changes with every heartbeat. So that a fenced write of this process
never races its own heartbeat thread, every transaction goes through :func:`fence_stdin`: a
``verify`` of a lock that this process holds (a :class:`Fence` registered with
:func:`hold_fence`) is rewritten to the lease's current value and runs while the lease's mutex
is held (the heartbeat waits). A lease that another process took over is never rewritten: the
write is refused, as fencing requires.

Also here: finding and removing stale ``*.lock`` files that a killed git (or dulwich) left
under the git directory: they block every later update of that ref and ``git gc``, and nothing
else ever expires them.

This module knows paths, not the job store: ``logist.store.jobstore`` and
``logist.store.locks`` both build on it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from logist.core.procs import pid_alive
from logist.git import refs
from logist.git.gitcmd import Started, git, waiting_pids

# A killed git leaves `<ref>.lock` behind; one older than this with no live holder is stale.
STALE_LOCK_FILE_SECONDS = 60.0


class Fence(Protocol):
    """A lease this process holds, as fencing sees it (``logist.store.locks.Lease``)."""

    @property
    def job_id(self) -> str: ...
    oid: str
    lost: bool
    mutex: threading.RLock

    def owns(self, oid: str) -> bool: ...


# Leases held by this process, by job id: used to keep fenced writes and heartbeats apart.
_LIVE: weakref.WeakValueDictionary[str, Fence] = weakref.WeakValueDictionary()
_LIVE_MUTEX = threading.Lock()


def hold_fence(fence: Fence) -> None:
    """Register a lease this process now holds (its ``verify`` lines are kept current)."""
    with _LIVE_MUTEX:
        _LIVE[fence.job_id] = fence


def drop_fence(fence: Fence) -> None:
    """Forget a released lease (only if it is still the one registered for its job)."""
    with _LIVE_MUTEX:
        if _LIVE.get(fence.job_id) is fence:
            del _LIVE[fence.job_id]


def update_ref(root: Path, common_dir: Path, stdin: str, *, attempts: int = 5,
               started: Started | None = None):
    """One ``git update-ref --stdin`` transaction in the repository at ``root``; the finished
    process (its return code says whether git applied it).

    ``started``: an ``update-ref --stdin`` already running, used for the first attempt. Retries
    briefly while a ref's .lock file is in the way, then removes it if it is stale and tries
    once more (see the module docstring).
    """
    done = None
    if "verify " + refs.LOCKS_PREFIX in stdin:
        stdin, done = fence_stdin(stdin)
    try:
        cleared = False
        i = 0
        while True:
            if started is not None and not started.done:
                proc = started.finish(stdin)
            else:
                proc = git(["update-ref", "--stdin"], cwd=root, input=stdin, check=False)
            if proc.returncode == 0 or ".lock" not in proc.stderr or "File exists" not in proc.stderr:
                return proc
            i += 1
            if i >= attempts:
                if cleared:
                    return proc
                if not clear_stale_lock_file(root, common_dir, proc.stderr):
                    return proc
                cleared = True
                continue
            time.sleep(0.01 * (2 ** i))
    finally:
        if done is not None:
            done()


def fence_stdin(stdin: str) -> tuple[str, Callable[[], None]]:
    """Prepare an ``update-ref --stdin`` transaction for a lock this process may hold.

    Each ``verify refs/logist/locks/<id> <oid>`` whose oid is an earlier value of a live lease
    of this process (a heartbeat moved it) is rewritten to the lease's current value, and the
    lease's mutex is held until the returned ``done()`` is called, so no heartbeat moves it in
    between. Everything else is left as is. Returns (stdin, done).
    """
    held: list[Fence] = []
    lines = stdin.splitlines(keepends=True)
    targets: list[tuple[int, Fence, str]] = []
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "verify" and parts[1].startswith(refs.LOCKS_PREFIX):
            with _LIVE_MUTEX:
                lease = _LIVE.get(parts[1][len(refs.LOCKS_PREFIX):])
            if lease is not None and lease.owns(parts[2]):
                targets.append((i, lease, parts[1]))
    for _, lease, _ in sorted(targets, key=lambda t: t[1].job_id):
        if lease not in held:
            lease.mutex.acquire()
            held.append(lease)
    for i, lease, ref in targets:
        if not lease.lost:
            lines[i] = f"verify {ref} {lease.oid}\n"

    def done() -> None:
        for lease in reversed(held):
            lease.mutex.release()

    return "".join(lines), done


# ---- stale `*.lock` files under the git directory ----------------------------------------

def find_lock_files(common_dir: Path) -> list[Path]:
    """Every ``*.lock`` file git or dulwich may leave: top-level files of the git dir and of
    each ``worktrees/<name>/``, all of ``refs/`` and ``logs/``, and loose-object locks."""
    found: list[Path] = []

    def top(d: Path) -> None:
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.name.endswith(".lock") and e.is_file(follow_symlinks=False):
                        found.append(Path(e.path))
        except OSError:
            pass

    top(common_dir)
    wts = common_dir / "worktrees"
    if wts.is_dir():
        for sub in wts.iterdir():
            if sub.is_dir():
                top(sub)
                for extra in ("refs", "logs"):
                    _walk(sub / extra, found)
    for extra in ("refs", "logs"):
        _walk(common_dir / extra, found)
    objects = common_dir / "objects"
    top(objects / "info")
    top(objects / "pack")
    try:
        with os.scandir(objects) as it:
            for e in it:
                if len(e.name) == 2 and e.is_dir(follow_symlinks=False):
                    top(Path(e.path))
    except OSError:
        pass
    return found


def _walk(root: Path, found: list[Path]) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".lock"):
                found.append(Path(dirpath) / name)


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def live_git_processes(paths: Iterable[Path]) -> list[int]:
    """Pids of live git processes working in (or on) any of ``paths`` (Linux /proc).

    Where there is no /proc, an unknown answer: every file is treated as possibly held (-1).
    """
    if not os.path.isdir("/proc/self"):
        return [-1]
    roots = []
    for p in paths:
        try:
            roots.append(str(Path(p).resolve()))
        except OSError:
            continue
    me = os.getpid()
    own = waiting_pids()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        except (OSError, ValueError):
            continue
        if comm != "git" and not comm.startswith("git-"):
            continue
        if int(entry) in own:  # ours, e.g. a pre-started `update-index` waiting for its input
            continue
        if not pid_alive(int(entry)):
            continue
        argv = _cmdline(int(entry))
        if not any(argv):
            # An empty command line is a git that is exiting (its memory already released) or
            # one caught mid-exec: look again shortly; still unreadable and alive: assume ours.
            for _ in range(5):
                time.sleep(0.01)
                if not pid_alive(int(entry)):
                    break
                argv = _cmdline(int(entry))
                if any(argv):
                    break
            if not pid_alive(int(entry)):
                continue
            if not any(argv):
                pids.append(int(entry))
                continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        text = " ".join([cwd, *(a.decode(errors="replace") for a in argv)])
        if any(r and r in text for r in roots):
            pids.append(int(entry))
    return pids


def stale_lock_files(common_dir: Path, places: Iterable[Path], *,
                     min_age: float = STALE_LOCK_FILE_SECONDS, now: float | None = None) -> list[Path]:
    """``*.lock`` files under the git directory ``common_dir`` older than ``min_age`` seconds
    with no live holder: no live git process works in any of ``places`` (the repository, its
    git directory, its worktrees)."""
    now = time.time() if now is None else now
    candidates = []
    young = []
    for path in find_lock_files(common_dir):
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if age >= min_age:
            candidates.append(path)
        elif path.parent.parent.name == "objects" and len(path.parent.name) == 2:
            young.append(path)  # a loose object's lock (dulwich): judged by who could hold it
    if young:
        from logist.git.gitcmd import waiting_pids
        from logist.git.lockfiles import possible_holders

        roots = [common_dir, *places]
        candidates += [p for p in young if not possible_holders(p, roots, exclude=waiting_pids(),
                                                                  logist_too=True)]
    if not candidates:
        return []
    if live_git_processes(places):
        return [p for p in candidates if p in young]
    return candidates


def remove_stale_lock_files(common_dir: Path, places: Iterable[Path], *,
                            min_age: float = STALE_LOCK_FILE_SECONDS) -> list[Path]:
    """Remove what :func:`stale_lock_files` finds; the paths removed."""
    removed = []
    for path in stale_lock_files(common_dir, places, min_age=min_age):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
    return removed


def clear_stale_lock_file(root: Path, common_dir: Path, stderr: str, *,
                          min_age: float = STALE_LOCK_FILE_SECONDS) -> bool:
    """Given git's "Unable to create '<path>.lock': File exists" error, remove that lock file
    if it is stale (old, inside this git dir, no live git in the repository). True if removed."""
    marker = "Unable to create '"
    start = stderr.find(marker)
    if start < 0:
        return False
    start += len(marker)
    end = stderr.find("'", start)
    if end < 0:
        return False
    path = Path(stderr[start:end])
    try:
        resolved = path.resolve()
        common = common_dir.resolve()
    except OSError:
        return False
    if not path.name.endswith(".lock") or common not in resolved.parents:
        return False
    try:
        if time.time() - path.stat().st_mtime < min_age:
            return False
    except OSError:
        return False
    if live_git_processes([common_dir, root]):
        return False
    try:
        path.unlink()
    except OSError:
        return False
    return True
