"""What `job status` and `job list` show about a job: its record as JSON data, its worktree and
the holder of its lock (no models needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logist.core.jobid import JobId
from logist.core.states import record_in_flight
from logist.git import refs
from logist.store.jobstore import JobStore
from logist.store.locks import read_lock

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    pass


@dataclass
class JobStatus:
    """What `job status` shows: the tip's record as validated JSON data (no models needed)."""

    record: dict[str, Any]
    tip: str
    worktree: str
    holder: dict[str, Any] | None
    has_worktree: bool | None = None  # known already (a listing): no stat of its .git

    def _worktree_exists(self) -> bool:
        if self.has_worktree is not None:
            return self.has_worktree
        return os.path.exists(os.path.join(self.worktree, ".git"))

    def to_dict(self) -> dict[str, Any]:
        d = self.record
        steps = d["steps"]
        n = d.get("step", 1)
        current = steps[min(n, len(steps)) - 1]
        return {
            "id": d["id"], "title": d["title"], "state": d["state"], "step": n,
            "step_count": len(steps), "step_name": current.get("name", ""),
            "agent": current.get("agent", d.get("agent", "mock")),
            "attempt": d.get("attempt", 0), "run": d.get("run", 1), "branch": refs.branch_name(d["id"]),
            "worktree": self.worktree, "worktree_exists": self._worktree_exists(),
            "head": self.tip, "base": d["base"],
            "cost_usd": d.get("cost_usd", 0.0), "tokens": d.get("tokens", 0),
            "seconds": d.get("seconds", 0.0), "reason": d.get("reason", ""),
            "updated_at": d["updated_at"], "created_at": d["created_at"], "holder": self.holder,
            "interrupted": record_in_flight(d) and (self.holder is None or bool(self.holder.get("stale"))),
            "left_out": [f"step {i}: {line}" for i, s in enumerate(steps, 1) for line in s.get("left_out") or []],
        }


def holder_info(store: JobStore, job_id: JobId) -> dict[str, Any] | None:
    current = read_lock(store, job_id)
    if current is None:
        return None
    return holder_dict(*current)


def holder_dict(oid: str, holder) -> dict[str, Any]:
    """The ``holder`` object of `job status --json` for a lock (its oid and parsed record)."""
    if holder is None:
        return {"lock": oid, "valid": False, "stale": True, "stale_reason": "unreadable lock record"}
    reason = holder.stale_reason()
    return {"lock": oid, "pid": holder.pid, "host": holder.host, "command": holder.command,
            "since": _iso(holder.acquired_at), "heartbeat_at": holder.heartbeat_at,
            "lease_seconds": holder.lease_seconds, "stale": reason is not None, "stale_reason": reason}


def _iso(epoch: float) -> str | None:
    """ISO 8601 UTC (what every time in --json is), e.g. ``2026-12-06T09:41:07Z``."""
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


def status_rows(store: JobStore, records, lock_refs: dict[str, str] | None = None
                ) -> list[dict[str, Any]]:
    """`job status --json` objects for many jobs at once (what `job list --json` prints):
    the locks are read with one git process, the worktree from git's own files (None when the
    job has none now); invalid records give ``{"id", "state": "INVALID", "error", "head"}``."""
    from logist.store.locks import read_locks

    locks = read_locks(store, lock_refs) if lock_refs is None or lock_refs else {}
    worktrees = store.git_worktrees()
    rows: list[dict[str, Any]] = []
    for rec in records:
        if rec.data is None:
            rows.append({"id": rec.id, "state": "INVALID", "error": rec.error, "head": rec.tip})
            continue
        lock = locks.get(rec.id)
        holder = holder_dict(*lock) if lock else None
        wt = worktrees.get(rec.id)  # found with its .git file (store.git_worktrees)
        rows.append(JobStatus(rec.data, rec.tip, wt or "", holder, has_worktree=wt is not None).to_dict())
        if not rows[-1]["worktree"]:
            rows[-1]["worktree"] = None
    return rows


def job_status(store: JobStore, job_id: JobId) -> JobStatus:
    tip, record = store.read_record(job_id)
    return JobStatus(record, tip, str(store.existing_worktree(job_id)), holder_info(store, job_id))
