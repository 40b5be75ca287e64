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
from logist.core.procs import group_id_reused, pid_alive, pidfd_open
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
        pace = Pace(poll_interval, sentinel_interval, flush_interval, cpu_interval, files_interval)
        return _Watch(repo=repo, job_id=job_id, log_path=log_path, pid=pid, pgid=pgid,
                      commit=commit, workdir=workdir, verdict_file=verdict_file, cfg=cfg,
                      started_at=started_at, pace=pace, emit=emit, say=say, clock=clock,
                      pidfd=pidfd).run(should_stop)
    finally:
        if pidfd is not None:
            os.close(pidfd)


class Pace:
    """How often the watch does each thing (seconds)."""

    __slots__ = ("poll", "sentinel", "flush", "cpu", "files")

    def __init__(self, poll: float = 0.25, sentinel: float = 0.5, flush: float = 1.0,
                 cpu: float = 1.0, files: float = 2.0) -> None:
        self.poll, self.sentinel, self.flush, self.cpu, self.files = poll, sentinel, flush, cpu, files


class _Watch:
    """The watch of :func:`run_watch` for an agent that runs: its state, and one method per
    thing it does (read the log, act on a sentinel decision, end a doomed step, end leftovers
    of a hung one, finish)."""

    def __init__(self, *, repo: str, job_id: str, log_path: str | os.PathLike, pid: int, pgid: int,
                 commit: str, workdir: str | os.PathLike, verdict_file: str | os.PathLike,
                 cfg: WatchConfig, started_at: float | None, pace: Pace,
                 emit: Callable[[str, dict], None], say: Callable[[str], None],
                 clock: Callable[[], float], pidfd: int | None) -> None:
        from logist.engine.doom import Doom
        from logist.engine.observer import Observer, compile_patterns
        from logist.engine.sentinel import Sentinel
        from logist.git.refs import NOTES_OBSERVER, NOTES_SENTINEL

        self.repo, self.job_id, self.pid, self.pgid, self.commit = repo, job_id, pid, pgid, commit
        self.workdir, self.verdict_file, self.cfg, self.pace = workdir, verdict_file, cfg, pace
        self.emit, self.say, self.clock, self.pidfd = emit, say, clock, pidfd
        now = clock()
        started = float(started_at) if started_at is not None else now
        self.observer = Observer(compile_patterns(None, cfg.patterns),
                                 repeat_seconds=cfg.repeat_seconds, max_text=cfg.max_text)
        self.sentinel = Sentinel(cfg.sentinel, started)
        # Ladders an earlier watcher of this step started count against max_interventions_per_hour.
        # They are read from git only when a trigger could first fire (no trigger fires earlier
        # than this), so a short step never pays for it.
        sc = cfg.sentinel
        self.prior_at = started + min(sc.silence_seconds, sc.waiting_window,
                                      sc.max_step_seconds if sc.max_step_seconds is not None else 1e18)
        self.prior_read = not sc.enabled
        self.obs_notes = NoteBuffer(repo, NOTES_OBSERVER, commit, say)
        # A watcher started again for the same step (`logist watch --replace`, recovery) reads the
        # log from its start: what an earlier watcher already noted is not noted twice.
        self.already = SeenSignals(repo, commit)
        self.sen_notes = NoteBuffer(repo, NOTES_SENTINEL, commit, say)
        self.tail = LogTail(log_path)
        self.result = WatchResult(exit_reason="stopped")
        self.waiting_input_at: float | None = None
        self.last_waiting_line = 0
        self.files_at: float | None = None
        self.cpu: int | None = None
        self.next_sentinel = self.next_flush = self.next_cpu = self.next_files = now
        self.verdict_written = False
        self.exited = False  # the pidfd said the agent is gone
        self.doom = Doom(cfg.agent)
        self.doomed_kill_at: float | None = None  # when a doomed agent still running gets SIGKILL

    # ---- the loop

    def run(self, should_stop: Callable[[], bool] | None) -> WatchResult:
        try:
            while self._turn(should_stop):
                self._nap(self.pace.poll)
        finally:
            self._finish()
        result = self.result
        result.lines_read = self.tail.lines
        result.observer_lines = self.obs_notes.written
        result.sentinel_lines = self.sen_notes.written
        result.matches = self.observer.matches
        result.note_errors = self.obs_notes.errors + self.sen_notes.errors
        return result

    def _turn(self, should_stop: Callable[[], bool] | None) -> bool:
        """One turn of the loop; False when the watch ends (the agent is gone, or asked to stop)."""
        now = self.clock()
        data, first = self.tail.read()
        if data:
            self._feed(data, first, now)
        alive = not self.exited and pid_alive(self.pid)
        if not alive or (should_stop is not None and should_stop()):
            self.result.exit_reason = "agent_exited" if not alive else "stopped"
            if not alive and self.verdict_written:
                self._stop_leftovers()
            return False
        if self.doomed_kill_at is not None:
            self._kill_doomed(now)  # the sentinel has nothing left to decide
            return True
        if now >= self.next_sentinel:
            self._sentinel_turn(now)
        if now >= self.next_flush:
            self.next_flush = now + self.pace.flush
            self.obs_notes.flush()
        return True

    def _nap(self, seconds: float) -> None:
        """Sleep, waking at once when the agent exits."""
        if self.pidfd is None:
            time.sleep(seconds)
            return
        import select

        try:
            ready, _, _ = select.select([self.pidfd], [], [], seconds)
        except (OSError, ValueError):
            time.sleep(seconds)
            return
        self.exited = self.exited or bool(ready)

    def _finish(self) -> None:
        """Read the rest of the log, note the observer's last signals, flush every note line."""
        now = self.clock()
        try:
            data, first = self.tail.drain()
            if data:
                self._feed(data, first, now)
            for sig in self.observer.finish(now):
                self._note_observer(sig)
        finally:
            self.tail.close()
            self.obs_notes.flush()
            self.sen_notes.flush()

    # ---- the log and the observer

    def _feed(self, data: bytes, first: int, t: float) -> None:
        """Whole log lines ``data`` (the first is line ``first``): doomed?, observer signals,
        the last ``waiting_input`` the sentinel counts."""
        if self.doomed_kill_at is None and not self.verdict_written:
            reason = self.doom.scan(data)
            if reason is not None:
                self._doomed(reason, t)
        for sig in self.observer.feed_chunk(data, first, t):
            self._note_observer(sig)
        seen = self.observer.last_seen.get("waiting_input")
        if seen is not None and seen[1] > self.last_waiting_line:
            self.last_waiting_line = seen[1]
            if seen[1] > self.tail.lines - WAITING_LINES:
                self.waiting_input_at = seen[0]

    def _note_observer(self, sig) -> None:
        if (sig.signal, sig.line) in self.already:
            return
        from logist.git.notes import json_line

        obj = sig.to_dict()
        self.obs_notes.add(json_line(obj))
        self.emit("observer", obj)

    # ---- the sentinel

    def _sentinel_turn(self, now: float) -> None:
        """Give the sentinel fresh evidence and carry out each decision it makes now."""
        from logist.engine.sentinel import newest_mtime, process_group_cpu_ticks

        self.next_sentinel = now + self.pace.sentinel
        if now >= self.next_cpu:
            self.next_cpu = now + self.pace.cpu
            self.cpu = process_group_cpu_ticks(self.pgid)
        if now >= self.next_files:
            self.next_files = now + self.pace.files
            self.files_at = newest_mtime(self.workdir)
        if not self.prior_read and now >= self.prior_at:
            self.prior_read = True
            self.sentinel.interventions = sorted(self.sentinel.interventions
                                                 + prior_interventions(self.repo, self.commit))
        was = self.sentinel.escalating
        while True:
            decision = self.sentinel.observe(now, output_at=self.tail.mtime(),
                                             files_changed_at=self.files_at, cpu_ticks=self.cpu,
                                             waiting_input_at=self.waiting_input_at)
            if decision is None:
                break
            self._act(decision)
        if was and self.sentinel.escalating is None and self.verdict_written:
            self._withdraw_verdict()  # work resumed: the agent is no longer considered hung
        if self.sen_notes.lines:
            self.sen_notes.flush()  # escalations are recorded at once

    def _act(self, decision) -> None:
        """Note a sentinel decision; one that signals writes the verdict first."""
        obj = decision.to_dict()
        self._note_sentinel(obj)
        if decision.signum is not None:
            self._write_verdict({"verdict": "hung", "reason": decision.detail,
                                 "signal": decision.signal, "action": decision.action,
                                 "t": obj["t"]})
            self._signal_group(decision.signum)

    def _doomed(self, reason: str, t: float) -> None:
        """A failure no retry fixes: note it, write a fatal verdict, SIGTERM the group."""
        from logist.git.notes import iso_utc

        obj = {"t": iso_utc(t), "signal": "doomed", "action": "terminate",
               "detail": f"{self.cfg.agent}: {reason}; not retried; sending SIGTERM to the process group"}
        self._note_sentinel(obj)
        self._write_verdict({"verdict": "doomed", "fatal": True, "reason": reason,
                             "signal": "doomed", "action": "terminate", "t": obj["t"]})
        self.doomed_kill_at = self.clock() + self.cfg.sentinel.terminate_grace_seconds
        self._signal_group(signal.SIGTERM)
        self.sen_notes.flush()

    def _kill_doomed(self, now: float) -> None:
        """A doomed agent still running after SIGTERM and its grace gets SIGKILL, once."""
        from logist.engine.sentinel import group_alive
        from logist.git.notes import iso_utc

        if self.doomed_kill_at is None or now < self.doomed_kill_at or not group_alive(self.pgid):
            return
        self._note_sentinel({"t": iso_utc(now), "signal": "doomed", "action": "kill",
                             "detail": "still running after SIGTERM; sending SIGKILL to the group"})
        self.sen_notes.flush()
        self._signal_group(signal.SIGKILL, quiet=True)
        self.doomed_kill_at = float("inf")

    def _stop_leftovers(self) -> None:
        """The agent was stopped as hung and is gone, but processes it started (a child that
        ignores SIGINT, a background job) may still hold its group: end them too."""
        from logist.engine.sentinel import group_alive
        from logist.git.notes import iso_utc

        verdict = self.result.verdict
        assert verdict is not None
        if verdict.get("action") == "kill" or not group_alive(self.pgid):
            return
        trigger = str(verdict.get("signal") or "silence")
        grace = min(self.cfg.sentinel.terminate_grace_seconds, LEFTOVER_GRACE)
        for action, signum, wait in (("terminate", signal.SIGTERM, grace),
                                     ("kill", signal.SIGKILL, LEFTOVER_GRACE)):
            self._note_sentinel({
                "t": iso_utc(self.clock()), "signal": trigger, "action": action,
                "detail": f"the agent is gone but processes of its group {self.pgid} are left; "
                          f"sending SIG{'TERM' if action == 'terminate' else 'KILL'} to the group"})
            if not self._signal_group(signum):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not group_alive(self.pgid):
                    return
                time.sleep(0.02)

    # ---- what the sentinel leaves behind

    def _note_sentinel(self, obj: dict) -> None:
        from logist.git.notes import json_line

        self.sen_notes.add(json_line(obj))
        self.emit("sentinel", obj)

    def _write_verdict(self, verdict: dict) -> None:
        """The verdict file the step runner reads once the agent is gone (with who was judged)."""
        verdict.update(job=self.job_id, commit=self.commit, pid=self.pid, pgid=self.pgid)
        try:
            write_verdict(self.verdict_file, verdict)
        except OSError as exc:
            self.say(f"could not write the verdict file {self.verdict_file}: {exc}")
            return
        self.verdict_written = True
        self.result.verdict = verdict

    def _withdraw_verdict(self) -> None:
        try:
            os.unlink(self.verdict_file)
        except OSError:
            pass
        self.verdict_written = False
        self.result.verdict = None

    def _signal_group(self, signum: int, *, quiet: bool = False) -> bool:
        """Signal the agent's process group; False when it is gone or may not be signalled
        (its id reused by another process's group once the agent was reaped)."""
        if self.pgid == self.pid and group_id_reused(self.pidfd, self.pgid):
            return False
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            if not quiet:
                self.say(f"cannot signal process group {self.pgid}: {exc}")
            return False
        return True
