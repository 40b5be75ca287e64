"""The harvest of a step: HARVESTING -> resting. The agent's output is parsed, its work
committed (hygiene leaves out what must not be committed), the outcome mapped to the event of
the transition table (budget, denials, missing evidence, RETRY, STUCK, FAILED), and the
worktree released when the job has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Manifest, State, StepStatus
from logist.core.safepath import why_unsafe
from logist.engine.agent_proc import exec_base
from logist.engine.agent_supervisor import mask_env, read_step_log
from logist.engine.settle import settle_branch
from logist.engine.step_transitions import StepTransitions
from logist.engine.steps import StepResult, new_tokens
from logist.store.hygiene import LeftOut, body_lines
from logist.store.hygiene import plan as hygiene_plan
from logist.store.job_state import Update
from logist.store.jobstore import JobStore
from logist.store.locks import Lease

if TYPE_CHECKING:
    from logist.agents.base import AgentResult


class Harvester(StepTransitions):
    """The engine's harvest (on top of its commits and agent processes)."""

    def _budget_breach(self, m: Manifest, *, extra_seconds: float = 0.0) -> str | None:
        b = m.budget
        if b.max_cost_usd is not None and m.cost_usd > b.max_cost_usd + 1e-9:
            return f"budget exceeded: cost ${m.cost_usd:.4f} > max_cost_usd ${b.max_cost_usd:.4f}"
        if b.max_seconds is not None and m.seconds + extra_seconds > b.max_seconds:
            return f"budget exceeded: {m.seconds + extra_seconds:.1f}s > max_seconds {b.max_seconds:g}s"
        return None


    # ---- harvest ----------------------------------------------------------------------
    def _harvest(self, lease: Lease, *, exit_code: int | None = None,
                 killed_reason: str | None = None, own_tip: str | None = None) -> StepResult:
        """HARVESTING -> resting: parse the outcome, commit the agent's work and the record.

        ``own_tip`` is logist's HARVESTING commit (default: the tip; the agent is gone by now).
        Harvesting again after a crash reads the exit code from the HARVESTING entry.
        """
        job_id = lease.job_id
        own_tip = own_tip or self.store.tip(job_id)
        _, m = self.store.read(job_id, at=own_tip)
        earlier, exit_code, killed_reason = self._harvesting_entry(job_id, own_tip, exit_code,
                                                                   killed_reason)
        wt = self.store.ensure_worktree(job_id)
        out = self._parse_outcome(m, wt, exit_code)
        warnings = [str(w) for w in earlier] + out.res.warnings  # + outcome fields dropped
        missing = self._check_worktree(job_id, wt, out.res, warnings)
        # Where does the new commit go? On top of the branch tip, keeping any agent commits.
        tip, settled = settle_branch(self.store, job_id, own_tip)
        warnings += settled
        if tip == own_tip:  # after a crash between a commit and the worktree's refresh
            self.store.sync_worktree_record(job_id)
        left_out = harvest_left_out(self.store, wt)
        cost, tokens = float(out.res.cost_usd or 0.0), int(out.res.tokens or 0)
        probe = m.model_copy(deep=True)
        probe.cost_usd += cost
        breach = killed_reason if killed_reason and killed_reason.startswith("budget") else \
            self._budget_breach(probe)
        event, reason = harvest_event(m, out.res, exit_code=exit_code, breach=breach, missing=missing)
        data, trailers = _harvest_record(m, out, exit_code, warnings, left_out, cost, tokens)
        crash_point("before-harvest-commit")
        oid, new = self._transition(
            lease, Update(event=event, reason=reason, outcome=out.res.action, cost_delta=cost,
                          tokens_delta=tokens, data=data,
                          mutate=_harvest_mutation(event, reason, out, left_out, cost, tokens, m.step)),
            body="\n\n".join(b for b in (_harvest_body(out.res, reason, warnings),
                                         "\n".join(body_lines(left_out))) if b),
            include_worktree=True, parent=tip, history_from=own_tip, expected=tip, trailers=trailers,
            exclude=tuple(getattr(out.agent, "state_files", ())), left_out=left_out)
        crash_point("after-harvest-commit")
        self._after_harvest(m, oid, new, out)
        return StepResult(job_id, new.state, new.step, outcome=out.res.action, reason=reason,
                          commits=[oid])

    def _harvesting_entry(self, job_id: JobId, own_tip: str, exit_code: int | None,
                          killed_reason: str | None) -> tuple[list[Any], int | None, str | None]:
        """(warnings, exit code, stop reason) of the step's HARVESTING entry: its warnings always,
        the exit code and stop reason when the caller has none (a harvest again after a crash)."""
        last = [e for e in self.store.read_history(job_id, at=own_tip) if e.to_state == State.HARVESTING]
        earlier = list(last[-1].data.get("warnings") or []) if last else []
        if exit_code is None and last and "exit_code" in last[-1].data:
            exit_code = last[-1].data["exit_code"]
            killed_reason = last[-1].data.get("stopped")
        return earlier, exit_code, killed_reason

    def _parse_outcome(self, m: Manifest, wt: Path, exit_code: int | None) -> _Outcome:
        """The agent's result parsed from its log (the step's env values masked), with what it
        said redacted: it goes into the record and the commit message."""
        from logist.agents import get_agent
        from logist.agents.base import StepContext
        from logist.agents.results import strip_ansi
        from logist.core.redact import redact

        step, n = m.current, m.step
        log = Path(m.execution.log) if m.execution and m.execution.log else None
        output = mask_env(read_step_log(log, self.store.config.limits.max_log_bytes) if log else "",
                          step.options)
        agent = get_agent(step.agent)
        ctx = StepContext(job_id=m.id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=step.assembled_prompt or "", workdir=wt, options=dict(step.options),
                          attempt=m.attempt, session_id=step.session_id,
                          prior_tokens=step.tokens if step.session_id else 0,
                          prior_cost_usd=step.cost_usd if step.session_id else 0.0)
        res = agent.parse(output, exit_code, ctx)
        res.summary, res.reason = redact(strip_ansi(res.summary)), redact(strip_ansi(res.reason))
        res.denials = [redact(d) for d in res.denials]
        version = _agent_version(agent, self.store.paths.logist_dir / "agent-versions.json")
        return _Outcome(agent, res, output, log, version)

    def _check_worktree(self, job_id: JobId, wt: Path, res: AgentResult, warnings: list[str]) -> list[str]:
        """The worktree put back on the job branch if the agent moved it, and the evidence files
        the agent named checked (what is wrong is added to ``warnings``); the missing ones."""
        moved = self.store.restore_worktree_head(job_id)
        if moved:
            warnings.append(moved)
            self.progress(f"{job_id}: warning: {moved}")
        missing = []
        for f in res.evidence_files:
            if why_unsafe(f):
                warnings.append(f"evidence file {f!r} is not a path inside the worktree")
            elif not (wt / f).exists():
                missing.append(f)
                warnings.append(f"evidence file {f!r} does not exist")
        return missing

    def _after_harvest(self, m: Manifest, oid: str, new: Manifest, out: _Outcome) -> None:
        """Once the harvest is committed: the execution's records removed, the worktree unlocked,
        the step's log noted, the worktree of a finished job released."""
        job_id = m.id
        if m.execution:  # the execution records are not needed once its harvest is committed
            base = exec_base(self.store, job_id, m.execution.transition_id)
            for suffix in (".pid", ".exit"):
                (base.parent / (base.name + suffix)).unlink(missing_ok=True)
        self._unlock_worktree(job_id)
        if out.log is not None:
            self._note_log(oid, out.output)
        self._release_if_finished(job_id, new.state)


