"""Crash recovery from the branch tip (docs/architecture.md#invariants, 5; docs/recovery.md) and `logist recover`.

Layer 5: use-cases that return results and raise ``LogistError``; they never print.

What "interrupted" means: a job whose tip is in a transient state (PROVISIONING, EXECUTING,
RECOVERING, HARVESTING), or whose record says a restep is in flight (``execution.restep``, while
the job rests), and that no live process holds; or any job whose lock was left behind by a
process that is gone. Recovery takes the lease over (compare-and-swap from the stale
value, so two recoverers never both win) and re-enters the step engine at the phase the tip
names:

- PROVISIONING: provision again (idempotent: the worktree is reused) and run the step;
- EXECUTING: the agent exited while nobody watched (its exit status was recorded by the
  wrapper it runs under): harvest it; the agent still runs: re-attach and wait; the agent never
  started (the runner died between the EXECUTING commit and the spawn): start it, same attempt;
  the agent was killed: RECOVERING, then re-execute with attempt + 1, or INTERVENTION_REQUIRED
  when the attempts are spent;
- RECOVERING: re-execute (attempt + 1) or INTERVENTION_REQUIRED;
- HARVESTING: harvest again from what was saved (the exit code is in the HARVESTING entry);
- a restep in flight: finish it the way ``logist job run`` does (``logist.engine.repair.repair_interrupted``):
  re-attach to its agent, harvest its recorded exit, use an isolated result already kept, or
  execute it again (attempt + 1) / record a failure when the attempts are spent;
- a resting job with a dead lock: release it, bring the worktree's copy of the record and its
  index to the tip, unlock the worktree.

How an agent's execution is recorded and found again: ``logist.engine.agent_proc``; logist's
own last commit and settling the branch after an agent: ``logist.engine.settle``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from logist.core.errors import BusyError, JobStateError, LogistError, UsageError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import TERMINAL, TRANSIENT, Manifest, State, StepStatus
from logist.engine.agent_proc import agent_status, stop_agent
from logist.engine.settle import is_ancestor, own_tip, settle_branch
from logist.git import refs, worktree_lock
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore, new_transition_id, utcnow

Progress = Callable[[str], None]

# ---- what is interrupted, and what recovery will do ----------------------------------------

@dataclass
class Interrupted:
    id: JobId
    title: str
    state: str
    step: int | None
    step_count: int | None
    holder: dict[str, Any] | None
    since: str | None
    action: str
    # "transient" (a step stopped mid-way), "restep" (a restep stopped mid-way; the job rests)
    # or "dead-lock" (a resting job, lock left)
    kind: str
    restep_step: int | None = None  # kind "restep": the step being re-executed

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "state": self.state, "step": self.step,
                "step_count": self.step_count, "holder": self.holder, "since": self.since,
                "action": self.action, "kind": self.kind, "restep_step": self.restep_step}

    def warning(self) -> str:
        if self.kind == "restep":
            which = f" of step {self.restep_step}" if self.restep_step else ""
            return (f"job {self.id}: a restep{which} was interrupted; run `logist recover "
                    f"{self.id}` to finish it")
        if self.kind == "dead-lock":
            return (f"job {self.id} was left locked by a process that is gone "
                    f"({(self.holder or {}).get('stale_reason', 'dead holder')}); "
                    f"run `logist recover {self.id}`")
        return f"job {self.id} was interrupted in {self.state}; run `logist recover` to resume it"


def _holder_dict(oid: str, holder) -> dict[str, Any]:
    if holder is None:
        return {"lock": oid, "valid": False, "stale": True, "stale_reason": "unreadable lock record"}
    reason = holder.stale_reason()
    return {"lock": oid, "pid": holder.pid, "host": holder.host, "command": holder.command,
            "since": holder.since(), "heartbeat_at": holder.heartbeat_at,
            "lease_seconds": holder.lease_seconds, "stale": reason is not None, "stale_reason": reason}


def restep_in_flight(m: Manifest) -> bool:
    """The record says a restep is in flight (``execution.restep``): interrupted unless a live
    process holds the job. The job itself rests meanwhile (its state is not transient)."""
    return m.state not in TRANSIENT and m.execution is not None and m.execution.restep


def needs_recovery(m: Manifest) -> bool:
    """A transient state or a restep in flight: what a runner that died leaves at the tip."""
    return m.state in TRANSIENT or restep_in_flight(m)


def _running_step(m: Manifest) -> int | None:
    """The step a restep in flight re-executes (the one its start marked RUNNING)."""
    running = [i for i, s in enumerate(m.steps, 1) if s.status == StepStatus.RUNNING]
    return running[-1] if running else None


def plan_action(store: JobStore, m: Manifest) -> str:
    """In words: what recovering this job will do, judged from its tip."""
    if restep_in_flight(m):
        return _restep_words(store, m)
    if m.state == State.PROVISIONING:
        return f"provision again, then run step {m.step} (attempt {m.attempt})"
    if m.state == State.EXECUTING:
        st = agent_status(store, m)
        if st.kind == "running":
            return f"re-attach to the running agent (pid {st.pid}) and harvest it"
        if st.kind == "exited":
            return f"harvest the finished agent (exit code {st.exit_code})"
        if st.kind == "not-started":
            return f"start the agent of step {m.step} (attempt {m.attempt})"
        return _restart_words(m)
    if m.state == State.RECOVERING:
        return _restart_words(m)
    if m.state == State.HARVESTING:
        return f"harvest step {m.step} again from what was saved"
    return "release the dead lock"


def _restep_words(store: JobStore, m: Manifest) -> str:
    from logist.engine.restep import describe_restep_in_flight

    r = describe_restep_in_flight(store, m)
    if r is None:
        return "clear the restep in flight (its start is not in the history) and record a failure"
    what = f"restep {r.number} of step {r.step}" + (" (isolated)" if r.isolated else "")
    if r.isolated and r.result_kept:
        return f"finish {what} from its result kept at {r.result_kept}"
    st = agent_status(store, m)
    if st.kind == "running":
        return f"re-attach to the running agent of {what} (pid {st.pid}) and record its outcome"
    if st.kind == "exited":
        return f"record the outcome of {what}: its agent finished (exit code {st.exit_code})"
    if r.attempt >= m.budget.max_attempts:
        return (f"record {what} as failed: attempts spent ({r.attempt} of "
                f"{m.budget.max_attempts})")
    return f"re-execute {what} (attempt {r.attempt + 1} of {m.budget.max_attempts})"


def _restart_words(m: Manifest) -> str:
    if m.attempt >= m.budget.max_attempts:
        return (f"move to INTERVENTION_REQUIRED: attempts spent ({m.attempt} of "
                f"{m.budget.max_attempts})")
    return f"re-execute step {m.step} (attempt {m.attempt + 1} of {m.budget.max_attempts})"


def interrupted_jobs(store: JobStore, *, with_actions: bool = True,
                     summaries: list | None = None) -> list[Interrupted]:
    """Every interrupted job (see the module docstring), sorted by id. A handful of git
    processes whatever the number of jobs; no writes. ``summaries`` reuses a listing the
    caller already made (``store.list_jobs()``)."""
    from logist.store.locks import read_locks

    summaries = store.list_jobs() if summaries is None else summaries
    locks = read_locks(store)
    out = []
    for s in summaries:
        m = s.manifest
        if m is None:  # an agent may have broken the tip's record mid-step: judge logist's own
            try:
                _, m = own_tip(store, s.id)
            except LogistError:
                continue
        lock = locks.get(s.id)
        holder = _holder_dict(*lock) if lock else None
        if holder is not None and not holder["stale"]:
            continue  # a live process holds it
        if m.state in TRANSIENT:
            kind = "transient"
        elif restep_in_flight(m):
            kind = "restep"
        elif holder is not None:
            kind = "dead-lock"
        else:
            continue
        since = holder.get("since") if holder else None
        action = plan_action(store, m) if with_actions else ""
        out.append(Interrupted(m.id, m.title, m.state.value, m.step, m.step_count, holder,
                               since or m.updated_at, action, kind,
                               _running_step(m) if kind == "restep" else None))
    return out


def check_counts(store: JobStore) -> dict[str, int]:
    """{state: number of interrupted jobs in it}."""
    counts: dict[str, int] = {}
    for j in interrupted_jobs(store, with_actions=False):
        counts[j.state] = counts.get(j.state, 0) + 1
    return dict(sorted(counts.items()))


# ---- acting ----------------------------------------------------------------------------

@dataclass
class Recovered:
    id: str
    before: str
    after: str | None
    step: int | None
    did: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "before": self.before, "after": self.after, "step": self.step,
                "did": self.did, "error": self.error}


def sync_worktree(store: JobStore, job_id: JobId) -> list[str]:
    """Bring a resting job's worktree to its tip: the record's copy and index, and no
    ``git worktree lock`` left by a step that was interrupted. What was done, in words."""
    did: list[str] = []
    wt = store.worktree_path(job_id)
    if store.read(job_id)[1].state in TERMINAL:  # its release may have been interrupted: finish it
        did += store.sweep_released()
        if os.path.lexists(wt / ".git") and not store.config.worktrees.keep_finished:
            worktree_lock.unlock(store.paths.common_dir, wt)
            kept = store.release_worktree(job_id)
            did.append(f"kept the worktree: {kept}" if kept else "released the worktree (the job has finished)")
    if not (wt / ".git").exists():
        return did
    if store.sync_worktree_record(job_id):
        did.append("restored the worktree's copy of the record from the tip")
    if worktree_lock.unlock(store.paths.common_dir, wt):
        did.append("unlocked the worktree")
    return did


def _usable_worktree(store: JobStore, job_id: JobId) -> bool:
    """True when the job's worktree can be committed from (repaired first when an agent broke
    it; a missing one is not created: there is no work in it to keep)."""
    wt = store.worktree_path(job_id)
    if not os.path.lexists(wt / ".git"):
        return False
    try:
        store.ensure_worktree(job_id)
    except LogistError:
        return False
    return store.worktree_problem(wt) is None


def _take_interrupted(store: JobStore, job_id: JobId, verb: str, hint: str):
    """Check that ``job_id`` is interrupted (a transient tip, a restep in flight or a lock left
    behind), then take its lease (over a dead holder). Returns (state before, lease, what was
    done so far)."""
    from logist.store.locks import acquire, read_lock

    refs.validate_job_id(job_id)
    _, m = own_tip(store, job_id)
    if read_lock(store, job_id) is None and not needs_recovery(m):
        raise UsageError(f"job {job_id} is {m.state.value} and not interrupted; nothing to {verb}",
                         hint=hint)
    lease = acquire(store, job_id)
    did = [f"took over the lease ({lease.takeover_reason})"] if lease.takeover_reason else []
    return m.state.value, lease, did


def recover_job(store: JobStore, job_id: JobId, *, progress: Progress | None = None,
                trust: bool = False) -> Recovered:
    """Recover one job: take over its lease and finish its interrupted step or restep (the job
    then rests), or release a dead lock of a resting job. LockHeldError (exit 4) when a live
    process holds it; UsageError when there is nothing to recover."""
    # The engine and restep modules are imported only when a job is recovered: `job list`
    # imports this module (interrupted_jobs) and must stay fast.
    from logist.engine.repair import make_engine, repair_interrupted

    progress = progress or (lambda msg: None)
    before, lease, did = _take_interrupted(store, job_id, "recover", f"run `logist job status {job_id}`")
    try:
        crash_point("recover-after-takeover")
        _, m = own_tip(store, job_id)
        if m.state in TRANSIENT:
            result = make_engine(store, progress=progress, trust=trust).step(job_id, lease=lease)
            did.append(f"finished the interrupted step {m.step}: {result.state.value}"
                       + (f" ({result.reason})" if result.reason and result.state != State.SUCCESS
                          and result.state != State.PENDING else ""))
        elif restep_in_flight(m):
            # What `logist job run` does first (Engine._repair): finish the restep, nothing more.
            lease.start_heartbeat()
            try:
                repaired = repair_interrupted(make_engine(store, progress=progress, trust=trust), lease)
            finally:
                lease.stop_heartbeat()
            if repaired is not None:
                did.append(f"finished the interrupted {repaired.reason}")
            store.unlock_worktree(job_id)
        else:
            did += sync_worktree(store, job_id)
            did.append("released the dead lock")
        _, after = store.read(job_id)
    finally:
        lease.release()
    return Recovered(job_id, before, after.state.value, after.step, did)


def recover_all(store: JobStore, *, progress: Progress | None = None, trust: bool = False
                ) -> tuple[list[Path], list[Recovered]]:
    """Remove stale ``*.lock`` files, then recover every interrupted job, one after the other.
    A job that fails to recover is reported (``error``) and the others go on."""
    from logist.git.reftx import remove_stale_lock_files

    removed = remove_stale_lock_files(store.paths.common_dir, store.git_places())
    for did in store.sweep_released():
        (progress or (lambda msg: None))(did)
    results = []
    for j in interrupted_jobs(store, with_actions=False):
        try:
            results.append(recover_job(store, j.id, progress=progress, trust=trust))
        except BusyError as exc:
            results.append(Recovered(j.id, j.state, None, j.step, error=exc.message, exit_code=4))
        except LogistError as exc:
            results.append(Recovered(j.id, j.state, None, j.step, error=exc.message, exit_code=1))
        except Exception as exc:  # one poisoned job never stops the recovery of the others
            why = f"{type(exc).__name__}: {str(exc)[:300]}"
            results.append(Recovered(j.id, j.state, None, j.step, exit_code=1,
                                     error=f"could not be recovered ({why}); give it up with "
                                           f"`logist recover --abandon {j.id}` or `logist job cancel {j.id}`"))
    return removed, results


def abandon(store: JobStore, job_id: JobId, *, reason: str | None = None,
            progress: Progress | None = None) -> Recovered:
    """Give up an interrupted job: stop its agent if one still runs, release the dead lock and
    move the job to INTERVENTION_REQUIRED (the worktree's changes are committed with it, so
    nothing is lost). An interrupted restep is recorded as failed instead; the job keeps its
    resting state. History is never deleted. LockHeldError if a live process holds it."""
    from logist.store.job_state import Update, update_job_manifest

    before, lease, did = _take_interrupted(store, job_id, "abandon",
                                           f"to stop it anyway: `logist job cancel {job_id}`")
    why = reason or "abandoned after an interruption (`logist recover --abandon`)"
    try:
        own, m = own_tip(store, job_id)
        if restep_in_flight(m):
            # The job rests; only its restep is given up (recorded as failed, work kept).
            from logist.engine.repair import make_engine
            from logist.engine.restep import abandon_restep

            res = abandon_restep(make_engine(store, progress=progress), lease, why)
            store.unlock_worktree(job_id)
            _, m = store.read(job_id)
            if res is not None:
                did.append(f"recorded restep {res.restep} of step {res.step} as failed "
                           f"(the job stays {m.state.value})")
        elif m.state in TRANSIENT:
            if m.state == State.EXECUTING:
                st = agent_status(store, m)
                if st.kind == "running":
                    stop_agent(st)
                    did.append(f"stopped the agent (pid {st.pid})")
            tip, warnings = settle_branch(store, job_id, own)
            events = {State.PROVISIONING: ["provision_failed"], State.EXECUTING: ["hung", "gave_up"],
                      State.RECOVERING: ["gave_up"], State.HARVESTING: ["intervention"]}[m.state]

            def mut(x: Manifest) -> None:
                x.current.status = StepStatus.FAILURE
                x.current.reason = why
                x.execution = None

            history_from = own
            for i, event in enumerate(events):
                last = i == len(events) - 1
                done = update_job_manifest(
                    store, job_id, Update(event=event, reason=why, mutate=mut if last else None,
                                          data={"abandoned": True, **({"warnings": warnings}
                                                                      if warnings and last else {})}),
                    now=utcnow(), transition_id=new_transition_id(), tip=tip, current=m,
                    lease=lease.oid, parent=tip, history_from=history_from,
                    include_worktree=last and _usable_worktree(store, job_id), body=why)
                assert done is not None
                tip, m = done
                history_from = tip
            store.unlock_worktree(job_id)
            did.append(f"moved the job from {before} to {m.state.value}")
        else:
            did += sync_worktree(store, job_id)
            did.append(f"released the dead lock (the job stays {m.state.value})")
    finally:
        lease.release()
    return Recovered(job_id, before, m.state.value, m.step, did)


# ---- cleanup ---------------------------------------------------------------------------

@dataclass
class Cleaned:
    id: str
    state: str
    archive_ref: str | None
    worktree_removed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "archive_ref": self.archive_ref,
                "worktree_removed": self.worktree_removed, "reason": self.reason}


def _age_days(iso: str, now: float) -> float:
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (now - t.timestamp()) / 86400.0


def cleanup(store: JobStore, *, keep_days: float, dry_run: bool = False,
            now: float | None = None) -> list[Cleaned]:
    """Finished jobs (SUCCESS, CANCELED) last changed more than ``keep_days`` ago: write
    ``refs/logist/archive/<id>`` at the tip first, then remove the worktree when it is clean and
    nobody holds the job. Branches, history and notes are kept. Also removes stale ``*.lock``
    files and the run scratch (step logs are in ``refs/notes/logist/logs``) of cleaned jobs."""
    from logist.core.limits import check_number
    from logist.git.reftx import remove_stale_lock_files
    from logist.store.locks import read_locks

    check_number(keep_days, "--keep-days")
    now = time.time() if now is None else now
    if not dry_run:
        remove_stale_lock_files(store.paths.common_dir, store.git_places())
    locks = read_locks(store)
    out = []
    for s in store.list_jobs():
        m = s.manifest
        if m is None or m.state not in TERMINAL or _age_days(m.updated_at, now) < keep_days:
            continue
        if s.id in locks:
            _, holder = locks[s.id]
            if holder is not None and holder.stale_reason() is None:
                out.append(Cleaned(m.id, m.state.value, None, False, f"held by {holder.describe()}"))
                continue
        out.append(_clean_one(store, m, s.tip, dry_run=dry_run))
    return out


def _clean_one(store: JobStore, m: Manifest, tip: str, *, dry_run: bool) -> Cleaned:
    """One finished job nobody holds: archived at ``tip`` (never over an archive that keeps a
    commit the tip lacks: logist.store.archive), then its worktree removed when it is clean and
    holds nothing the branch lacks."""
    import shutil

    from logist.store.archive import archive_tip

    wt = store.worktree_path(m.id)
    ref = refs.archive_ref(m.id)
    if dry_run:
        exists = (wt / ".git").exists()
        return Cleaned(m.id, m.state.value, ref, exists,
                       "would archive" + (" and remove the worktree" if exists else ""))
    try:
        archive_tip(store, m.id, tip)
    except JobStateError as exc:
        return Cleaned(m.id, m.state.value, None, False, f"kept: {exc.message}")
    if not (wt / ".git").exists():
        return Cleaned(m.id, m.state.value, ref, False, "no worktree")
    kept = _why_worktree_stays(store, m.id, wt, tip)
    if kept:
        return Cleaned(m.id, m.state.value, ref, False, kept)
    worktree_lock.unlock(store.paths.common_dir, wt)
    proc = git(["worktree", "remove", "--", str(wt)], cwd=store.root, check=False)
    if proc.returncode != 0:
        return Cleaned(m.id, m.state.value, ref, False,
                       f"worktree not removed: {proc.stderr.strip().splitlines()[-1:]}")
    shutil.rmtree(store.run_dir(m.id), ignore_errors=True)
    return Cleaned(m.id, m.state.value, ref, True, "archived; worktree removed")


def _why_worktree_stays(store: JobStore, job_id: JobId, wt: Path, tip: str) -> str | None:
    """Why a finished job's worktree is kept (uncommitted changes; a HEAD with commits the job
    branch lacks, whose only way back is its HEAD reflog, kept like `job clean` does), or None."""
    status = git(["status", "--porcelain", "--untracked-files=normal"], cwd=wt, check=False)
    if status.returncode != 0 or status.stdout.strip():
        return "worktree has uncommitted changes; kept"
    head = git(["rev-parse", "-q", "--verify", "HEAD"], cwd=wt, check=False).stdout.strip()
    if not head or not is_ancestor(store, head, tip):
        return (f"worktree HEAD {head[:12] or '(unreadable)'} has commits that are not on "
                f"the job branch; kept (save them, then `logist job clean {job_id}`)")
    return None
