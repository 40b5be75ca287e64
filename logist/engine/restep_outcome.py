"""How a restep ends (docs/rerun.md): its outcome judged by the harvest's rules, its work
settled (in place: the branch after the agent, committed with the outcome like a harvest;
isolated: what it left kept at ``refs/logist/resteps/<id>/<k>``), and the second "restep"
commit that records it (with ``--advance``, the table's advance event). The restep's record
types live here too: :class:`RestepResult` and :class:`Restep` (an in-flight restep).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Manifest, State, StepStatus
from logist.engine.harvest import harvest_left_out
from logist.engine.job_processor import Engine
from logist.engine.rerun_base import commit_update, record_files_at, ref_value
from logist.engine.settle import own_tip, settle_branch
from logist.engine.steps import elapsed_since
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.store.hygiene import body_lines
from logist.store.job_state import Update
from logist.store.jobstore import JobStore
from logist.store.locks import Lease


@dataclass
class RestepResult:
    job_id: JobId
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


@dataclass
class Restep:
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


def isolated_path(store: JobStore, job_id: JobId, k: int) -> Path:
    # "<id>.restep-<k>" is never a job id (no dots in ids), so it never collides with one.
    return store.worktrees_dir() / f"{refs.validate_job_id(job_id)}.restep-{int(k)}"


def remove_worktree(store: JobStore, path: Path) -> None:
    git(["worktree", "remove", "--force", "--force", "--", str(path)], cwd=store.root, check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git(["worktree", "prune"], cwd=store.root, check=False)


@dataclass
class _Verdict:
    """What a restep came to: success, the agent's action, the reason, what it cost."""

    success: bool
    outcome: str | None
    reason: str
    cost: float = 0.0
    tokens: int = 0

    @property
    def word(self) -> str:
        return "succeeded" if self.success else "failed"


def _judge(run, m: Manifest) -> _Verdict:
    """The outcome of an agent run, by the harvest's rules (a restep does not retry by itself)."""
    res = run.result
    cost, tokens = float(res.cost_usd or 0.0), int(res.tokens or 0)
    action = res.action
    if run.stopped:
        return _Verdict(False, action, run.stopped, cost, tokens)
    if action == "COMPLETED":
        return _Verdict(True, action, res.summary or "step completed", cost, tokens)
    if action == "RETRY":
        return _Verdict(False, action, (f"agent asked to retry: {res.summary or res.reason}".rstrip(": ")
                                        + " (a restep does not retry by itself; restep again)"), cost, tokens)
    if action == "STUCK":
        return _Verdict(False, action, f"agent is stuck: {res.summary or res.reason}".rstrip(": "), cost, tokens)
    if action == "FAILED":
        return _Verdict(False, action, res.reason or f"agent failed (exit code {run.exit_code})", cost, tokens)
    return _Verdict(False, action, res.reason or "the agent gave no valid outcome", cost, tokens)


def _verdict_of(engine: Engine, m: Manifest, run, error: str | None) -> _Verdict:
    """The restep's verdict: ``error`` when it did not run, else its agent's, a success past
    the job's budget a failure."""
    if run is None:
        return _Verdict(False, None, error or "the step did not run")
    v = _judge(run, m)
    if v.success:
        probe = m.model_copy(deep=True)
        probe.cost_usd += v.cost
        breach = engine._budget_breach(probe)
        if breach:
            v.success, v.reason = False, breach
    return v


def finish_restep(engine: Engine, lease: Lease, r: Restep, run, error: str | None) -> RestepResult:
    """The restep's outcome committed (in place: with the agent's work, like a harvest;
    isolated: its result kept at its ref first), then its worktree and log seen to."""
    store = engine.store
    job_id = lease.job_id
    own = own_tip(store, job_id)[0] if not r.isolated else store.tip(job_id)
    _, m = store.read(job_id, at=own)
    n = r.step
    v = _verdict_of(engine, m, run, error)
    res = run.result if run is not None else None
    warnings: list[str] = list(run.warnings) if run is not None else []  # e.g. leftover processes
    if res is not None:
        warnings += res.warnings  # outcome fields that were dropped
    tip, ref, result_commit = _settle_result(engine, lease, m, r, run, own, v, warnings)
    advanced = bool(v.success and r.advance and not r.isolated
                    and m.state == State.INTERVENTION_REQUIRED and m.step == n)
    data, body, trailers = _restep_record(r, run, v, ref, result_commit, advanced, warnings)
    left_out = [] if r.isolated else harvest_left_out(store, store.worktree_path(job_id))
    if left_out:  # its commit takes the worktree: the same hygiene as a step's harvest
        data["left_out"] = [lo.as_dict() for lo in left_out]
        body += "\n\n" + "\n".join(body_lines(left_out))
    elapsed = elapsed_since(m.execution.started_at) if m.execution else 0.0
    oid, new = commit_update(store, lease, tip, m,
                             Update(history_event="restep", mutate=_restep_mutation(r, v, res, elapsed, advanced),
                                    outcome=v.outcome, cost_delta=v.cost, tokens_delta=v.tokens,
                                    seconds_delta=elapsed, data=data,
                                    event=_advance_event(m, n, res) if advanced else None,
                                    reason=f"restep {r.number} of step {n} {v.word}: {v.reason}"),
                             step=n, commit=r.base, body=body, trailers=trailers,
                             include_worktree=not r.isolated, parent=tip, history_from=own,
                             left_out=left_out or None)
    if r.isolated:
        remove_worktree(store, isolated_path(store, job_id, r.number))
    else:
        engine._unlock_worktree(job_id)
    if run is not None and run.output:
        engine._note_log(result_commit or oid, run.output)
    if not r.isolated:  # a restep that leaves the job finished gives its worktree back
        engine._release_if_finished(job_id, new.state)
    engine.progress(f"{job_id}: restep {r.number} of step {n} {v.word}"
                    + (f": {v.reason}" if not v.success else "")
                    + (f"; job moved on to {new.state.value} (step {new.step})" if advanced else ""))
    return RestepResult(job_id, n, r.number, r.isolated, v.success, v.outcome, v.reason, r.base, oid,
                        result_commit or oid, new.state, new.step, ref=ref, advanced=advanced,
                        diff=_diff_commands(job_id, r, ref))


