"""The sentinel: hang detection and the escalation ladder, as pure logic with an injected clock.

Every ``observe(now, ...)`` call gets the evidence the watcher sampled (last output time, newest
file change in the worktree, CPU ticks of the agent's process group, last ``waiting_input``
signal) and returns at most one :class:`Decision`. Nothing here sends signals or touches git;
the watcher does, and writes each decision as a note line in ``refs/notes/logist/sentinel``.

Triggers (each starts the ladder)
    ``max_step_time``        the step has run ``max_step_seconds`` (off by default)
    ``waiting_input_stuck``  the agent asked a question (a ``waiting_input`` signal among its
                             last output: at most WAITING_WINDOW s before its last output),
                             then printed nothing and changed no file for
                             ``waiting_input_seconds`` (default min(silence_seconds, 30)):
                             nobody will answer, stdin is not a terminal
    ``no_progress``          no output for ``silence_seconds`` AND no file change in the
                             worktree for ``no_file_change_seconds`` AND the process group
                             used less than ``cpu_idle_fraction`` of a CPU over the last
                             ``cpu_idle_seconds`` (the two default to ``silence_seconds``;
                             unknown CPU counts as idle)
    ``silence`` (no ladder)  no output for ``silence_seconds`` but files or CPU still move:
                             one note per silent stretch, nothing more

Ladder: ``note`` (at once) -> ``interrupt`` (SIGINT, at the next observation) ->
``terminate`` (SIGTERM, ``interrupt_grace_seconds`` later) -> ``kill`` (SIGKILL to the process
group, ``terminate_grace_seconds`` later). Output after a signal does not stop the ladder (an
interrupted CLI prints "Interrupted" and waits again); a file change in the worktree after the
ladder started does (real work resumed), except for ``max_step_time``.

At most ``max_interventions_per_hour`` ladders start per rolling hour; past the cap the sentinel
notes it once and leaves the agent alone.
"""

from __future__ import annotations

import os
import signal as _signal
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from logist.core.errors import ConfigError
from logist.core.procs import pid_alive
from logist.runtimes.base import group_alive  # the one check (re-exported for the watcher)

__all__ = ["ACTIONS", "TRIGGERS", "Decision", "Sentinel", "SentinelConfig",
           "clock_ticks_per_second", "group_alive", "newest_mtime", "pid_alive",
           "process_group_cpu_ticks"]

ACTIONS = ("note", "interrupt", "terminate", "kill")
TRIGGERS = ("silence", "no_progress", "max_step_time", "waiting_input_stuck")
WAITING_WINDOW = 10.0  # a question must be among the output of the last 10 s to count
_SIGNALS = {"interrupt": _signal.SIGINT, "terminate": _signal.SIGTERM, "kill": _signal.SIGKILL}


