"""`logist job step|run|attach|metrics|log`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, exit_for_states, say, table


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


DOUBLE_PRESS_SECONDS = 2.0


class _CtrlC:
    """Ctrl-C while `job run` / `job step` runs in the foreground (docs/stopping.md).

    First press: every runner of this process stops its agent and leaves the job SUSPENDED.
    A second press within DOUBLE_PRESS_SECONDS: leave at once; the agents that still run are
    handed to a background runner (`job attach` follows it, `job stop` stops it).
    """

    def __init__(self) -> None:
        self.pressed_at: float | None = None
        self.running: dict[str, int] = {}
        self._old: Any = None

    def __enter__(self) -> _CtrlC:
        import signal
        import threading

        from logist.engine import stop

        stop.reset_local()
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        from logist.engine import stop

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        stop.reset_local()

    def _handler(self, signum, frame) -> None:
        import time

        from logist.engine import stop

        now = time.monotonic()
        if self.pressed_at is not None and now - self.pressed_at < DOUBLE_PRESS_SECONDS:
            self.running = stop.running_here() or self.running
            raise KeyboardInterrupt
        self.pressed_at = now
        self.running = stop.running_here()
        stop.interrupt("suspend", "interrupted (Ctrl-C)")
        _progress("\nlogist: Ctrl-C: stopping the agent; the job will be SUSPENDED (resumable). "
                  f"Press Ctrl-C again within {DOUBLE_PRESS_SECONDS:g} s to leave now and let it run on.")

    @property
    def interrupted(self) -> bool:
        return self.pressed_at is not None

    def leave(self, store, job_ids: list[str]) -> int:
        """The second press: hand every step still running to a background runner."""
        from logist.core.procs import pid_alive
        from logist.core.states import TRANSIENT
        from logist.engine.runner import detach_run

        ids = list(dict.fromkeys([*self.running, *job_ids]))
        if not ids:
            _progress("logist: interrupted")
        for jid in ids:
            try:
                _, m = store.read(jid)
            except Exception:
                continue
            pid = self.running.get(jid) or 0
            if m.state in TRANSIENT and pid and pid_alive(pid):
                runner, log = detach_run(store, jid)
                _progress(f"logist: left {jid} running: its agent (pid {pid}) goes on under a background "
                          f"runner (pid {runner}, output {log}).\n  follow it: logist job attach {jid}\n"
                          f"  stop it:   logist job stop {jid}")
            elif m.state in TRANSIENT:
                _progress(f"logist: {jid} was interrupted mid-step ({m.state.value}).\n"
                          f"  suspend it: logist job stop {jid}\n  carry on:   logist recover {jid}")
            else:
                _progress(f"logist: {jid}: {m.state.value} (step {m.step}/{m.step_count})")
        from logist.core.errors import ExitCode

        return ExitCode.INTERRUPTED


def _interrupted_report(result, json_: bool) -> int:
    """After a first Ctrl-C: what became of the job, and how to go on (exit 130)."""
    from logist.core.errors import ExitCode

    _report(result, json_)
    if result.state.value == "SUSPENDED":
        _progress(f"logist: {result.job_id} is SUSPENDED; carry on with "
                  f"`logist job resume {result.job_id}` then `logist job run {result.job_id}`")
    return ExitCode.INTERRUPTED


def _report(result, json_: bool, *, step: bool = False) -> int:
    from logist.core.model import State

    data = {"id": result.job_id, "state": result.state.value, "step": result.step,
            "outcome": result.outcome, "reason": result.reason}
    if json_:
        emit_json(data)
    else:
        say(f"{result.job_id}: {result.state.value} (step {result.step})"
            + (f": {result.reason}" if result.reason and result.state != State.SUCCESS else ""))
    return exit_for_states([result.state], step=step)


def step(id: str | None = None, /, *, trust: bool = False,
         json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Run exactly one step of a PENDING job (or finish an interrupted one).

    Exit 0 when the job rests in PENDING (its next step) or SUCCESS, 5 in APPROVAL_REQUIRED,
    6 in INTERVENTION_REQUIRED (or suspended/canceled meanwhile): see docs/exit-codes.md.

    Parameters
    ----------
    id
        The job (default: the selected one).
    trust
        Run command steps of a job fetched from a remote (see `logist job trust`).
    json_
        Print the result as JSON.
    """
    from logist.engine.job_processor import Engine
    from logist.engine.jobs import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    with _CtrlC() as ctrl_c:
        try:
            result = Engine(store, progress=_progress, trust=trust).step(job_id)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [job_id])
    if ctrl_c.interrupted:
        return _interrupted_report(result, json_)
    return _report(result, json_, step=True)


