"""The side process next to a running step: observer + sentinel (docs/observer.md).

    python -S -m logist.engine.watcher --repo R --job ID --log PATH --pid PID --pgid PGID \\
        --commit OID --workdir DIR --verdict-file PATH [--config JSON] [--started-at EPOCH]

It tails the step log from its start (following appends, holding back a partial last line),
feeds the lines to the :class:`~logist.engine.observer.Observer` and appends its signals as JSON lines
to the note of the step's EXECUTING commit ``OID`` in ``refs/notes/logist/observer`` (batched:
at most one notes commit per second, and one at exit). Every half second it gives the
:class:`~logist.engine.sentinel.Sentinel` the evidence (log mtime, newest file in the worktree, CPU
ticks of the process group, last ``waiting_input``) and carries out its decisions: each rung is
a note line in ``refs/notes/logist/sentinel``; before the first signal it writes the verdict file
(JSON ``{"verdict": "hung", "reason", "signal", "action", "t", ...}``, atomically: temp file +
rename, rewritten at each rung), then sends SIGINT / SIGTERM / SIGKILL to the process GROUP.

The watcher makes no branch commits and holds no lock: the step runner, which holds the job
lock, reads the verdict file when the agent is gone and makes the EXECUTING -> RECOVERING
transition. The watcher exits when the agent process is gone (it waits on a pidfd, so it
notices at once), after draining the log and flushing its notes (when it had stopped the agent
as hung and processes the agent started are still in its group, it first ends them: SIGTERM,
then SIGKILL, each a sentinel note line); SIGTERM/SIGINT to the watcher itself also end it
cleanly. An agent that is already gone when the watcher starts (one that exits at once) gets a
single scan of its log and no sentinel at all. It never writes to the agent and only signals
the group it was given (never its own), so a crash of the watcher leaves the agent running
untouched. A watcher started again for the same step reads the log from its start but does not
note again the (signal, line) pairs already noted.

This module is the process itself (its command line, :func:`main`) and how the engine starts
and reaps it (:func:`spawn_watcher`, :func:`stop_watcher`). The watch is
:func:`logist.engine.watch_loop.run_watch`, with its parts in :mod:`~logist.engine.watch_config`,
:mod:`~logist.engine.logtail`, :mod:`~logist.engine.watch_notes` and :mod:`~logist.engine.doom`.

Start cost matters (a step whose agent exits at once waits for its watcher's notes before it
returns): the process runs with ``-S`` (no site: it needs nothing outside the standard library
and logist), and its modules import only ``os``/``sys``/``time``/``signal``/``json``/``re`` (and
logist's ``errors`` and ``procs``) at load;
the observer, the sentinel and the notes writer (``subprocess``, ``dataclasses``) are
imported when there is something to watch. Never pydantic, dulwich, cyclopts or rich.

``config`` JSON: ``{"patterns": {name: regex}, "sentinel": {...SentinelConfig...},
"observer": {"repeat_seconds": 5, "max_text": 300}}`` (every key optional).
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import sys
import time

from logist.core.clock import iso_utc
from logist.core.errors import LogistError
from logist.core.procs import pidfd_open

TYPE_CHECKING = False  # typing itself costs an import (this runs in the side process)
if TYPE_CHECKING:  # pragma: no cover
    import argparse
    import subprocess
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    from logist.engine.watch_config import WatchConfig

__all__ = ["main", "spawn_watcher", "stop_watcher", "watcher_argv", "watcher_log_path"]

EXIT_WAIT = 5.0  # stop_watcher: seconds a watcher gets to end by itself once its agent is gone
TERM_WAIT = 5.0  # stop_watcher: seconds after SIGTERM before SIGKILL


def watcher_log_path(log_path: str | os.PathLike) -> Path:
    """Where spawn_watcher sends the watcher's own output: ``<step log>.watcher.log``."""
    from pathlib import Path

    return Path(log_path).with_suffix(".watcher.log")


