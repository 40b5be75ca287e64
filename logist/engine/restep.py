"""A restep's life (docs/rerun.md): start, execute, resume after an interruption (its end, the
outcome and its commit, is in ``logist.engine.restep_outcome``).

A restep re-executes one step without touching the job's state, run or current step: a
"restep" commit marks the step RUNNING (``execution.restep``), the agent runs through
``Engine.run_agent`` (in the job's worktree, or with ``isolated`` in a temporary worktree at
the commit where the step first started), and a second "restep" commit records the outcome
(in place: with the agent's changes, like a harvest; isolated: the result is kept at
``refs/logist/resteps/<id>/<k>``). ``logist job restep`` starts one (``logist.engine.rerun``);
an interrupted one is finished by ``logist.engine.repair`` and abandoned by
:func:`abandon_restep`.

Every function that runs an agent takes the engine (``logist.engine.job_processor.Engine``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from logist.core.errors import LogistError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Execution, Manifest, StepStatus
from logist.core.procs import boot_id
from logist.engine.agent_proc import agent_status, stop_agent
from logist.engine.job_processor import Engine
from logist.engine.rerun_base import commit_update, ref_value
from logist.engine.restep_outcome import (
    Restep,
    RestepResult,
    finish_restep,
    isolated_path,
    remove_worktree,
)
from logist.engine.steps import assemble_prompt
from logist.engine.trustgate import require_trust
from logist.engine.worktree_move import repair_worktree_move
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.store.job_state import Update
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease


def _isolated_worktree(store: JobStore, job_id: JobId, r: Restep) -> Path:
    path = isolated_path(store, job_id, r.number)
    remove_worktree(store, path)  # what an interrupted attempt left
    store.own_worktrees_dir()  # path's parent: created and marked by logist, or refused
    git(["worktree", "add", "-q", "--detach", "--", str(path), r.base], cwd=store.root)
    return path


def _restep_log(store: JobStore, job_id: JobId, k: int, n: int, attempt: int) -> Path:
    d = store.run_dir(job_id)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"restep{k}-step{n}-attempt{attempt}.log"


def restep_start(engine: Engine, lease: Lease, tip: str, m: Manifest, n: int, *, isolated: bool,
                  advance: bool) -> RestepResult:
    store = engine.store
    k = m.resteps + 1
    step = m.steps[n - 1]
    base = step.first_started_commit if isolated else tip
    assert base is not None  # rerun.restep_job refuses an isolated restep of a step never started
    tid = new_transition_id()
    r = Restep(step=n, number=k, isolated=isolated, advance=advance, attempt=1, base=base,
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

    oid, m = commit_update(store, lease, tip, m,
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


def _restep_execute(engine: Engine, lease: Lease, m: Manifest, r: Restep) -> RestepResult:
    store = engine.store
    job_id = m.id
    try:
        if r.isolated:
            wt = _isolated_worktree(store, job_id, r)
        else:
            wt = store.ensure_worktree(job_id)
            store.sync_worktree_record(job_id)
            store.lock_worktree(job_id, f"logist: a restep of {job_id} is running")
        run = engine.run_agent(m, r.step, wt, prompt=r.prompt, log=Path(r.log), commit=r.start_commit,
                               transition_id=r.transition_id, attempt=r.attempt)
    except LogistError as exc:
        return finish_restep(engine, lease, r, None, f"the step could not start: {exc.message}")
    crash_point("restep-after-agent")
    return finish_restep(engine, lease, r, run, None)


# ---- after an interruption

def interrupted_restep(m: Manifest) -> bool:
    """True when the record says a restep is in flight (an interruption if nobody holds the job)."""
    return m.execution is not None and m.execution.restep


def restep_in_flight_at(store: JobStore, job_id: JobId, m: Manifest, tip: str) -> Restep | None:
    tid = m.execution.transition_id if m.execution else None
    for e in reversed(store.read_history(job_id, at=tip)):
        if e.event == "restep" and e.transition_id == tid and e.data.get("phase") in ("start", "restart"):
            d = e.data
            try:
                n = int(e.step or 0)
                if not 1 <= n <= m.step_count:
                    return None
                return Restep(step=n, number=int(d["restep"]), isolated=bool(d.get("isolated")),
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
    r = restep_in_flight_at(store, m.id, m, store.tip(m.id))
    if r is None:
        return None
    kept = None
    if r.isolated:
        ref = refs.restep_ref(m.id, r.number)
        kept = ref if ref_value(store, ref) else None
    return RestepInFlight(r.step, r.number, r.isolated, r.attempt, kept)


def abandon_restep(engine: Engine, lease: Lease, reason: str) -> RestepResult | None:
    """``logist recover --abandon`` of a job whose restep was interrupted (call under the lease):
    stop its agent if it still runs, then record the restep as failed with ``reason`` (in place,
    the worktree's changes are committed with it, as for any restep). The job keeps its state.
    None when no restep is in flight."""
    found = interrupted_restep_of(engine, lease)
    if found is None:
        return None
    tip, m, r = found
    st = agent_status(engine.store, m)
    if st.kind == "running":
        stop_agent(st)
        engine.progress(f"{m.id}: stopped the restep's agent (pid {st.pid})")
    if r is None:
        return clear_restep(engine, lease, tip, m)
    return finish_restep(engine, lease, r, None, reason)


def interrupted_restep_of(engine: Engine, lease: Lease) -> tuple[str, Manifest, Restep | None] | None:
    """Under the job's lease: a worktree left mid-move by an interrupted rerun repaired, then the
    restep the record says is in flight: (tip, record, the restep as its start entry records it,
    None when that entry cannot be found); None when no restep is in flight."""
    store = engine.store
    job_id = lease.job_id
    repair_worktree_move(store, job_id, engine.progress)
    tip, m = store.read(job_id)
    if not interrupted_restep(m):
        return None
    return tip, m, restep_in_flight_at(store, job_id, m, tip)


def _check_trusted(engine: Engine, m: Manifest, n: int) -> None:
    """TrustError before a command step of a job this clone does not trust is executed (the
    same rule as a restep's start and a step's start); nothing is written."""
    require_trust(m, n, trust=engine.trust, again=True)


def resume_restep(engine: Engine, lease: Lease, tip: str, m: Manifest, r: Restep) -> RestepResult:
    store = engine.store
    job_id = m.id
    if r.isolated and ref_value(store, refs.restep_ref(job_id, r.number)):
        return _finish_from_ref(engine, lease, r)
    wt = isolated_path(store, job_id, r.number) if r.isolated else store.worktree_path(job_id)
    run = engine.reattach_agent(m, r.step, wt, prompt=r.prompt, log=Path(r.log), attempt=r.attempt)
    if run is not None:
        return finish_restep(engine, lease, r, run, None)
    if r.attempt >= m.budget.max_attempts:
        return finish_restep(engine, lease, r, None,
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

    oid, m = commit_update(store, lease, tip, m,
                     Update(history_event="restep", mutate=restart, data=r.data("restart"),
                            reason=f"restep {r.number} of step {r.step} re-executes after an "
                                   f"interruption (attempt {r.attempt})"),
                     step=r.step, commit=r.base, tid=tid, trailers={"Logist-Restep": str(r.number)})
    r.start_commit = oid
    return _restep_execute(engine, lease, m, r)


class _RefRun:
    """An isolated restep whose result ref exists: its outcome, read back from the ref's trailers."""

    def __init__(self, outcome: str, success: bool, reason: str) -> None:
        from logist.agents.base import Action, AgentResult

        action: Action = "NO_OUTCOME"
        for known in ("COMPLETED", "STUCK", "RETRY", "FAILED"):
            if outcome == known:
                action = known
        self.result = AgentResult(action, summary="", reason=reason)
        self.exit_code = None
        self.output = ""
        self.stopped = None if success else reason
        self.success = success
        self.warnings: list[str] = []  # the agent's run was recorded with the result ref


def _finish_from_ref(engine: Engine, lease: Lease, r: Restep) -> RestepResult:
    store = engine.store
    ref = refs.restep_ref(lease.job_id, r.number)
    out = git_out(["log", "-1", "--format=%(trailers:key=Logist-Outcome,valueonly)%x00"
                   "%(trailers:key=Logist-Restep-Result,valueonly)%x00%b", ref], cwd=store.root)
    outcome, result, body = (out.split("\x00") + ["", "", ""])[:3]
    success = result.strip() == "success"
    reason = "step completed" if success else "the isolated restep failed (see " + ref + ")"
    return finish_restep(engine, lease, r, _RefRun(outcome.strip(), success, reason), None)


def clear_restep(engine: Engine, lease: Lease, tip: str, m: Manifest) -> RestepResult:
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

    oid, new = commit_update(store, lease, tip, m,
                       Update(history_event="restep", mutate=clear, reason=reason,
                              data={"phase": "done", "success": False}),
                       step=n, commit=tip)
    return RestepResult(m.id, n, m.resteps, False, False, None, reason, tip, oid, oid, new.state, new.step)
