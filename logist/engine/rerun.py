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

**restep** re-executes one step without touching the job's state, run or current step: a
"restep" commit marks the step RUNNING (``execution.restep``), the agent runs through
``Engine.run_agent`` (in the job's worktree, or with ``isolated`` in a temporary worktree at
the commit where the step first started), and a second "restep" commit records the outcome
(in place: with the agent's changes, like a harvest; isolated: the result is kept at
``refs/logist/resteps/<id>/<k>``). An interrupted restep is finished by ``logist job run`` /
``logist job step`` (the engine calls :func:`repair_interrupted` first) and by ``logist recover``
(which calls it alone); ``logist recover --abandon`` records it as failed (:func:`abandon_restep`).

Layer 5: returns results and raises LogistError; never prints or exits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logist.core.errors import ConcurrentUpdateError, JobStateError, LockHeldError, LogistError, UsageError
from logist.core.model import RESTING, TRANSIENT, Execution, Manifest, RunInfo, State, StepStatus
from logist.core.procs import boot_id
from logist.engine.trustgate import require_trust
from logist.git import refs
from logist.git.gitcmd import CatFileBatch, git, git_out
from logist.store.job_state import Update, apply_update
from logist.store.jobstore import RECORD_FILES, JobStore, commit_message, crash_point, new_transition_id, utcnow
from logist.store.locks import Lease, acquire, read_lock

Progress = Callable[[str], None]

_OID_RE = re.compile(r"^[0-9a-f]{40}$")
_MOVE_MARKER = "rerun-move.json"




# ---------------------------------------------------------------------------- results

@dataclass
class RerunResult:
    job_id: str
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


@dataclass
class RestepResult:
    job_id: str
    step: int  # the step that was re-executed
    restep: int  # k: the job's restep number
    isolated: bool
    success: bool
    outcome: str | None  # the agent's action (COMPLETED, STUCK, RETRY, FAILED, NO_OUTCOME)
    reason: str
    base: str  # the commit the step was re-executed on
    commit: str  # the branch commit that records the outcome
    result_commit: str  # the commit holding the step's outputs (== commit unless isolated)
    state: State
    current_step: int
    ref: str | None = None  # isolated: refs/logist/resteps/<id>/<k>
    advanced: bool = False
    diff: list[str] = field(default_factory=list)  # isolated: commands to compare the result

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "step": self.step, "restep": self.restep,
                "isolated": self.isolated, "success": self.success, "outcome": self.outcome,
                "reason": self.reason, "base": self.base, "commit": self.commit,
                "result_commit": self.result_commit, "ref": self.ref, "state": self.state.value,
                "current_step": self.current_step, "advanced": self.advanced, "diff": self.diff}


# ---------------------------------------------------------------------------- validation

def parse_step(value: int | str | None, *, what: str = "step") -> int:
    """A step number as typed (1-based); UsageError for anything that is not an integer >= 1."""
    if value is None:
        raise UsageError(f"missing {what} number", hint="steps are numbered from 1")
    if isinstance(value, bool):
        raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,9}", text):
            raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)",
                             hint="`logist job show ID` lists the job's steps")
        value = int(text)
    if not isinstance(value, int):
        raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)")
    if value < 1:
        raise UsageError(f"invalid {what} {value}: steps are numbered from 1",
                         hint="`logist job show ID` lists the job's steps")
    return value


def _check_range(m: Manifest, n: int) -> None:
    if n > m.step_count:
        raise UsageError(f"step {n} does not exist: job {m.id} has {m.step_count} "
                         f"step{'s' if m.step_count != 1 else ''}",
                         hint=f"`logist job show {m.id}` lists them")


def _busy_or_interrupted(store: JobStore, m: Manifest, doing: str) -> None:
    """Refuse a job that is in the middle of a step or restep (before taking its lease).

    A live holder: LockHeldError (exit 4, nothing touched). No live holder: the job was
    interrupted; it has to be finished first (JobStateError, nothing touched).
    """
    running = m.state in TRANSIENT or m.execution is not None
    if not running:
        return
    what = (f"a restep of step {m.current.name!r}" if m.execution and m.execution.restep
            else f"step {m.step} ({m.state.value})")
    current = read_lock(store, m.id)
    if current is not None:
        _, holder = current
        if holder is not None and holder.stale_reason() is None:
            raise LockHeldError(f"job {m.id} is running {what}: held by {holder.describe()}; "
                                f"cannot {doing} now",
                                hint=f"wait for it (`logist job attach {m.id}`), or stop it first")
    raise JobStateError(f"job {m.id} was interrupted during {what}; cannot {doing} before it is "
                        "finished", hint=f"run `logist job run {m.id}` (or `logist recover {m.id}`) "
                                         "to finish it, then try again")