@dataclass
class _Outcome:
    """What a step's agent came to, as the harvest read it."""

    agent: Any
    res: AgentResult
    output: str  # its log, the step's env values masked
    log: Path | None
    version: str | None  # the agent CLI's version


def harvest_left_out(store: JobStore, wt: Path) -> list[LeftOut]:
    """What harvest hygiene leaves out of the commit of ``wt``'s changes (``[harvest]``)."""
    hc = store.config.harvest
    return hygiene_plan(wt, max_file_bytes=hc.max_file_bytes, exclude=hc.exclude, include=hc.include)


def harvest_event(m: Manifest, res: AgentResult, *, exit_code: int | None, breach: str | None,
                  missing: list[str]) -> tuple[str, str]:
    """(event of the transition table, reason) of a step whose agent came to ``res``: a budget
    ``breach``, a denial or ``missing`` evidence make a COMPLETED step need a person."""
    action = res.action
    if breach:
        return "intervention", breach
    if action == "COMPLETED" and res.denials:
        # a permission the agent lacked is never a silent success (docs/agents.md)
        return "intervention", res.reason or f"the agent was denied: {res.denials}"
    if action == "COMPLETED" and missing:
        return "intervention", (f"the agent reported COMPLETED, but its evidence file"
                                f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                                f"{'do' if len(missing) > 1 else 'does'} not exist in the worktree")
    if action == "COMPLETED":
        if m.step == m.step_count:
            needs = m.requires_approval or m.current.requires_approval or res.requests_approval
            return ("completed_approval" if needs else "completed_last"), res.summary or "step completed"
        return "completed", res.summary or "step completed"
    if action == "RETRY":
        if m.attempt < m.budget.max_attempts:
            return "retry", f"agent asked to retry: {res.summary or res.reason}".rstrip(": ")
        return "intervention", (f"budget exceeded: RETRY exhausted after {m.attempt} attempts (max_attempts "
                                f"{m.budget.max_attempts}): {res.summary or res.reason}").rstrip(": ")
    if action == "STUCK":
        return "intervention", f"agent is stuck: {res.summary or res.reason}".rstrip(": ")
    if action == "FAILED":
        return "intervention", res.reason or f"agent failed (exit code {exit_code})"
    return "intervention", res.reason or "the agent gave no valid outcome"


