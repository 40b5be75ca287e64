"""Lease locks as refs: ``refs/logist/locks/<id>`` -> a blob describing the holder.

Acquire = create-only ref update; heartbeat = compare-and-swap to a new blob; release =
compare-and-delete; takeover of a stale lease = compare-and-swap from the stale value, so two
takers can never both win. Transition commits verify the current lease value in the same ref
transaction (fencing, see ``JobStore.publish``).

A lease's value changes with every heartbeat. So that a fenced write of this process never
races its own heartbeat thread, every ``git update-ref --stdin`` that logist runs goes through
:func:`fence_stdin` (called by ``JobStore._update_ref``): a ``verify`` of a lock that this
process holds is rewritten to the lease's current value and runs while the lease's mutex is
held (the heartbeat waits). A lease that another process took over is never rewritten: the
write is refused, as fencing requires.

Also here: finding and removing stale ``*.lock`` files that a killed git (or dulwich) left
under the git directory (docs/architecture.md#known-hazards-of-git): they block every later update of that ref and
``git gc``, and nothing else ever expires them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from logist.core.errors import ConcurrentUpdateError, LockHeldError, UsageError
from logist.core.procs import boot_id, pid_alive, process_start_time
from logist.git import refs
from logist.git.gitcmd import git, waiting_pids
from logist.store.jobstore import JobStore

# A killed git leaves `<ref>.lock` behind; one older than this with no live holder is stale.
STALE_LOCK_FILE_SECONDS = 60.0


def lease_seconds_default(store: JobStore) -> float:
    """The lease length: ``LOGIST_LEASE_SECONDS`` if set, else ``[locks] lease_seconds``."""
    raw = os.environ.get("LOGIST_LEASE_SECONDS", "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value <= MAX_LEASE_SECONDS:
            raise UsageError(f"LOGIST_LEASE_SECONDS must be a positive number of seconds, got {raw!r}")
        return value
    return float(store.config.locks.lease_seconds)


@dataclass
class Holder:
    pid: int
    host: str
    boot_id: str
    start_time: int | None
    command: str
    acquired_at: float
    heartbeat_at: float
    lease_seconds: float

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Holder | None:
        """Parse untrusted lock content; None when it is not a valid holder record."""
        try:
            data = json.loads(raw[:8192])
            holder = cls(pid=int(data["pid"]), host=str(data["host"])[:200],
                         boot_id=str(data.get("boot_id") or "")[:64],
                         start_time=None if data.get("start_time") is None else int(data["start_time"]),
                         command=str(data.get("command", ""))[:300],
                         acquired_at=float(data["acquired_at"]), heartbeat_at=float(data["heartbeat_at"]),
                         lease_seconds=float(data["lease_seconds"]))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return None
        if not all(map(_finite, (holder.acquired_at, holder.heartbeat_at, holder.lease_seconds))):
            return None
        return holder

    def since(self) -> str:
        try:
            return datetime.fromtimestamp(self.acquired_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (ValueError, OverflowError, OSError):
            return "an unknown time"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command}) since {self.since()}"

    def clock_problem(self, now: float | None = None) -> str | None:
        """Why this lock record cannot be believed, or None: a heartbeat more than the lease
        length in the future (a wrong clock, or a forged lock that would block the job
        forever), or a lease length outside (0, MAX_LEASE_SECONDS]."""
        now = time.time() if now is None else now
        if not 0 < self.lease_seconds <= MAX_LEASE_SECONDS:
            return f"its lease length {self.lease_seconds:g}s is not valid (0 to {MAX_LEASE_SECONDS:g}s)"
        ahead = self.heartbeat_at - now
        if ahead > self.lease_seconds:
            return f"its heartbeat is {ahead:.0f}s in the future, more than its {self.lease_seconds:g}s lease"
        return None

    def stale_reason(self, now: float | None = None) -> str | None:
        """Why this lease may be taken over, or None when the holder looks alive.

        Any host: the lock record is invalid (:meth:`clock_problem`: treated as expired).
        Same host: the holder ran before the last reboot, or its pid is gone (or now belongs
        to another process: the start time differs). Any host: the lease expired with no
        heartbeat (a paused or partitioned holder is fenced off by the takeover).
        """
        now = time.time() if now is None else now
        bad = self.clock_problem(now)
        if bad:
            return f"invalid lock: {bad}"
        if self.host == socket.gethostname():
            current_boot = boot_id()
            if self.boot_id and current_boot and self.boot_id != current_boot:
                return "holder ran before the last reboot"
            if not pid_alive(self.pid, self.start_time):
                return f"holder pid {self.pid} is gone"
        if now - self.heartbeat_at > self.lease_seconds:
            return f"lease expired {int(now - self.heartbeat_at - self.lease_seconds)}s ago"
        return None


MAX_LEASE_SECONDS = 7 * 24 * 3600.0  # a longer lease is not a lease (locks.lease_seconds is checked too)


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def current_command() -> str:
    return " ".join(["logist", *sys.argv[1:]])[:200]


def _cat_batch(root: Path, names: list[str]) -> list[tuple[str, bytes] | None]:
    """(oid, content) of each object name (a ref or an oid) through one cat-file --batch."""
    if not names:
        return []
    proc = git(["cat-file", "--batch"], cwd=root, input=b"".join(n.encode() + b"\n" for n in names),
               check=False, text=False)
    out, pos, result = proc.stdout, 0, []
    for _ in names:
        end = out.find(b"\n", pos)
        if end < 0:
            result.append(None)
            continue
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] in (b"missing", b"ambiguous"):
            result.append(None)
            continue
        size = int(header[2])
        result.append((header[0].decode(), out[pos:pos + size]))
        pos += size + 1
    return result


def read_lock(store: JobStore, job_id: str) -> tuple[str, Holder | None] | None:
    """(lock oid, holder) or None when the job is not locked. One git process."""
    got = _cat_batch(store.paths.root, [refs.lock_ref(job_id)])[0]
    if got is None:
        return None
    oid, raw = got
    return oid, Holder.from_bytes(raw)


def read_locks(store: JobStore, lock_refs: dict[str, str] | None = None
               ) -> dict[str, tuple[str, Holder | None]]:
    """Every lock: {job id: (lock oid, holder or None)}; two git processes whatever the count
    (one when the caller already listed the lock refs: ``lock_refs``, {job id: oid})."""
    if lock_refs is None:
        lock_refs = dict(store._refs_under(refs.LOCKS_PREFIX)[refs.LOCKS_PREFIX])
    pairs = sorted(lock_refs.items())
    if not pairs:
        return {}
    got = _cat_batch(store.paths.root, [oid for _, oid in pairs])
    return {jid: (oid, Holder.from_bytes(g[1]) if g else None) for (jid, oid), g in zip(pairs, got, strict=True)}


# Leases held by this process, by job id: used to keep fenced writes and heartbeats apart.
_LIVE: weakref.WeakValueDictionary[str, Lease] = weakref.WeakValueDictionary()
_LIVE_MUTEX = threading.Lock()


class Lease:
    """A held lock. ``oid`` is the current lock value used for fencing."""

    def __init__(self, store: JobStore, job_id: str, oid: str, holder: Holder) -> None:
        self.store = store
        self.job_id = job_id
        self.oid = oid
        self.holder = holder
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._past: set[str] = set()  # earlier values of this lease (before heartbeats)
        self.lost = False
        self.released = False
        self.took_over_from: Holder | None = None
        self.takeover_reason: str | None = None
        with _LIVE_MUTEX:
            _LIVE[job_id] = self

    def owns(self, oid: str) -> bool:
        """True when ``oid`` is this lease's current or an earlier (heartbeat) value."""
        return oid == self.oid or oid in self._past

    def heartbeat(self) -> None:
        """Refresh the heartbeat by compare-and-swap; raises ConcurrentUpdateError if lost."""
        holder = Holder(**{**asdict(self.holder), "heartbeat_at": time.time()})
        new = _hash_blob(self.store, holder.to_bytes(), via_git=True)
        with self._mutex:
            if self.lost or self.released:
                raise ConcurrentUpdateError(f"job {self.job_id}: the lease is no longer held")
            proc = self.store._update_ref(f"update {refs.lock_ref(self.job_id)} {new} {self.oid}\n")
            if proc.returncode != 0:
                if ".lock" in proc.stderr and "File exists" in proc.stderr:
                    return  # transient ref-lock contention: try again at the next beat
                self.lost = True
                raise ConcurrentUpdateError(f"job {self.job_id}: lease lost to another process",
                                            hint=f"run `logist job status {self.job_id}`")
            self._past.add(self.oid)
            self.oid, self.holder = new, holder

    def heartbeat_interval(self) -> float:
        """The configured interval, but at least three beats per lease."""
        configured = float(self.store.config.locks.heartbeat_seconds)
        return max(0.05, min(configured, self.holder.lease_seconds / 3.0))

    def start_heartbeat(self, interval: float | None = None) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        interval = interval or self.heartbeat_interval()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except Exception:
                    return

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def release(self) -> None:
        """Compare-and-delete; silently does nothing if the lease was already taken over."""
        self.stop_heartbeat()
        with self._mutex:
            if self.released:
                return
            self.released = True
            if not self.lost:
                self.store._update_ref(f"delete {refs.lock_ref(self.job_id)} {self.oid}\n")
        with _LIVE_MUTEX:
            if _LIVE.get(self.job_id) is self:
                del _LIVE[self.job_id]

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _hash_blob(store: JobStore, data: bytes, *, via_git: bool = False) -> str:
    """Write a blob: with the store's dulwich writer, or (from the heartbeat thread, which must
    not share that writer with the thread making commits) with ``git hash-object``."""
    if not via_git:
        return store.writer.blob(data).decode()
    proc = git(["hash-object", "-w", "--stdin"], cwd=store.paths.root, input=data, check=False, text=False)
    if proc.returncode != 0:
        raise ConcurrentUpdateError(f"cannot write the lock record: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode().strip()


def fence_stdin(stdin: str) -> tuple[str, Callable[[], None]]:
    """Prepare an ``update-ref --stdin`` transaction for a lock this process may hold.

    Each ``verify refs/logist/locks/<id> <oid>`` whose oid is an earlier value of a live lease
    of this process (a heartbeat moved it) is rewritten to the lease's current value, and the
    lease's mutex is held until the returned ``done()`` is called, so no heartbeat moves it in
    between. Everything else is left as is. Returns (stdin, done).
    """
    held: list[Lease] = []
    lines = stdin.splitlines(keepends=True)
    targets: list[tuple[int, Lease, str]] = []
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "verify" and parts[1].startswith(refs.LOCKS_PREFIX):
            with _LIVE_MUTEX:
                lease = _LIVE.get(parts[1][len(refs.LOCKS_PREFIX):])
            if lease is not None and lease.owns(parts[2]):
                targets.append((i, lease, parts[1]))
    for _, lease, _ in sorted(targets, key=lambda t: t[1].job_id):
        if lease not in held:
            lease._mutex.acquire()
            held.append(lease)
    for i, lease, ref in targets:
        if not lease.lost:
            lines[i] = f"verify {ref} {lease.oid}\n"

    def done() -> None:
        for lease in reversed(held):
            lease._mutex.release()

    return "".join(lines), done


def acquire(store: JobStore, job_id: str, *, command: str | None = None,
            lease_seconds: float | None = None, takeover: bool = True) -> Lease:
    """Take the job's lease: create-only, or take over a stale one by CAS. LockHeldError if held."""
    refs.validate_job_id(job_id)
    lease_seconds = lease_seconds or lease_seconds_default(store)
    now = time.time()
    pid = os.getpid()
    holder = Holder(pid=pid, host=socket.gethostname(), boot_id=boot_id(),
                    start_time=process_start_time(pid), command=command or current_command(),
                    acquired_at=now, heartbeat_at=now, lease_seconds=lease_seconds)
    new = _hash_blob(store, holder.to_bytes())
    lock = refs.lock_ref(job_id)
    current = None
    for _ in range(3):
        proc = store._update_ref(f"create {lock} {new}\n")
        if proc.returncode == 0:
            return Lease(store, job_id, new, holder)
        current = read_lock(store, job_id)
        if current is not None:
            break
        # released between our attempt and the read (or a ref .lock was in the way): again
    if current is None:
        raise ConcurrentUpdateError(f"job {job_id}: could not take the lock (contention)",
                                    hint="try again")
    old_oid, old_holder = current
    reason = "unreadable lock record" if old_holder is None else old_holder.stale_reason()
    if reason is None or not takeover:
        who = old_holder.describe() if old_holder else "an unknown holder"
        raise LockHeldError(f"job {job_id} is busy: held by {who}",
                            hint=f"wait for it, or see `logist job status {job_id}`")
    proc = store._update_ref(f"update {lock} {new} {old_oid}\n")
    if proc.returncode != 0:
        raise LockHeldError(f"job {job_id} is busy: another process took over its stale lock first",
                            hint=f"see `logist job status {job_id}`")
    lease = Lease(store, job_id, new, holder)
    lease.took_over_from = old_holder
    lease.takeover_reason = reason
    if reason.startswith("invalid lock"):
        from logist.core.notices import notice

        notice(f"{lock}: {reason}; treated as expired and taken over")
    return lease


def break_lock(store: JobStore, job_id: str) -> Holder | None:
    """Delete a stale lock (compare-and-delete). LockHeldError if its holder is alive."""
    current = read_lock(store, job_id)
    if current is None:
        return None
    oid, holder = current
    if holder is not None and holder.stale_reason() is None:
        raise LockHeldError(f"job {job_id} is held by a live process: {holder.describe()}",
                            hint=f"see `logist job status {job_id}`")
    store.update_refs(f"delete {refs.lock_ref(job_id)} {oid}\n")
    return holder


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


def stale_lock_files(store: JobStore, *, min_age: float = STALE_LOCK_FILE_SECONDS,
                     now: float | None = None) -> list[Path]:
    """``*.lock`` files under the git directory older than ``min_age`` seconds with no live
    holder: no live git process works in the repository or one of its worktrees."""
    now = time.time() if now is None else now
    candidates = []
    for path in find_lock_files(store.paths.common_dir):
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if age >= min_age:
            candidates.append(path)
    if not candidates:
        return []
    places = [store.paths.common_dir, store.paths.root]
    try:
        places.append(store.worktrees_dir())
    except Exception:
        pass
    if live_git_processes(places):
        return []
    return candidates


def remove_stale_lock_files(store: JobStore, *, min_age: float = STALE_LOCK_FILE_SECONDS) -> list[Path]:
    """Remove what :func:`stale_lock_files` finds; the paths removed."""
    removed = []
    for path in stale_lock_files(store, min_age=min_age):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
    return removed


def clear_stale_lock_file(store: JobStore, stderr: str, *,
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
        common = store.paths.common_dir.resolve()
    except OSError:
        return False
    if not path.name.endswith(".lock") or common not in resolved.parents:
        return False
    try:
        if time.time() - path.stat().st_mtime < min_age:
            return False
    except OSError:
        return False
    if live_git_processes([store.paths.common_dir, store.paths.root]):
        return False
    try:
        path.unlink()
    except OSError:
        return False
    return True