def _check_resting(m: Manifest, doing: str) -> None:
    """Under the lease: a transient state or a restep in flight means an interrupted job."""
    if m.state in TRANSIENT or m.state not in RESTING or m.execution is not None:
        raise JobStateError(f"job {m.id} was interrupted in {m.state.value}; cannot {doing} before "
                            "it is finished",
                            hint=f"run `logist job run {m.id}` (or `logist recover {m.id}`) first")


def _steps_text(steps: list[int]) -> str:
    if len(steps) == 1:
        return f"step {steps[0]} is"
    return f"steps {steps[0]}-{steps[-1]} are"


# ---------------------------------------------------------------------------- small git helpers

def _commit_exists(store: JobStore, oid: str | None) -> bool:
    if not oid or not _OID_RE.match(oid):
        return False
    return git(["cat-file", "-e", oid + "^{commit}"], cwd=store.root, check=False).returncode == 0


def _ref_value(store: JobStore, ref: str) -> str | None:
    proc = git(["rev-parse", "--verify", "-q", ref], cwd=store.root, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _record_files_at(store: JobStore, job_id: str, oid: str) -> dict[str, bytes]:
    with CatFileBatch(store.root) as batch:
        files = {}
        for name in RECORD_FILES:
            data = batch.read(f"{oid}:{refs.record_dir(job_id)}/{name}")
            if data is not None:
                files[name] = data
    return files


def _history_raw(store: JobStore, job_id: str, oid: str) -> bytes:
    with CatFileBatch(store.root) as batch:
        return batch.read(f"{oid}:{refs.history_path(job_id)}") or b""


def _commit(store: JobStore, lease: Lease, tip: str, m: Manifest, update: Update, *, step: int,
            commit: str | None, tid: str | None = None, body: str = "",
            trailers: dict[str, str] | None = None, **kwargs: Any) -> tuple[str, Manifest]:
    """One fenced transition commit (``store.commit_transition``) whose entry names ``step``."""
    result = apply_update(m, update, now=utcnow(), transition_id=tid or new_transition_id())
    assert result is not None  # every update here carries data
    new, entry = result
    entry.step = step
    entry.commit = commit
    oid = store.commit_transition(m.id, tip, new, [entry], lease=lease.oid, body=body,
                                  extra_trailers=trailers, **kwargs)
    return oid, new


# ---------------------------------------------------------------------------- worktree moves

def _move_marker(store: JobStore, job_id: str) -> Path:
    return store.run_dir(job_id) / _MOVE_MARKER


def _write_marker(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _has_worktree(store: JobStore, job_id: str) -> bool:
    return (store.worktree_path(job_id) / ".git").exists()


def _check_worktree_on_branch(store: JobStore, job_id: str) -> None:
    wt = store.worktree_path(job_id)
    head = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False).stdout.strip()
    if head != refs.branch_ref(job_id):
        raise JobStateError(f"the worktree of job {job_id} ({wt}) is not on its branch "
                            f"{refs.branch_name(job_id)} (HEAD: {head or 'detached'})",
                            hint=f"run `git -C {wt} switch {refs.branch_name(job_id)}`, then try again")


def _read_tree(store: JobStore, job_id: str, old: str, new: str) -> None:
    """Move the worktree's index and files from commit ``old`` to ``new`` (two-tree merge).

    What ``git checkout`` does: paths that differ between the commits are updated, local
    changes elsewhere are kept, and a local change in a path that differs refuses the whole
    move before anything is written.
    """
    wt = store.worktree_path(job_id)
    git(["update-index", "-q", "--refresh"], cwd=wt, check=False)
    proc = git(["read-tree", "-m", "-u", old, new], cwd=wt, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines()
                 if ln.strip() and not ln.lower().startswith(("please", "aborting", "hint"))]
        detail = "; ".join(lines)[:500] or "git read-tree failed"
        raise JobStateError(
            f"the worktree of job {job_id} has uncommitted changes that moving it to "
            f"{new[:12]} would overwrite ({detail})",
            hint=f"commit, stash or discard them (`git -C {wt} status`), then try again")


def repair_worktree_move(store: JobStore, job_id: str, progress: Progress | None = None) -> bool:
    """Repair a worktree left between two commits by an interrupted rerun (call under the lease).

    The tip is the truth: still at the old tip, the worktree is moved back; at the run
    commit, the move is finished. Returns True when there was something to repair.
    """
    path = _move_marker(store, job_id)
    try:
        data = json.loads(path.read_text())
        frm, to = str(data["from"]), str(data["to"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return False
    say = progress or (lambda msg: None)
    if not (_OID_RE.match(frm) and _OID_RE.match(to)):
        path.unlink(missing_ok=True)
        return False
    tip = store.tip(job_id)
    if _has_worktree(store, job_id):
        if tip == frm:
            say(f"{job_id}: an interrupted rerun left the worktree moved; moving it back to {frm[:12]}")
            _read_tree(store, job_id, to, frm)
        elif tip == to:
            say(f"{job_id}: finishing the worktree move of an interrupted rerun ({to[:12]})")
            _read_tree(store, job_id, frm, to)
        store.sync_worktree_record(job_id)
    path.unlink(missing_ok=True)
    return True


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


def rerun_job(store: JobStore, job_id: str, *, step: int | str | None = None, run: bool = True,
              trust: bool = False, progress: Progress | None = None) -> RerunResult:
    """Start run n+1 of a job from step ``step`` (default 1); then run it unless ``run`` is False.

    Allowed from any resting state (terminal ones too); LockHeldError (exit 4) while a step
    runs. Every refusal happens before anything is written.
    """
    from logist.engine.job_processor import Engine

    refs.validate_job_id(job_id)
    n = 1 if step is None else parse_step(step)
    tip, m = store.read(job_id)
    _check_range(m, n)
    _busy_or_interrupted(store, m, "rerun it")
    run_start_point(m, tip, n)
    _check_run_ref_free(store, m)
    engine = Engine(store, progress=progress, trust=trust)
    lease = acquire(store, job_id)
    try:
        repair_worktree_move(store, job_id, progress)
        tip, m = store.read(job_id)
        _check_resting(m, "rerun it")
        _check_range(m, n)
        start = run_start_point(m, tip, n)
        if not _commit_exists(store, start):
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
    if _ref_value(store, ref) is not None:
        raise JobStateError(f"job {m.id}: {ref} already exists, so run {m.run} cannot be kept there",
                            hint=f"inspect it with `git log {ref}`; delete it with "
                                 f"`git update-ref -d {ref}` if it is not needed")


def _prepare_run(store: JobStore, lease: Lease, tip: str, m: Manifest, n: int, start: str,
                 progress: Progress) -> RerunResult:
    job_id = m.id
    old_run = m.run
    new_run = old_run + 1
    run_ref = refs.run_ref(job_id, old_run)
    skipped = list(range(1, n))
    now = utcnow()

    def mutate(x: Manifest) -> None:
        if not x.runs:  # run 1 was never written down: the record starts with it
            x.runs.append(RunInfo(run=old_run, from_step=1, started_at=x.created_at,
                                  start_commit=x.steps[0].first_started_commit))
        x.run = new_run
        x.runs.append(RunInfo(run=new_run, from_step=n, started_at=now, start_commit=start,
                              previous_tip=tip))
        x.state = State.PENDING
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

    data = {"run": new_run, "from_step": n, "previous_run": old_run, "previous_state": m.state.value,
            "previous_step": m.step, "previous_tip": tip, "run_ref": run_ref, "start_commit": start,
            "skipped_steps": skipped}
    reason = f"run {new_run} starts at step {n}"
    if n > 1:
        reason += f"; {_steps_text(skipped)} not executed again"
    result = apply_update(m, Update(history_event="run", mutate=mutate, reason=reason, data=data),
                          now=now, transition_id=new_transition_id())
    assert result is not None
    new, entry = result
    entry.step = n
    entry.commit = start
    files = store.record_files(job_id, new, _history_raw(store, job_id, tip), [entry])
    tree = store.writer.tree_with_record(store.writer.commit_tree_of(start), job_id, files)
    body = (f"Run {new_run} of job {job_id} starts at step {n}/{m.step_count} "
            f"({m.steps[n - 1].name})" + (f"; {_steps_text(skipped)} done and not executed again"
                                          if n > 1 else "") + ".\n"
            f"The code is that of {start[:12]}, where step {n} started in run {old_run}.\n"
            f"Run {old_run} ended in {m.state.value} at step {m.step}; its tip {tip[:12]} is kept "
            f"at {run_ref}.")
    msg = commit_message(job_id, entry, new, body=body, lease=lease.oid, extra_trailers={
        "Logist-Previous-Run": str(old_run), "Logist-Previous-Tip": tip, "Logist-Run-Ref": run_ref,
        "Logist-Start-Commit": start, "Logist-From-Step": str(n)})
    oid = store.writer.commit(tree, [start], msg)

    # The worktree moves first (refused cleanly on conflicting local changes), then one ref
    # transaction keeps run n, verifies the lease and moves the branch. The marker lets an
    # interruption in between be repaired from whichever tip won.
    marker = _move_marker(store, job_id)
    moved = False
    if _has_worktree(store, job_id):
        _check_worktree_on_branch(store, job_id)
        store.sync_worktree_record(job_id)
        _write_marker(marker, {"from": tip, "to": oid, "run_ref": run_ref})
        try:
            _read_tree(store, job_id, tip, oid)
        except LogistError:
            marker.unlink(missing_ok=True)
            raise
        moved = True
        crash_point("rerun-after-worktree-move")
    try:
        store.update_refs(f"verify {refs.lock_ref(job_id)} {lease.oid}\n"
                          f"create {run_ref} {tip}\n"
                          f"update {refs.branch_ref(job_id)} {oid} {tip}\n")
    except ConcurrentUpdateError:
        if moved:
            _read_tree(store, job_id, oid, tip)
            store.sync_worktree_record(job_id)
        marker.unlink(missing_ok=True)
        raise ConcurrentUpdateError(
            f"job {job_id} changed while the rerun was prepared (or its lease was lost); nothing "
            "was changed", hint=f"run `logist job status {job_id}` and try again") from None
    crash_point("rerun-after-publish")
    from logist.store.review import refresh

    refresh(store, job_id)  # the work from step N on left the branch: so it leaves the review branch
    if moved:
        store.sync_worktree_record(job_id, files)
        marker.unlink(missing_ok=True)
    progress(f"{job_id}: run {new_run} starts at step {n}/{m.step_count} from {start[:12]}; "
             f"run {old_run} kept at {run_ref}")
    return RerunResult(job_id, new_run, n, old_run, tip, run_ref, start, oid, new.state, new.step,
                       skipped=skipped)


# ---------------------------------------------------------------------------- restep

@dataclass
class _Restep:
    """An in-flight restep, as its start (or restart) history entry records it."""

    step: int
    number: int
    isolated: bool
    advance: bool
    attempt: int
    base: str  # the commit the step runs on
    previous_status: StepStatus
    transition_id: str
    log: str
    prompt: str
    start_commit: str = ""  # logist's commit that started this attempt

    def data(self, phase: str) -> dict[str, Any]:
        return {"phase": phase, "restep": self.number, "isolated": self.isolated,
                "advance": self.advance, "attempt": self.attempt, "base": self.base,
                "previous_status": self.previous_status.value, "log": self.log}


def _isolated_path(store: JobStore, job_id: str, k: int) -> Path:
    # "<id>.restep-<k>" is never a job id (no dots in ids), so it never collides with one.
    return store.worktrees_dir() / f"{refs.validate_job_id(job_id)}.restep-{int(k)}"


def _remove_worktree(store: JobStore, path: Path) -> None:
    git(["worktree", "remove", "--force", "--force", "--", str(path)], cwd=store.root, check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git(["worktree", "prune"], cwd=store.root, check=False)


def _isolated_worktree(store: JobStore, job_id: str, r: _Restep) -> Path:
    path = _isolated_path(store, job_id, r.number)
    _remove_worktree(store, path)  # what an interrupted attempt left
    store.own_worktrees_dir()  # path's parent: created and marked by logist, or refused
    git(["worktree", "add", "-q", "--detach", "--", str(path), r.base], cwd=store.root)
    return path


def _check_restep(store: JobStore, m: Manifest, n: int, *, isolated: bool, advance: bool,
                  trust: bool) -> None:
    from logist.engine.job_processor import Engine

    step = m.steps[n - 1]
    if advance and not (m.state == State.INTERVENTION_REQUIRED and m.step == n):
        where = f"{m.state.value} at step {m.step}"
        raise UsageError(f"--advance only moves a job resting in INTERVENTION_REQUIRED at the "
                         f"restepped step; job {m.id} is {where}",
                         hint=f"drop --advance, or restep step {m.step}" if
                         m.state == State.INTERVENTION_REQUIRED else "drop --advance")
    if isolated and not _commit_exists(store, step.first_started_commit):
        raise JobStateError(f"step {n} of job {m.id} has never started, so there is no commit to "
                            "restep it from in isolation",
                            hint=f"restep it in the job's worktree: `logist job restep {m.id} {n}`")
    require_trust(m, n, trust=trust)
    breach = Engine(store)._budget_breach(m)
    if breach:
        raise JobStateError(f"job {m.id} cannot restep step {n}: {breach} (the budget covers every "
                            "run and restep of the job)",
                            hint="create a new job from its job file with a larger [budget]")


def restep_job(store: JobStore, job_id: str, step: int | str | None, *, isolated: bool = False,
               advance: bool = False, trust: bool = False,
               progress: Progress | None = None) -> RestepResult:
    """Re-execute one step (see the module docstring). ``result.success`` says how it went."""
    from logist.engine.job_processor import Engine

    refs.validate_job_id(job_id)
    n = parse_step(step)
    if isolated and advance:
        raise UsageError("--advance cannot be combined with --isolated: an isolated restep does "
                         "not change the job branch's code",
                         hint="restep in the job's worktree to move the job on")
    tip, m = store.read(job_id)
    _check_range(m, n)
    _busy_or_interrupted(store, m, "restep it")
    _check_restep(store, m, n, isolated=isolated, advance=advance, trust=trust)
    engine = Engine(store, progress=progress, trust=trust)
    lease = acquire(store, job_id)
    try:
        lease.start_heartbeat()
        repair_worktree_move(store, job_id, progress)
        tip, m = store.read(job_id)
        _check_resting(m, "restep it")
        _check_range(m, n)
        _check_restep(store, m, n, isolated=isolated, advance=advance, trust=trust)
        return _restep_start(engine, lease, tip, m, n, isolated=isolated, advance=advance)
    finally:
        lease.stop_heartbeat()
        lease.release()


def _restep_log(store: JobStore, job_id: str, k: int, n: int, attempt: int) -> Path:
    d = store.run_dir(job_id)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"restep{k}-step{n}-attempt{attempt}.log"


def _restep_start(engine, lease: Lease, tip: str, m: Manifest, n: int, *, isolated: bool,
                  advance: bool) -> RestepResult:
    from logist.engine.job_processor import assemble_prompt

    store = engine.store
    k = m.resteps + 1
    step = m.steps[n - 1]
    base = step.first_started_commit if isolated else tip
    tid = new_transition_id()
    r = _Restep(step=n, number=k, isolated=isolated, advance=advance, attempt=1, base=base,
                previous_status=step.status, transition_id=tid,
                log=str(_restep_log(store, m.id, k, n, 1)), prompt=assemble_prompt(m, n))
    where = f"in a temporary worktree at {base[:12]}" if isolated else "in the job's worktree"

    def start(x: Manifest) -> None:
        x.resteps = k
        s = x.steps[n - 1]
        s.status = StepStatus.RUNNING
        s.assembled_prompt = r.prompt
        x.execution = Execution(transition_id=tid, host=socket.gethostname(), boot_id=boot_id(),
                                started_at=utcnow(), log=r.log, restep=True)

    oid, m = _commit(store, lease, tip, m,
                     Update(history_event="restep", mutate=start, data=r.data("start"),
                            reason=f"restep {k} of step {n} starts {where}"),
                     step=n, commit=base, tid=tid, body=f"Restep {k} of step {n} ({step.name}) "
                     f"{where}.\n\nPrompt:\n\n{r.prompt}",
                     trailers={"Logist-Restep": str(k), "Logist-Restep-Base": base,
                               **({"Logist-Restep-Isolated": "true"} if isolated else {})})
    r.start_commit = oid
    engine.progress(f"{m.id}: restep {k} of step {n}/{m.step_count} starts {where}")
    crash_point("restep-after-start")
    return _restep_execute(engine, lease, m, r)


def _restep_execute(engine, lease: Lease, m: Manifest, r: _Restep) -> RestepResult:
    store = engine.store
    job_id = m.id
    try:
        if r.isolated:
            wt = _isolated_worktree(store, job_id, r)
        else:
            wt = store.ensure_worktree(job_id)
            store.sync_worktree_record(job_id)
            git(["worktree", "lock", "--reason", f"logist: a restep of {job_id} is running", "--",
                 str(wt)], cwd=store.root, check=False)
        run = engine.run_agent(m, r.step, wt, prompt=r.prompt, log=Path(r.log), commit=r.start_commit,
                               transition_id=r.transition_id, attempt=r.attempt)
    except LogistError as exc:
        return _restep_finish(engine, lease, r, None, f"the step could not start: {exc.message}")
    crash_point("restep-after-agent")
    return _restep_finish(engine, lease, r, run, None)


def _judge(run, m: Manifest) -> tuple[bool, str | None, str, float, int]:
    """(success, outcome, reason, cost, tokens) of an agent run, by the harvest's rules."""
    res = run.result
    cost, tokens = float(res.cost_usd or 0.0), int(res.tokens or 0)
    action = res.action
    if run.stopped:
        return False, action, run.stopped, cost, tokens
    if action == "COMPLETED":
        return True, action, res.summary or "step completed", cost, tokens
    if action == "RETRY":
        return False, action, (f"agent asked to retry: {res.summary or res.reason}".rstrip(": ")
                               + " (a restep does not retry by itself; restep again)"), cost, tokens
    if action == "STUCK":
        return False, action, f"agent is stuck: {res.summary or res.reason}".rstrip(": "), cost, tokens
    if action == "FAILED":
        return False, action, res.reason or f"agent failed (exit code {run.exit_code})", cost, tokens
    return False, action, res.reason or "the agent gave no valid outcome", cost, tokens


def _restep_finish(engine, lease: Lease, r: _Restep, run, error: str | None) -> RestepResult:
    from logist.engine.job_processor import _elapsed_since, _is_ancestor, _record_tampered

    store = engine.store
    job_id = lease.job_id
    own = engine._own_tip(job_id) if not r.isolated else store.tip(job_id)
    _, m = store.read(job_id, at=own)
    n = r.step
    if run is None:
        success, outcome, reason, cost, tokens = False, None, error or "the step did not run", 0.0, 0
    else:
        success, outcome, reason, cost, tokens = _judge(run, m)
        if success:
            probe = m.model_copy(deep=True)
            probe.cost_usd += cost
            breach = engine._budget_breach(probe)
            if breach:
                success, reason = False, breach
    elapsed = _elapsed_since(m.execution.started_at) if m.execution else 0.0
    res = run.result if run is not None else None
    warnings: list[str] = list(run.warnings) if run is not None else []  # e.g. leftover processes
    if res is not None:
        warnings += res.warnings  # outcome fields that were dropped
    ref = None
    result_commit = ""
    tip = store.tip(job_id)
    parent = tip
    if r.isolated:
        wt = _isolated_path(store, job_id, r.number)
        result_commit = _ref_value(store, refs.restep_ref(job_id, r.number)) or ""
        if not result_commit and run is not None and (wt / ".git").exists():
            result_commit = _keep_isolated_result(store, lease, job_id, m, r, wt, outcome, success,
                                                  reason)
            crash_point("restep-after-isolated-ref")
        if result_commit:
            ref = refs.restep_ref(job_id, r.number)
    else:
        wt = store.ensure_worktree(job_id)
        if tip != own:
            if not _is_ancestor(store.root, own, tip):
                displaced = engine._keep_displaced(job_id, own)
                warnings.append(f"the agent rewrote the job branch; logist's previous commit is kept "
                                f"at {displaced}")
            else:
                warnings.append("the agent made its own commits on the job branch; they are kept")
        if wt.exists() and _record_tampered(store, job_id, wt, tip, own):
            warnings.append("the agent changed .logist/; the record was restored from logist's last "
                            "commit")
    advanced = bool(success and r.advance and not r.isolated
                    and m.state == State.INTERVENTION_REQUIRED and m.step == n)

    def finish(x: Manifest) -> None:
        s = x.steps[n - 1]
        x.execution = None
        s.cost_usd = round(s.cost_usd + cost, 6)
        s.tokens += tokens
        s.seconds = round(s.seconds + elapsed, 3)
        if r.isolated:
            s.status = r.previous_status
            return
        s.status = StepStatus.SUCCESS if success else StepStatus.FAILURE
        s.reason = "" if success else reason
        if res is not None and res.summary:
            s.summary = res.summary
        if advanced:
            _advance(x, n, res)

    data: dict[str, Any] = {**r.data("done"), "success": success, "outcome": outcome,
                            "exit_code": run.exit_code if run is not None else None}
    if res is not None:
        data["summary"] = res.summary[:2000]
        data["evidence_files"] = list(res.evidence_files)
    if ref:
        data["ref"] = ref
        data["result"] = result_commit
    if advanced:
        data["advanced"] = True
    if warnings:
        data["warnings"] = warnings
    verdict = "succeeded" if success else "failed"
    body = f"Restep {r.number} of step {n} {verdict}: {reason}"
    if res is not None and res.summary and res.summary != reason:
        body += f"\n\nSummary: {res.summary}"
    if ref:
        body += f"\n\nThe result is kept at {ref} ({result_commit[:12]}); the branch's code is unchanged."
    for w in warnings:
        body += f"\n\nWarning: {w}"
    trailers = {"Logist-Restep": str(r.number), "Logist-Restep-Result": "success" if success else "failure"}
    if ref:
        trailers["Logist-Restep-Ref"] = ref
    oid, new = _commit(store, lease, tip, m,
                       Update(history_event="restep", mutate=finish, outcome=outcome, cost_delta=cost,
                              tokens_delta=tokens, seconds_delta=elapsed, data=data,
                              reason=f"restep {r.number} of step {n} {verdict}: {reason}"),
                       step=n, commit=r.base, body=body, trailers=trailers,
                       include_worktree=not r.isolated, parent=parent, history_from=own)
    if r.isolated:
        _remove_worktree(store, _isolated_path(store, job_id, r.number))
    else:
        engine._unlock_worktree(job_id)
    if run is not None and run.output:
        engine._note_log(result_commit or oid, run.output)
    engine.progress(f"{job_id}: restep {r.number} of step {n} {verdict}"
                    + (f": {reason}" if not success else "")
                    + (f"; job moved on to {new.state.value} (step {new.step})" if advanced else ""))
    diff = []
    if ref:
        excl = "':(exclude).logist'"
        diff = [f"git diff {r.base[:12]} {ref} -- . {excl}",
                f"git diff {refs.branch_name(job_id)} {ref} -- . {excl}"]
    return RestepResult(job_id, n, r.number, r.isolated, success, outcome, reason, r.base, oid,
                        result_commit or oid, new.state, new.step, ref=ref, advanced=advanced, diff=diff)


def _advance(x: Manifest, n: int, res) -> None:
    """--advance: INTERVENTION_REQUIRED at step n, restep succeeded -> as if step n completed."""
    x.reason = ""
    x.attempt = 0
    if n < x.step_count:
        x.state = State.PENDING
        x.step = n + 1
    else:
        needs = x.requires_approval or x.steps[n - 1].requires_approval or bool(
            res is not None and res.requests_approval)
        x.state = State.APPROVAL_REQUIRED if needs else State.SUCCESS


def _keep_isolated_result(store: JobStore, lease: Lease, job_id: str, m: Manifest, r: _Restep,
                          wt: Path, outcome: str | None, success: bool, reason: str) -> str:
    """Commit what the isolated restep left in ``wt`` and keep it at refs/logist/resteps/<id>/<k>."""
    git(["add", "-A"], cwd=wt)
    tree = git_out(["write-tree"], cwd=wt).encode()
    # The result keeps the record as it was at the base, so a diff shows only the step's work.
    tree = store.writer.tree_with_record(tree, job_id, _record_files_at(store, job_id, r.base))
    parent = git_out(["rev-parse", "HEAD"], cwd=wt)
    ref = refs.restep_ref(job_id, r.number)
    msg = (f"logist({job_id}): isolated restep {r.number} of step {r.step}/{m.step_count}: "
           f"{outcome or 'no outcome'}\n\n"
           f"Step {r.step} ({m.steps[r.step - 1].name}) re-executed in a temporary worktree at "
           f"{r.base[:12]}, where it first started. {'Succeeded' if success else 'Failed'}: "
           f"{' '.join(reason.split())[:2000]}\n\n"
           f"Logist-Job: {job_id}\nLogist-Run: {m.run}\nLogist-Step: {r.step}/{m.step_count}\n"
           f"Logist-Restep: {r.number}\nLogist-Restep-Base: {r.base}\n"
           f"Logist-Outcome: {outcome or 'NO_OUTCOME'}\n"
           f"Logist-Restep-Result: {'success' if success else 'failure'}\n")
    oid = store.writer.commit(tree, [parent], msg)
    store.update_refs(f"verify {refs.lock_ref(job_id)} {lease.oid}\ncreate {ref} {oid}\n")
    return oid


# ---------------------------------------------------------------------------- recovery

def interrupted_restep(m: Manifest) -> bool:
    """True when the record says a restep is in flight (an interruption if nobody holds the job)."""
    return m.execution is not None and m.execution.restep


def _restep_in_flight(store: JobStore, job_id: str, m: Manifest, tip: str) -> _Restep | None:
    tid = m.execution.transition_id if m.execution else None
    for e in reversed(store.read_history(job_id, at=tip)):
        if e.event == "restep" and e.transition_id == tid and e.data.get("phase") in ("start", "restart"):
            d = e.data
            try:
                n = int(e.step or 0)
                if not 1 <= n <= m.step_count:
                    return None
                return _Restep(step=n, number=int(d["restep"]), isolated=bool(d.get("isolated")),
                               advance=bool(d.get("advance")), attempt=int(d.get("attempt", 1)),
                               base=str(d["base"]), previous_status=StepStatus(d["previous_status"]),
                               transition_id=str(tid), log=str(d.get("log") or ""),
                               prompt=m.steps[n - 1].assembled_prompt or "", start_commit=tip)
            except (KeyError, TypeError, ValueError):
                return None
    return None


@dataclass
class RestepInFlight:
    """What ``logist recover --list`` says about an interrupted restep (read only)."""

    step: int
    number: int
    isolated: bool
    attempt: int
    result_kept: str | None  # isolated: its result ref, when the result was already kept


def describe_restep_in_flight(store: JobStore, m: Manifest) -> RestepInFlight | None:
    """The restep ``m.execution`` names, as its start entry records it; None if not found."""
    if not interrupted_restep(m):
        return None
    r = _restep_in_flight(store, m.id, m, store.tip(m.id))
    if r is None:
        return None
    kept = None
    if r.isolated:
        ref = refs.restep_ref(m.id, r.number)
        kept = ref if _ref_value(store, ref) else None
    return RestepInFlight(r.step, r.number, r.isolated, r.attempt, kept)


def abandon_restep(engine, lease: Lease, reason: str) -> RestepResult | None:
    """``logist recover --abandon`` of a job whose restep was interrupted (call under the lease):
    stop its agent if it still runs, then record the restep as failed with ``reason`` (in place,
    the worktree's changes are committed with it, as for any restep). The job keeps its state.
    None when no restep is in flight."""
    from logist.engine.recovery import agent_status, stop_agent

    store = engine.store
    job_id = lease.job_id
    repair_worktree_move(store, job_id, engine.progress)
    tip, m = store.read(job_id)
    if not interrupted_restep(m):
        return None
    st = agent_status(store, m)
    if st.kind == "running":
        stop_agent(st)
        engine.progress(f"{job_id}: stopped the restep's agent (pid {st.pid})")
    r = _restep_in_flight(store, job_id, m, tip)
    if r is None:
        return _abandon_restep(engine, lease, tip, m)
    return _restep_finish(engine, lease, r, None, reason)


def repair_interrupted(engine, lease: Lease):
    """Called by the engine under the lease before it runs anything (Engine._repair).

    Repairs a worktree left mid-move by an interrupted rerun, and finishes an interrupted
    restep: uses an isolated result already kept at its ref; else re-attaches to its agent if
    it still runs, or harvests its recorded exit if it finished; else (killed, never started)
    executes it again (attempt + 1) or, when attempts are spent, records a failure.
    Returns the engine's StepResult for a finished restep, None when there was none.
    """
    from logist.engine.job_processor import StepResult

    store = engine.store
    job_id = lease.job_id
    repair_worktree_move(store, job_id, engine.progress)
    tip, m = store.read(job_id)
    if not interrupted_restep(m):
        return None
    r = _restep_in_flight(store, job_id, m, tip)
    engine.progress(f"{job_id}: finishing an interrupted restep"
                    + (f" ({r.number}, step {r.step})" if r else ""))
    if r is None:
        result = _abandon_restep(engine, lease, tip, m)
    else:
        result = _resume_restep(engine, lease, tip, m, r)
    return StepResult(job_id, result.state, result.current_step, outcome=result.outcome,
                      reason=f"restep {result.restep} of step {result.step}: {result.reason}",
                      commits=[result.commit])


def _check_trusted(engine, m: Manifest, n: int) -> None:
    """TrustError before a command step of a job this clone does not trust is executed (the
    same rule as a restep's start and a step's start); nothing is written."""
    require_trust(m, n, trust=engine.trust, again=True)


def _resume_restep(engine, lease: Lease, tip: str, m: Manifest, r: _Restep) -> RestepResult:
    store = engine.store
    job_id = m.id
    if r.isolated and _ref_value(store, refs.restep_ref(job_id, r.number)):
        return _finish_from_ref(engine, lease, r)
    wt = _isolated_path(store, job_id, r.number) if r.isolated else store.worktree_path(job_id)
    run = engine.reattach_agent(m, r.step, wt, prompt=r.prompt, log=Path(r.log), attempt=r.attempt)
    if run is not None:
        return _restep_finish(engine, lease, r, run, None)
    if r.attempt >= m.budget.max_attempts:
        return _restep_finish(engine, lease, r, None,
                              f"interrupted; attempts spent ({r.attempt} of {m.budget.max_attempts})")
    _check_trusted(engine, m, r.step)  # executing it again runs its command here
    tid = new_transition_id()
    r.attempt += 1
    r.transition_id = tid
    r.log = str(_restep_log(store, job_id, r.number, r.step, r.attempt))

    def restart(x: Manifest) -> None:
        x.steps[r.step - 1].status = StepStatus.RUNNING
        x.execution = Execution(transition_id=tid, host=socket.gethostname(), boot_id=boot_id(),
                                started_at=utcnow(), log=r.log, restep=True)

    oid, m = _commit(store, lease, tip, m,
                     Update(history_event="restep", mutate=restart, data=r.data("restart"),
                            reason=f"restep {r.number} of step {r.step} re-executes after an "
                                   f"interruption (attempt {r.attempt})"),
                     step=r.step, commit=r.base, tid=tid, trailers={"Logist-Restep": str(r.number)})
    r.start_commit = oid
    return _restep_execute(engine, lease, m, r)


class _RefRun:
    """An isolated restep whose result ref exists: its outcome, read back from the ref's trailers."""

    def __init__(self, outcome: str, success: bool, reason: str) -> None:
        from logist.agents.base import AgentResult

        self.result = AgentResult(outcome if outcome in ("COMPLETED", "STUCK", "RETRY", "FAILED")
                                  else "NO_OUTCOME", summary="", reason=reason)
        self.exit_code = None
        self.output = ""
        self.stopped = None if success else reason
        self.success = success
        self.warnings: list[str] = []  # the agent's run was recorded with the result ref


def _finish_from_ref(engine, lease: Lease, r: _Restep) -> RestepResult:
    store = engine.store
    ref = refs.restep_ref(lease.job_id, r.number)
    out = git_out(["log", "-1", "--format=%(trailers:key=Logist-Outcome,valueonly)%x00"
                   "%(trailers:key=Logist-Restep-Result,valueonly)%x00%b", ref], cwd=store.root)
    outcome, result, body = (out.split("\x00") + ["", "", ""])[:3]
    success = result.strip() == "success"
    reason = "step completed" if success else "the isolated restep failed (see " + ref + ")"
    return _restep_finish(engine, lease, r, _RefRun(outcome.strip(), success, reason), None)


def _abandon_restep(engine, lease: Lease, tip: str, m: Manifest) -> RestepResult:
    """A restep in flight whose start entry cannot be found: clear it, restoring the record."""
    store = engine.store
    n = m.step
    for i, s in enumerate(m.steps, 1):
        if s.status == StepStatus.RUNNING:
            n = i
    reason = "an interrupted restep could not be resumed (its start is not in the history)"

    def clear(x: Manifest) -> None:
        x.execution = None
        if x.steps[n - 1].status == StepStatus.RUNNING:
            x.steps[n - 1].status = StepStatus.FAILURE
            x.steps[n - 1].reason = reason

    oid, new = _commit(store, lease, tip, m,
                       Update(history_event="restep", mutate=clear, reason=reason,
                              data={"phase": "done", "success": False}),
                       step=n, commit=tip)
    return RestepResult(m.id, n, m.resteps, False, False, None, reason, tip, oid, oid, new.state, new.step)
