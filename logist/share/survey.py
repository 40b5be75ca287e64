"""What a worker could run (docs/sharing.md, workers): the fetched jobs that are PENDING, or
running under an expired remote lease, and trusted in this clone; the others sorted by why not
(held, untrusted, running without a remote lease, invalid)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from logist.core.errors import LogistError
from logist.core.jobid import JobId
from logist.core.model import TRANSIENT, State
from logist.git import refs
from logist.share.adopt import remote_holder, remote_lease_expired
from logist.share.remotes import for_each_ref, rev
from logist.share.trust import job_link_problems, needs_trust, trusted_here
from logist.store.jobstore import JobStore


@dataclass
class Candidate:
    job_id: JobId
    tip: str
    state: State
    lock: str | None  # the stale lock value to take over, or None when free
    created_at: str


@dataclass
class Survey:
    claimable: list[Candidate] = field(default_factory=list)
    busy: dict[str, float] = field(default_factory=dict)  # job -> seconds until its lease expires
    untrusted: list[str] = field(default_factory=list)
    unleased_running: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def survey(store: JobStore, remote: str) -> Survey:
    """Which fetched jobs this worker could run now, and which may become runnable."""
    s = Survey()
    locks = for_each_ref(store, refs.remote_logist_prefix(remote, "locks"))
    now = time.time()
    for js in store.list_jobs(prefix=refs.remote_branch_prefix(remote)):
        m = js.manifest
        if m is None:
            s.invalid.append(js.id)
            continue
        if m.state != State.PENDING and m.state not in TRANSIENT:
            continue
        links = job_link_problems(store, js.tip)
        if needs_trust(m, links):
            previous = None
            if rev(store, refs.branch_ref(js.id)):
                try:
                    _, previous = store.read(js.id)
                except LogistError:
                    previous = None
            if not trusted_here(store, m, previous=previous, links=links):
                s.untrusted.append(js.id)
                continue
        lock_oid = locks.get(refs.remote_lock_ref(remote, js.id))
        if lock_oid is not None:
            held = remote_holder(store, remote, js.id)
            holder = held[1] if held else None
            if holder is not None and not remote_lease_expired(holder, now):
                s.busy[js.id] = max(0.0, holder.heartbeat_at + holder.lease_seconds - now)
                continue
            bad = holder.clock_problem(now) if holder is not None else None
            if bad:
                from logist.core.notices import notice

                notice(f"{refs.lock_ref(js.id)} on {remote}: invalid lock: {bad}; treated as expired")
        elif m.state in TRANSIENT:
            # Running somewhere without a remote lease (a person's `job run`, pushed mid-step):
            # never taken over by a worker.
            s.unleased_running.append(js.id)
            continue
        s.claimable.append(Candidate(js.id, js.tip, m.state, lock_oid, m.created_at))
    return s
