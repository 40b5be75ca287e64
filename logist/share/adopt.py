"""`logist job adopt` and the workers' import: bring a fetched ``<remote>/logist/<id>`` into the
local branch under the job's lease (created, fast-forwarded, or a diverged local tip kept under
``refs/logist/displaced``), record where it came from and whether it is trusted here; judge a
remote lease by its heartbeat (docs/sharing.md). Layer 5; never prints."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from logist.core.errors import ConcurrentUpdateError, JobNotFoundError, LockHeldError, LogistError, RemoteError
from logist.core.jobid import JobId
from logist.core.model import Manifest
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.fetch import fetch
from logist.share.remotes import is_ancestor, resolve_remote, rev
from logist.share.trust import job_link_problems, trusted_here
from logist.store.jobstore import JobStore, new_transition_id, utcnow


@dataclass
class ImportResult:
    job_id: JobId
    remote: str
    tip: str
    action: str  # created, fast-forward, up-to-date, ahead, replaced
    record_commit: str | None = None
    trusted: bool = True
    displaced: str | None = None
    worktree: str | None = None
    state: str = ""


def remote_holder(store: JobStore, remote: str, job_id: JobId):
    """(lock oid, Holder or None) of the fetched remote lock, or None when it is free."""
    from logist.git.gitcmd import CatFileBatch
    from logist.store.locks import Holder

    oid = rev(store, refs.remote_lock_ref(remote, job_id))
    if oid is None:
        return None
    with CatFileBatch(store.root) as batch:
        raw = batch.read(oid)
    return oid, (Holder.from_bytes(raw[:4096]) if raw else None)


def remote_lease_expired(holder, now: float | None = None) -> bool:
    """A remote lease is judged by its heartbeat alone: a holder on another machine (or in
    another container with the same host name) cannot be checked by pid."""
    if holder is None:
        return True
    now = time.time() if now is None else now
    if holder.clock_problem(now):  # a heartbeat far in the future would hold the job forever
        return True
    return now - holder.heartbeat_at > holder.lease_seconds


def _worktree_clean(wt: Path) -> bool:
    proc = git(["status", "--porcelain", "--untracked-files=all"], cwd=wt, check=False)
    return proc.returncode == 0 and not proc.stdout.strip()


def _move_branch(store: JobStore, job_id: JobId, new: str, old: str | None, lease_oid: str) -> None:
    """CAS the job branch (fenced by the lease) and bring its worktree along
    (docs/architecture.md#known-hazards-of-git)."""
    wt = store.worktree_path(job_id)
    has_wt = (wt / ".git").exists()
    if has_wt and not _worktree_clean(wt):
        raise ConcurrentUpdateError(
            f"job {job_id}: its worktree {wt} has uncommitted changes; not moving the branch",
            hint=f"commit or discard them (`git -C {wt} status`), then adopt again")
    verb = f"update {refs.branch_ref(job_id)} {new} {old}" if old else f"create {refs.branch_ref(job_id)} {new}"
    proc = store.ref_transaction(f"verify {refs.lock_ref(job_id)} {lease_oid}\n{verb}\n"
                                 f"update {refs.tip_ref(job_id)} {new}\n")
    if proc.returncode != 0:
        raise ConcurrentUpdateError(f"job {job_id} changed while it was being adopted",
                                    hint=f"run `logist job adopt {job_id}` again")
    if has_wt:
        head = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False).stdout.strip()
        if head == refs.branch_ref(job_id):
            git(["reset", "-q", "--hard", "HEAD"], cwd=wt)


def import_job(store: JobStore, remote: str, job_id: JobId, lease, *, replace_diverged: bool = False
               ) -> ImportResult:
    """Bring the fetched ``<remote>/logist/<id>`` into the local branch (under ``lease``).

    Creates the branch, fast-forwards it, or (``replace_diverged``: workers, whose clone the remote
    overrules) keeps a diverged local tip under ``refs/logist/displaced/<id>/<k>`` and resets to
    the remote. Then makes the record say where it came from and whether it is trusted *here*,
    by a normal fenced commit when that differs from what the remote's record says.
    """
    refs.validate_job_id(job_id)
    theirs = rev(store, refs.remote_branch_ref(remote, job_id))
    if theirs is None:
        raise JobNotFoundError(f"no job {job_id!r} fetched from {remote}",
                               hint=f"run `logist fetch {remote}` and `logist job list --remote {remote}`")
    store.read(job_id, at=theirs)  # validate the fetched record before anything changes
    local = rev(store, refs.branch_ref(job_id))
    previous = _readable_record(store, job_id, local)
    action, displaced = _bring_branch(store, remote, job_id, theirs, local, lease.oid, replace_diverged)
    from logist.store.review import refresh

    refresh(store, job_id)  # the job's work came from the remote: its review branch follows
    tip, m, record_commit = _record_origin_and_trust(store, remote, job_id, action, previous, lease.oid)
    return ImportResult(job_id, remote, tip, action, record_commit, m.trusted, displaced,
                        state=m.state.value)


