"""A job's lock held on a shared remote by a worker (docs/sharing.md, workers): claimed by one
atomic compare-and-swap push of the lock ref and the branch, refreshed with every transition
pushed (the lock's new value compare-and-swapped in the same push: a worker whose lease was taken
over cannot publish anything), released by the last push, which moves the branch and deletes the
lock in one transaction. Remote leases are judged by their heartbeat alone."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from logist.core.errors import LogistError, RemoteError
from logist.core.jobid import JobId
from logist.core.procs import boot_id, process_start_time
from logist.git import refs
from logist.share.push import run_push
from logist.share.remotes import rev
from logist.store.jobstore import JobStore
from logist.store.locks import Holder


class LeaseLost(LogistError):
    """The remote lock of a job was taken over by another worker (or the job was changed on the
    remote behind the lock's back): nothing more may be published."""


def lease_seconds(store: JobStore) -> float:
    """The lease of this worker's remote claims: as for local locks (``LOGIST_LEASE_SECONDS``,
    else ``[locks] lease_seconds``; a bad value is a UsageError)."""
    from logist.store.locks import lease_seconds_default

    return lease_seconds_default(store)


def _holder(store: JobStore, lease: float, acquired_at: float | None = None) -> Holder:
    now = time.time()
    pid = os.getpid()
    return Holder(pid=pid, host=socket.gethostname(), boot_id=boot_id(),
                  start_time=process_start_time(pid), command=f"logist worker in {store.root}",
                  acquired_at=acquired_at or now, heartbeat_at=now, lease_seconds=lease)


@dataclass
class Counters:
    pushes: int = 0
    fetches: int = 0
    push_seconds: float = 0.0
    fetch_seconds: float = 0.0
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pushed(self, seconds: float) -> None:
        with self._mutex:
            self.pushes += 1
            self.push_seconds += seconds

    def fetched(self, seconds: float) -> None:
        with self._mutex:
            self.fetches += 1
            self.fetch_seconds += seconds


class RemoteLock:
    """A job's lock held on the remote. ``oid`` is the lock value there (the fencing token),
    ``remote_tip`` the branch value there; both move only by compare-and-swap pushes."""

    def __init__(self, store: JobStore, remote: str, job_id: JobId, oid: str, holder: Holder,
                 remote_tip: str, counters: Counters) -> None:
        self.store = store
        self.remote = remote
        self.job_id = job_id
        self.oid = oid
        self.holder = holder
        self.remote_tip = remote_tip
        self.counters = counters
        self.lost = False
        self.stop_oid: str | None = None  # a stop request fetched from the remote
        self._mutex = threading.Lock()

    @property
    def lock_ref(self) -> str:
        return refs.lock_ref(self.job_id)

    @property
    def branch_ref(self) -> str:
        return refs.branch_ref(self.job_id)

    def _push(self, specs: list[str], leases: list[str]) -> bool:
        t0 = time.monotonic()
        try:
            ok, lines, _ = run_push(self.store, self.remote, specs, leases=leases, verify=False)
        finally:
            self.counters.pushed(time.monotonic() - t0)
        if ok:
            return True
        if any(ln.dst == self.lock_ref and ln.reason == "stale info" for ln in lines):
            self.lost = True
            raise LeaseLost(f"job {self.job_id}: another worker took over its lease on {self.remote}")
        if any(ln.dst == self.branch_ref and ln.reason in ("stale info", "non-fast-forward", "fetch first")
               for ln in lines):
            self.lost = True
            self._drop_lock()
            raise LeaseLost(f"job {self.job_id} was changed on {self.remote} by someone else while it "
                            "ran here")
        bad = "; ".join(f"{ln.dst}: {ln.reason}" for ln in lines if ln.rejected)
        raise RemoteError(f"push of job {self.job_id} to {self.remote} refused: {bad}")

    def _drop_lock(self) -> None:
        """Delete our lock on the remote (compare-and-delete) without touching the branch."""
        try:
            ok, _, _ = run_push(self.store, self.remote, [f":{self.lock_ref}"],
                                leases=[f"{self.lock_ref}:{self.oid}"], verify=False)
        except LogistError:
            return
        if ok:
            self.store.ref_transaction(f"delete {refs.remote_lock_ref(self.remote, self.job_id)}\n")

    def refresh(self) -> None:
        """Push the local branch tip (if it moved) with a new heartbeat, in one atomic push."""
        with self._mutex:
            holder = Holder(**{**self.holder.__dict__, "heartbeat_at": time.time()})
            blob = self.store.writer.blob(holder.to_bytes()).decode()
            self._push_with_tip(f"{blob}:{self.lock_ref}")
            self.oid, self.holder = blob, holder
            self._track()

    def fetch_stop(self) -> None:
        """A stop request for this job on the remote (`logist job stop --remote`, or a pushed
        ``refs/logist/stop/<id>``) is fetched into the local stop ref, which the engine reads
        about once a second (docs/stopping.md). Nothing there: nothing changes."""
        from logist.git.gitcmd import git
        from logist.share.remotes import NETWORK_TIMEOUT

        ref = refs.stop_ref(self.job_id)
        try:
            proc = git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                        self.remote, f"+{ref}:{ref}"], cwd=self.store.root, check=False,
                       timeout=NETWORK_TIMEOUT)
        except LogistError:
            return
        if proc.returncode == 0:
            self.stop_oid = rev(self.store, ref)

    def drop_stop(self) -> None:
        """Best effort, after the final push: delete the stop request it answered on the remote
        (compare-and-delete: a newer request stays)."""
        if not self.stop_oid:
            return
        ref = refs.stop_ref(self.job_id)
        try:
            run_push(self.store, self.remote, [f":{ref}"], leases=[f"{ref}:{self.stop_oid}"], verify=False)
        except LogistError:
            pass
        self.stop_oid = None

    def release(self) -> None:
        """Final push: the branch tip and the deletion of the lock, in one transaction."""
        with self._mutex:
            self._push_with_tip(f":{self.lock_ref}")
            self.oid = ""
            self._track(deleted=True)

    def _push_with_tip(self, lock_spec: str) -> None:
        """One atomic push of ``lock_spec`` (new heartbeat, or deletion) compare-and-swapped
        against our lock value, with the local branch tip when it moved (compare-and-swapped
        against the remote tip we last pushed); the remote tip recorded."""
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: lease lost")
        specs = [lock_spec]
        leases = [f"{self.lock_ref}:{self.oid}"]
        tip = rev(self.store, self.branch_ref)
        if tip and tip != self.remote_tip:
            specs.append(f"{tip}:{self.branch_ref}")
            leases.append(f"{self.branch_ref}:{self.remote_tip}")
        self._push(specs, leases)
        if tip:
            self.remote_tip = tip

    def _track(self, deleted: bool = False) -> None:
        lines = [f"update {refs.remote_branch_ref(self.remote, self.job_id)} {self.remote_tip}\n"]
        track_lock = refs.remote_lock_ref(self.remote, self.job_id)
        lines.append(f"delete {track_lock}\n" if deleted else f"update {track_lock} {self.oid}\n")
        self.store.ref_transaction("".join(lines))


def claim(store: JobStore, remote: str, job_id: JobId, seen_tip: str, seen_lock: str | None,
          lease: float, counters: Counters) -> RemoteLock | None:
    """Take the job on the remote by compare-and-swap; None when another worker was faster."""
    holder = _holder(store, lease)
    blob = store.writer.blob(holder.to_bytes()).decode()
    lock, branch = refs.lock_ref(job_id), refs.branch_ref(job_id)
    t0 = time.monotonic()
    try:
        ok, _, _ = run_push(store, remote, [f"{blob}:{lock}", f"{seen_tip}:{branch}"],
                                leases=[f"{lock}:{seen_lock or ''}", f"{branch}:{seen_tip}"],
                                verify=False)
    finally:
        counters.pushed(time.monotonic() - t0)
    if not ok:
        return None
    rl = RemoteLock(store, remote, job_id, blob, holder, seen_tip, counters)
    rl._track()
    return rl
