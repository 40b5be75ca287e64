"""`logist watch ID`: the observer/sentinel side process, in the foreground."""

from __future__ import annotations

import json
import os
import signal

from logist import cli
from logist.cli.output import say


def watch(id: str | None = None, /, *, replace: bool = False) -> int:
    """Run the observer and sentinel in the foreground for a running job, printing each note.

    Every running step already has a watcher side process; this is for watching live, or for
    taking over when that process died. Notes go to refs/notes/logist/observer and
    refs/notes/logist/sentinel exactly as from the side process.

    Parameters
    ----------
    id
        The job (default: the selected one).
    replace
        Stop the job's background watcher first, if it is alive (otherwise refused: two
        watchers would note everything twice).
    """
    from logist.engine.job_select import selected_job
    from logist.engine.watch_loop import run_watch

    store = cli.store()
    job_id = selected_job(store, id)
    _, m = store.read(job_id)
    info = _running_agent(store, job_id, m)
    _stop_other_watcher(job_id, info, replace=replace)
    cfg = store.config
    config = {"patterns": {**cfg.observer.patterns, **m.observer_patterns},
              "sentinel": {**cfg.sentinel, **m.sentinel},
              "observer": {"repeat_seconds": cfg.observer.repeat_seconds}}

    def on_event(kind: str, obj: dict) -> None:
        detail = obj.get("text") or obj.get("detail") or ""
        action = f" -> {obj['action']}" if obj.get("action") else ""
        say(f"{obj.get('t', '')} {kind}: {obj.get('signal')}{action} {detail}".rstrip())

    say(f"watching {job_id} step {m.step} (agent pid {info['pid']}); Ctrl-C stops watching, not the agent")
    result = run_watch(repo=store.root, job_id=job_id, log_path=info["log"], pid=int(info["pid"]),
                       pgid=int(info.get("pgid") or info["pid"]), commit=info["commit"],
                       workdir=store.worktree_path(job_id),
                       verdict_file=store.run_dir(job_id) / "verdict.json", config=config,
                       on_event=on_event)
    say(f"agent gone ({result.exit_reason}); {result.observer_lines} observer and "
        f"{result.sentinel_lines} sentinel note lines written")
    return 0


def _running_agent(store, job_id: str, m) -> dict:
    """The running step's ``agent.json`` (its pid believed only with its start time); a
    JobStateError when no step runs."""
    from logist.core.errors import JobStateError
    from logist.core.model import State
    from logist.core.procs import pid_alive

    try:
        info = json.loads((store.run_dir(job_id) / "agent.json").read_text())
    except (OSError, ValueError):
        info = {}
    if m.state != State.EXECUTING or not info.get("pid") or \
            not pid_alive(int(info["pid"]), info.get("start_time")):
        raise JobStateError(f"job {job_id} has no running step (state {m.state.value})",
                            hint=f"run it with `logist job run {job_id}`")
    return info


def _stop_other_watcher(job_id: str, info: dict, *, replace: bool) -> None:
    """The job's background watcher, if alive: refused (BusyError), or with ``replace`` stopped
    and given up to 5 s to flush its notes (this watcher then skips what it already noted)."""
    from logist.core.errors import BusyError
    from logist.core.procs import pid_alive

    wpid = info.get("watcher_pid")
    if not (wpid and pid_alive(int(wpid), info.get("watcher_start_time"))):
        return
    if not replace:
        raise BusyError(f"job {job_id} already has a watcher (pid {wpid})",
                        hint=f"`logist watch {job_id} --replace` stops it and watches here")
    os.kill(int(wpid), signal.SIGTERM)
    import time

    deadline = time.monotonic() + 5
    while pid_alive(int(wpid)) and time.monotonic() < deadline:
        time.sleep(0.05)
