"""One watch of a running step (docs/observer.md): :func:`run_watch` tails the step log, feeds
the observer, gives the sentinel its evidence every half second and carries out its decisions
(note lines, the verdict file, signals to the agent's process group), until the agent is gone.

Imported by the side process at start: only ``os``/``time``/``signal``/``json`` and small logist
modules at load; the observer, the sentinel and the notes writer when there is something to
watch."""

from __future__ import annotations

import json
import os
import signal
import time

from logist.core.errors import UsageError
from logist.core.procs import pid_alive, pidfd_open
from logist.engine.logtail import LogTail
from logist.engine.watch_config import WatchConfig, config_table, observer_part, parse_config
from logist.engine.watch_notes import NoteBuffer, SeenSignals, prior_interventions

TYPE_CHECKING = False  # typing itself costs an import (this runs in the side process)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping

WAITING_LINES = 20  # a waiting_input match counts if it is among the last 20 lines
LEFTOVER_GRACE = 2.0  # at most this long for leftovers of a stopped agent to end on SIGTERM


def write_verdict(path: str | os.PathLike, verdict: Mapping[str, object]) -> None:
    """Write ``verdict`` as JSON to ``path`` atomically (temp file in the same folder + rename)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(verdict), sort_keys=True, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class WatchResult:
    """What one watch did (returned by :func:`run_watch`)."""

    def __init__(self, exit_reason: str, verdict: dict | None = None, lines_read: int = 0,
                 observer_lines: int = 0, sentinel_lines: int = 0, matches: int = 0,
                 note_errors: list[str] | None = None) -> None:
        self.exit_reason = exit_reason  # "agent_exited" | "stopped"
        self.verdict = verdict
        self.lines_read = lines_read
        self.observer_lines = observer_lines  # note lines written
        self.sentinel_lines = sentinel_lines
        self.matches = matches  # observer matches, including rate-limited ones
        self.note_errors = list(note_errors or [])

    def __repr__(self) -> str:
        return "WatchResult(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


def _final_scan(*, repo: str, commit: str, log_path: str | os.PathLike,
                config: WatchConfig | str | Mapping | None, emit: Callable[[str, dict], None],
                say: Callable[[str], None], clock: Callable[[], float]) -> WatchResult:
    """The agent was gone before the watch began: read its whole log once, note its signals,
    done. No sentinel (nothing is left to stop), and nothing imported or read from git when it
    printed nothing."""
    tail = LogTail(log_path)
    try:
        data, first = tail.drain()
    finally:
        tail.close()
    result = WatchResult(exit_reason="agent_exited", lines_read=tail.lines)
    if not data:
        return result
    from logist.engine.observer import Observer, compile_patterns
    from logist.git.refs import NOTES_OBSERVER

    if isinstance(config, WatchConfig):
        patterns, repeat, max_text = config.patterns, config.repeat_seconds, config.max_text
    elif config is None or config == "":
        patterns, repeat, max_text = {}, 5.0, 300
    else:  # the sentinel's part is not needed (nor imported): nothing is left to stop
        patterns, repeat, max_text = observer_part(config_table(config))
    observer = Observer(compile_patterns(None, patterns), repeat_seconds=repeat,
                        max_text=max_text)
    now = clock()
    notes = NoteBuffer(repo, NOTES_OBSERVER, commit, say)
    already = SeenSignals(repo, commit)
    signals = observer.feed_chunk(data, first, now) + observer.finish(now)
    if signals:
        from logist.git.notes import json_line

        for sig in signals:
            if (sig.signal, sig.line) in already:
                continue
            obj = sig.to_dict()
            notes.add(json_line(obj))
            emit("observer", obj)
        notes.flush()
    result.observer_lines = notes.written
    result.matches = observer.matches
    result.note_errors = notes.errors
    return result


def run_watch(*, repo: str | os.PathLike, job_id: str, log_path: str | os.PathLike, pid: int,
              pgid: int, commit: str, workdir: str | os.PathLike,
              verdict_file: str | os.PathLike, config: WatchConfig | str | Mapping | None = None,
              started_at: float | None = None, poll_interval: float = 0.25,
              sentinel_interval: float = 0.5, flush_interval: float = 1.0,
              cpu_interval: float = 1.0, files_interval: float = 2.0,
              on_event: Callable[[str, dict], None] | None = None,
              log: Callable[[str], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              clock: Callable[[], float] = time.time) -> WatchResult:
    """Watch one running step until its agent process ``pid`` is gone (or ``should_stop()``).

    ``on_event(kind, obj)`` is called with kind "observer" or "sentinel" and each note line's
    object (for ``logist watch`` in the foreground); ``log(message)`` gets problems that do not
    stop the watch (a note that could not be written). Returns a WatchResult; raises
    UsageError/ConfigError for bad arguments before touching anything. An agent already gone
    gets one scan of its log (its config is read only if it printed something).
    """
    from logist.git.refs import validate_job_id

    validate_job_id(job_id)
    pid, pgid = int(pid), int(pgid)
    if pid <= 1 or pgid <= 1:
        raise UsageError(f"refusing to watch pid {pid} / process group {pgid}")
    if pgid == os.getpgrp():
        raise UsageError(f"process group {pgid} is the watcher's own: the agent must run in its "
                         "own process group (start_new_session=True)")
    try:
        actual = os.getpgid(pid)
    except ProcessLookupError:
        actual = None  # already gone: drain the log and note what it printed
    if actual is not None and actual != pgid:
        raise UsageError(f"process {pid} is in process group {actual}, not {pgid}")
    repo = os.fspath(repo)
    say = log or (lambda _msg: None)
    emit = on_event or (lambda _kind, _obj: None)
    if actual is None or not pid_alive(pid):
        return _final_scan(repo=repo, commit=commit, log_path=log_path, config=config,
                           emit=emit, say=say, clock=clock)
    cfg = config if isinstance(config, WatchConfig) else parse_config(config)
    pidfd = pidfd_open(pid)  # taken while it runs: it cannot name a later process with this pid
    try:
        return _watch(repo=repo, job_id=job_id, log_path=log_path, pid=pid, pgid=pgid,
                      commit=commit, workdir=workdir, verdict_file=verdict_file, cfg=cfg,
                      started_at=started_at, poll_interval=poll_interval,
                      sentinel_interval=sentinel_interval, flush_interval=flush_interval,
                      cpu_interval=cpu_interval, files_interval=files_interval, emit=emit,
                      say=say, should_stop=should_stop, clock=clock, pidfd=pidfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _watch(*, repo: str, job_id: str, log_path, pid: int, pgid: int, commit: str, workdir,
           verdict_file, cfg: WatchConfig, started_at: float | None, poll_interval: float,
           sentinel_interval: float, flush_interval: float, cpu_interval: float,
           files_interval: float, emit, say, should_stop, clock, pidfd: int | None
           ) -> WatchResult:
    """The watch loop of :func:`run_watch` for an agent that runs."""
    import select

    from logist.engine.doom import Doom
    from logist.engine.observer import Observer, compile_patterns
    from logist.engine.sentinel import Sentinel, group_alive, newest_mtime, process_group_cpu_ticks
    from logist.git.notes import iso_utc, json_line
    from logist.git.refs import NOTES_OBSERVER, NOTES_SENTINEL

    now = clock()
    started = float(started_at) if started_at is not None else now
    patterns = compile_patterns(None, cfg.patterns)
    observer = Observer(patterns, repeat_seconds=cfg.repeat_seconds, max_text=cfg.max_text)
    sentinel = Sentinel(cfg.sentinel, started)
    # Ladders an earlier watcher of this step started count against max_interventions_per_hour.
    # They are read from git only when a trigger could first fire (no trigger fires earlier
    # than this), so a short step never pays for it.
    sc = cfg.sentinel
    prior_at = started + min(sc.silence_seconds, sc.waiting_window,
                             sc.max_step_seconds if sc.max_step_seconds is not None else 1e18)
    prior_read = not sc.enabled
    obs_notes = NoteBuffer(repo, NOTES_OBSERVER, commit, say)
    # A watcher started again for the same step (`logist watch --replace`, recovery) reads the
    # log from its start: what an earlier watcher already noted is not noted twice.
    already = SeenSignals(repo, commit)
    sen_notes = NoteBuffer(repo, NOTES_SENTINEL, commit, say)
    tail = LogTail(log_path)
    result = WatchResult(exit_reason="stopped")
    waiting_input_at: float | None = None
    last_waiting_line = 0
    files_at: float | None = None
    cpu: int | None = None
    next_sentinel = next_flush = next_cpu = next_files = now
    verdict_written = False
    exited = False  # the pidfd said the agent is gone
    doom = Doom(cfg.agent)
    doomed_kill_at: float | None = None  # when a doomed agent still running gets SIGKILL

    def nap(seconds: float) -> None:
        """Sleep, waking at once when the agent exits."""
        nonlocal exited
        if pidfd is None:
            time.sleep(seconds)
            return
        try:
            ready, _, _ = select.select([pidfd], [], [], seconds)
        except (OSError, ValueError):
            time.sleep(seconds)
            return
        exited = exited or bool(ready)

    def doomed(reason: str, t: float) -> None:
        """A failure no retry fixes: note it, write a fatal verdict, SIGTERM the group."""
        nonlocal verdict_written, doomed_kill_at
        obj = {"t": iso_utc(t), "signal": "doomed", "action": "terminate",
               "detail": f"{cfg.agent}: {reason}; not retried; sending SIGTERM to the process group"}
        sen_notes.add(json_line(obj))
        emit("sentinel", obj)
        verdict = {"verdict": "doomed", "fatal": True, "reason": reason, "signal": "doomed",
                   "action": "terminate", "t": obj["t"], "job": job_id, "commit": commit,
                   "pid": pid, "pgid": pgid}
        try:
            write_verdict(verdict_file, verdict)
            verdict_written = True
            result.verdict = verdict
        except OSError as exc:
            say(f"could not write the verdict file {verdict_file}: {exc}")
        doomed_kill_at = clock() + cfg.sentinel.terminate_grace_seconds
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            say(f"cannot signal process group {pgid}: {exc}")
        sen_notes.flush()

    def feed(data: bytes, first: int, t: float) -> None:
        nonlocal waiting_input_at, last_waiting_line
        if doomed_kill_at is None and not verdict_written:
            reason = doom.scan(data)
            if reason is not None:
                doomed(reason, t)
        for sig in observer.feed_chunk(data, first, t):
            if (sig.signal, sig.line) in already:
                continue
            obj = sig.to_dict()
            obs_notes.add(json_line(obj))
            emit("observer", obj)
        seen = observer.last_seen.get("waiting_input")
        if seen is not None and seen[1] > last_waiting_line:
            last_waiting_line = seen[1]
            if seen[1] > tail.lines - WAITING_LINES:
                waiting_input_at = seen[0]

    def act(decision) -> None:
        nonlocal verdict_written
        obj = decision.to_dict()
        sen_notes.add(json_line(obj))
        emit("sentinel", obj)
        if decision.signum is not None:
            verdict = {"verdict": "hung", "reason": decision.detail, "signal": decision.signal,
                       "action": decision.action, "t": obj["t"], "job": job_id,
                       "commit": commit, "pid": pid, "pgid": pgid}
            try:
                write_verdict(verdict_file, verdict)
                verdict_written = True
                result.verdict = verdict
            except OSError as exc:
                say(f"could not write the verdict file {verdict_file}: {exc}")
            try:
                os.killpg(pgid, decision.signum)
            except ProcessLookupError:
                pass
            except PermissionError as exc:
                say(f"cannot signal process group {pgid}: {exc}")

    def stop_leftovers() -> None:
        """The agent was stopped as hung and is gone, but processes it started (a child that
        ignores SIGINT, a background job) may still hold its group: end them too."""
        assert result.verdict is not None
        if result.verdict.get("action") == "kill" or not group_alive(pgid):
            return
        trigger = str(result.verdict.get("signal") or "silence")
        grace = min(cfg.sentinel.terminate_grace_seconds, LEFTOVER_GRACE)
        for action, signum, wait in (("terminate", signal.SIGTERM, grace),
                                     ("kill", signal.SIGKILL, LEFTOVER_GRACE)):
            obj = {"t": iso_utc(clock()), "signal": trigger, "action": action,
                   "detail": f"the agent is gone but processes of its group {pgid} are left; "
                             f"sending SIG{'TERM' if action == 'terminate' else 'KILL'} to the group"}
            sen_notes.add(json_line(obj))
            emit("sentinel", obj)
            try:
                os.killpg(pgid, signum)
            except ProcessLookupError:
                return
            except PermissionError as exc:
                say(f"cannot signal process group {pgid}: {exc}")
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not group_alive(pgid):
                    return
                time.sleep(0.02)

    try:
        while True:
            now = clock()
            data, first = tail.read()
            if data:
                feed(data, first, now)
            alive = not exited and pid_alive(pid)
            if not alive or (should_stop is not None and should_stop()):
                result.exit_reason = "agent_exited" if not alive else "stopped"
                if not alive and verdict_written:
                    stop_leftovers()
                break
            if doomed_kill_at is not None:
                if now >= doomed_kill_at and group_alive(pgid):
                    obj = {"t": iso_utc(now), "signal": "doomed", "action": "kill",
                           "detail": "still running after SIGTERM; sending SIGKILL to the group"}
                    sen_notes.add(json_line(obj))
                    emit("sentinel", obj)
                    sen_notes.flush()
                    try:
                        os.killpg(pgid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    doomed_kill_at = float("inf")
                nap(poll_interval)
                continue
            if now >= next_sentinel:
                next_sentinel = now + sentinel_interval
                if now >= next_cpu:
                    next_cpu = now + cpu_interval
                    cpu = process_group_cpu_ticks(pgid)
                if now >= next_files:
                    next_files = now + files_interval
                    files_at = newest_mtime(workdir)
                if not prior_read and now >= prior_at:
                    prior_read = True
                    sentinel.interventions = sorted(sentinel.interventions
                                                    + prior_interventions(repo, commit))
                was = sentinel.escalating
                while True:
                    decision = sentinel.observe(now, output_at=tail.mtime(),
                                                files_changed_at=files_at, cpu_ticks=cpu,
                                                waiting_input_at=waiting_input_at)
                    if decision is None:
                        break
                    act(decision)
                if was and sentinel.escalating is None and verdict_written:
                    # work resumed: the agent is no longer considered hung
                    try:
                        os.unlink(verdict_file)
                    except OSError:
                        pass
                    verdict_written = False
                    result.verdict = None
                if sen_notes.lines:
                    sen_notes.flush()  # escalations are recorded at once
            if now >= next_flush:
                next_flush = now + flush_interval
                obs_notes.flush()
            nap(poll_interval)
    finally:
        now = clock()
        try:
            data, first = tail.drain()
            if data:
                feed(data, first, now)
            for sig in observer.finish(now):
                if (sig.signal, sig.line) in already:
                    continue
                obj = sig.to_dict()
                obs_notes.add(json_line(obj))
                emit("observer", obj)
        finally:
            tail.close()
            obs_notes.flush()
            sen_notes.flush()
    result.lines_read = tail.lines
    result.observer_lines = obs_notes.written
    result.sentinel_lines = sen_notes.written
    result.matches = observer.matches
    result.note_errors = obs_notes.errors + sen_notes.errors
    return result