def run(id: str | None = None, /, *, detach: bool = False, trust: bool = False,
        parallel: int = 1, json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Run steps until the job rests in anything but PENDING; with no id, every PENDING job.

    Exit 0 only when every job it ran rests in SUCCESS; 5 when the worst is APPROVAL_REQUIRED
    (`logist job approve`), 6 when a job needs intervention (INTERVENTION_REQUIRED, or
    suspended/canceled meanwhile), 1 when a job could not be run at all: see docs/exit-codes.md.
    So `logist job run ID && git push` pushes only finished work.

    Parameters
    ----------
    id
        The job. Without it (and without $LOGIST_JOB), every PENDING job is run.
    detach
        Hand the loop to a background process that survives the terminal; `job attach` follows it.
    trust
        Run command steps of a job fetched from a remote.
    parallel
        With no id: how many jobs run at once.
    json_
        Print the result(s) as JSON.
    """
    import os

    from logist.engine.job_processor import Engine
    from logist.engine.runner import detach_run, run_all

    store = cli.store()
    job_id = id if id is not None else (os.environ.get("LOGIST_JOB") or None)
    if job_id is not None:
        from logist.engine.jobs import resolve_job

        job_id = resolve_job(store, job_id)  # a bad or unknown id fails here, not in the background
        store.tip(job_id)
    if detach:
        pid, log = detach_run(store, job_id, trust=trust, parallel=parallel)
        say(f"running in the background (pid {pid}); output: {log}")
        if job_id:
            say(f"follow it with `logist job attach {job_id}`")
        return 0
    from logist.cli.commands.job import _warn_interrupted

    _warn_interrupted(store, exclude=job_id)
    if job_id:
        with _CtrlC() as ctrl_c:
            try:
                result = Engine(store, progress=_progress, trust=trust).run(job_id)
            except KeyboardInterrupt:
                return ctrl_c.leave(store, [job_id])
        if ctrl_c.interrupted:
            return _interrupted_report(result, json_)
        return _report(result, json_)
    with _CtrlC() as ctrl_c:
        try:
            results = run_all(store, parallel=parallel, trust=trust, progress=_progress)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [])
    if json_:
        # state null: the job was skipped (held elsewhere) or failed with an error
        emit_json([{"id": r.job_id, "state": r.state.value if r.state else None, "step": r.step,
                    "reason": r.reason, "error": r.error} for r in results])
    else:
        if not results:
            say("no PENDING jobs")
        for r in results:
            say(f"{r.job_id}: {r.state.value if r.state else ('ERROR' if r.error else 'not run')} (step {r.step})"
                + (f": {r.reason}" if r.reason else ""))
    if ctrl_c.interrupted:
        from logist.core.errors import ExitCode

        _progress("logist: interrupted; `logist job list --state SUSPENDED` shows what was stopped")
        return ExitCode.INTERRUPTED
    if any(r.error for r in results):
        return 1
    return exit_for_states([r.state for r in results if r.state is not None])


def attach(id: str | None = None, /, *, timeout: float | None = None) -> int:
    """Follow a running step's output live; returns when the job stops running.

    Parameters
    ----------
    id
        The job.
    timeout
        Give up after this many seconds (exit 1).
    """
    from logist.core.limits import check_number
    from logist.engine.jobs import selected_job
    from logist.engine.runner import follow

    check_number(timeout, "--timeout", positive=True)
    store = cli.store()
    job_id = selected_job(store, id)
    for chunk in follow(store, job_id, timeout=timeout):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    _, m = store.read(job_id)
    say(f"\n{job_id}: {m.state.value} (step {m.step}/{m.step_count})")
    return 0


def metrics(id: str | None = None, /, *, csv: bool = False,
            json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Per step and total: cost, tokens, time, attempts.

    Parameters
    ----------
    id
        The job.
    csv
        Print CSV (step,name,agent,status,attempts,cost_usd,tokens,seconds).
    json_
        Print JSON.
    """
    from logist.engine.jobs import selected_job

    store = cli.store()
    _, m = store.read(selected_job(store, id))
    rows = [[i, s.name, s.agent, s.status.value, s.attempt, round(s.cost_usd, 6), s.tokens,
             round(s.seconds, 3)] for i, s in enumerate(m.steps, 1)]
    total = ["total", "", "", m.state.value, sum(r[4] for r in rows), round(m.cost_usd, 6), m.tokens,
             round(m.seconds, 3)]
    headers = ["step", "name", "agent", "status", "attempts", "cost_usd", "tokens", "seconds"]
    if json_:
        emit_json({"steps": [dict(zip(headers, r, strict=True)) for r in rows],
                   "total": dict(zip(headers, total, strict=True))})
    elif csv:
        import csv as _csv

        w = _csv.writer(sys.stdout)
        w.writerow(headers)
        w.writerows(rows + [total])
    else:
        table(headers, rows + [total])
    return 0


def log(id: str | None = None, /, *, step: int | None = None, follow: bool = False) -> int:
    """Print a step's output: live from the running log, or from refs/notes/logist/logs.

    Parameters
    ----------
    id
        The job.
    step
        Which step (default: the current or last run one).
    follow
        Keep printing while the step runs.
    """
    from logist.engine.jobs import selected_job
    from logist.engine.runner import follow as follow_log
    from logist.store.job_history import step_output

    store = cli.store()
    job_id = selected_job(store, id)
    if follow:
        for chunk in follow_log(store, job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        return 0
    sys.stdout.write(step_output(store, job_id, step))
    return 0
