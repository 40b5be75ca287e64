"""Rerun and restep through git history (docs/rerun.md).

**rerun** starts run n+1 of a job. The current tip is kept at ``refs/logist/runs/<id>/<n>``
and the job branch continues from the commit at which step N started in the replaced run: one
"run" commit whose parent is that commit, whose tree is that commit's code plus the record
carried forward (the whole history of every run, ``run`` + 1, steps before N SKIPPED, steps
from N on reset). The run ref is created, the lease verified and the branch moved in *one*
``git update-ref --stdin`` transaction. The job's worktree is moved between the two commits
with a two-tree ``git read-tree -m -u`` (what ``git checkout`` does), so its index follows and
uncommitted changes that do not conflict are carried along; a marker under the git directory
records the move, so an interruption anywhere is repaired from the tip (undone while the
branch is still at the old tip, finished once it moved).

**restep** (``logist job restep``) re-executes one step without touching the job's state, run
or current step; this module checks and starts it, ``logist.engine.restep`` runs and finishes
it, ``logist.engine.repair`` finishes an interrupted one (``logist job run`` / ``logist job
step`` call it first, ``logist recover`` alone).

Layer 4: returns results and raises LogistError; never prints or exits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logist.core.errors import ConcurrentUpdateError, JobStateError, LogistError, UsageError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Manifest, RunInfo, State, StepStatus
from logist.engine.job_processor import Engine
from logist.engine.repair import make_engine
from logist.engine.rerun_base import (
    busy_or_interrupted,
    check_range,
    check_resting,
    commit_exists,
    parse_step,
    ref_value,
    steps_text,
)
from logist.engine.restep import RestepResult, restep_start
from logist.engine.trustgate import require_trust
from logist.engine.worktree_move import (
    check_worktree_on_branch,
    has_worktree,
    move_marker,
    read_tree,
    repair_worktree_move,
    write_marker,
)
from logist.git import refs
from logist.store.job_state import Update, update_job_manifest
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, acquire

Progress = Callable[[str], None]

__all__ = ["RerunResult", "RestepResult", "parse_step", "rerun_job", "restep_job", "run_start_point"]


# ---------------------------------------------------------------------------- results

@dataclass
class RerunResult:
    job_id: JobId
    run: int  # the new run
    from_step: int
    previous_run: int
    previous_tip: str
    run_ref: str
    start_commit: str  # the commit the new run continues from
    commit: str  # the run commit
    state: State
    step: int
    skipped: list[int] = field(default_factory=list)
    outcome: str | None = None
    reason: str = ""
    ran: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "run": self.run, "from_step": self.from_step,
                "previous_run": self.previous_run, "previous_tip": self.previous_tip,
                "run_ref": self.run_ref, "start_commit": self.start_commit, "commit": self.commit,
                "skipped_steps": self.skipped, "ran": self.ran, "state": self.state.value,
                "step": self.step, "outcome": self.outcome, "reason": self.reason}


# ---------------------------------------------------------------------------- rerun

def run_start_point(m: Manifest, tip: str, n: int) -> str:
    """The commit run n+1 continues from: where step ``n`` started in the current run.

    A step that has not started in this run can be the start only when the run stands right
    before it: it is the current step, or the step after a current step that is done (a
    restep made it SUCCESS). Its start is then the tip.
    """
    s = m.steps[n - 1]
    if s.started_commit:
        return s.started_commit
    if n == m.step:
        return tip
    if n == m.step + 1 and m.current.status == StepStatus.SUCCESS:
        return tip
    raise JobStateError(
        f"step {n} of job {m.id} never started in run {m.run} (the run stopped at step {m.step} "
        f"in {m.state.value}), so there is no commit to continue from",
        hint=f"rerun from step {m.step} or earlier: `logist job rerun {m.id} --step {m.step}`")


def rerun_job(store: JobStore, job_id: JobId, *, step: int | str | None = None, run: bool = True,
              trust: bool = False, progress: Progress | None = None) -> RerunResult:
    """Start run n+1 of a job from step ``step`` (default 1); then run it unless ``run`` is False.

    Allowed from any resting state (terminal ones too); LockHeldError (exit 4) while a step
    runs. Every refusal happens before anything is written.
    """
    refs.validate_job_id(job_id)
    n = 1 if step is None else parse_step(step)
    tip, m = store.read(job_id)
    check_range(m, n)
    busy_or_interrupted(store, m, "rerun it")
    run_start_point(m, tip, n)
    _check_run_ref_free(store, m)
    engine = make_engine(store, progress=progress, trust=trust)
    lease = acquire(store, job_id)
    try:
        repair_worktree_move(store, job_id, progress)
        tip, m = store.read(job_id)
        check_resting(m, "rerun it")
        check_range(m, n)
        start = run_start_point(m, tip, n)
        if not commit_exists(store, start):
            raise JobStateError(f"job {job_id}: the commit where step {n} started ({start[:12]}) is "
                                "missing from this repository",
                                hint="fetch it (`logist fetch`), or rerun from another step")
        _check_run_ref_free(store, m)
        result = _prepare_run(store, lease, tip, m, n, start, progress or (lambda msg: None))
        if not run:
            return result
        res = engine.run(job_id, lease=lease)
        result.state, result.step, result.outcome, result.reason = res.state, res.step, res.outcome, res.reason
        result.ran = True
        return result
    finally:
        lease.release()


def _check_run_ref_free(store: JobStore, m: Manifest) -> None:
    ref = refs.run_ref(m.id, m.run)
    if ref_value(store, ref) is not None:
        raise JobStateError(f"job {m.id}: {ref} already exists, so run {m.run} cannot be kept there",
                            hint=f"inspect it with `git log {ref}`; delete it with "
                                 f"`git update-ref -d {ref}` if it is not needed")


def _prepare_run(store: JobStore, lease: Lease, tip: str, m: Manifest, n: int, start: str,
                 progress: Progress) -> RerunResult:
    """The rerun's commit: run n+1 starts at step ``n`` on the code of ``start``; run n's tip is
    kept at its run ref in the same ref transaction, the worktree moved before it is published."""
    job_id = m.id
    old_run, new_run = m.run, m.run + 1
    run_ref = refs.run_ref(job_id, old_run)
    skipped = list(range(1, n))
    now = utcnow()
    data, reason, body = _rerun_record(m, tip, n, start, run_ref, skipped)
    # The commit builds on `start` (its code) and appends to the history at `tip`. The worktree
    # moves to it before it is published (refused cleanly on conflicting local changes); then
    # one ref transaction keeps run n, verifies the lease and moves the branch. The marker lets
    # an interruption in between be repaired from whichever tip won.
    move = _WorktreeMove(store, job_id, tip, run_ref)
    try:
        done = update_job_manifest(
            store, job_id, Update(event="rerun", history_event="run", reason=reason, data=data,
                                  mutate=_rerun_mutation(tip, n, start, now), entry_step=n,
                                  entry_commit=start),
            now=now, transition_id=new_transition_id(), tip=tip, current=m, lease=lease.oid,
            parent=start, body=body,
            extra_trailers={"Logist-Previous-Run": str(old_run), "Logist-Previous-Tip": tip,
                            "Logist-Run-Ref": run_ref, "Logist-Start-Commit": start,
                            "Logist-From-Step": str(n)},
            extra_refs=[f"create {run_ref} {tip}"], before_publish=move, sync_worktree=False)
    except ConcurrentUpdateError:
        move.undo()
        raise ConcurrentUpdateError(
            f"job {job_id} changed while the rerun was prepared (or its lease was lost); nothing "
            "was changed", hint=f"run `logist job status {job_id}` and try again") from None
    assert done is not None  # a rerun always changes the record
    oid, new = done
    crash_point("rerun-after-publish")
    from logist.store.review import refresh

    refresh(store, job_id)  # the work from step N on left the branch: so it leaves the review branch
    move.published()
    progress(f"{job_id}: run {new_run} starts at step {n}/{m.step_count} from {start[:12]}; "
             f"run {old_run} kept at {run_ref}")
    return RerunResult(job_id, new_run, n, old_run, tip, run_ref, start, oid, new.state, new.step,
                       skipped=skipped)


def _rerun_mutation(tip: str, n: int, start: str, now: str) -> Callable[[Manifest], None]:
    """What a rerun changes in the record besides the state (the table's `rerun`: PENDING): a
    new run from step ``n``, the steps before it SKIPPED, the others PENDING again."""

    def mutate(x: Manifest) -> None:
        old_run, new_run = x.run, x.run + 1
        if not x.runs:  # run 1 was never written down: the record starts with it
            x.runs.append(RunInfo(run=old_run, from_step=1, started_at=x.created_at,
                                  start_commit=x.steps[0].first_started_commit))
        x.run = new_run
        x.runs.append(RunInfo(run=new_run, from_step=n, started_at=now, start_commit=start,
                              previous_tip=tip))
        x.step = n
        x.attempt = 0
        x.reason = ""
        x.execution = None
        for i, s in enumerate(x.steps, 1):
            if i < n:
                s.status = StepStatus.SKIPPED
                s.reason = (f"not executed in run {new_run}: its work is in the code the run starts "
                            f"from ({start[:12]})")
            else:
                s.status = StepStatus.PENDING
                s.attempt = 0
                s.started_commit = None
                s.summary = ""
                s.reason = ""
                s.session_id = None
                s.assembled_prompt = None

    return mutate


def _rerun_record(m: Manifest, tip: str, n: int, start: str, run_ref: str, skipped: list[int]
                  ) -> tuple[dict[str, Any], str, str]:
    """(history entry data, reason, commit body) of the rerun's commit."""
    old_run, new_run = m.run, m.run + 1
    data = {"run": new_run, "from_step": n, "previous_run": old_run, "previous_state": m.state.value,
            "previous_step": m.step, "previous_tip": tip, "run_ref": run_ref, "start_commit": start,
            "skipped_steps": skipped}
    reason = f"run {new_run} starts at step {n}"
    if n > 1:
        reason += f"; {steps_text(skipped)} not executed again"
    body = (f"Run {new_run} of job {m.id} starts at step {n}/{m.step_count} "
            f"({m.steps[n - 1].name})" + (f"; {steps_text(skipped)} done and not executed again"
                                          if n > 1 else "") + ".\n"
            f"The code is that of {start[:12]}, where step {n} started in run {old_run}.\n"
            f"Run {old_run} ended in {m.state.value} at step {m.step}; its tip {tip[:12]} is kept "
            f"at {run_ref}.")
    return data, reason, body


class _WorktreeMove:
    """The job's worktree moved to the rerun's commit before it is published (``before_publish``),
    under a marker that lets an interruption be repaired (logist.engine.worktree_move); moved
    back when the publish fails."""

    def __init__(self, store: JobStore, job_id: JobId, tip: str, run_ref: str) -> None:
        self.store, self.job_id, self.tip, self.run_ref = store, job_id, tip, run_ref
        self.marker = move_marker(store, job_id)
        self.moved = ""  # the commit the worktree was moved to

    def __call__(self, oid: str) -> None:
        store, job_id = self.store, self.job_id
        if not has_worktree(store, job_id):
            return
        check_worktree_on_branch(store, job_id)
        store.sync_worktree_record(job_id)
        write_marker(self.marker, {"from": self.tip, "to": oid, "run_ref": self.run_ref})
        try:
            read_tree(store, job_id, self.tip, oid)
        except LogistError:
            self.marker.unlink(missing_ok=True)
            raise
        self.moved = oid
        crash_point("rerun-after-worktree-move")

    def undo(self) -> None:
        """The publish failed: the worktree back at the old tip, the marker gone."""
        if self.moved:
            read_tree(self.store, self.job_id, self.moved, self.tip)
            self.store.sync_worktree_record(self.job_id)
        self.marker.unlink(missing_ok=True)

    def published(self) -> None:
        """The publish succeeded: the worktree's record copy brought along, the marker gone."""
        if self.moved:
            self.store.sync_worktree_record(self.job_id)
            self.marker.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- restep

def _check_restep(store: JobStore, m: Manifest, n: int, *, isolated: bool, advance: bool,
                  trust: bool) -> None:
    step = m.steps[n - 1]
    if advance and not (m.state == State.INTERVENTION_REQUIRED and m.step == n):
        where = f"{m.state.value} at step {m.step}"
        raise UsageError(f"--advance only moves a job resting in INTERVENTION_REQUIRED at the "
                         f"restepped step; job {m.id} is {where}",
                         hint=f"drop --advance, or restep step {m.step}" if
                         m.state == State.INTERVENTION_REQUIRED else "drop --advance")
    if isolated and not commit_exists(store, step.first_started_commit):
        raise JobStateError(f"step {n} of job {m.id} has never started, so there is no commit to "
                            "restep it from in isolation",
                            hint=f"restep it in the job's worktree: `logist job restep {m.id} {n}`")
    require_trust(m, n, trust=trust)
    breach = Engine(store)._budget_breach(m)
    if breach:
        raise JobStateError(f"job {m.id} cannot restep step {n}: {breach} (the budget covers every "
                            "run and restep of the job)",
                            hint="create a new job from its job file with a larger [budget]")


def restep_job(store: JobStore, job_id: JobId, step: int | str | None, *, isolated: bool = False,
               advance: bool = False, trust: bool = False,
               progress: Progress | None = None) -> RestepResult:
    """Re-execute one step (see the module docstring). ``result.success`` says how it went."""
    refs.validate_job_id(job_id)
    n = parse_step(step)
    if isolated and advance:
        raise UsageError("--advance cannot be combined with --isolated: an isolated restep does "
                         "not change the job branch's code",
                         hint="restep in the job's worktree to move the job on")
    tip, m = store.read(job_id)
    check_range(m, n)
    busy_or_interrupted(store, m, "restep it")
    _check_restep(store, m, n, isolated=isolated, advance=advance, trust=trust)
    engine = make_engine(store, progress=progress, trust=trust)
    lease = acquire(store, job_id)
    try:
        lease.start_heartbeat()
        repair_worktree_move(store, job_id, progress)
        tip, m = store.read(job_id)
        check_resting(m, "restep it")
        check_range(m, n)
        _check_restep(store, m, n, isolated=isolated, advance=advance, trust=trust)
        return restep_start(engine, lease, tip, m, n, isolated=isolated, advance=advance)
    finally:
        lease.stop_heartbeat()
        lease.release()
