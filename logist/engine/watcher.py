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

Start cost matters (a step whose agent exits at once waits for its watcher's notes before it
returns): the process runs with ``-S`` (no site: it needs nothing outside the standard library
and logist), and this module imports only ``os``/``sys``/``time``/``signal``/``json`` (and
logist's ``errors`` and ``procs``) at load;
the observer, the sentinel and the notes writer (``re``, ``subprocess``, ``dataclasses``) are
imported when there is something to watch. Never pydantic, dulwich, cyclopts or rich.

``config`` JSON: ``{"patterns": {name: regex}, "sentinel": {...SentinelConfig...},
"observer": {"repeat_seconds": 5, "max_text": 300}}`` (every key optional).
"""

from __future__ import annotations

import _thread
import json
import os
import re
import signal
import sys
import time

from logist.core.errors import ConfigError, LogistError, UsageError
from logist.core.procs import pid_alive

TYPE_CHECKING = False  # typing itself costs an import
if TYPE_CHECKING:  # pragma: no cover
    import argparse
    import subprocess
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any, BinaryIO, TypeGuard

    from logist.engine.sentinel import SentinelConfig

__all__ = ["LogTail", "WatchConfig", "WatchResult", "main", "parse_config", "run_watch",
           "spawn_watcher", "stop_watcher", "watcher_log_path", "write_verdict"]

READ_MAX = 8 * 1024 * 1024  # bytes read from the log per loop turn
MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is cut and fed anyway
WAITING_LINES = 20  # a waiting_input match counts if it is among the last 20 lines
LEFTOVER_GRACE = 2.0  # at most this long for leftovers of a stopped agent to end on SIGTERM
EXIT_WAIT = 5.0  # stop_watcher: seconds a watcher gets to end by itself once its agent is gone
TERM_WAIT = 5.0  # stop_watcher: seconds after SIGTERM before SIGKILL


class WatchConfig:
    """What the watcher matches and when it intervenes (see :func:`parse_config`)."""

    __slots__ = ("patterns", "sentinel", "repeat_seconds", "max_text", "agent")

    def __init__(self, patterns: dict[str, str] | None = None,
                 sentinel: SentinelConfig | None = None, repeat_seconds: float = 5.0,
                 max_text: int = 300, agent: str | None = None) -> None:
        if sentinel is None:
            from logist.engine.sentinel import SentinelConfig

            sentinel = SentinelConfig()
        self.patterns = dict(patterns or {})
        self.sentinel = sentinel
        self.repeat_seconds = repeat_seconds
        self.max_text = max_text
        self.agent = agent  # the step's agent: its own reader of fatal lines and retry loops

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatchConfig) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return "WatchConfig(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    if isinstance(value, dict):
        return True
    from collections.abc import Mapping

    return isinstance(value, Mapping)


def _config_table(config: str | Mapping) -> Mapping:
    """The config as a mapping with only known keys (ConfigError otherwise)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as exc:
            raise ConfigError(f"watcher config is not valid JSON: {exc}") from None
    if not _is_mapping(config):
        raise ConfigError("watcher config must be a JSON object")
    unknown = sorted(set(config) - {"patterns", "sentinel", "observer", "agent"})
    if unknown:
        raise ConfigError(f"unknown watcher config key(s): {', '.join(unknown)}",
                          hint="known keys: patterns, sentinel, observer, agent")
    agent = config.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise ConfigError("watcher config 'agent' must be an agent name")
    return config


def _observer_part(config: Mapping) -> tuple[dict[str, str], float, int]:
    """(patterns, repeat_seconds, max_text) of a config table, checked (not compiled)."""
    patterns = config.get("patterns") or {}
    if not _is_mapping(patterns):
        raise ConfigError("watcher config 'patterns' must be an object of name: regex")
    obs = config.get("observer") or {}
    if not _is_mapping(obs) or set(obs) - {"repeat_seconds", "max_text"}:
        raise ConfigError("watcher config 'observer' accepts only repeat_seconds and max_text")
    repeat = obs.get("repeat_seconds", 5.0)
    max_text = obs.get("max_text", 300)
    if isinstance(repeat, bool) or not isinstance(repeat, (int, float)) or repeat < 0:
        raise ConfigError(f"observer.repeat_seconds must be a number >= 0, not {repeat!r}")
    if isinstance(max_text, bool) or not isinstance(max_text, int) or max_text < 20:
        raise ConfigError(f"observer.max_text must be a whole number >= 20, not {max_text!r}")
    return dict(patterns), float(repeat), max_text


def parse_config(config: str | Mapping | None) -> WatchConfig:
    """The watcher's configuration from JSON text or a mapping; ConfigError on anything unknown."""
    from logist.engine.observer import compile_patterns
    from logist.engine.sentinel import SentinelConfig

    if config is None or config == "":
        return WatchConfig()
    table = _config_table(config)
    patterns, repeat, max_text = _observer_part(table)
    compile_patterns(None, patterns)  # validate now, with a clear error
    sentinel = SentinelConfig.from_dict(table.get("sentinel"))
    return WatchConfig(patterns, sentinel, repeat, max_text, table.get("agent"))


RETRY_LOOP_LINES = 4  # this many retry lines in a row, nothing else between: a doomed step
_NOISE = re.compile(r"^\s*(at |$)|error|warn|exception|traceback|overloaded|unavailable|connection"
                    r"|^\s*\}|^\s*\]", re.I)


class Doom:
    """Reads a step's output lines with its agent's :meth:`line_problem`: a fatal line (bad or
    missing key, login offer, untrusted folder, usage error) or ``RETRY_LOOP_LINES`` retry
    lines in a row (a reconnect loop: identical retries are no progress) end the step at once,
    as no retry of the step can fix it."""

    def __init__(self, agent: str | None) -> None:
        self.agent = None
        if agent:
            try:
                from logist.agents import get_agent

                found = get_agent(agent)
            except Exception:
                found = None
            self.agent = found if hasattr(found, "line_problem") else None
        self.retries = 0

    def scan(self, data: bytes) -> str | None:
        """The reason to stop the step, from whole lines ``data``, or None."""
        if self.agent is None:
            return None
        for raw in data.decode("utf-8", "replace").splitlines():
            found = self.agent.line_problem(raw)
            if found is None:
                if raw.strip() and not _NOISE.search(raw):
                    self.retries = 0  # other output: the agent moved on
                continue
            kind, words = found
            if kind == "fatal":
                return words
            self.retries += 1
            if self.retries >= RETRY_LOOP_LINES:
                return (f"it kept retrying ({self.retries} retries in a row, no other output): "
                        f"{words}")
        return None


class LogTail:
    """Reads a growing log from its start: whole lines only, the partial last line held back.

    Survives a log that does not exist yet, is truncated (starts over) or replaced."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        self.pending = b""
        self.lines = 0  # whole lines handed out so far
        self._fh: BinaryIO | None = None
        self._ino: int | None = None

    def _open(self) -> bool:
        if self._fh is not None:
            return True
        try:
            self._fh = open(self.path, "rb")
        except OSError:
            return False
        self._ino = os.fstat(self._fh.fileno()).st_ino
        return True

    def mtime(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    def read(self, max_bytes: int = READ_MAX) -> tuple[bytes, int]:
        """(whole lines appended since the last call, number of their first line)."""
        if not self._open():
            return b"", self.lines + 1
        assert self._fh is not None
        try:
            st = os.stat(self.path)
            if st.st_ino != self._ino or st.st_size < self.offset:  # replaced or truncated
                self._fh.close()
                self._fh = None
                self.offset = 0
                self.pending = b""
                if not self._open():
                    return b"", self.lines + 1
        except OSError:
            pass
        fh = self._fh
        assert fh is not None  # still open, or reopened above
        fh.seek(self.offset)
        data = fh.read(max_bytes)
        self.offset += len(data)
        buf = self.pending + data if self.pending else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) >= MAX_PARTIAL:
                complete, self.pending = buf + b"\n", b""
            else:
                self.pending = buf
                return b"", self.lines + 1
        else:
            complete, self.pending = buf[:cut + 1], buf[cut + 1:]
        first = self.lines + 1
        self.lines += complete.count(b"\n")
        return complete, first

    def drain(self) -> tuple[bytes, int]:
        """Everything left, including a final line without a newline."""
        chunks = []
        first = self.lines + 1
        while True:
            data, _ = self.read()
            if not data:
                break
            chunks.append(data)
        if self.pending:
            chunks.append(self.pending + b"\n")
            self.pending = b""
            self.lines += 1
        return b"".join(chunks), first

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


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


class _NoteBuffer:
    """Note lines waiting for the next notes commit; kept on failure and retried."""

    def __init__(self, repo: str, ref: str, commit: str, log: Callable[[str], None]) -> None:
        self.repo, self.ref, self.commit, self.log = repo, ref, commit, log
        self.lines: list[str] = []
        self.written = 0
        self.errors: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        if not self.lines:
            return
        from logist.git.notes import append_notes

        batch = list(self.lines)
        try:
            append_notes(self.repo, self.ref, {self.commit: batch})
        except LogistError as exc:
            self.errors.append(str(exc))
            self.log(f"could not write {len(batch)} note line(s) to {self.ref}: {exc}")
            if len(self.lines) > 10000:  # never grow without bound
                del self.lines[:-10000]
            return
        del self.lines[:len(batch)]
        self.written += len(batch)


def _prior_interventions(repo: str, commit: str) -> list[float]:
    """Ladder start times already noted on this commit (a restarted watcher keeps the cap)."""
    from datetime import datetime

    from logist.git.notes import read_note_lines
    from logist.git.refs import NOTES_SENTINEL

    out = []
    try:
        for obj in read_note_lines(repo, NOTES_SENTINEL, commit):
            if obj.get("action") == "interrupt" and isinstance(obj.get("t"), str):
                try:
                    out.append(datetime.fromisoformat(obj["t"].replace("Z", "+00:00")).timestamp())
                except ValueError:
                    continue
    except LogistError:
        return []
    return out


def _noted_lines(repo: str, commit: str) -> set[tuple[str, int]]:
    """(signal, line) of the observer note lines already on ``commit``."""
    from logist.git.notes import read_note_lines
    from logist.git.refs import NOTES_OBSERVER

    try:
        lines = read_note_lines(repo, NOTES_OBSERVER, commit)
    except LogistError:
        return set()
    return {(o["signal"], o["line"]) for o in lines
            if isinstance(o.get("signal"), str) and isinstance(o.get("line"), int)}


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it has exited), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class _Seen:
    """The (signal, line) pairs an earlier watcher of the same step noted, read from git only
    when the first signal comes (most steps have none)."""

    def __init__(self, repo: str, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self._pairs: set[tuple[str, int]] | None = None

    def __contains__(self, pair: tuple[str, int]) -> bool:
        if self._pairs is None:
            self._pairs = _noted_lines(self.repo, self.commit)
        return pair in self._pairs


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
        patterns, repeat, max_text = _observer_part(_config_table(config))
    observer = Observer(compile_patterns(None, patterns), repeat_seconds=repeat,
                        max_text=max_text)
    now = clock()
    notes = _NoteBuffer(repo, NOTES_OBSERVER, commit, say)
    already = _Seen(repo, commit)
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
    pidfd = _pidfd(pid)  # taken while it runs: it cannot name a later process with this pid
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
    obs_notes = _NoteBuffer(repo, NOTES_OBSERVER, commit, say)
    # A watcher started again for the same step (`logist watch --replace`, recovery) reads the
    # log from its start: what an earlier watcher already noted is not noted twice.
    already = _Seen(repo, commit)
    sen_notes = _NoteBuffer(repo, NOTES_SENTINEL, commit, say)
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
                                                    + _prior_interventions(repo, commit))
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
        fd = _pidfd(pid)  # not reaped yet (only we reap it): the pidfd names our child
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


_OPTIONS = {"--repo": "repo", "--job": "job", "--log": "log", "--pid": "pid", "--pgid": "pgid",
            "--commit": "commit", "--workdir": "workdir", "--verdict-file": "verdict_file",
            "--config": "config", "--started-at": "started_at"}
_REQUIRED = ("repo", "job", "log", "pid", "pgid", "commit", "workdir", "verdict_file")


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
    values: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        name = _OPTIONS.get(key)
        if name is None:
            return None
        if not eq:
            following = next(it, None)
            if following is None:
                return None
            value = following
        values[name] = value
    if any(k not in values for k in _REQUIRED):
        return None
    v = values
    try:
        return _Args(repo=v["repo"], job=v["job"], log=v["log"], pid=int(v["pid"]), pgid=int(v["pgid"]),
                     commit=v["commit"], workdir=v["workdir"], verdict_file=v["verdict_file"],
                     config=v.get("config", ""),
                     started_at=float(v["started_at"]) if "started_at" in v else None)
    except ValueError:
        return None


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="python -m logist.engine.watcher",
                                description="observer + sentinel for one running logist step")
    p.add_argument("--repo", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--pid", required=True, type=int)
    p.add_argument("--pgid", required=True, type=int)
    p.add_argument("--commit", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--verdict-file", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--started-at", type=float, default=None)
    return p


def _stamp() -> str:
    """Now as ISO 8601 UTC with milliseconds (as logist.git.notes.iso_utc, without its imports)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv) or _Args(**vars(_build_parser().parse_args(argv)))
    stop = {"flag": False}

    def on_signal(_signum, _frame) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def log(msg: str) -> None:
        sys.stderr.write(f"{_stamp()} logist-watcher[{os.getpid()}] {msg}\n")
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
