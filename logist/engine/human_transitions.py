"""Human transitions (docs/states.md): activate, suspend, resume, cancel, approve, reject,
resubmit, each one commit under the job's lease; resubmit first commits what the person
changed in the worktree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logist.core.errors import JobStateError, UsageError
from logist.core.jobid import JobId
from logist.core.states import TERMINAL, TRANSIENT, State
from logist.git import refs
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, acquire

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    from logist.core.model import Manifest
    from logist.store.record_view import RecordView


# Human transitions (docs/states.md): activate, suspend, resume, cancel, approve, reject, resubmit.
HUMAN_EVENTS = ("activate", "suspend", "resume", "cancel", "approve", "reject", "resubmit")


def _mutate_for(event: str, message: str | None):
    from logist.core.states import StepStatus

    def mutate(m: Manifest | RecordView) -> None:  # the same attributes (logist.store.record_view)
        if event == "reject":
            # Rejection sends the last step back: it runs again with the reviewer's message.
            m.attempt = 0
            m.current.status = StepStatus.PENDING  # a step's first status (tests/test_record_view.py)
            m.current.reason = message or "rejected"
        elif event == "resubmit":
            m.attempt = 0
            m.current.status = StepStatus.PENDING
        elif event == "approve":
            m.current.reason = message or ""
        if event in ("cancel", "suspend", "resume", "resubmit", "approve", "reject"):
            m.execution = None
    return mutate


def human_transition(store: JobStore, job_id: JobId, event: str, *, message: str | None = None
                     ) -> Manifest | RecordView:
    """Apply one human event under the job's lock; one commit, or a JobStateError and no change."""
    if event not in HUMAN_EVENTS:
        raise UsageError(f"unknown action {event!r}")
    refs.validate_job_id(job_id)
    store.read_record(job_id)  # the job exists and its record is valid (the models only for one not seen before)
    # any state may go on: the table decides under the lock, which refuses while a runner is alive
    with acquire(store, job_id) as lease:
        return human_locked(store, lease, job_id, event, message)


def human_locked(store: JobStore, lease: Lease, job_id: JobId, event: str, message: str | None
                 ) -> Manifest | RecordView:
    from logist.core.faults import crash_point
    from logist.store.job_state import Update, update_job_manifest

    crash_point("human-after-lock")
    # A known-valid record changes without the models (logist.store.record_view); one not
    # seen before, or not complete as logist writes it, is validated by them first.
    tip, manifest = store.read_view(job_id)
    update = Update(event=event, reason=message or f"{event} by user", mutate=_mutate_for(event, message),
                    data={"message": message} if message else None)
    extra: dict[str, Any] = {}
    if manifest.state in TRANSIENT:
        # An interrupted step (its runner is gone: we hold the lease now). Judge logist's own
        # record, stop an agent that still runs, and keep whatever it did to the branch.
        from logist.engine.agent_proc import agent_status, stop_agent
        from logist.engine.settle import own_tip, settle_branch

        own, manifest = own_tip(store, job_id)
        if manifest.state == State.EXECUTING:
            stop_agent(agent_status(store, manifest))
        tip, warnings = settle_branch(store, job_id, own)
        extra = {"parent": tip, "history_from": own}
        if warnings:
            update.data = {**(update.data or {}), "warnings": warnings}
    if event == "resubmit" and not extra and manifest.state == State.INTERVENTION_REQUIRED:
        person = commit_persons_changes(store, lease, job_id, tip, message)
        if person is not None:  # the transition builds on the person's commit
            extra = {"parent": person, "history_from": tip}
            tip = person
            update.data = {**(update.data or {}), "person_commit": person}
    done = update_job_manifest(store, job_id, update, now=utcnow(), transition_id=new_transition_id(),
                               tip=tip, current=manifest, lease=lease.oid,
                               body=message or "", **extra)
    if done is None:  # pragma: no cover - an event always changes the state
        return manifest
    _, new = done
    crash_point("human-after-commit")
    from logist.engine.stop import clear_request

    clear_request(store, job_id)  # answered, or stale: it must not stop a later run
    if manifest.state in TRANSIENT:
        store.unlock_worktree(job_id)
    if new.state in TERMINAL and not store.config.worktrees.keep_finished:
        kept = store.release_worktree(job_id)  # one with changes stays, and the person is told why
        if kept:
            from logist.core.notices import notice

            notice(f"job {job_id}: worktree kept: {kept}")
    return new


def commit_persons_changes(store: JobStore, lease: Lease, job_id: JobId, tip: str,
                           message: str | None) -> str | None:
    """`job resubmit`: what a person changed in the job's worktree (outside .logist/) since the
    step failed becomes their own commit on the job branch, before the step runs again (author
    and committer: their git identity; trailers ``Logist-Job`` and ``Logist-Event: resubmit``),
    so the next harvest holds only the agent's work. None when nothing changed. The caller holds
    the job's lease; the branch moves by compare-and-swap from ``tip``."""
    from logist.core.errors import GitError
    from logist.git.gitcmd import git

    wt = store.worktree_path(job_id)
    if not (wt / ".git").exists():
        return None
    outside = ["--", ":(top)", ":(top,exclude).logist"]
    status = git(["status", "--porcelain", "--untracked-files=all", *outside], cwd=wt, check=False)
    if status.returncode != 0 or not status.stdout.strip():
        return None
    head = git(["rev-parse", "HEAD"], cwd=wt).stdout.strip()
    if head != tip:
        raise JobStateError(f"the worktree of job {job_id} is not at the job's tip ({head[:12]} vs {tip[:12]})",
                            hint=f"commit or reset in {wt} first, or run `logist doctor`")
    index = store.paths.logist_dir / "run" / job_id / "resubmit.index"
    index.parent.mkdir(parents=True, exist_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(["read-tree", tip], cwd=wt, env=env)
        git(["add", "-A", *outside], cwd=wt, env=env)
        tree = git(["write-tree"], cwd=wt, env=env).stdout.strip()
    finally:
        index.unlink(missing_ok=True)
    subject = f"logist({job_id}): changes made by hand before resubmit"
    body = (message.strip() + "\n\n") if message and message.strip() else ""
    msg = f"{subject}\n\n{body}Logist-Job: {job_id}\nLogist-Event: resubmit\n"
    proc = git(["commit-tree", tree, "-p", tip], cwd=wt, input=msg, check=False)
    if proc.returncode != 0:
        raise GitError(f"cannot commit your changes in {wt}: {proc.stderr.strip()}",
                       hint="set your identity (`git config user.name` / `user.email`) and run resubmit again")
    oid = proc.stdout.strip()
    store.publish(job_id, oid, tip, lease=lease.oid)
    git(["reset", "-q", "--", "."], cwd=wt, check=False)  # the worktree's index to the new commit
    return oid
