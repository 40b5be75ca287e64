"""Lease locks as refs: ``refs/logist/locks/<id>`` -> a blob describing the holder.

Acquire = create-only ref update; heartbeat = compare-and-swap to a new blob; release =
compare-and-delete; takeover of a stale lease = compare-and-swap from the stale value, so two
takers can never both win. Transition commits verify the current lease value in the same ref
transaction (fencing, see ``JobStore.publish``).

Every ref transaction goes through ``logist.git.reftx`` (``JobStore.ref_transaction``), which
keeps a fenced write of this process apart from its own heartbeat: a :class:`Lease` registers
itself there (``reftx.hold_fence``) while it is held. The stale ``*.lock`` sweep lives there too
(docs/architecture.md#known-hazards-of-git).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from logist.core.errors import ConcurrentUpdateError, LockHeldError, UsageError
from logist.core.jobid import JobId
from logist.core.procs import boot_id, hostname, pid_alive, process_start_time
from logist.git import refs, reftx
from logist.git.gitcmd import CatFileBatch, git
from logist.store.jobstore import JobStore


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
        if self.host == hostname():
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
    """(oid, content) of each object name (a ref or an oid) through one cat-file --batch
    (``gitcmd.CatFileBatch``, the one parser of its output)."""
    if not names:
        return []
    with CatFileBatch(root) as batch:
        return batch.read_many_objects(names)


def read_lock(store: JobStore, job_id: JobId) -> tuple[str, Holder | None] | None:
    """(lock oid, holder) or None when the job is not locked. No git process when it is not
    locked (the ref is read from git's files), one when it is."""
    from logist.git.gitread import Unsupported

    try:
        if store.reader.ref(refs.lock_ref(job_id)) is None:
            return None
    except Unsupported:
        pass
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


class Lease:
    """A held lock. ``oid`` is the current lock value used for fencing."""

    def __init__(self, store: JobStore, job_id: JobId, oid: str, holder: Holder) -> None:
        self.store = store
        self.job_id = job_id
        self.oid = oid
        self.holder = holder
        self.mutex = threading.RLock()  # held by a fenced write (reftx.fence_stdin) and a heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._past: set[str] = set()  # earlier values of this lease (before heartbeats)
        self.lost = False
        self.released = False
        self.took_over_from: Holder | None = None
        self.takeover_reason: str | None = None
        reftx.hold_fence(self)

    def owns(self, oid: str) -> bool:
        """True when ``oid`` is this lease's current or an earlier (heartbeat) value."""
        return oid == self.oid or oid in self._past

    def heartbeat(self) -> None:
        """Refresh the heartbeat by compare-and-swap; raises ConcurrentUpdateError if lost."""
        holder = Holder(**{**asdict(self.holder), "heartbeat_at": time.time()})
        new = _hash_blob(self.store, holder.to_bytes(), via_git=True)
        with self.mutex:
            if self.lost or self.released:
                raise ConcurrentUpdateError(f"job {self.job_id}: the lease is no longer held")
            proc = self.store.ref_transaction(f"update {refs.lock_ref(self.job_id)} {new} {self.oid}\n")
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
        with self.mutex:
            if self.released:
                return
            self.released = True
            if not self.lost:
                self.store.ref_transaction(f"delete {refs.lock_ref(self.job_id)} {self.oid}\n")
        reftx.drop_fence(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _hash_blob(store: JobStore, data: bytes, *, via_git: bool = False) -> str:
    """Write a blob: with the store's dulwich writer, or (from the heartbeat thread, which must
    not share that writer with the thread making commits) with ``git hash-object``."""
    if not via_git:
        return store.writer.blob(data).decode()
    proc = git(["hash-object", "-w", "--stdin"], cwd=store.paths.root, input=data, check=False, text=False)
    if proc.returncode != 0:
        raise ConcurrentUpdateError(f"cannot write the lock record: {proc.stderr.decode(errors='replace').strip()}")
    oid: str = proc.stdout.decode().strip()
    return oid



def acquire(store: JobStore, job_id: JobId, *, command: str | None = None,
            lease_seconds: float | None = None, takeover: bool = True) -> Lease:
    """Take the job's lease: create-only, or take over a stale one by CAS. LockHeldError if held."""
    refs.validate_job_id(job_id)
    lease_seconds = lease_seconds or lease_seconds_default(store)
    now = time.time()
    pid = os.getpid()
    holder = Holder(pid=pid, host=hostname(), boot_id=boot_id(),
                    start_time=process_start_time(pid), command=command or current_command(),
                    acquired_at=now, heartbeat_at=now, lease_seconds=lease_seconds)
    new = _hash_blob(store, holder.to_bytes())
    lock = refs.lock_ref(job_id)
    current = None
    for _ in range(3):
        proc = store.ref_transaction(f"create {lock} {new}\n")
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
    proc = store.ref_transaction(f"update {lock} {new} {old_oid}\n")
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


def break_lock(store: JobStore, job_id: JobId) -> Holder | None:
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


