"""Stopping a running job (docs/stopping.md).

A job is run by whoever holds its lease (a foreground `job run`, a detached runner, a worker).
Nobody else may write its record, so another process cannot just commit SUSPENDED or CANCELED
over a running step: it *asks* the holder, and the holder stops its agent and commits the
transition under its own lease.

* The request is a ref, ``refs/logist/stop/<id>``, pointing at a small JSON blob (the event,
  ``suspend`` or ``cancel``, the message, and who asked). The holder reads it about once a second
  while a step runs, and between steps; it honours it by stopping the agent's process group the
  way the sentinel does (SIGINT, a grace, SIGTERM, a grace, SIGKILL), then committing the
  transition, then deleting the ref. Any human transition deletes it too, so a stale request
  never stops a later run.
* In the process that runs the job (Ctrl-C in a foreground `job run`), the same request is made
  in memory (:func:`interrupt`), without git.

``logist.engine.stop_job.stop_job`` is what `job stop`, and `job suspend` / `job cancel` of a
running job, do: ask the holder and wait for its commit; with no live holder, make the transition
directly (a step interrupted with its agent still running: the agent is stopped first). This
module is the request and the holder's side; it builds on nothing above the store.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from logist.core.errors import BusyError, UsageError
from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore

STOP_EVENTS = ("suspend", "cancel")
POLL_SECONDS = 1.0  # how often a runner reads the stop ref while a step runs
STOP_GRACE_CAP = 10.0  # a person waiting: each rung of the ladder waits at most this long


@dataclass
class StopRequest:
    event: str  # suspend | cancel
    message: str
    host: str
    pid: int
    at: float

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StopRequest | None:
        """Parse untrusted content (it may have been fetched); None when it is not valid."""
        try:
            d = json.loads(raw[:8192])
            req = cls(event=str(d["event"]), message=str(d.get("message") or "")[:2000],
                      host=str(d.get("host") or "")[:200], pid=int(d.get("pid") or 0),
                      at=float(d.get("at") or 0.0))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return None
        return req if req.event in STOP_EVENTS else None


def new_request(event: str, message: str | None) -> StopRequest:
    if event not in STOP_EVENTS:
        raise UsageError(f"a stop request is suspend or cancel, not {event!r}")
    return StopRequest(event=event, message=message or f"{event} by user",
                       host=socket.gethostname(), pid=os.getpid(), at=time.time())


def write_request(store: JobStore, job_id: JobId, req: StopRequest) -> None:
    """Create or replace ``refs/logist/stop/<id>``."""
    proc = git(["hash-object", "-w", "--stdin"], cwd=store.root, input=req.to_bytes().decode(),
               check=False)
    if proc.returncode != 0:
        raise BusyError(f"cannot record the stop request: {proc.stderr.strip()}")
    store.update_refs(f"update {refs.stop_ref(job_id)} {proc.stdout.strip()}\n")


def read_request(store: JobStore, job_id: JobId) -> StopRequest | None:
    proc = git(["cat-file", "blob", refs.stop_ref(job_id)], cwd=store.root, check=False)
    if proc.returncode != 0:
        return None
    return StopRequest.from_bytes(proc.stdout.encode())


def clear_request(store: JobStore, job_id: JobId) -> None:
    """Delete the job's stop request, if any (never fails). No git process when the ref is
    plainly not there (read as a file and from packed-refs; git decides anything else)."""
    from logist.git.gitread import Unsupported

    try:
        if store.reader.ref(refs.stop_ref(job_id)) is None:
            return
    except Unsupported:
        pass
    git(["update-ref", "-d", "--", refs.stop_ref(job_id)], cwd=store.root, check=False)


# ---- in this process (Ctrl-C) -------------------------------------------------------------
_LOCAL: StopRequest | None = None
_LOCAL_MUTEX = threading.Lock()
_RUNNING: dict[str, int] = {}  # jobs this process is running a step of: {job id: agent pid or 0}


def interrupt(event: str = "suspend", message: str = "interrupted (Ctrl-C)") -> None:
    """Ask every runner of this process to stop (safe in a signal handler)."""
    global _LOCAL
    _LOCAL = new_request(event, message)


def local_request() -> StopRequest | None:
    return _LOCAL


def reset_local() -> None:
    global _LOCAL
    _LOCAL = None


def running_here() -> dict[str, int]:
    """The jobs this process is running now ({id: agent pid, 0 between agents})."""
    with _LOCAL_MUTEX:
        return dict(_RUNNING)


def mark_running(job_id: JobId, pid: int | None) -> None:
    with _LOCAL_MUTEX:
        if pid is None:
            _RUNNING.pop(job_id, None)
        else:
            _RUNNING[job_id] = pid


class StopPoll:
    """What a runner asks while its step runs: is there a stop request for this job? The
    in-process one at every call, the ref at most once per ``POLL_SECONDS``."""

    def __init__(self, store: JobStore, job_id: JobId, *, interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.job_id = job_id
        self.interval = interval
        self._next = 0.0

    def check(self, *, force: bool = False) -> StopRequest | None:
        req = local_request()
        if req is not None:
            return req
        now = time.monotonic()
        if not force and now < self._next:
            return None
        self._next = now + self.interval
        return read_request(self.store, self.job_id)


def stop_ladder(handle, sentinel: dict | None = None, *, cap: float = STOP_GRACE_CAP) -> str:
    """Stop an agent's process group as the sentinel does: SIGINT, grace, SIGTERM, grace,
    SIGKILL. The graces are the sentinel's (``interrupt_grace_seconds``,
    ``terminate_grace_seconds``), at most ``cap`` seconds each. Returns the last signal sent."""
    sentinel = sentinel or {}

    def grace(key: str, default: float) -> float:
        try:
            return max(0.0, min(float(sentinel.get(key, default)), cap))
        except (TypeError, ValueError):
            return min(default, cap)

    for name, send, wait in (("SIGINT", handle.interrupt, grace("interrupt_grace_seconds", 15.0)),
                             ("SIGTERM", handle.terminate, grace("terminate_grace_seconds", 10.0)),
                             ("SIGKILL", handle.kill, 5.0)):
        send()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not handle.is_alive():
                return name
            handle.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
        if not handle.is_alive():
            return name
    return "SIGKILL"