@dataclass(frozen=True)
class SentinelConfig:
    silence_seconds: float = 300.0
    no_file_change_seconds: float | None = None  # None: silence_seconds
    cpu_idle_seconds: float | None = None  # None: silence_seconds
    cpu_idle_fraction: float = 0.02  # below 2% of one CPU is idle
    waiting_input_seconds: float | None = None  # None: min(silence_seconds, 30)
    max_step_seconds: float | None = None  # None: no limit
    interrupt_grace_seconds: float = 15.0
    terminate_grace_seconds: float = 10.0
    max_interventions_per_hour: int = 4
    enabled: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError(f"sentinel.enabled must be true or false, not {value!r}")
                continue
            optional = "None" in str(f.type)
            if value is None:
                if not optional:
                    raise ConfigError(f"sentinel.{f.name} must be set (a number)")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"sentinel.{f.name} must be a number, not {value!r}",
                                  hint="fix [sentinel] in .logist/config.toml or the job file")
            if f.name == "max_interventions_per_hour":
                if not isinstance(value, int) or value < 0:
                    raise ConfigError(f"sentinel.{f.name} must be a whole number >= 0, not {value!r}")
                continue
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"sentinel.{f.name} must be a finite number, not {value!r}")
            if f.name == "cpu_idle_fraction":
                if not 0 <= value <= 1:
                    raise ConfigError(f"sentinel.cpu_idle_fraction must be between 0 and 1, not {value!r}")
                continue
            minimum_ok = value >= 0 if f.name.endswith("grace_seconds") else value > 0
            if not minimum_ok:
                raise ConfigError(f"sentinel.{f.name} must be "
                                  f"{'>= 0' if f.name.endswith('grace_seconds') else '> 0'}, "
                                  f"not {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> SentinelConfig:
        """Build from a ``[sentinel]`` table; unknown keys and bad values are ConfigError."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError("[sentinel] must be a table of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(f"unknown sentinel setting(s): {', '.join(unknown)}",
                              hint="known settings: " + ", ".join(sorted(known)))
        return cls(**data)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def file_window(self) -> float:
        return self.silence_seconds if self.no_file_change_seconds is None else self.no_file_change_seconds

    @property
    def cpu_window(self) -> float:
        return self.silence_seconds if self.cpu_idle_seconds is None else self.cpu_idle_seconds

    @property
    def waiting_window(self) -> float:
        if self.waiting_input_seconds is not None:
            return self.waiting_input_seconds
        return min(self.silence_seconds, 30.0)


@dataclass(frozen=True)
class Decision:
    t: float
    signal: str  # one of TRIGGERS
    action: str  # one of ACTIONS
    detail: str

    @property
    def signum(self) -> int | None:
        """The POSIX signal this rung sends to the process group (None for a note)."""
        return _SIGNALS.get(self.action)

    def to_dict(self) -> dict:
        from logist.git.notes import iso_utc
        return {"t": iso_utc(self.t), "signal": self.signal, "action": self.action,
                "detail": self.detail}

    def to_json(self) -> str:
        from logist.git.notes import json_line
        return json_line(self.to_dict())


class Sentinel:
    """Hang detection for one running step. Feed it observations in time order."""

    def __init__(self, config: SentinelConfig | None = None, started_at: float = 0.0, *,
                 ticks_per_second: float | None = None,
                 interventions: Iterable[float] = ()) -> None:
        self.config = config or SentinelConfig()
        self.started_at = float(started_at)
        self.hz = float(ticks_per_second or clock_ticks_per_second())
        self.interventions: list[float] = sorted(interventions)  # ladder start times
        self._cpu: deque[tuple[float, int]] = deque()
        self._ladder: dict | None = None
        self._silence_noted = False
        self._cap_noted = False
        self.stopped = False  # the kill rung was given

    @property
    def escalating(self) -> str | None:
        """The trigger of the ladder in progress, if any."""
        return self._ladder["signal"] if self._ladder else None

    def observe(self, now: float, *, output_at: float | None = None,
                files_changed_at: float | None = None, cpu_ticks: int | None = None,
                waiting_input_at: float | None = None) -> Decision | None:
        cfg = self.config
        if not cfg.enabled:
            return None
        last_output = max(self.started_at, output_at) if output_at is not None else self.started_at
        files_at = max(self.started_at, files_changed_at) if files_changed_at is not None \
            else self.started_at
        cpu_rate = self._cpu_rate(now, cpu_ticks)
        silent_for = now - last_output

        if self._ladder is not None:
            return self._climb(now, files_at)

        trigger, detail = self._evaluate(now, last_output, files_at, cpu_rate, waiting_input_at)
        if trigger is None:
            if silent_for < cfg.silence_seconds:
                self._silence_noted = False
                self._cap_noted = False
                return None
            if self._silence_noted:
                return None
            self._silence_noted = True
            return Decision(now, "silence", "note", f"no output for {silent_for:.0f}s, but still "
                            f"working: {self._progress_text(now, files_at, cpu_rate)}")
        recent = [t for t in self.interventions if now - t < 3600]
        if len(recent) >= cfg.max_interventions_per_hour:
            if self._cap_noted:
                return None
            self._cap_noted = True
            return Decision(now, trigger, "note",
                            f"{detail}; not intervening: {len(recent)} interventions in the last "
                            f"hour (max_interventions_per_hour = {cfg.max_interventions_per_hour})")
        self.interventions.append(now)
        self._ladder = {"signal": trigger, "rung": 0, "rung_at": now, "started_at": now,
                        "detail": detail}
        return Decision(now, trigger, "note", detail)

    # -- internals -------------------------------------------------------------------------

    def _climb(self, now: float, files_at: float) -> Decision | None:
        ladder = self._ladder
        assert ladder is not None
        rung = ladder["rung"]
        if rung >= len(ACTIONS) - 1:
            return None  # killed: nothing more to do
        if ladder["signal"] != "max_step_time" and files_at > ladder["started_at"]:
            self._ladder = None
            self._silence_noted = False
            return Decision(now, ladder["signal"], "note",
                            "files changed in the worktree: work resumed, escalation stopped")
        grace = (0.0, self.config.interrupt_grace_seconds,
                 self.config.terminate_grace_seconds)[rung]
        if now - ladder["rung_at"] < grace:
            return None
        ladder["rung"] = rung + 1
        ladder["rung_at"] = now
        action = ACTIONS[rung + 1]
        if action == "kill":
            self.stopped = True
        waited = "" if rung == 0 else f" after {now - ladder['started_at']:.0f}s of escalation"
        return Decision(now, ladder["signal"], action,
                        f"{ladder['detail']}; sending SIG{_signal_name(action)} to the process group{waited}")

    def _evaluate(self, now: float, last_output: float, files_at: float, cpu_rate: float | None,
                  waiting_input_at: float | None) -> tuple[str | None, str]:
        cfg = self.config
        elapsed = now - self.started_at
        silent_for = now - last_output
        if cfg.max_step_seconds is not None and elapsed >= cfg.max_step_seconds:
            return "max_step_time", (f"step running for {elapsed:.0f}s "
                                     f"(max_step_seconds = {cfg.max_step_seconds:g})")
        if waiting_input_at is not None and waiting_input_at >= last_output - WAITING_WINDOW \
                and silent_for >= cfg.waiting_window and files_at <= waiting_input_at:
            return "waiting_input_stuck", (f"asked for input and then silent for {silent_for:.0f}s "
                                           "with no file change: nobody will answer")
        idle = cpu_rate is None or cpu_rate < cfg.cpu_idle_fraction
        if silent_for >= cfg.silence_seconds and now - files_at >= cfg.file_window and idle:
            return "no_progress", (f"no output for {silent_for:.0f}s, "
                                   f"{self._progress_text(now, files_at, cpu_rate)}")
        return None, ""

    def _progress_text(self, now: float, files_at: float, cpu_rate: float | None) -> str:
        cpu = "CPU unknown" if cpu_rate is None else \
            f"CPU {cpu_rate * 100:.1f}% over {self.config.cpu_window:g}s"
        return f"last file change {now - files_at:.0f}s ago, {cpu}"

    def _cpu_rate(self, now: float, ticks: int | None) -> float | None:
        """CPU use of the process group (fraction of one CPU) over the cpu window, from the
        samples seen so far; None when the current sample is unknown."""
        if ticks is None:
            self._cpu.clear()
            return None
        samples = self._cpu
        samples.append((now, int(ticks)))
        window = self.config.cpu_window
        # keep exactly one sample at or before the window start
        while len(samples) >= 2 and samples[1][0] <= now - window:
            samples.popleft()
        base_t, base_ticks = samples[0]
        if now - base_t <= 0:
            return 0.0
        return max(0, ticks - base_ticks) / self.hz / (now - base_t)


def _signal_name(action: str) -> str:
    return {"interrupt": "INT", "terminate": "TERM", "kill": "KILL"}[action]


# -- samplers (Linux /proc; degrade to None elsewhere) --------------------------------------


def clock_ticks_per_second() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 100.0


def _proc_stat_fields(pid_dir: str, proc: str) -> list[str] | None:
    try:
        with open(f"{proc}/{pid_dir}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    end = raw.rfind(")")
    if end < 0:
        return None
    return raw[end + 2:].split()  # fields from 3 (state) on


def process_group_cpu_ticks(pgid: int, *, proc: str = "/proc") -> int | None:
    """utime + stime (clock ticks) summed over the live processes of process group ``pgid``;
    None if /proc is unavailable or no process of the group is left."""
    try:
        names = os.listdir(proc)
    except OSError:
        return None
    total = 0
    found = False
    want = str(pgid)
    for name in names:
        if not name.isdigit():
            continue
        f = _proc_stat_fields(name, proc)
        # f[0]=state f[1]=ppid f[2]=pgrp ... f[11]=utime f[12]=stime
        if not f or len(f) < 13 or f[2] != want or f[0] == "Z":
            continue
        found = True
        total += int(f[11]) + int(f[12])
    return total if found else None


def newest_mtime(root: str | os.PathLike, *, max_entries: int = 20000,
                 skip_dirs: Iterable[str] = (".git",)) -> float | None:
    """The newest mtime of the files and directories under ``root`` (not following symlinks,
    skipping ``skip_dirs`` by name), looking at no more than ``max_entries`` entries.

    Directory mtimes change when an entry is created, removed or renamed in them, so new files
    are seen even beyond the entry budget. None if ``root`` cannot be read.
    """
    skip = set(skip_dirs)
    try:
        newest = Path(root).stat().st_mtime
    except OSError:
        return None
    stack = [os.fspath(root)]
    seen = 0
    while stack and seen < max_entries:
        path = stack.pop()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    seen += 1
                    if seen > max_entries:
                        break
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_mtime > newest:
                        newest = st.st_mtime
                    if entry.is_dir(follow_symlinks=False) and entry.name not in skip:
                        stack.append(entry.path)
        except OSError:
            continue
    return newest
