"""The step engine: PENDING -> PROVISIONING -> EXECUTING -> HARVESTING -> rest
(docs/architecture.md#data-flow-of-a-step).

Each arrow is one commit, made under the job's lease and fenced by it. The agent runs in the
job's worktree as a child process in its own process group; the side process (observer +
sentinel) watches it. Recovery from the tip (docs/recovery.md#recovery-from-the-tip) re-enters the same code at the
phase the tip names, so a crash anywhere resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logist.core.errors import JobStateError, LogistError
from logist.core.faults import crash_point
from logist.core.model import TERMINAL, Execution, Manifest, State, StepStatus
from logist.core.procs import boot_id, pid_alive, process_start_time
from logist.core.safepath import why_unsafe
from logist.engine.agent_proc import agent_status, exec_base, read_exit, wrap_argv
from logist.engine.settle import own_tip, settle_branch
from logist.engine.steps import AgentRun, StepResult, assemble_prompt, elapsed_since, new_tokens
from logist.engine.trustgate import require_trust
from logist.git import refs
from logist.store.hygiene import LeftOut
from logist.store.job_state import Update, update_job_manifest
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, acquire

Progress = Callable[[str], None]
Repair = Callable[["Engine", Lease], "StepResult | None"]

WATCHER_EXIT_WAIT = 5.0  # seconds a side process gets, once its agent is gone, to end by itself


@dataclass
class _Watcher:
    """A side process whose agent is gone: it is reading the rest of the log and writing its
    last notes while the step is harvested. Reaped by ``Engine._reap_watchers``."""

    pid: int
    commit: str | None  # the commit its notes go on (the step's EXECUTING commit)
    verdict: Path
    agent_gone_at: float  # time.monotonic()


class Engine:
    """Runs steps of one repository's jobs. Never prints: progress goes to ``progress``.

    Commands build it with ``logist.engine.repair.make_engine`` (which hands in the repair of
    an interrupted rerun or restep); ``Engine(store)`` alone runs steps without that repair.
    """

    def __init__(self, store: JobStore, *, progress: Progress | None = None, trust: bool = False,
                 watch: bool = True, repair: Repair | None = None) -> None:
        self.store = store
        # What finishes an interrupted rerun or restep before a step runs. Handed in (see
        # logist.engine.repair.make_engine): rerun and restep build on this engine.
        self.repair = repair
        self.progress = progress or (lambda msg: None)
        self.trust = trust
        self.watch = watch and os.environ.get("LOGIST_NO_WATCHER") != "1"
        # Side processes still finishing (their agents are gone), and how deep in public calls
        # we are: they are reaped before the next agent starts and when the outermost call
        # returns, so their notes are in git when Engine.step/run (and `job step/run`) return.
        self._watchers: list[_Watcher] = []
        self._depth = 0
        self._stop_req = None  # a stop request the current step's agent was stopped for
        self._notifications: list = []  # notify commands still running (joined at the end of a call)

    # ---- the transition primitive -----------------------------------------------------
    def _transition(self, lease: Lease, update: Update, *, body: str = "", include_worktree=False,
                    parent: str | None = None, history_from: str | None = None,
                    expected: str | None = None, trailers: dict[str, str] | None = None,
                    exclude: tuple[str, ...] = (), left_out: list[LeftOut] | None = None
                    ) -> tuple[str, Manifest]:
        """One transition of the job under ``lease`` (``update_job_manifest``), said to ``progress``.

        ``expected``: the commit the branch must still be at (default: its tip now); the record
        is read at ``history_from`` or there; ``exclude``: worktree paths the commit leaves out;
        ``left_out``: what harvest hygiene leaves out (``store.hygiene``)."""
        job_id = lease.job_id
        if update.reason or body:  # reasons quote agents; they go into commits and the record
            from logist.core.redact import redact

            update.reason = redact(update.reason) if update.reason else update.reason
            body = redact(body)
        if expected is None:
            tip, manifest = self.store.read(job_id)
        else:
            tip = expected
            _, manifest = self.store.read(job_id, at=history_from or expected)
        done = update_job_manifest(self.store, job_id, update, now=utcnow(),
                                   transition_id=new_transition_id(), tip=tip, current=manifest,
                                   lease=lease.oid, body=body, include_worktree=include_worktree,
                                   parent=parent, history_from=history_from, extra_trailers=trailers,
                                   exclude=exclude, left_out=left_out)
        if done is None:
            return tip, manifest
        oid, new = done
        self.progress(f"{job_id}: {manifest.state.value} -> {new.state.value} (step {new.step}/{new.step_count})"
                      + (f": {update.reason}" if update.reason and new.state != State.PENDING else ""))
        if new.state != manifest.state:
            self._notify(new)
        return oid, new

    def _notify(self, m: Manifest) -> None:
        """The person's notify command, when the job came to need them or finished."""
        try:
            from logist.engine.notify import notify

            t = notify(self.store, {"id": m.id, "state": m.state.value, "reason": m.reason, "title": m.title,
                                    "step": m.step, "step_count": m.step_count}, warn=self.progress)
            if t is not None:
                self._notifications.append(t)
        except Exception as exc:  # a notification never stops a job
            self.progress(f"warning: no notification: {exc}")

    # ---- public API -------------------------------------------------------------------
    def step(self, job_id: str, *, lease: Lease | None = None) -> StepResult:
        """Run exactly one step of a PENDING job (or finish an interrupted one)."""
        refs.validate_job_id(job_id)
        self._check_lock_files(job_id)
        own = lease is None
        lease = lease or acquire(self.store, job_id)
        self._depth += 1
        try:
            lease.start_heartbeat()
            return self._repair(lease) or self._stop_between(lease) or self._step_locked(lease)
        finally:
            self._end_call(lease, own)

    def run(self, job_id: str, *, max_steps: int | None = None, lease: Lease | None = None) -> StepResult:
        """Steps until the job rests in anything but PENDING (``lease``: one the caller holds)."""
        refs.validate_job_id(job_id)
        self._check_lock_files(job_id)
        own = lease is None
        lease = lease or acquire(self.store, job_id)
        self._depth += 1
        try:
            lease.start_heartbeat()
            result = self._repair(lease)
            count = 0
            while True:
                _, m = self._current(job_id)
                if m.state != State.PENDING and m.state not in (State.PROVISIONING, State.EXECUTING,
                                                                State.RECOVERING, State.HARVESTING):
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
        finally:
            self._end_call(lease, own)

    def _check_lock_files(self, job_id: str) -> None:
        """A crash-left index.lock in the job's worktree is cleared before anything is written;
        one a live git may hold stops the step here (GitLockError, exit 4, nothing written)."""
        from logist.git.gitcmd import waiting_pids
        from logist.git.lockfiles import check_worktree

        # A record whose history.jsonl does not parse would wedge the job at its harvest: refuse
        # before anything is written (ManifestError naming the commit and the line). Logist's
        # own last record is what counts: an agent may have left a tip with no record at all.
        tip, m = own_tip(self.store, job_id)
        if m.state in (State.PENDING, State.PROVISIONING, State.EXECUTING, State.RECOVERING,
                       State.HARVESTING):
            self.store.read_history(job_id, at=tip)
        for lock in check_worktree(self.store.worktree_path(job_id), exclude=waiting_pids()):
            self.progress(f"{job_id}: removed {lock}, left by a git process that is gone")

    def _stop_between(self, lease: Lease) -> StepResult | None:
        """Honour a stop request made while no agent runs (docs/stopping.md); None if none."""
        from logist.engine.stop import StopPoll

        req = StopPoll(self.store, lease.job_id).check(force=True)
        return self._honour_stop(lease, req) if req is not None else None

    def _honour_stop(self, lease: Lease, req, log: Path | None = None) -> StepResult:
        """Commit the requested suspend/cancel under our lease (the agent is already stopped)."""
        from logist.engine.jobs import _human_locked

        self._stop_req = None
        m = _human_locked(self.store, lease, lease.job_id, req.event, req.message)
        self.progress(f"{m.id}: {m.state.value} (step {m.step}/{m.step_count}): {req.message}")
        if log is not None:
            self._note_log(self.store.tip(m.id), _read_text(log, self.store.config.limits.max_log_bytes))
        return StepResult(m.id, m.state, m.step, reason=req.message)

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
        own, _ = self._current(lease.job_id)
        if own != self.store.tip(lease.job_id):
            return None  # an interrupted step's agent moved the branch: the step engine settles it
        return self.repair(self, lease)

    # ---- one step ---------------------------------------------------------------------
    def _current(self, job_id: str) -> tuple[str, Manifest]:
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

    def _budget_breach(self, m: Manifest, *, extra_seconds: float = 0.0) -> str | None:
        b = m.budget
        if b.max_cost_usd is not None and m.cost_usd > b.max_cost_usd + 1e-9:
            return f"budget exceeded: cost ${m.cost_usd:.4f} > max_cost_usd ${b.max_cost_usd:.4f}"
        if b.max_seconds is not None and m.seconds + extra_seconds > b.max_seconds:
            return f"budget exceeded: {m.seconds + extra_seconds:.1f}s > max_seconds {b.max_seconds:g}s"
        return None

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

    def _log_path(self, m: Manifest, n: int, attempt: int) -> Path:
        d = self.store.run_dir(m.id)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"run{m.run}-step{n}-attempt{attempt}.log"

    def _agent_file(self, job_id: str) -> Path:
        return self.store.run_dir(job_id) / "agent.json"

    def _execute(self, lease: Lease, executing_commit: str, m: Manifest) -> StepResult:
        """Start the agent (and its watcher), wait for it, then harvest or recover."""
        from logist.agents import get_agent
        from logist.agents.base import StepContext
        from logist.runtimes import get_runtime

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
        log.parent.mkdir(parents=True, exist_ok=True)
        self._reap_watchers()  # the previous step's side process is done before this one starts
        verdict = self.store.run_dir(job_id) / "verdict.json"
        verdict.unlink(missing_ok=True)
        tid = m.execution.transition_id if m.execution else new_transition_id()
        # Recorded before the agent starts: the commit it starts from (logist's own record,
        # whatever the agent does to the branch) and the execution it belongs to.
        record = {"transition_id": tid, "pid": None, "log": str(log), "commit": executing_commit,
                  "host": socket.gethostname()}
        self._write_agent_file(job_id, record)
        try:
            inv = agent.build(ctx)
            env = {"LOGIST_JOB_ID": job_id, "LOGIST_STEP": str(n), "LOGIST_ATTEMPT": str(m.attempt),
                   "LOGIST_RUN": str(m.run), **inv.env}
            # The wrapper records the agent's pid and exit status where a later process finds them.
            handle = get_runtime("host").spawn(wrap_argv(exec_base(self.store, job_id, tid), inv.argv),
                                               cwd=wt, env=env, log_path=log, stdin=inv.stdin)
        except LogistError as exc:
            reason = f"the agent could not be started: {exc.message}"
            self._transition(lease, Update(event="hung", reason=reason))
            return self._finish_intervention(lease, "gave_up", reason)
        crash_point("agent-spawned")
        self._write_agent_file(job_id, {**record, "pid": handle.pid, "pgid": handle.pgid,
                                        "start_time": process_start_time(handle.pid)})
        self.progress(f"{job_id}: agent {step.agent} running (pid {handle.pid}), log {log}")
        watcher_pid = self._start_watcher(m, log, handle.pid, handle.pgid, executing_commit, wt, verdict)
        if watcher_pid:
            self._write_agent_file(job_id, {**record, "pid": handle.pid, "pgid": handle.pgid,
                                            "start_time": process_start_time(handle.pid),
                                            "watcher_pid": watcher_pid,
                                            "watcher_start_time": process_start_time(watcher_pid)})
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

    def _write_agent_file(self, job_id: str, data: dict) -> None:
        if data.get("pid") is None:  # before the agent starts: what its step may not change
            from logist.engine import config_guard

            config_guard.snapshot(self.store, job_id)
        path = self._agent_file(job_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _escaped(self, m: Manifest, pgid: int, pid: int) -> list[str]:
        """Processes the agent started outside its process group (``setsid``, a daemon) that
        still run after it exited: recorded as a warning of the step (not stopped: they are
        not in the group logist owns)."""
        from logist.runtimes.base import escaped_processes

        marks = {"LOGIST_JOB_ID": m.id, "LOGIST_STEP": str(m.step), "LOGIST_ATTEMPT": str(m.attempt),
                 "LOGIST_RUN": str(m.run)}
        found = escaped_processes(marks, pgid=pgid, newer_than=pid)
        if not found:
            return []
        listed = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in found[:5])
        warning = (f"the agent left {len(found)} process{'es' if len(found) != 1 else ''} running outside "
                   f"its process group (setsid or a daemon), not stopped by logist: {listed}")
        self.progress(f"{m.id}: warning: {warning}")
        return [warning]

    def _log_cut(self, log: Path, cut: dict[str, int]) -> list[str]:
        """Cut the log a last time (the agent has exited); the step's warning if it was cut."""
        from logist.core.logcap import cut_warning, enforce

        cap = self.store.config.limits.max_log_bytes
        enforce(log, cap, cut)
        warning = cut_warning(cut, cap)
        if warning:
            self.progress(f"warning: {warning}")
        return [warning] if warning else []

    def _wait(self, handle, m: Manifest, *, log: Path | None = None,
              cut: dict[str, int] | None = None, stoppable: bool = False) -> tuple[int | None, str | None]:
        """Wait for the agent; stop it when the job's time budget runs out, or (``stoppable``)
        when someone asks the job to stop (``self._stop_req`` is set then: docs/stopping.md).
        The live log is kept under ``[limits] max_log_bytes`` meanwhile (logist.core.logcap)."""
        from logist.engine import stop

        started = time.monotonic()
        limit = None
        if m.budget.max_seconds is not None:
            limit = max(0.0, m.budget.max_seconds - m.seconds)
        poll = stop.StopPoll(self.store, m.id) if stoppable else None
        stop.mark_running(m.id, handle.pid)
        try:
            return self._wait_loop(handle, m, started, limit, poll, log, cut)
        finally:
            stop.mark_running(m.id, None)

    def _wait_loop(self, handle, m: Manifest, started: float, limit: float | None, poll,
                   log: Path | None, cut: dict[str, int] | None) -> tuple[int | None, str | None]:
        from logist.core.logcap import enforce
        from logist.engine import stop

        cap = self.store.config.limits.max_log_bytes

        while True:
            code = handle.wait(timeout=0.2)
            if log is not None:
                enforce(log, cap, cut if cut is not None else {})
            if code is not None or not handle.is_alive():
                return (code if code is not None else handle.exit_code), None
            req = poll.check() if poll is not None else None
            if req is not None:
                self.progress(f"{m.id}: stopping the agent (pid {handle.pid}): {req.message}")
                sent = stop.stop_ladder(handle, {**self.store.config.sentinel, **m.sentinel})
                self._stop_req = req
                return handle.exit_code, f"stopped ({sent}): {req.message}"
            if limit is not None and time.monotonic() - started > limit:
                handle.terminate()
                if handle.wait(timeout=3) is None:
                    handle.kill()
                    handle.wait(timeout=5)
                return handle.exit_code, (f"budget exceeded: step stopped after max_seconds "
                                          f"{m.budget.max_seconds:g}s of job time")

    def _start_watcher(self, m: Manifest, log: Path, pid: int, pgid: int, commit: str, wt: Path,
                       verdict: Path) -> int | None:
        if not self.watch:
            return None
        try:
            from logist.engine.watcher import spawn_watcher
        except ImportError:
            return None
        cfg = self.store.config
        sentinel = {**cfg.sentinel, **m.sentinel}
        patterns = {**cfg.observer.patterns, **m.observer_patterns}
        try:
            # started_at: silence counts from the agent's start, not from the watcher's (a
            # Python start later, ~0.1-0.5 s)
            return spawn_watcher(repo=self.store.root, job_id=m.id, log_path=log, pid=pid, pgid=pgid,
                                 commit=commit, workdir=wt, verdict_file=verdict, started_at=time.time(),
                                 config={"patterns": patterns, "sentinel": sentinel,
                                         "observer": {"repeat_seconds": cfg.observer.repeat_seconds},
                                         "agent": m.current.agent})
        except Exception as exc:
            self.progress(f"{m.id}: warning: watcher did not start: {exc}")
            return None

    def _restart_watcher(self, m: Manifest, log: Path, pid: int, pgid: int, commit: str,
                         verdict: Path) -> int | None:
        """Re-attached to a running agent: start a watcher for it unless the step's own is
        still alive (it runs in its own session, so it outlives a killed runner)."""
        self._reap_watchers()
        info = self._read_agent_file(m.id) or {}
        wpid = info.get("watcher_pid")
        try:
            if wpid and pid_alive(int(wpid), info.get("watcher_start_time")):
                return None
        except (TypeError, ValueError):
            pass
        watcher_pid = self._start_watcher(m, log, pid, pgid, str(info.get("commit") or commit),
                                          self.store.worktree_path(m.id), verdict)
        if watcher_pid:
            self.progress(f"{m.id}: watcher restarted (pid {watcher_pid})")
            if info:
                self._write_agent_file(m.id, {**info, "watcher_pid": watcher_pid,
                                              "watcher_start_time": process_start_time(watcher_pid)})
        return watcher_pid

    def _agent_gone(self, job_id: str, handle, watcher_pid: int | None, verdict: Path,
                    commit: str | None) -> list[str]:
        """The agent's own process has exited. Its side process finishes while the step is
        harvested (it is reaped later: ``_reap_watchers``), unless the sentinel stopped the
        agent: then the watcher is ending what the agent left in its group and writing the last
        rungs of its ladder, and we wait for it here, as that path takes seconds anyway. Then
        whatever the agent left running in its process group is stopped; returns the warnings
        for the step's record."""
        if watcher_pid:
            w = _Watcher(watcher_pid, commit, verdict, time.monotonic())
            if _verdict(verdict, commit) is not None:
                self._reap_watcher(w, stale_verdict=False)
            else:
                self._watchers.append(w)
        try:
            left = handle.stop_leftovers()
        except (OSError, ValueError) as exc:
            self.progress(f"{job_id}: warning: could not stop what the agent left running: {exc}")
            return []
        if not left.stopped:
            return []
        how = "SIGTERM" + (f"; {left.killed} ignored it and got SIGKILL" if left.killed else "")
        warning = (f"the agent left {left.stopped} process{'es' if left.stopped != 1 else ''} "
                   f"running in its process group after it exited; stopped them ({how})")
        self.progress(f"{job_id}: warning: {warning}")
        return [warning]

    def _reap_watchers(self) -> None:
        """Wait (bounded) for the side processes whose agents are gone, and reap them."""
        while self._watchers:
            self._reap_watcher(self._watchers.pop(0))

    def _reap_watcher(self, w: _Watcher, *, stale_verdict: bool = True) -> None:
        """Reap one side process: up to WATCHER_EXIT_WAIT seconds from its agent's exit to end
        by itself, then SIGTERM, then SIGKILL (``logist.engine.watcher.stop_watcher``). Never raises."""
        try:
            from logist.engine.watcher import stop_watcher

            left = WATCHER_EXIT_WAIT - (time.monotonic() - w.agent_gone_at)
            how = stop_watcher(w.pid, wait=max(0.0, left))
            if how != "exited":
                self.progress(f"warning: the side process {w.pid} did not end within "
                              f"{WATCHER_EXIT_WAIT:g}s of its agent and was {how}; its last notes "
                              "may be missing")
            v = _verdict(w.verdict, None) if stale_verdict and w.commit else None
            if v and v.get("commit") == w.commit:
                # written as its agent was exiting by itself, after the engine had read the
                # step as ended normally: nobody will read it
                w.verdict.unlink(missing_ok=True)
        except Exception as exc:
            self.progress(f"warning: could not reap the side process {w.pid}: {exc}")

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
        v = _verdict(verdict, own)
        if v and v.get("fatal"):
            # a failure no retry can fix (docs/agents.md): straight to a person, one execution
            reason = f"{m.current.agent}: {v.get('reason') or 'a failure no retry can fix'}"
            verdict.unlink(missing_ok=True)
            oid, m = self._transition(lease, Update(event="hung", reason=reason, seconds_delta=elapsed,
                                                    data=extra or None), **at)
            self._note_log(oid, _mask_env(_read_text(log, self.store.config.limits.max_log_bytes),
                                          m.current.options))
            return self._finish_intervention(lease, "gave_up", f"{reason} (not retried)")
        if v is not None:
            reason = f"sentinel: {v.get('reason', 'agent looked hung')}" if v else \
                "sentinel stopped the agent"
            verdict.unlink(missing_ok=True)
            oid, m = self._transition(lease, Update(event="hung", reason=reason, seconds_delta=elapsed,
                                                    data=extra or None), **at)
            # what the stopped agent printed: `job log`
            self._note_log(oid, _mask_env(_read_text(log, self.store.config.limits.max_log_bytes),
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
        self._note_log(oid, _mask_env(_read_text(log, self.store.config.limits.max_log_bytes),
                                      m.current.options))
        return self._recover_or_give_up(lease, reason)

    def _read_agent_file(self, job_id: str) -> dict | None:
        try:
            return json.loads(self._agent_file(job_id).read_text())
        except (OSError, ValueError):
            return None

    # ---- one agent execution outside the step transitions (used by logist.engine.rerun) ------
    def run_agent(self, m: Manifest, n: int, workdir: Path, *, prompt: str, log: Path, commit: str,
                  transition_id: str, attempt: int = 1, session_id: str | None = None) -> AgentRun:
        """Run step ``n``'s agent in ``workdir`` (any worktree), wait for it and read its result.

        The same spawn (under the recording wrapper, so a later process can tell what became of
        it), side process (observer + sentinel, notes on ``commit``), budget-aware wait and parse
        as a step, without its transitions. AgentError if it cannot be built or started.
        """
        from logist.agents import get_agent
        from logist.agents.base import StepContext
        from logist.runtimes import get_runtime

        step = m.steps[n - 1]
        agent = get_agent(step.agent)
        ctx = StepContext(job_id=m.id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=prompt, workdir=workdir, options=dict(step.options), attempt=attempt,
                          session_id=session_id)
        inv = agent.build(ctx)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._reap_watchers()
        verdict = self.store.run_dir(m.id) / "verdict.json"
        verdict.unlink(missing_ok=True)
        record = {"transition_id": transition_id, "pid": None, "log": str(log), "commit": commit,
                  "host": socket.gethostname()}
        self._write_agent_file(m.id, record)
        env = {"LOGIST_JOB_ID": m.id, "LOGIST_STEP": str(n), "LOGIST_ATTEMPT": str(attempt),
               "LOGIST_RUN": str(m.run), **inv.env}
        handle = get_runtime("host").spawn(wrap_argv(exec_base(self.store, m.id, transition_id), inv.argv),
                                           cwd=workdir, env=env, log_path=log, stdin=inv.stdin)
        self._write_agent_file(m.id, {**record, "pid": handle.pid, "pgid": handle.pgid,
                                      "start_time": process_start_time(handle.pid)})
        self.progress(f"{m.id}: agent {step.agent} running step {n} (pid {handle.pid}), log {log}")
        watcher_pid = self._start_watcher(m, log, handle.pid, handle.pgid, commit, workdir, verdict)
        crash_point("run-agent-running")
        cut: dict[str, int] = {}
        code, stopped = self._wait(handle, m, log=log, cut=cut)
        left = self._agent_gone(m.id, handle, watcher_pid, verdict, commit)
        left += self._log_cut(log, cut)
        run = self._agent_run(agent, ctx, code, stopped, log, verdict, commit=commit, warnings=left)
        if self._depth <= 0:  # called on its own (a restep): its notes are in git when it returns
            self._reap_watchers()
        return run

    def reattach_agent(self, m: Manifest, n: int, workdir: Path, *, prompt: str, log: Path,
                       attempt: int = 1) -> AgentRun | None:
        """The result of the agent of ``m.execution`` started by an earlier process: wait for it
        if it still runs, read it if it finished; None when it was killed or never started."""
        from logist.agents import get_agent
        from logist.agents.base import StepContext
        from logist.runtimes.host import attach

        st = agent_status(self.store, m)
        if st.kind not in ("running", "exited") or m.execution is None:
            return None
        step = m.steps[n - 1]
        agent = get_agent(step.agent)
        ctx = StepContext(job_id=m.id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=prompt, workdir=workdir, options=dict(step.options), attempt=attempt)
        verdict = self.store.run_dir(m.id) / "verdict.json"
        code, stopped = st.exit_code, None
        if st.kind == "running" and st.pid is not None:
            self.progress(f"{m.id}: re-attaching to the running agent (pid {st.pid})")
            handle = attach(st.pid, pgid=st.pgid, start_time=st.start_time)
            cut: dict[str, int] = {}
            code, stopped = self._wait(handle, m, log=log, cut=cut)
            left = self._agent_gone(m.id, handle, None, verdict, None)
            left += self._log_cut(log, cut)
            if code is None:
                code = read_exit(exec_base(self.store, m.id, m.execution.transition_id))
        else:
            left = []
            self.progress(f"{m.id}: its agent finished while nobody watched (exit code {code})")
        return self._agent_run(agent, ctx, code, stopped, log, verdict, warnings=left)

    def _agent_run(self, agent, ctx, code: int | None, stopped: str | None, log: Path,
                   verdict: Path, *, commit: str | None = None,
                   warnings: list[str] | None = None) -> AgentRun:
        v = _verdict(verdict, commit)
        if v is not None:
            stopped = f"sentinel: {v.get('reason', 'agent looked hung')}" if v else \
                "sentinel stopped the agent"
            verdict.unlink(missing_ok=True)
        output = _read_text(log, self.store.config.limits.max_log_bytes)
        return AgentRun(agent.parse(output, code, ctx), code, output, log, stopped,
                        warnings=list(warnings or []))

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

    def _finish_intervention(self, lease: Lease, event: str, reason: str) -> StepResult:
        from logist.core.redact import redact

        reason = redact(reason)
        def mut(x: Manifest) -> None:
            x.current.status = StepStatus.FAILURE
            x.current.reason = reason
            x.execution = None

        oid, m = self._transition(lease, Update(event=event, reason=reason, mutate=mut))
        self._unlock_worktree(m.id)
        return StepResult(m.id, m.state, m.step, reason=reason, commits=[oid])

    def _unlock_worktree(self, job_id: str) -> None:
        self.store.unlock_worktree(job_id)

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
        output = _mask_env(_read_text(log, self.store.config.limits.max_log_bytes) if log else "",
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

    def _note_log(self, commit: str, output: str) -> None:
        try:
            from logist.core.redact import cap, redact
            from logist.git.notes import set_note
        except ImportError:
            return
        text = cap(redact(output), self.store.config.logs.max_note_bytes)
        if text:
            try:
                set_note(self.store.root, refs.NOTES_LOGS, commit, text)
            except LogistError as exc:
                self.progress(f"warning: step log not noted: {exc.message}")


def _mask_env(text: str, options: dict) -> str:
    """``text`` without the values the step's ``env`` references resolve to (docs/jobfile.md)."""
    if not options.get("env"):
        return text
    from logist.agents.base import mask_values, secret_values

    return mask_values(text, secret_values(options))


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


def _verdict(path: Path, commit: str | None) -> dict | None:
    """The sentinel's verdict for the step at ``commit``: its JSON object ({} when it cannot be
    read), or None when there is none. A verdict naming another commit is stale (a side process
    of an earlier step wrote it as its agent was exiting by itself): removed and ignored."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(v, dict):
        return {}
    if commit is not None and v.get("commit") not in (None, commit):
        path.unlink(missing_ok=True)
        return None
    return v


def _read_text(path: Path, cap: int) -> str:
    """A step log as text, at most about ``cap`` bytes (head, marker, tail past it)."""
    from logist.core.logcap import read_log

    return read_log(path, cap)