def _settle_result(engine: Engine, lease: Lease, m: Manifest, r: Restep, run, own: str, v: _Verdict,
                   warnings: list[str]) -> tuple[str, str | None, str]:
    """Where the restep's work is: (the branch tip its commit goes on, its result ref, the result
    commit). Isolated: what it left in its worktree kept at its ref (once); in place: the
    branch settled after the agent (its warnings added to ``warnings``)."""
    store = engine.store
    job_id = m.id
    if not r.isolated:
        store.ensure_worktree(job_id)
        tip, settled = settle_branch(store, job_id, own)  # what the agent did to the branch
        warnings += settled
        return tip, None, ""
    wt = isolated_path(store, job_id, r.number)
    result_commit = ref_value(store, refs.restep_ref(job_id, r.number)) or ""
    if not result_commit and run is not None and (wt / ".git").exists():
        result_commit = _keep_isolated_result(store, lease, job_id, m, r, wt, v.outcome, v.success,
                                              v.reason)
        crash_point("restep-after-isolated-ref")
    return store.tip(job_id), refs.restep_ref(job_id, r.number) if result_commit else None, result_commit


def _restep_mutation(r: Restep, v: _Verdict, res, elapsed: float, advanced: bool
                     ) -> Callable[[Manifest], None]:
    """What the restep's outcome changes in the record (``advanced``: the table's event sets the
    state)."""
    n = r.step

    def finish(x: Manifest) -> None:
        s = x.steps[n - 1]
        x.execution = None
        s.cost_usd = round(s.cost_usd + v.cost, 6)
        s.tokens += v.tokens
        s.seconds = round(s.seconds + elapsed, 3)
        if r.isolated:
            s.status = r.previous_status
            return
        s.status = StepStatus.SUCCESS if v.success else StepStatus.FAILURE
        s.reason = "" if v.success else v.reason
        if res is not None and res.summary:
            s.summary = res.summary
        if advanced:
            _advance(x, n)

    return finish


def _restep_record(r: Restep, run, v: _Verdict, ref: str | None, result_commit: str, advanced: bool,
                   warnings: list[str]) -> tuple[dict[str, Any], str, dict[str, str]]:
    """(history entry data, commit body, trailers) of the restep's outcome."""
    res = run.result if run is not None else None
    data: dict[str, Any] = {**r.data("done"), "success": v.success, "outcome": v.outcome,
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
    body = f"Restep {r.number} of step {r.step} {v.word}: {v.reason}"
    if res is not None and res.summary and res.summary != v.reason:
        body += f"\n\nSummary: {res.summary}"
    if ref:
        body += f"\n\nThe result is kept at {ref} ({result_commit[:12]}); the branch's code is unchanged."
    for w in warnings:
        body += f"\n\nWarning: {w}"
    trailers = {"Logist-Restep": str(r.number), "Logist-Restep-Result": "success" if v.success else "failure"}
    if ref:
        trailers["Logist-Restep-Ref"] = ref
    return data, body, trailers


def _diff_commands(job_id: JobId, r: Restep, ref: str | None) -> list[str]:
    """Isolated: the commands that compare its result with its base and with the branch."""
    if not ref:
        return []
    excl = "':(exclude).logist'"
    return [f"git diff {r.base[:12]} {ref} -- . {excl}",
            f"git diff {refs.branch_name(job_id)} {ref} -- . {excl}"]


def _advance_event(m: Manifest, n: int, res) -> str:
    """--advance: INTERVENTION_REQUIRED at step n, restep succeeded -> as if step n completed:
    the table's ``advance`` (PENDING at n + 1), ``advance_last`` (SUCCESS) or
    ``advance_approval`` (APPROVAL_REQUIRED when the job, the step or the agent asks for it)."""
    if n < m.step_count:
        return "advance"
    needs = m.requires_approval or m.steps[n - 1].requires_approval or bool(
        res is not None and res.requests_approval)
    return "advance_approval" if needs else "advance_last"


def _advance(x: Manifest, n: int) -> None:
    """What --advance changes besides the state (the table's event sets that)."""
    x.reason = ""
    x.attempt = 0
    if n < x.step_count:
        x.step = n + 1


def _keep_isolated_result(store: JobStore, lease: Lease, job_id: JobId, m: Manifest, r: Restep,
                          wt: Path, outcome: str | None, success: bool, reason: str) -> str:
    """Commit what the isolated restep left in ``wt`` and keep it at refs/logist/resteps/<id>/<k>."""
    git(["add", "-A"], cwd=wt)
    tree = git_out(["write-tree"], cwd=wt).encode()
    # The result keeps the record as it was at the base, so a diff shows only the step's work.
    tree = store.writer.tree_with_record(tree, job_id, record_files_at(store, job_id, r.base))
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


