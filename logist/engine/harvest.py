"""The harvest of a step: HARVESTING -> resting. The agent's output is parsed, its work
committed (hygiene leaves out what must not be committed), the outcome mapped to the event of
the transition table (budget, denials, missing evidence, RETRY, STUCK, FAILED), and the
worktree released when the job has finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from logist.core.faults import crash_point
from logist.core.model import TERMINAL, Manifest, State, StepStatus
from logist.core.safepath import why_unsafe
from logist.engine.agent_proc import exec_base
from logist.engine.agent_supervisor import mask_env, read_step_log
from logist.engine.settle import settle_branch
from logist.engine.step_transitions import StepTransitions
from logist.engine.steps import StepResult, new_tokens
from logist.git import refs
from logist.store.job_state import Update
from logist.store.locks import Lease


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
        from logist.agents import get_agent
        from logist.agents.base import StepContext

        job_id = lease.job_id
        own_tip = own_tip or self.store.tip(job_id)
        _, m = self.store.read(job_id, at=own_tip)
        last = [e for e in self.store.read_history(job_id, at=own_tip) if e.to_state == State.HARVESTING]
        earlier_warnings = list(last[-1].data.get("warnings") or []) if last else []
        if exit_code is None:
            if last and "exit_code" in last[-1].data:
                exit_code = last[-1].data["exit_code"]
                killed_reason = last[-1].data.get("stopped")
        step = m.current
        n = m.step
        wt = self.store.ensure_worktree(job_id)
        log = Path(m.execution.log) if m.execution and m.execution.log else None
        output = mask_env(read_step_log(log, self.store.config.limits.max_log_bytes) if log else "",
                           step.options)
        agent = get_agent(step.agent)
        ctx = StepContext(job_id=job_id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=step.assembled_prompt or "", workdir=wt, options=dict(step.options),
                          attempt=m.attempt, session_id=step.session_id,
                          prior_tokens=step.tokens if step.session_id else 0,
                          prior_cost_usd=step.cost_usd if step.session_id else 0.0)
        res = agent.parse(output, exit_code, ctx)
        # what the agent said goes into the record and the commit message: no secrets
        from logist.agents.base import strip_ansi
        from logist.core.redact import redact

        res.summary, res.reason = redact(strip_ansi(res.summary)), redact(strip_ansi(res.reason))
        res.denials = [redact(d) for d in res.denials]
        version = _agent_version(agent, self.store.paths.logist_dir / "agent-versions.json")
        warnings = [str(w) for w in earlier_warnings] + res.warnings  # + outcome fields dropped
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
        # Where does the new commit go? On top of the branch tip, keeping any agent commits.
        tip, settled = settle_branch(self.store, job_id, own_tip)
        parent = tip
        warnings += settled
        if tip == own_tip:  # after a crash between a commit and the worktree's refresh
            self.store.sync_worktree_record(job_id)
        from logist.store.hygiene import body_lines
        from logist.store.hygiene import plan as hygiene_plan

        hc = self.store.config.harvest
        left_out = hygiene_plan(wt, max_file_bytes=hc.max_file_bytes, exclude=hc.exclude, include=hc.include)

        cost = float(res.cost_usd or 0.0)
        tokens = int(res.tokens or 0)
        probe = m.model_copy(deep=True)
        probe.cost_usd += cost
        breach = killed_reason if killed_reason and killed_reason.startswith("budget") else \
            self._budget_breach(probe)
        last_step = n == m.step_count
        action = res.action
        reason = res.reason or res.summary
        if breach:
            event, reason = "intervention", breach
        elif action == "COMPLETED" and res.denials:
            # a permission the agent lacked is never a silent success (docs/agents.md)
            event, reason = "intervention", res.reason or f"the agent was denied: {res.denials}"
        elif action == "COMPLETED" and missing:
            event = "intervention"
            reason = (f"the agent reported COMPLETED, but its evidence file"
                      f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                      f"{'do' if len(missing) > 1 else 'does'} not exist in the worktree")
        elif action == "COMPLETED":
            if last_step:
                needs = m.requires_approval or step.requires_approval or res.requests_approval
                event = "completed_approval" if needs else "completed_last"
            else:
                event = "completed"
            reason = res.summary or "step completed"
        elif action == "RETRY":
            if m.attempt < m.budget.max_attempts:
                event = "retry"
                reason = f"agent asked to retry: {res.summary or res.reason}".rstrip(": ")
            else:
                event = "intervention"
                reason = (f"budget exceeded: RETRY exhausted after {m.attempt} attempts (max_attempts "
                          f"{m.budget.max_attempts}): {res.summary or res.reason}").rstrip(": ")
        elif action == "STUCK":
            event, reason = "intervention", f"agent is stuck: {res.summary or res.reason}".rstrip(": ")
        elif action == "FAILED":
            event, reason = "intervention", res.reason or f"agent failed (exit code {exit_code})"
        else:
            event, reason = "intervention", res.reason or "the agent gave no valid outcome"

        def mut(x: Manifest) -> None:
            s = x.current
            s.cost_usd = round(s.cost_usd + cost, 6)
            s.tokens += tokens
            s.summary = res.summary or s.summary
            s.session_id = res.session_id or s.session_id
            s.agent_version = version or s.agent_version
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

        data: dict[str, Any] = {"action": action, "exit_code": exit_code, "summary": res.summary[:2000],
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
            trailers["Logist-Agent"] = f"{step.agent} {version}"
        if left_out:
            data["left_out"] = [lo.as_dict() for lo in left_out]
        crash_point("before-harvest-commit")
        oid, new = self._transition(
            lease, Update(event=event, reason=reason, outcome=action, cost_delta=cost, tokens_delta=tokens,
                          mutate=mut, data=data),
            body="\n\n".join(b for b in (_harvest_body(res, reason, warnings), "\n".join(body_lines(left_out)))
                               if b),
            include_worktree=True, parent=parent, history_from=own_tip, expected=tip, trailers=trailers,
            exclude=tuple(getattr(agent, "state_files", ())), left_out=left_out)
        crash_point("after-harvest-commit")
        if m.execution:  # the execution records are not needed once its harvest is committed

            base = exec_base(self.store, job_id, m.execution.transition_id)
            for suffix in (".pid", ".exit"):
                (base.parent / (base.name + suffix)).unlink(missing_ok=True)
        self._unlock_worktree(job_id)
        if log is not None:
            self._note_log(oid, output)
        if new.state in TERMINAL:
            kept = self.store.release_worktree(job_id)
            if kept:
                self.progress(f"{job_id}: worktree kept: {kept}")
        return StepResult(job_id, new.state, new.step, outcome=action, reason=reason, commits=[oid])

    def _own_tip(self, job_id: str) -> str:
        """logist's own last commit: the newest commit whose trailers name this job's transition."""
        from logist.git.gitcmd import git_out

        out = git_out(["log", "-n", "50", "--format=%H%x00%(trailers:key=Logist-Job,valueonly,separator=%x2C)",
                       refs.branch_ref(job_id), "--"], cwd=self.store.root)
        for line in out.splitlines():
            oid, _, job = line.partition("\x00")
            if job.strip() == job_id:
                return oid
        # rewritten away entirely: fall back to the newest displaced/run ref or the tip
        return self.store.tip(job_id)


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