# Watchers started by this process, by pid: kept so that nobody but stop_watcher reaps them
# (a dropped Popen is reaped by whichever subprocess call comes next, and its pid may then be
# reused while we still wait on it).
_SPAWNED: dict[int, subprocess.Popen] = {}
_SPAWNED_LOCK = _thread.allocate_lock()


def watcher_argv() -> list[str]:
    """How the watcher is started: this interpreter without site (``-S``: the watcher needs
    only the standard library and logist, found through PYTHONPATH) and, where Python has it,
    without the current directory on sys.path (``-P``)."""
    argv = [sys.executable, "-S"]
    if sys.version_info >= (3, 11):
        argv.append("-P")
    return argv + ["-m", "logist.engine.watcher"]


def spawn_watcher(*, repo: str | os.PathLike, job_id: str, log_path: str | os.PathLike,
                  pid: int, pgid: int, commit: str, workdir: str | os.PathLike,
                  verdict_file: str | os.PathLike,
                  config: WatchConfig | str | Mapping | None = None,
                  started_at: float | None = None,
                  watcher_log: str | os.PathLike | None = None) -> int:
    """Start ``python -S -m logist.engine.watcher`` as its own process in its own session and process
    group (so a signal to the agent's group or the terminal never reaches it, and it never
    reaches the agent's), stdin from /dev/null, stdout+stderr to ``watcher_log`` (default
    next to the step log). Returns its pid. It exits by itself when the agent is gone; reap it
    with :func:`stop_watcher` (or ``os.waitpid``)."""
    from pathlib import Path

    from logist.engine.watch_config import WatchConfig, parse_config
    from logist.git.refs import validate_job_id
    from logist.runtimes.programs import spawn_detached

    validate_job_id(job_id)
    if isinstance(config, WatchConfig):
        config = {"patterns": config.patterns, "sentinel": config.sentinel.to_dict(),
                  "observer": {"repeat_seconds": config.repeat_seconds,
                               "max_text": config.max_text}}
    cfg_text = config if isinstance(config, str) else json.dumps(config or {})
    parse_config(cfg_text)  # fail here, not in a detached process
    argv = watcher_argv() + [
        "--repo", os.path.abspath(repo), "--job", job_id, "--log", os.path.abspath(log_path),
        "--pid", str(int(pid)), "--pgid", str(int(pgid)), "--commit", commit,
        "--workdir", os.path.abspath(workdir), "--verdict-file", os.path.abspath(verdict_file),
        "--config", cfg_text]
    if started_at is not None:
        argv += ["--started-at", repr(float(started_at))]
    out_path = Path(watcher_log) if watcher_log is not None else watcher_log_path(log_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(out_path, "ab") as out:
        proc = spawn_detached(argv, out=out, cwd=repo, env=env)
    with _SPAWNED_LOCK:
        _SPAWNED[proc.pid] = proc
    return proc.pid


def _ended(pid: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for our child ``pid`` to exit, and reap it; True once it
    is reaped (or is not our child any more)."""
    if proc is not None:
        if proc.poll() is not None:
            return True
        if timeout <= 0:
            return False
        fd = pidfd_open(pid)  # not reaped yet (only we reap it): the pidfd names our child
        if fd is not None:
            import select

            try:
                select.select([fd], [], [], timeout)
            except (OSError, ValueError):
                pass
            finally:
                os.close(fd)
            return proc.poll() is not None
        try:
            proc.wait(timeout)
        except Exception:
            return False
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def stop_watcher(pid: int, *, wait: float = EXIT_WAIT, term_wait: float = TERM_WAIT) -> str:
    """Reap a watcher this process started (its agent is gone, so it is finishing by itself):
    wait up to ``wait`` seconds for it to read the rest of the log, write its last notes and
    exit; then SIGTERM (it flushes what it has and exits) and up to ``term_wait`` seconds; then
    SIGKILL. Leaves no zombie. Returns "exited", "terminated" or "killed"."""
    with _SPAWNED_LOCK:
        proc = _SPAWNED.get(pid)
    how = "exited"
    try:
        if _ended(pid, proc, wait):
            return how
        for how, signum, patience in (("terminated", signal.SIGTERM, term_wait),
                                      ("killed", signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
            if _ended(pid, proc, patience):
                return how
        return how
    finally:
        if proc is not None and proc.returncode is not None:
            with _SPAWNED_LOCK:
                if _SPAWNED.get(pid) is proc:
                    del _SPAWNED[pid]


# Each option once: flag -> (type, required). The fast parser reads exactly what spawn_watcher
# writes (no argparse import at start); anything else (--help, a mistake) goes to argparse,
# built from the same table, for its messages.
_OPTIONS: dict[str, tuple[type, bool]] = {
    "--repo": (str, True), "--job": (str, True), "--log": (str, True), "--pid": (int, True),
    "--pgid": (int, True), "--commit": (str, True), "--workdir": (str, True),
    "--verdict-file": (str, True), "--config": (str, False), "--started-at": (float, False)}
_DEFAULTS: dict[str, Any] = {"config": "", "started_at": None}


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


class _Args:
    """The parsed command line (from either parser)."""

    def __init__(self, *, repo: str, job: str, log: str, pid: int, pgid: int, commit: str,
                 workdir: str, verdict_file: str, config: str = "",
                 started_at: float | None = None) -> None:
        self.repo, self.job, self.log, self.pid, self.pgid = repo, job, log, pid, pgid
        self.commit, self.workdir, self.verdict_file = commit, workdir, verdict_file
        self.config, self.started_at = config, started_at


def _parse_args(argv: list[str]) -> _Args | None:
    """The command line as spawn_watcher writes it (``--name value`` pairs); None for anything
    else (--help, a mistake): then argparse parses it, for its messages."""
    values: dict[str, Any] = {}
    it = iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key not in _OPTIONS:
            return None
        if not eq:
            following = next(it, None)
            if following is None:
                return None
            value = following
        try:
            values[_dest(key)] = _OPTIONS[key][0](value)
        except ValueError:
            return None
    if any(_dest(flag) not in values for flag, (_kind, required) in _OPTIONS.items() if required):
        return None
    return _Args(**{**_DEFAULTS, **values})


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="python -m logist.engine.watcher",
                                description="observer + sentinel for one running logist step")
    for flag, (kind, required) in _OPTIONS.items():
        if required:
            p.add_argument(flag, required=True, type=kind)
        else:
            p.add_argument(flag, type=kind, default=_DEFAULTS[_dest(flag)])
    return p


def main(argv: list[str] | None = None) -> int:
    from logist.engine.watch_loop import run_watch

    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv) or _Args(**vars(_build_parser().parse_args(argv)))
    stop = {"flag": False}

    def on_signal(_signum, _frame) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def log(msg: str) -> None:
        sys.stderr.write(f"{iso_utc()} logist-watcher[{os.getpid()}] {msg}\n")
        sys.stderr.flush()

    log(f"watching job {args.job}: pid {args.pid}, group {args.pgid}, log {args.log}")
    try:
        result = run_watch(repo=args.repo, job_id=args.job, log_path=args.log, pid=args.pid,
                           pgid=args.pgid, commit=args.commit, workdir=args.workdir,
                           verdict_file=args.verdict_file, config=args.config,
                           started_at=args.started_at, log=log,
                           should_stop=lambda: stop["flag"])
    except LogistError as exc:
        log(f"error: {exc}")
        return 2
    log(f"done ({result.exit_reason}): {result.lines_read} lines, {result.matches} matches, "
        f"{result.observer_lines} observer and {result.sentinel_lines} sentinel note lines"
        + (f", verdict {result.verdict['verdict']} ({result.verdict['action']})"
           if result.verdict else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
