"""The step engine: PENDING -> PROVISIONING -> EXECUTING -> HARVESTING -> rest
(docs/architecture.md#data-flow-of-a-step).

Each arrow is one commit, made under the job's lease and fenced by it. The agent runs in the
job's worktree as a child process in its own process group; the side process (observer +
sentinel) watches it. Recovery from the tip (docs/recovery.md#recovery-from-the-tip) re-enters the same code at the
phase the tip names, so a crash anywhere resumes where it stopped.

The engine is built in layers, one module each: the agent as a process
(logist.engine.agent_supervisor), the step's commits (logist.engine.step_transitions), the
harvest (logist.engine.harvest) and, here, the public API and the phases before the harvest.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from logist.core.errors import JobStateError, LogistError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Execution, Manifest, State, StepStatus
from logist.core.procs import boot_id
from logist.core.states import TRANSIENT
from logist.engine.agent_proc import agent_status, exec_base, read_exit
from logist.engine.agent_supervisor import Progress, mask_env, read_step_log, read_verdict
from logist.engine.harvest import Harvester
from logist.engine.settle import own_tip, settle_branch
from logist.engine.steps import StepResult, assemble_prompt, elapsed_since
from logist.engine.trustgate import require_trust
from logist.git import refs
from logist.store.job_state import Update
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, acquire

Repair = Callable[["Engine", Lease], "StepResult | None"]


class Engine(Harvester):
    """Runs steps of one repository's jobs. Never prints: progress goes to ``progress``.

    Commands build it with ``logist.engine.repair.make_engine`` (which hands in the repair of
    an interrupted rerun or restep); ``Engine(store)`` alone runs steps without that repair.
    """

    def __init__(self, store: JobStore, *, progress: Progress | None = None, trust: bool = False,
                 watch: bool = True, repair: Repair | None = None) -> None:
        super().__init__(store, progress=progress, trust=trust, watch=watch)
        # A runner reads the commits and trees it wrote, step after step: in process (dulwich).
        store.writer.load_objects()
        # What finishes an interrupted rerun or restep before a step runs. Handed in (see
        # logist.engine.repair.make_engine): rerun and restep build on this engine.
        self.repair = repair

    # ---- public API -------------------------------------------------------------------
    def step(self, job_id: JobId, *, lease: Lease | None = None) -> StepResult:
        """Run exactly one step of a PENDING job (or finish an interrupted one)."""
        with self._call(job_id, lease) as lease:
            return self._repair(lease) or self._stop_between(lease) or self._step_locked(lease)

    def run(self, job_id: JobId, *, max_steps: int | None = None, lease: Lease | None = None) -> StepResult:
        """Steps until the job rests in anything but PENDING (``lease``: one the caller holds)."""
        with self._call(job_id, lease) as lease:
            result = self._repair(lease)
            count = 0
            while True:
                _, m = self._current(job_id)
                if m.state != State.PENDING and m.state not in TRANSIENT:
                    if result is None:
                        if m.state == State.DRAFT:
                            raise JobStateError(f"job {job_id} is a DRAFT",
                                                hint=f"activate it first: `logist job activate {job_id}`")
                        return StepResult(job_id, m.state, m.step, reason=m.reason)
                    return result
                result = self._stop_between(lease) or self._step_locked(lease)
                count += 1
                if max_steps is not None and count >= max_steps:
                    return result

    @contextmanager
    def _call(self, job_id: JobId, lease: Lease | None) -> Iterator[Lease]:
        """A public call: the id checked, the job's lease taken (unless the caller holds one:
        ``lease``) and kept alive by its heartbeat, then crash-left lock files cleared; at its end
        :meth:`_end_call`."""
        refs.validate_job_id(job_id)
        own = lease is None
        lease = lease or acquire(self.store, job_id)
        self._depth += 1
        try:
            lease.start_heartbeat()
            # Under the lease: a live index.lock is then no other logist runner's own git (two
            # runners of one job: the loser is told "busy", not about the winner's index.lock).
            self._check_lock_files(job_id)
            yield lease
        finally:
            self._end_call(lease, own)

    def _check_lock_files(self, job_id: JobId) -> None:
        """A crash-left index.lock in the job's worktree is cleared before anything is written;
        one a live git may hold stops the step here (GitLockError, exit 4, nothing written)."""
        from logist.git.gitcmd import waiting_pids
        from logist.git.lockfiles import check_worktree

        # A record whose history.jsonl does not parse would wedge the job at its harvest: refuse
        # before anything is written (ManifestError naming the commit and the line). Logist's
        # own last record is what counts: an agent may have left a tip with no record at all.
        tip, m = own_tip(self.store, job_id)
        if m.state == State.PENDING or m.state in TRANSIENT:
            self.store.read_history(job_id, at=tip)
        for lock in check_worktree(self.store.worktree_path(job_id), exclude=waiting_pids()):
            self.progress(f"{job_id}: removed {lock}, left by a git process that is gone")

    def _stop_between(self, lease: Lease) -> StepResult | None:
        """Honour a stop request made while no agent runs (docs/stopping.md); None if none."""
        from logist.engine.stop import StopPoll

        req = StopPoll(self.store, lease.job_id).check(force=True)
        return self._honour_stop(lease, req) if req is not None else None

    def _end_call(self, lease: Lease, own: bool) -> None:
        """End of a public call: reap the side processes (the outermost call only), then stop
        the heartbeat and release the lease (if the call took it)."""
        self._depth -= 1
        try:
            if self._depth <= 0:
                self._reap_watchers()
                while self._notifications:  # a short-lived `job run` waits for its notifications
                    self._notifications.pop().join(35)
        finally:
            lease.stop_heartbeat()
            if own:
                lease.release()

    def _repair(self, lease: Lease) -> StepResult | None:
        """Finish what an interrupted rerun or restep left (the ``repair`` handed in, see
        logist.engine.repair); None if nothing."""
        if self.repair is None:
            return None
        own, m = self._current(lease.job_id)
        if own != self.store.tip(lease.job_id) and not (m.execution is not None and m.execution.restep):
            return None  # an interrupted step's agent moved the branch: the step engine settles it
        return self.repair(self, lease)

    # ---- one step ---------------------------------------------------------------------
    def _current(self, job_id: JobId) -> tuple[str, Manifest]:
        """logist's own last commit and record (the tip, unless an interrupted step's agent
        moved the branch: see ``logist.engine.settle.own_tip``)."""
        return own_tip(self.store, job_id)

    def _step_locked(self, lease: Lease) -> StepResult:
        job_id = lease.job_id
        tip, m = self._current(job_id)
        if m.state == State.PENDING:
            return self._start(lease, tip, m)
        if m.state == State.PROVISIONING:
            self._require_trust(m)  # before any commit: an untrusted job is left as it is
            return self._provision_and_execute(lease)
        if m.state == State.EXECUTING:
            return self._resume_executing(lease, m, tip)
        if m.state == State.RECOVERING:
            self._require_trust(m)
            return self._recover_or_give_up(lease, "resumed after an interruption")
        if m.state == State.HARVESTING:
            return self._harvest(lease)
        if m.state == State.DRAFT:
            raise JobStateError(f"job {job_id} is a DRAFT; it has not been activated",
                                hint=f"run `logist job activate {job_id}`")
        hint = {State.APPROVAL_REQUIRED: f"review it, then `logist job approve {job_id}` or `reject`",
                State.INTERVENTION_REQUIRED: f"fix the cause, then `logist job resubmit {job_id}`",
                State.SUSPENDED: f"run `logist job resume {job_id}`",
                }.get(m.state, f"start a new run with `logist job rerun {job_id}`")
        raise JobStateError(f"job {job_id} is {m.state.value}; there is no step to run"
                            + (f" ({m.reason})" if m.reason else ""), hint=hint)

    def _start(self, lease: Lease, tip: str, m: Manifest) -> StepResult:

        n = m.step
        step = m.current
        self._require_trust(m)
        breach = self._budget_breach(m)
        if breach is None and m.attempt >= m.budget.max_attempts:
            breach = f"attempts spent: {m.attempt} of max_attempts {m.budget.max_attempts}"
        prompt = assemble_prompt(m, n)
        tid = new_transition_id()
        log = self._log_path(m, n, m.attempt + 1)
        k = 1
        while log.exists():  # the attempt count started again (resubmit, reject): a file of its own
            k += 1
            log = log.with_name(f"run{m.run}-step{n}-attempt{m.attempt + 1}-{k}.log")

        def start(x: Manifest) -> None:
            x.attempt += 1
            s = x.current
            s.status = StepStatus.RUNNING
            s.attempt = x.attempt
            if x.attempt == 1 or s.started_commit is None:
                s.started_commit = tip
            if s.first_started_commit is None:
                s.first_started_commit = tip
            s.assembled_prompt = prompt
            x.execution = Execution(transition_id=tid, host=socket.gethostname(), boot_id=boot_id(),
                                    started_at=utcnow(), log=str(log))

        oid, m = self._transition(lease, Update(event="start", mutate=start, reason=f"step {n} starts",
                                                data={"attempt": m.attempt + 1, "agent": step.agent}),
                                  body=f"Prompt:\n\n{prompt}")
        crash_point("after-provisioning-commit")
        if breach:
            return self._finish_intervention(lease, "provision_failed", breach)
        return self._provision_and_execute(lease)

    def _require_trust(self, m: Manifest) -> None:
        """A step of a job this clone does not trust is never executed: not when it
        starts, not when an interrupted execution is resumed or re-executed (TrustError; the
        job stays as it is until someone trusts it)."""
        require_trust(m, trust=self.trust)

    def _provision_and_execute(self, lease: Lease) -> StepResult:
        job_id = lease.job_id
        try:
            self.store.ensure_worktree(job_id)
            self.store.sync_worktree_record(job_id)
            self.store.lock_worktree(job_id, f"logist: a step of {job_id} is running")
        except LogistError as exc:
            return self._finish_intervention(lease, "provision_failed", f"provisioning failed: {exc.message}")
        crash_point("after-provision")
        _, m = self.store.read(job_id)
        oid, m = self._transition(lease, Update(event="provisioned", reason="worktree ready; agent starts"))
        crash_point("after-executing-commit")
        return self._execute(lease, oid, m)

    def _execute(self, lease: Lease, executing_commit: str, m: Manifest) -> StepResult:
        """Start the agent (and its watcher), wait for it, then harvest or recover."""
        from logist.agents import get_agent
        from logist.agents.base import StepContext

        job_id = m.id
        n = m.step
        step = m.current
        self._require_trust(m)  # also on every path that resumes or re-executes a step
        agent = get_agent(step.agent)
        wt = self.store.worktree_path(job_id)
        ctx = StepContext(job_id=job_id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=step.assembled_prompt or assemble_prompt(m, n), workdir=wt,
                          options=dict(step.options), attempt=m.attempt, session_id=step.session_id,
                          prior_tokens=step.tokens if step.session_id else 0,
                          prior_cost_usd=step.cost_usd if step.session_id else 0.0)

        log = Path(m.execution.log) if m.execution and m.execution.log else self._log_path(m, n, m.attempt)
        tid = m.execution.transition_id if m.execution else new_transition_id()
        verdict, record = self._before_agent(job_id, log, tid, executing_commit)
        try:
            handle = self._spawn(m, n, m.attempt, agent.build(ctx), wt, log, tid)
        except LogistError as exc:
            reason = f"the agent could not be started: {exc.message}"
            self._transition(lease, Update(event="hung", reason=reason))
            return self._finish_intervention(lease, "gave_up", reason)
        crash_point("agent-spawned")
        self._record_spawned(job_id, record, handle)
        self.progress(f"{job_id}: agent {step.agent} running (pid {handle.pid}), log {log}")
        watcher_pid = self._watch_agent(m, record, handle, log, executing_commit, wt, verdict)
        crash_point("agent-running")
        cut: dict[str, int] = {}
        exit_code, killed_reason = self._wait(handle, m, log=log, cut=cut, stoppable=True)
        left = self._agent_gone(m.id, handle, watcher_pid, verdict, executing_commit)
        left += self._log_cut(log, cut)
        left += self._escaped(m, handle.pgid, handle.pid)
        crash_point("after-agent-exit")
        if self._stop_req is not None:
            return self._honour_stop(lease, self._stop_req, log)
        return self._after_agent(lease, m, exit_code, log, verdict, killed_reason,
                                 executing_commit=executing_commit, warnings=left)

    def _after_agent(self, lease: Lease, m: Manifest, exit_code: int | None, log: Path,
                     verdict: Path, killed_reason: str | None, *,
                     executing_commit: str | None = None,
                     warnings: list[str] | None = None) -> StepResult:
        """The agent is gone: EXECUTING -> HARVESTING (or RECOVERING when the sentinel stopped it).

        The record comes from logist's own EXECUTING commit, never from what the agent left;
        the new commit goes on top of the branch as the agent left it (its commits are kept;
        commits it rewrote away stay reachable under refs/logist/displaced/).
        """

        job_id = m.id
        if exit_code is None and m.execution:  # re-attached: the wrapper recorded the status
            exit_code = read_exit(exec_base(self.store, job_id, m.execution.transition_id))
        own = executing_commit or self.store.tip(job_id)
        tip, settled = settle_branch(self.store, job_id, own)
        warnings = list(settled) + list(warnings or [])
        at: dict[str, Any] = {"expected": tip, "parent": tip, "history_from": own}
        extra = {"warnings": warnings} if warnings else {}
        elapsed = elapsed_since(m.execution.started_at) if m.execution else 0.0
        v = read_verdict(verdict, own)
        if v and v.get("fatal"):
            # a failure no retry can fix (docs/agents.md): straight to a person, one execution
            reason = f"{m.current.agent}: {v.get('reason') or 'a failure no retry can fix'}"
            verdict.unlink(missing_ok=True)
            oid, m = self._transition(lease, Update(event="hung", reason=reason, seconds_delta=elapsed,
                                                    data=extra or None), **at)
            self._note_log(oid, mask_env(read_step_log(log, self.store.config.limits.max_log_bytes),
                                          m.current.options))
            return self._finish_intervention(lease, "gave_up", f"{reason} (not retried)")
        if v is not None:
            reason = f"sentinel: {v.get('reason', 'agent looked hung')}" if v else \
                "sentinel stopped the agent"
            verdict.unlink(missing_ok=True)
            oid, m = self._transition(lease, Update(event="hung", reason=reason, seconds_delta=elapsed,
                                                    data=extra or None), **at)
            # what the stopped agent printed: `job log`
            self._note_log(oid, mask_env(read_step_log(log, self.store.config.limits.max_log_bytes),
                                          m.current.options))
            return self._recover_or_give_up(lease, reason)
        def add_time(x: Manifest) -> None:
            x.current.seconds = round(x.current.seconds + elapsed, 3)

        oid, _ = self._transition(lease, Update(event="agent_exited", seconds_delta=elapsed, mutate=add_time,
                                                reason=killed_reason or f"agent exited with code {exit_code}",
                                                data={"exit_code": exit_code, **extra,
                                                      **({"stopped": killed_reason} if killed_reason else {})}),
                                  **at)
        crash_point("after-harvesting-commit")
        return self._harvest(lease, exit_code=exit_code, killed_reason=killed_reason, own_tip=oid)

    def _resume_executing(self, lease: Lease, m: Manifest, executing_commit: str | None = None
                          ) -> StepResult:
        """EXECUTING at logist's own tip (docs/recovery.md#recovery-from-the-tip): harvest an agent that finished while
        nobody watched, re-attach to one that still runs, start one that never started (same
        attempt), or recover a killed one (RECOVERING, then attempt + 1)."""

        executing_commit = executing_commit or self.store.tip(m.id)
        st = agent_status(self.store, m)
        verdict = self.store.run_dir(m.id) / "verdict.json"
        log = Path(m.execution.log) if m.execution and m.execution.log else \
            self._log_path(m, m.step, m.attempt)
        if st.kind == "running" and st.pid is not None:
            from logist.runtimes.host import attach

            self.progress(f"{m.id}: re-attaching to the running agent (pid {st.pid})")
            handle = attach(st.pid, pgid=st.pgid, start_time=st.start_time)
            watcher_pid = self._restart_watcher(m, log, st.pid, st.pgid or st.pid, executing_commit,
                                                verdict)
            code, killed = self._wait(handle, m, stoppable=True)
            left = self._agent_gone(m.id, handle, watcher_pid, verdict, executing_commit)
            if self._stop_req is not None:
                return self._honour_stop(lease, self._stop_req, log)
            return self._after_agent(lease, m, code, log, verdict, killed,
                                     executing_commit=executing_commit, warnings=left)
        if st.kind == "exited":
            self.progress(f"{m.id}: the agent finished while nobody watched (exit code {st.exit_code})")
            return self._after_agent(lease, m, st.exit_code, log, verdict, None,
                                     executing_commit=executing_commit)
        if st.kind in ("not-started", "dead"):
            self._require_trust(m)  # both execute the step again
        if st.kind == "not-started":
            self.progress(f"{m.id}: the agent of step {m.step} never started; starting it")
            return self._execute(lease, executing_commit, m)
        reason = "the agent is gone (its runner was interrupted)"
        tip, warnings = settle_branch(self.store, m.id, executing_commit)
        oid, _ = self._transition(lease, Update(event="hung", reason=reason,
                                                data={"warnings": warnings} if warnings else None),
                                  expected=tip, parent=tip, history_from=executing_commit)
        self._note_log(oid, mask_env(read_step_log(log, self.store.config.limits.max_log_bytes),
                                      m.current.options))
        return self._recover_or_give_up(lease, reason)

    def _recover_or_give_up(self, lease: Lease, reason: str) -> StepResult:
        tip, m = self.store.read(lease.job_id)
        if m.attempt >= m.budget.max_attempts:
            return self._finish_intervention(
                lease, "gave_up", f"{reason}; attempts spent ({m.attempt} of max_attempts {m.budget.max_attempts})")
        tid = new_transition_id()
        log = self._log_path(m, m.step, m.attempt + 1)

        def restart(x: Manifest) -> None:
            x.attempt += 1
            x.current.attempt = x.attempt
            x.current.status = StepStatus.RUNNING
            x.execution = Execution(transition_id=tid, host=socket.gethostname(), boot_id=boot_id(),
                                    started_at=utcnow(), log=str(log))

        self.store.ensure_worktree(m.id)
        oid, m = self._transition(lease, Update(event="restarted", mutate=restart,
                                                reason=f"re-executing step {m.step} (attempt {m.attempt + 1})"))
        return self._execute(lease, oid, m)
