"""Lease locks as refs: ``refs/logist/locks/<id>`` -> a blob describing the holder.

Acquire = create-only ref update; heartbeat = compare-and-swap to a new blob; release =
compare-and-delete; takeover of a stale lease = compare-and-swap from the stale value, so two
takers can never both win. Transition commits verify the current lease value in the same ref
transaction (fencing, see ``JobStore.publish``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from logist import refs
from logist.errors import ConcurrentUpdateError, LockHeldError
from logist.gitcmd import CatFileBatch, git
from logist.store import JobStore


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start_time is not None and os.path.exists("/proc"):
        st = process_start_time(pid)
        if st is None or st != start_time:
            return False
        try:  # a zombie is not a holder
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
            if data[data.rindex(b")") + 2:].split()[0] == b"Z":
                return False
        except OSError:
            return False
    return True


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
    def from_bytes(cls, raw: bytes) -> "Holder | None":
        """Parse untrusted lock content; None when it is not a valid holder record."""
        try:
            data = json.loads(raw)
            return cls(pid=int(data["pid"]), host=str(data["host"])[:200],
                       boot_id=str(data.get("boot_id", ""))[:64],
                       start_time=None if data.get("start_time") is None else int(data["start_time"]),
                       command=str(data.get("command", ""))[:300],
                       acquired_at=float(data["acquired_at"]), heartbeat_at=float(data["heartbeat_at"]),
                       lease_seconds=float(data["lease_seconds"]))
        except (ValueError, KeyError, TypeError):
            return None

    def since(self) -> str:
        return datetime.fromtimestamp(self.acquired_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command}) since {self.since()}"

    def stale_reason(self, now: float | None = None) -> str | None:
        """Why this lease may be taken over, or None when the holder looks alive."""
        now = time.time() if now is None else now
        if self.host == socket.gethostname():
            if self.boot_id and self.boot_id != boot_id():
                return "holder ran before the last reboot"
            if not pid_alive(self.pid, self.start_time):
                return f"holder pid {self.pid} is gone"
        if now - self.heartbeat_at > self.lease_seconds:
            return f"lease expired {int(now - self.heartbeat_at - self.lease_seconds)}s ago"
        return None


def current_command() -> str:
    return " ".join(["logist", *sys.argv[1:]])[:200]


def read_lock(store: JobStore, job_id: str) -> tuple[str, Holder | None] | None:
    """(lock oid, holder) or None when the job is not locked."""
    with CatFileBatch(store.paths.root) as batch:
        proc = git(["rev-parse", "--verify", "-q", refs.lock_ref(job_id)], cwd=store.paths.root,
                   check=False)
        if proc.returncode != 0:
            return None
        oid = proc.stdout.strip()
        raw = batch.read(oid)
    return oid, (Holder.from_bytes(raw) if raw else None)


class Lease:
    """A held lock. ``oid`` is the current lock value used for fencing."""

    def __init__(self, store: JobStore, job_id: str, oid: str, holder: Holder) -> None:
        self.store = store
        self.job_id = job_id
        self.oid = oid
        self.holder = holder
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def heartbeat(self) -> None:
        """Refresh the heartbeat by compare-and-swap; raises ConcurrentUpdateError if lost."""
        with self._mutex:
            holder = Holder(**{**asdict(self.holder), "heartbeat_at": time.time()})
            new = self.store.writer.blob(holder.to_bytes()).decode()
            proc = self.store._update_ref(f"update {refs.lock_ref(self.job_id)} {new} {self.oid}\n")
            if proc.returncode != 0:
                self.lost = True
                raise ConcurrentUpdateError(f"job {self.job_id}: lease lost to another process")
            self.oid, self.holder = new, holder

    def start_heartbeat(self, interval: float | None = None) -> None:
        interval = interval or self.store.config.locks.heartbeat_seconds

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except Exception:  # noqa: BLE001 - lost lease: the next fenced write fails loudly
                    return

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Compare-and-delete; silently does nothing if the lease was already taken over."""
        self.stop_heartbeat()
        with self._mutex:
            self.store._update_ref(f"delete {refs.lock_ref(self.job_id)} {self.oid}\n")

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(store: JobStore, job_id: str, *, command: str | None = None,
            lease_seconds: float | None = None, takeover: bool = True) -> Lease:
    """Take the job's lease: create-only, or take over a stale one by CAS. LockHeldError if held."""
    refs.validate_job_id(job_id)
    lease_seconds = lease_seconds or float(os.environ.get("LOGIST_LEASE_SECONDS", 0)) \
        or store.config.locks.lease_seconds
    now = time.time()
    pid = os.getpid()
    holder = Holder(pid=pid, host=socket.gethostname(), boot_id=boot_id(),
                    start_time=process_start_time(pid), command=command or current_command(),
                    acquired_at=now, heartbeat_at=now, lease_seconds=lease_seconds)
    new = store.writer.blob(holder.to_bytes()).decode()
    proc = store._update_ref(f"create {refs.lock_ref(job_id)} {new}\n")
    if proc.returncode == 0:
        return Lease(store, job_id, new, holder)
    current = read_lock(store, job_id)
    if current is None:  # released between our attempt and the read: try once more
        proc = store._update_ref(f"create {refs.lock_ref(job_id)} {new}\n")
        if proc.returncode == 0:
            return Lease(store, job_id, new, holder)
        current = read_lock(store, job_id)
        if current is None:
            raise ConcurrentUpdateError(f"job {job_id}: could not take the lock (contention)",
                                        hint="try again")
    old_oid, old_holder = current
    reason = "unreadable lock record" if old_holder is None else old_holder.stale_reason()
    if reason is None or not takeover:
        who = old_holder.describe() if old_holder else "an unknown holder"
        raise LockHeldError(f"job {job_id} is busy: held by {who}",
                            hint=f"wait for it, or see `logist job status {job_id}`")
    proc = store._update_ref(f"update {refs.lock_ref(job_id)} {new} {old_oid}\n")
    if proc.returncode != 0:
        raise LockHeldError(f"job {job_id} is busy: another process took over its stale lock first",
                            hint=f"see `logist job status {job_id}`")
    lease = Lease(store, job_id, new, holder)
    lease.took_over_from = old_holder  # type: ignore[attr-defined]
    lease.takeover_reason = reason  # type: ignore[attr-defined]
    return lease


def break_lock(store: JobStore, job_id: str) -> Holder | None:
    """Delete a stale lock (compare-and-delete). LockHeldError if its holder is alive."""
    current = read_lock(store, job_id)
    if current is None:
        return None
    oid, holder = current
    if holder is not None and holder.stale_reason() is None:
        raise LockHeldError(f"job {job_id} is held by a live process: {holder.describe()}")
    store.update_refs(f"delete {refs.lock_ref(job_id)} {oid}\n")
    return holder
