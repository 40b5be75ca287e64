"""The agent of a step as a process: spawned under the recording wrapper
(logist.engine.agent_proc), waited for within the job's time budget and stop requests (the live
log kept under ``[limits] max_log_bytes``), its side process (observer + sentinel) started and
reaped, and what it left running stopped. The base of the step engine
(:class:`logist.engine.job_processor.Engine`); ``run_agent``/``reattach_agent`` run an agent
outside the step transitions (logist.engine.rerun, logist.engine.restep).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.model import Manifest
from logist.core.procs import pid_alive, process_start_time
from logist.engine.agent_proc import agent_status, exec_base, read_exit, wrap_argv
from logist.engine.steps import AgentRun
from logist.store.jobstore import JobStore

Progress = Callable[[str], None]

WATCHER_EXIT_WAIT = 5.0  # seconds a side process gets, once its agent is gone, to end by itself


@dataclass
class _Watcher:
    """A side process whose agent is gone: it is reading the rest of the log and writing its
    last notes while the step is harvested. Reaped by ``Engine._reap_watchers``."""

    pid: int
    commit: str | None  # the commit its notes go on (the step's EXECUTING commit)
    verdict: Path
    agent_gone_at: float  # time.monotonic()



class AgentSupervisor:
    """Runs and watches agent processes for one repository's jobs. Never prints: progress goes
    to ``progress``."""

    def __init__(self, store: JobStore, *, progress: Progress | None = None, trust: bool = False,
                 watch: bool = True) -> None:
        self.store = store
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


    def _log_path(self, m: Manifest, n: int, attempt: int) -> Path:
        d = self.store.run_dir(m.id)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"run{m.run}-step{n}-attempt{attempt}.log"

    def _agent_file(self, job_id: JobId) -> Path:
        return self.store.run_dir(job_id) / "agent.json"

    def _write_agent_file(self, job_id: JobId, data: dict) -> None:
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

    def _agent_gone(self, job_id: JobId, handle, watcher_pid: int | None, verdict: Path,
                    commit: str | None) -> list[str]:
        """The agent's own process has exited. Its side process finishes while the step is
        harvested (it is reaped later: ``_reap_watchers``), unless the sentinel stopped the
        agent: then the watcher is ending what the agent left in its group and writing the last
        rungs of its ladder, and we wait for it here, as that path takes seconds anyway. Then
        whatever the agent left running in its process group is stopped; returns the warnings
        for the step's record."""
        if watcher_pid:
            w = _Watcher(watcher_pid, commit, verdict, time.monotonic())
            if read_verdict(verdict, commit) is not None:
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
            v = read_verdict(w.verdict, None) if stale_verdict and w.commit else None
            if v and v.get("commit") == w.commit:
                # written as its agent was exiting by itself, after the engine had read the
                # step as ended normally: nobody will read it
                w.verdict.unlink(missing_ok=True)
        except Exception as exc:
            self.progress(f"warning: could not reap the side process {w.pid}: {exc}")

    def _read_agent_file(self, job_id: JobId) -> dict | None:
        try:
            return json.loads(self._agent_file(job_id).read_text())
        except (OSError, ValueError):
            return None


    # ---- starting an agent ----------------------------------------------------------
    def _before_agent(self, job_id: JobId, log: Path, tid: str, commit: str) -> tuple[Path, dict]:
        """Before an agent starts: its log's directory made, the previous side process reaped
        (never two at once), no verdict left, and ``agent.json`` written (the commit it starts
        from, logist's own record whatever the agent does to the branch, and the execution it
        belongs to). (the verdict file, the record)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        self._reap_watchers()
        verdict = self.store.run_dir(job_id) / "verdict.json"
        verdict.unlink(missing_ok=True)
        record = {"transition_id": tid, "pid": None, "log": str(log), "commit": commit,
                  "host": socket.gethostname()}
        self._write_agent_file(job_id, record)
        return verdict, record

    def _spawn(self, m: Manifest, n: int, attempt: int, inv, workdir: Path, log: Path, tid: str):
        """Spawn the agent's invocation ``inv``: under the wrapper that records its pid and exit
        status where a later process finds them, marked with the job, step, attempt and run."""
        from logist.runtimes import get_runtime

        env = {"LOGIST_JOB_ID": m.id, "LOGIST_STEP": str(n), "LOGIST_ATTEMPT": str(attempt),
               "LOGIST_RUN": str(m.run), **inv.env}
        return get_runtime("host").spawn(wrap_argv(exec_base(self.store, m.id, tid), inv.argv),
                                         cwd=workdir, env=env, log_path=log, stdin=inv.stdin)

    def _record_spawned(self, job_id: JobId, record: dict, handle) -> None:
        """``agent.json`` names the running agent (pid, group, start time) in ``record``."""
        record.update(pid=handle.pid, pgid=handle.pgid, start_time=process_start_time(handle.pid))
        self._write_agent_file(job_id, record)

    def _watch_agent(self, m: Manifest, record: dict, handle, log: Path, commit: str, workdir: Path,
                     verdict: Path) -> int | None:
        """Start the agent's side process; ``agent.json`` names it too (pid and start time, so it
        is believed only while that process lives). Its pid, or None."""
        watcher_pid = self._start_watcher(m, log, handle.pid, handle.pgid, commit, workdir, verdict)
        if watcher_pid:
            record.update(watcher_pid=watcher_pid, watcher_start_time=process_start_time(watcher_pid))
            self._write_agent_file(m.id, record)
        return watcher_pid

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

        step = m.steps[n - 1]
        agent = get_agent(step.agent)
        ctx = StepContext(job_id=m.id, step_number=n, step_count=m.step_count, step_name=step.name,
                          prompt=prompt, workdir=workdir, options=dict(step.options), attempt=attempt,
                          session_id=session_id)
        inv = agent.build(ctx)
        verdict, record = self._before_agent(m.id, log, transition_id, commit)
        handle = self._spawn(m, n, attempt, inv, workdir, log, transition_id)
        self._record_spawned(m.id, record, handle)
        self.progress(f"{m.id}: agent {step.agent} running step {n} (pid {handle.pid}), log {log}")
        watcher_pid = self._watch_agent(m, record, handle, log, commit, workdir, verdict)
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
        v = read_verdict(verdict, commit)
        if v is not None:
            stopped = f"sentinel: {v.get('reason', 'agent looked hung')}" if v else \
                "sentinel stopped the agent"
            verdict.unlink(missing_ok=True)
        output = read_step_log(log, self.store.config.limits.max_log_bytes)
        return AgentRun(agent.parse(output, code, ctx), code, output, log, stopped,
                        warnings=list(warnings or []))


def mask_env(text: str, options: dict) -> str:
    """``text`` without the values the step's ``env`` references resolve to (docs/jobfile.md)."""
    if not options.get("env"):
        return text
    from logist.agents.options import mask_values, secret_values

    return mask_values(text, secret_values(options))



def read_verdict(path: Path, commit: str | None) -> dict | None:
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


def read_step_log(path: Path, cap: int) -> str:
    """A step log as text, at most about ``cap`` bytes (head, marker, tail past it)."""
    from logist.core.logcap import read_log

    return read_log(path, cap)


