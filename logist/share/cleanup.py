"""Cleanup (docs/sharing.md, cleanup): applying the plan of `logist gc` or `logist job clean`.

Rules that hold whatever the options:

- DRAFT, PENDING and running jobs (a transient state, or a live lease) are never touched;
- ``refs/logist/archive/<id>`` is written (compare-and-swap) before anything is deleted, so a
  job's history and its notes stay reachable;
- a worktree is removed only when it is clean, no process runs in it, it is not locked, and its
  HEAD is contained in the archived tip; otherwise the job is kept and the reason is printed;
- a branch is deleted only after its worktree is gone, by compare-and-swap fenced by the job's
  lease (a runner that started meanwhile wins, nothing is lost);
- planning never changes anything: callers apply a plan only when the user said ``--yes``.

Which jobs are integrated is :mod:`logist.share.integration`; what to do with each job is
planned by :mod:`logist.share.gc_plan` (changing nothing); this module applies a plan.
Cleaning up an integrated job deletes its review branch too, when nothing on it would be lost.
"""

from __future__ import annotations

import shutil

from logist.core.errors import JobStateError, LockHeldError, LogistError
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.gc_plan import GcPlan, JobPlan, plan_gc
from logist.share.push import run_push
from logist.share.remotes import rev
from logist.share.worktree_checks import worktree_blockers
from logist.store.jobstore import JobStore


def apply_job(store: JobStore, jp: JobPlan) -> JobPlan:
    """Do what ``jp.actions`` says, in the safe order, under the job's lease. Errors are
    recorded in ``jp.errors`` (the job is then left as it is from that point on)."""
    from logist.store.locks import acquire

    if not jp.actions:
        return jp
    lease = None
    try:
        if jp.local_tip is not None:
            try:
                lease = acquire(store, jp.job_id, command="logist gc")
            except LockHeldError as exc:
                jp.errors.append(exc.message)
                return jp
            if rev(store, refs.branch_ref(jp.job_id)) != jp.local_tip:
                jp.errors.append("the job changed while cleaning up; run gc again")
                return jp
        _archive(store, jp)
        if "remove-worktree" in jp.actions:
            _remove_worktree(store, jp)
        if "delete-branch" in jp.actions:
            _delete_branch(store, jp, lease.oid if lease else None)
        if "delete-remote-branch" in jp.actions:
            _delete_remote(store, jp)
    except LogistError as exc:
        jp.errors.append(exc.message)
    finally:
        if lease is not None:
            lease.release()
    return jp


def _archive(store: JobStore, jp: JobPlan) -> None:
    from logist.store.archive import archive_tip

    tip = jp.judged_tip
    if archive_tip(store, jp.job_id, tip):
        jp.done.append(f"archived {tip[:12]} as {refs.archive_ref(jp.job_id)}")


def _remove_worktree(store: JobStore, jp: JobPlan) -> None:
    tip = jp.judged_tip
    wt = store.worktree_path(jp.job_id)
    blockers = worktree_blockers(store, jp.job_id, tip)
    if blockers:
        raise JobStateError(f"worktree {wt} kept: " + "; ".join(blockers))
    if (wt / ".git").exists():
        proc = git(["worktree", "remove", "--end-of-options", str(wt)], cwd=store.root, check=False)
        if proc.returncode != 0:
            raise JobStateError(f"git refused to remove worktree {wt}: {proc.stderr.strip()}")
    elif wt.exists():
        wt.rmdir()  # an empty directory (checked by worktree_blockers)
    git(["worktree", "prune"], cwd=store.root, check=False)
    jp.done.append(f"removed worktree {wt}")


def _delete_branch(store: JobStore, jp: JobPlan, lease_oid: str | None) -> None:
    if (store.worktree_path(jp.job_id) / ".git").exists():
        raise JobStateError("its worktree still exists; the branch is kept")
    lines = []
    if lease_oid:
        lines.append(f"verify {refs.lock_ref(jp.job_id)} {lease_oid}\n")
    lines.append(f"verify {refs.archive_ref(jp.job_id)} {jp.tip}\n")
    lines.append(f"delete {refs.branch_ref(jp.job_id)} {jp.local_tip}\n")
    lines.append(f"delete {refs.tip_ref(jp.job_id)}\n")  # the archive keeps the tip now
    store.update_refs("".join(lines))
    run_dir = store.run_dir(jp.job_id)
    shutil.rmtree(run_dir, ignore_errors=True)
    jp.done.append(f"deleted branch {refs.branch_name(jp.job_id)} (kept as {refs.archive_ref(jp.job_id)})")
    from logist.share.review import delete_local

    review = delete_local(store, jp.job_id, jp.base_oid, jp.tip)
    if review:
        (jp.done if review.startswith("deleted") else jp.kept).append(review)


def _delete_remote(store: JobStore, jp: JobPlan) -> None:
    from logist.share.push import update_tracking
    from logist.share.review import remote_delete_spec

    assert jp.remote and jp.remote_tip
    archive = refs.archive_ref(jp.job_id)
    branch = refs.branch_ref(jp.job_id)
    review_specs, review_leases = remote_delete_spec(store, jp.remote, jp.job_id, jp.base_oid, jp.tip)
    ok, lines, _ = run_push(store, jp.remote, [f"{archive}:{archive}", f":{branch}", *review_specs],
                            leases=[f"{branch}:{jp.remote_tip}", *review_leases])
    if not ok:
        bad = "; ".join(f"{ln.dst}: {ln.reason}" for ln in lines if ln.rejected)
        raise JobStateError(f"{jp.remote} kept {refs.branch_name(jp.job_id)}: {bad}",
                            hint=f"run `logist fetch {jp.remote}` and gc again")
    update_tracking(store, jp.remote, lines)
    jp.done.append(f"deleted {refs.branch_name(jp.job_id)} on {jp.remote} (archive pushed)")
    if review_specs:
        jp.done.append(f"deleted {refs.review_name(jp.job_id)} on {jp.remote}")


def run_gc(store: JobStore, *, yes: bool = False, base: str | None = None,
           keep_days: float | None = None, remote: str | None = None,
           job_ids: list[str] | None = None) -> GcPlan:
    """Plan, and with ``yes`` apply. Without ``yes`` nothing changes."""
    plan = plan_gc(store, base=base, keep_days=keep_days, remote=remote, job_ids=job_ids)
    if yes:
        for jp in plan.jobs:
            if jp.actions:
                apply_job(store, jp)
    return plan