def _harvest_mutation(event: str, reason: str, out: _Outcome, left_out: list[LeftOut], cost: float,
                      tokens: int, n: int) -> Callable[[Manifest], None]:
    """What the harvest changes in the record besides the state (the table's event sets that)."""
    res = out.res

    def mut(x: Manifest) -> None:
        s = x.current
        s.cost_usd = round(s.cost_usd + cost, 6)
        s.tokens += tokens
        s.summary = res.summary or s.summary
        s.session_id = res.session_id or s.session_id
        s.agent_version = out.version or s.agent_version
        s.left_out = [lo.line() for lo in left_out]
        x.execution = None
        if event in ("completed", "completed_last", "completed_approval"):
            s.status = StepStatus.SUCCESS
            s.reason = ""
            if event == "completed":
                x.step = n + 1
                x.attempt = 0
        elif event == "retry":
            s.status = StepStatus.PENDING
            s.reason = reason
        else:
            s.status = StepStatus.FAILURE
            s.reason = reason

    return mut


def _harvest_record(m: Manifest, out: _Outcome, exit_code: int | None, warnings: list[str],
                    left_out: list[LeftOut], cost: float, tokens: int
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    """(history entry data, commit trailers) of the harvest."""
    res, version = out.res, out.version
    data: dict[str, Any] = {"action": res.action, "exit_code": exit_code, "summary": res.summary[:2000],
                            "evidence_files": res.evidence_files}
    if warnings:
        data["warnings"] = warnings
    if res.session_id:
        data["session_id"] = res.session_id
    if res.denials:
        data["denials"] = res.denials
    if version:
        data["agent_version"] = version
    trailers = {"Logist-Tokens-Total": str(new_tokens(m, tokens)),
                "Logist-Cost-USD-Total": f"{m.cost_usd + cost:.6f}".rstrip("0").rstrip(".")}
    if version:
        trailers["Logist-Agent"] = f"{m.current.agent} {version}"
    if left_out:
        data["left_out"] = [lo.as_dict() for lo in left_out]
    return data, trailers


def _agent_version(agent, cache: Path) -> str | None:
    """The agent CLI's version (``--version``), or None (plain agents, or it says none)."""
    try:
        return agent.version(cache) if hasattr(agent, "version") else None
    except Exception:
        return None


def _harvest_body(res, reason: str, warnings: list[str]) -> str:
    lines = [reason]
    if res.summary and res.summary != reason:
        lines += ["", "Summary: " + res.summary]
    if res.evidence_files:
        lines += ["", "Evidence: " + ", ".join(res.evidence_files)]
    for d in getattr(res, "denials", None) or []:
        lines += ["", "Denied: " + d]
    for w in warnings:
        lines += ["", "Warning: " + w]
    return "\n".join(lines)
