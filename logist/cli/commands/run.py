"""`logist job step|run|attach|metrics|log`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, err, exit_for_states, say, stream, table


def _progress(msg: str) -> None:
    status = _STATUS
    if status is not None:
        status.clear_then(msg)
    else:
        err(msg)


class _StatusLine:
    """While agents run in a foreground `job run`/`job step` on a terminal: one live line on
    stderr, redrawn every second: job, step N/M, agent, elapsed, cost so far, and the agent's
    last output line. Progress lines are printed above it. Nothing when stderr is not a tty
    (the plain progress lines are all a pipe gets)."""

    def __init__(self, store) -> None:
        import threading

        self.store = store
        self.enabled = sys.stderr.isatty()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False
        self._started: dict[str, float] = {}
        self._records: dict[str, tuple[str, dict]] = {}

    def __enter__(self) -> _StatusLine:
        global _STATUS
        if self.enabled:
            import threading

            _STATUS = self
            self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _STATUS
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        _STATUS = None
        with self._lock:
            self._erase()

    def _erase(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False

    def clear_then(self, msg: str) -> None:
        with self._lock:
            self._erase()
            err(msg)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                line = self.render()
            except Exception:
                line = ""
            with self._lock:
                if self._stop.is_set():
                    return
                self._erase()
                if line:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                    self._shown = True

    def render(self) -> str:
        import shutil
        import time

        from logist.cli.output import duration
        from logist.engine import stop

        running = stop.running_here()
        if not running:
            return ""
        job_id = sorted(running)[0]
        now = time.monotonic()
        started = self._started.setdefault(f"{job_id}:{running[job_id]}", now)
        tip = self.store.tip(job_id)
        cached = self._records.get(job_id)
        if cached is None or cached[0] != tip:
            cached = (tip, self.store.read_record(job_id)[1])
            self._records[job_id] = cached
        d = cached[1]
        steps = d["steps"]
        n = d.get("step", 1)
        agent = steps[min(n, len(steps)) - 1].get("agent", "?")
        log = (d.get("execution") or {}).get("log")
        last = _last_line(log) if log else ""
        since = (d.get("execution") or {}).get("started_at")
        if since:
            from datetime import datetime, timezone

            try:
                t = datetime.fromisoformat(since.replace("Z", "+00:00"))
                started = now - max(0.0, (datetime.now(timezone.utc) - t).total_seconds())
            except ValueError:
                pass
        more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
        text = (f"{job_id}{more}  step {n}/{len(steps)}  {agent}  {duration(now - started)}  "
                f"${d.get('cost_usd', 0.0):.2f}  {last}")
        from logist.cli.output import clean

        text = clean(text, newlines=False)  # the job's last log line is the agent's
        width = shutil.get_terminal_size((80, 24)).columns - 1
        return text if len(text) <= width else text[:max(0, width - 1)] + "…"


_STATUS: _StatusLine | None = None


def _last_line(path: str, tail: int = 4096) -> str:
    """The last non-empty line of a log (its last few KiB), printable characters only."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - tail))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    for line in reversed(data.splitlines()):
        clean = "".join(ch for ch in line if ch.isprintable()).strip()
        if clean:
            return clean
    return ""


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
            if m.state in TRANSIENT and not (pid and pid_alive(pid)):
                # pressed before its runner was waiting on the agent (or after): ask the records
                from logist.engine.agent_proc import agent_status

                try:
                    st = agent_status(store, m)
                    pid = st.pid or 0 if st.kind == "running" else 0
                except Exception:
                    pid = 0
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


def _bell(store, states) -> None:
    """Ring the terminal's bell when a job this command ran came to need a person or finished
    (``[notify] on``; off with ``[notify] bell = false``)."""
    try:
        cfg = store.config.notify
    except Exception:
        return
    if cfg.bell and sys.stderr.isatty() and any(s in cfg.on for s in states if s):
        sys.stderr.write("\a")
        sys.stderr.flush()


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
    from logist.engine.job_select import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    return _foreground(store, job_id, trust=trust, json_=json_, one_step=True)


