"""The terminal side of a foreground `job run`/`job step`: progress lines, the live status line,
and Ctrl-C (once: stop the job's agent and suspend it; twice: leave at once)."""

from __future__ import annotations

import sys
from typing import Any

from logist.cli.output import err
from logist.core.jobid import JobId


def progress(msg: str) -> None:
    status = _STATUS
    if status is not None:
        status.clear_then(msg)
    else:
        err(msg)


class StatusLine:
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

    def __enter__(self) -> StatusLine:
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
        last = last_line(log) if log else ""
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


_STATUS: StatusLine | None = None


def last_line(path: str, tail: int = 4096) -> str:
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


class CtrlC:
    """Ctrl-C while `job run` / `job step` runs in the foreground (docs/stopping.md).

    First press: every runner of this process stops its agent and leaves the job SUSPENDED.
    A second press within DOUBLE_PRESS_SECONDS: leave at once; the agents that still run are
    handed to a background runner (`job attach` follows it, `job stop` stops it).
    """

    def __init__(self) -> None:
        self.pressed_at: float | None = None
        self.running: dict[str, int] = {}
        self._old: Any = None

    def __enter__(self) -> CtrlC:
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
        progress("\nlogist: Ctrl-C: stopping the agent; the job will be SUSPENDED (resumable). "
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
            progress("logist: interrupted")
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
                runner, log = detach_run(store, JobId(jid))
                progress(f"logist: left {jid} running: its agent (pid {pid}) goes on under a background "
                          f"runner (pid {runner}, output {log}).\n  follow it: logist job attach {jid}\n"
                          f"  stop it:   logist job stop {jid}")
            elif m.state in TRANSIENT:
                progress(f"logist: {jid} was interrupted mid-step ({m.state.value}).\n"
                          f"  suspend it: logist job stop {jid}\n  carry on:   logist recover {jid}")
            else:
                progress(f"logist: {jid}: {m.state.value} (step {m.step}/{m.step_count})")
        from logist.core.errors import ExitCode

        return ExitCode.INTERRUPTED