def _readable_record(store: JobStore, job_id: JobId, at: str | None) -> Manifest | None:
    """The record at commit ``at``, or None (no commit, or a record that does not validate)."""
    if at is None:
        return None
    try:
        return store.read(job_id, at=at)[1]
    except LogistError:
        return None


def _bring_branch(store: JobStore, remote: str, job_id: JobId, theirs: str, local: str | None,
                  lease_oid: str, replace_diverged: bool) -> tuple[str, str | None]:
    """(what was done, displaced ref or None): the local branch created, fast-forwarded, left
    (up to date, or ahead), or, diverged, replaced when ``replace_diverged`` (else RemoteError)."""
    if local is None:
        _move_branch(store, job_id, theirs, None, lease_oid)
        return "created", None
    if local == theirs:
        return "up-to-date", None
    if is_ancestor(store, local, theirs):
        _move_branch(store, job_id, theirs, local, lease_oid)
        return "fast-forward", None
    if is_ancestor(store, theirs, local):
        return "ahead", None  # this clone has everything the remote has, and more
    if replace_diverged:
        from logist.engine.settle import keep_displaced

        displaced = keep_displaced(store, job_id, local)
        _move_branch(store, job_id, theirs, local, lease_oid)
        return "replaced", displaced
    raise RemoteError(
        f"job {job_id}: this clone and {remote} have diverged (both have commits the other lacks)",
        hint=f"compare with `git log --oneline {refs.branch_name(job_id)}...{remote}/"
             f"{refs.branch_name(job_id)}`; push or discard the local commits first")


def _record_origin_and_trust(store: JobStore, remote: str, job_id: JobId, action: str,
                             previous: Manifest | None, lease_oid: str
                             ) -> tuple[str, Manifest, str | None]:
    """(tip, record, the commit made or None): the record says where the job came from and
    whether it is trusted here, by a fenced commit when the fetched record says otherwise."""
    tip, m = store.read(job_id)
    origin = previous.origin if previous is not None else f"remote:{remote}"
    links = job_link_problems(store, tip)
    trusted = trusted_here(store, m, previous=previous, links=links)
    if (m.origin, m.trusted) == (origin, trusted):
        return tip, m, None
    from logist.store.job_state import Update, update_job_manifest

    def mut(x: Manifest) -> None:
        x.origin = origin
        x.trusted = trusted

    what = f"adopted from {remote}" if action != "ahead" else "record of origin and trust"
    body = (f"Job {job_id} {what} ({action}); origin {origin}; "
            + ("trusted here." if trusted else
               f"its commands are NOT trusted here: `logist job trust {job_id}` first.")
            + "".join(f"\nSymlink out of the worktree: {why}" for why in links))
    done = update_job_manifest(store, job_id,
                               Update(reason=what, mutate=mut, history_event="note",
                                      data={"adopted_from": remote, "origin": origin,
                                            "trusted": trusted, **({"symlinks": links} if links else {})}),
                               now=utcnow(), transition_id=new_transition_id(), tip=tip, current=m,
                               lease=lease_oid, body=body)
    if done is None:
        return tip, m, None
    record_commit, m = done
    return record_commit, m, record_commit


def adopt(store: JobStore, job_id: JobId, remote: str | None = None, *, do_fetch: bool = True,
          worktree: bool = True) -> ImportResult:
    """`logist job adopt`: fetch, check that nobody holds the job on the remote (or that the
    lease expired), take the local lease, bring the branch here, recreate the worktree."""
    from logist.store.locks import acquire

    refs.validate_job_id(job_id)
    remote = resolve_remote(store, remote)
    if do_fetch:
        fetch(store, remote)
    held = remote_holder(store, remote, job_id)
    if held is not None and not remote_lease_expired(held[1]):
        h = held[1]
        raise LockHeldError(f"job {job_id} is held on {remote} by {h.describe()}; its lease runs "
                            f"until {int(h.heartbeat_at + h.lease_seconds - time.time())}s from now",
                            hint=f"wait for it, or follow it with `logist fetch {remote}` and "
                                 f"`logist job status {job_id} --remote {remote}`")
    with acquire(store, job_id) as lease:
        res = import_job(store, remote, job_id, lease)
        store.run_dir(job_id).mkdir(parents=True, exist_ok=True)
        if worktree:
            res.worktree = str(store.ensure_worktree(job_id))
            store.sync_worktree_record(job_id)
    return res