def _foreground(store, job_id: str, *, trust: bool, json_: bool, one_step: bool) -> int:
    """`job step` / `job run ID` in this terminal: the status line, Ctrl-C handling, the bell."""
    from logist.engine.repair import make_engine

    with _CtrlC() as ctrl_c, _StatusLine(store):
        try:
            engine = make_engine(store, progress=_progress, trust=trust)
            result = engine.step(job_id) if one_step else engine.run(job_id)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [job_id])
    if ctrl_c.interrupted:
        return _interrupted_report(result, json_)
    _bell(store, [result.state.value])
    return _report(result, json_, step=one_step)


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

    from logist.engine.runner import detach_run, run_all

    if parallel < 1:
        from logist.core.errors import UsageError

        raise UsageError(f"--parallel must be at least 1, not {parallel}")
    store = cli.store()
    job_id = id if id is not None else (os.environ.get("LOGIST_JOB") or None)
    if job_id is not None:
        from logist.engine.job_select import resolve_job

        job_id = resolve_job(store, job_id)  # a bad or unknown id fails here, not in the background
        store.tip(job_id)
    if detach:
        pid, log = detach_run(store, job_id, trust=trust, parallel=parallel)
        say(f"running in the background (pid {pid}); output: {log}")
        if job_id:
            say(f"follow it with `logist job attach {job_id}`")
        return 0
    from logist.cli.commands.job_warnings import warn_interrupted

    warn_interrupted(store, exclude=job_id)
    if job_id:
        return _foreground(store, job_id, trust=trust, json_=json_, one_step=False)
    with _CtrlC() as ctrl_c, _StatusLine(store):
        try:
            results = run_all(store, parallel=parallel, trust=trust, progress=_progress)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [])
    _bell(store, [r.state.value for r in results if r.state])
    if json_:
        # state null: the job was skipped (held elsewhere) or failed with an error
        emit_json([{"id": r.job_id, "state": r.state.value if r.state else None, "step": r.step,
                    "reason": r.reason, "error": r.error} for r in results])
    else:
        if not results:
            _nothing_to_run(store)
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


def _nothing_to_run(store) -> None:
    """`job run` found no PENDING job: say so, and name the DRAFT jobs that wait for activation."""
    drafts = [s.id for s in store.list_jobs() if s.manifest and s.manifest.state.value == "DRAFT"]
    if not drafts:
        say("no PENDING jobs")
        return
    names = ", ".join(drafts[:5]) + (f" and {len(drafts) - 5} more" if len(drafts) > 5 else "")
    say(f"no PENDING jobs; {len(drafts)} DRAFT job{'s wait' if len(drafts) != 1 else ' waits'} for "
        f"`logist job activate ID`: {names}")


def attach(id: str | None = None, /, *, timeout: float | None = None) -> int:
    """Follow a running step's output live; returns when the job stops running.

    Parameters
    ----------
    id
        The job.
    timeout
        Give up after this many seconds (exit 1).
    """
    from logist.core.errors import JobStateError
    from logist.core.limits import check_number
    from logist.engine.job_select import selected_job
    from logist.engine.runner import follow, is_running

    check_number(timeout, "--timeout", positive=True)
    store = cli.store()
    job_id = selected_job(store, id)
    if not is_running(store, job_id):
        _, m = store.read(job_id)
        hint = (f"`logist job log {job_id}` shows its last step's output"
                + (f"; `logist job run {job_id}` runs it" if m.state.value == "PENDING" else "")
                + (f"; `logist job activate {job_id}` first" if m.state.value == "DRAFT" else ""))
        raise JobStateError(f"job {job_id} is not running (it is {m.state.value}, step "
                            f"{m.step}/{m.step_count}); there is nothing to attach to", hint=hint)
    for chunk in follow(store, job_id, timeout=timeout):
        stream(chunk)
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
    from logist.engine.job_select import selected_job

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


def log(id: str | None = None, /, *, step: int | None = None, follow: bool = False,
        json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Print a step's output: live from the running log, or from refs/notes/logist/logs.

    Parameters
    ----------
    id
        The job.
    step
        Which step (default: the current or last run one).
    follow
        Keep printing while the step runs (a header line before each step and attempt).
    json_
        Print {"id", "step", "output"} (not with --follow).
    """
    from logist.core.errors import UsageError
    from logist.engine.job_select import selected_job
    from logist.engine.runner import follow as follow_log
    from logist.store.job_history import step_output

    store = cli.store()
    job_id = selected_job(store, id)
    if follow:
        if json_:
            raise UsageError("--json and --follow do not go together",
                             hint=f"`logist job log {job_id} --json` prints the output so far")
        for chunk in follow_log(store, job_id):
            stream(chunk)
            sys.stdout.flush()
        return 0
    output = step_output(store, job_id, step)
    if json_:
        _, m = store.read(job_id)
        emit_json({"id": job_id, "step": step or m.step, "output": output})
        return 0
    stream(output)
    return 0
