"""`logist dashboard`: a live terminal view of all jobs."""

from __future__ import annotations

import time

from logist import cli


def _rows(store):
    from datetime import datetime, timezone

    from logist.engine.jobs import holder_info

    rows = []
    for s in store.list_jobs():
        m = s.manifest
        if m is None:
            rows.append([s.id, "INVALID", "", "", "", "", s.error or ""])
            continue
        try:
            t = datetime.fromisoformat(m.created_at.replace("Z", "+00:00"))
            elapsed = int((datetime.now(timezone.utc) - t).total_seconds())
        except ValueError:
            elapsed = 0
        signal = ""
        if m.execution is not None:
            try:
                from logist.store.job_history import last_signal

                signal = last_signal(store, m.id) or ""
            except Exception:
                signal = ""
            h = holder_info(store, m.id)
            if h and h.get("stale"):
                signal = "INTERRUPTED: run `logist recover`"
        rows.append([m.id, m.state.value, f"{m.step}/{m.step_count}", str(m.run), _dur(elapsed),
                     f"${m.cost_usd:.2f}", (signal or m.reason)[:60]])
    return rows


def _dur(s: int) -> str:
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


HEADERS = ["job", "state", "step", "run", "elapsed", "cost", "last signal / reason"]


def dashboard(*, once: bool = False, interval: float = 1.0) -> int:
    """A live view of all jobs (state, step, run, elapsed, cost, last signal); Ctrl-C quits.

    Parameters
    ----------
    once
        Print one frame and exit (for pipes and scripts).
    interval
        Seconds between refreshes.
    """
    from logist.core.limits import check_number

    check_number(interval, "--interval", positive=True)
    store = cli.store()
    if once:
        from logist.cli.output import table

        table(HEADERS, _rows(store), title=f"logist: {store.root}")
        return 0
    from rich.live import Live
    from rich.table import Table

    def render():
        t = Table(title=f"logist: {store.root}  ({time.strftime('%H:%M:%S')})")
        for h in HEADERS:
            t.add_column(h)
        for r in _rows(store):
            t.add_row(*r)
        return t

    try:
        with Live(render(), refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(render())
    except KeyboardInterrupt:
        return 0
