"""Sentinel decision logic with a fake clock: each trigger, each rung, the hourly cap, config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import wait_for

from logist.core.errors import ConfigError
from logist.engine.sentinel import (
    Sentinel,
    SentinelConfig,
    group_alive,
    newest_mtime,
    pid_alive,
    process_group_cpu_ticks,
)

HZ = 100  # fake clock ticks per second


def cfg(**kw) -> SentinelConfig:
    base = dict(silence_seconds=60, interrupt_grace_seconds=10, terminate_grace_seconds=5)
    base.update(kw)
    return SentinelConfig(**base)


def run(sentinel: Sentinel, start: float, end: float, step: float = 1.0, **evidence):
    """Observe every `step` seconds from start to end; (time, signal, action) of each decision."""
    out = []
    t = start
    while t <= end + 1e-9:
        ev = {k: (v(t) if callable(v) else v) for k, v in evidence.items()}
        d = sentinel.observe(t, **ev)
        if d is not None:
            out.append((t, d.signal, d.action))
        t += step
    return out


def test_quiet_but_busy_agent_gets_one_silence_note_only():
    s = Sentinel(cfg(), started_at=0, ticks_per_second=HZ)
    # no output, but CPU busy (50% of a CPU)
    got = run(s, 0, 300, output_at=0.0, cpu_ticks=lambda t: int(t * HZ / 2))
    assert got == [(60, "silence", "note")]
    # files changing, CPU idle
    s = Sentinel(cfg(), started_at=0, ticks_per_second=HZ)
    got = run(s, 0, 300, output_at=0.0, files_changed_at=lambda t: t - 5, cpu_ticks=0)
    assert got == [(60, "silence", "note")]


def test_no_progress_climbs_the_whole_ladder():
    s = Sentinel(cfg(), started_at=0, ticks_per_second=HZ)
    got = run(s, 0, 100, output_at=5.0, cpu_ticks=123)
    assert got == [(65, "no_progress", "note"), (66, "no_progress", "interrupt"),
                   (76, "no_progress", "terminate"), (81, "no_progress", "kill")]
    assert s.stopped


def test_each_rung_carries_its_signal_and_a_detail():
    s = Sentinel(cfg(interrupt_grace_seconds=0, terminate_grace_seconds=0), 0, ticks_per_second=HZ)
    decisions = []
    for _ in range(6):
        d = s.observe(100.0, output_at=0.0, cpu_ticks=0)
        if d:
            decisions.append(d)
    assert [(d.action, d.signum) for d in decisions] == [
        ("note", None), ("interrupt", signal.SIGINT), ("terminate", signal.SIGTERM),
        ("kill", signal.SIGKILL)]
    obj = json.loads(decisions[1].to_json())
    assert list(obj) == ["t", "signal", "action", "detail"]
    assert obj["signal"] == "no_progress" and "no output for 100s" in obj["detail"]
    assert "SIGINT" in obj["detail"]


def test_cpu_use_or_file_changes_block_no_progress():
    # CPU at 1% (below the 2% idle threshold) counts as idle
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    assert run(s, 0, 61, output_at=0.0, cpu_ticks=lambda t: int(t))[0][1:] == ("no_progress", "note")
    # CPU at 10% keeps it alive
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    assert [g[1] for g in run(s, 0, 200, output_at=0.0, cpu_ticks=lambda t: int(t * 10))] == ["silence"]
    # a file changed 30 s ago (no_file_change_seconds defaults to silence_seconds)
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    assert run(s, 61, 61, output_at=0.0, files_changed_at=31.0, cpu_ticks=0) == [(61, "silence", "note")]
    # separate thresholds
    s = Sentinel(cfg(no_file_change_seconds=20), 0, ticks_per_second=HZ)
    assert run(s, 61, 61, output_at=0.0, files_changed_at=31.0, cpu_ticks=0)[0][1] == "no_progress"


def test_unknown_cpu_counts_as_idle():
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    assert run(s, 60, 60, output_at=0.0, cpu_ticks=None) == [(60, "no_progress", "note")]


def test_output_resets_silence():
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    # output every 30 s: never silent for 60 s
    assert run(s, 0, 600, output_at=lambda t: t - (t % 30), cpu_ticks=0) == []


def test_waiting_input_followed_by_silence_is_stuck():
    c = cfg(silence_seconds=300)
    assert c.waiting_window == 30  # min(silence_seconds, 30)
    s = Sentinel(c, 0, ticks_per_second=HZ)
    # question printed at t=100 (output ends there), CPU busy (a spinner): still stuck at 130
    got = run(s, 100, 140, output_at=100.0, waiting_input_at=100.0,
              cpu_ticks=lambda t: int(t * HZ))
    assert got[:2] == [(130, "waiting_input_stuck", "note"), (131, "waiting_input_stuck", "interrupt")]


def test_waiting_input_that_got_answered_or_is_old_is_not_stuck():
    # output continued long after the question: not the question we are waiting on
    s = Sentinel(cfg(silence_seconds=300), 0, ticks_per_second=HZ)
    assert run(s, 200, 240, output_at=200.0, waiting_input_at=100.0, cpu_ticks=lambda t: int(t * HZ)) == []
    # a file changed after the question: the agent went on working
    s = Sentinel(cfg(silence_seconds=300), 0, ticks_per_second=HZ)
    assert run(s, 100, 140, output_at=100.0, waiting_input_at=100.0, files_changed_at=110.0,
               cpu_ticks=lambda t: int(t * HZ)) == []
    # the question is among the last lines of output (a few option lines followed it)
    s = Sentinel(cfg(silence_seconds=300), 0, ticks_per_second=HZ)
    assert run(s, 135, 135, output_at=103.0, waiting_input_at=100.0, cpu_ticks=0)[0][1] == "waiting_input_stuck"
    # short silence settings: waiting window follows silence_seconds
    assert cfg(silence_seconds=1).waiting_window == 1
    assert cfg(waiting_input_seconds=5).waiting_window == 5


def test_max_step_time_ignores_activity():
    s = Sentinel(cfg(max_step_seconds=100), started_at=1000, ticks_per_second=HZ)
    got = run(s, 1000, 1200, output_at=lambda t: t, files_changed_at=lambda t: t,
              cpu_ticks=lambda t: int(t * HZ))
    assert got == [(1100, "max_step_time", "note"), (1101, "max_step_time", "interrupt"),
                   (1111, "max_step_time", "terminate"), (1116, "max_step_time", "kill")]


def test_file_change_after_the_ladder_started_stops_it():
    s = Sentinel(cfg(), 0, ticks_per_second=HZ)
    assert run(s, 60, 61, output_at=0.0, cpu_ticks=0) == [(60, "no_progress", "note"),
                                                          (61, "no_progress", "interrupt")]
    # the interrupt made it print something: that alone does not stop the ladder
    assert run(s, 62, 71, output_at=62.0, cpu_ticks=0) == [(71, "no_progress", "terminate")]
    # but a file change does (work resumed)
    d = s.observe(72, output_at=62.0, files_changed_at=72.0, cpu_ticks=0)
    assert (d.signal, d.action) == ("no_progress", "note") and "resumed" in d.detail
    assert s.escalating is None and not s.stopped


def test_interventions_per_hour_are_capped():
    s = Sentinel(cfg(max_interventions_per_hour=2, interrupt_grace_seconds=100), 0,
                 ticks_per_second=HZ)
    ladders = 0
    notes_capped = 0
    t = 0.0
    files = 0.0
    for _episode in range(4):
        t += 61
        while True:
            d = s.observe(t, output_at=t - 61, files_changed_at=files, cpu_ticks=0)
            if d is None:
                break
            if d.action == "interrupt":
                ladders += 1
            if "not intervening" in d.detail:
                notes_capped += 1
        # the agent resumed after each interrupt (a file changed), then hung again
        t += 1
        files = t
        s.observe(t, output_at=t, files_changed_at=files, cpu_ticks=0)
        assert s.escalating is None
    assert ladders == 2 and notes_capped == 2  # one "not intervening" note per hung stretch
    # an hour later the cap allows a new intervention
    s2 = Sentinel(cfg(max_interventions_per_hour=1), 0, ticks_per_second=HZ,
                  interventions=[-3000.0])
    assert s2.observe(61, output_at=0.0, cpu_ticks=0).detail.find("not intervening") >= 0
    s3 = Sentinel(cfg(max_interventions_per_hour=1), 0, ticks_per_second=HZ,
                  interventions=[-3600.0])
    assert "not intervening" not in s3.observe(61, output_at=0.0, cpu_ticks=0).detail


def test_disabled_sentinel_never_decides():
    s = Sentinel(cfg(enabled=False, max_step_seconds=1), 0, ticks_per_second=HZ)
    assert run(s, 0, 1000, step=10, output_at=0.0, cpu_ticks=0) == []


def test_config_defaults_and_validation():
    c = SentinelConfig.from_dict(None)
    assert c.silence_seconds == 300 and c.file_window == 300 and c.cpu_window == 300
    assert c.max_step_seconds is None and c.max_interventions_per_hour == 4
    c = SentinelConfig.from_dict({"silence_seconds": 10, "max_step_seconds": 3600,
                                  "cpu_idle_seconds": 20, "interrupt_grace_seconds": 0})
    assert c.cpu_window == 20 and c.file_window == 10
    assert SentinelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown sentinel setting.*silence_secs") as exc:
        SentinelConfig.from_dict({"silence_secs": 10})
    assert "silence_seconds" in str(exc.value)  # the hint lists the known keys
    for bad in ({"silence_seconds": "300"}, {"silence_seconds": True}, {"silence_seconds": 0},
                {"silence_seconds": -5}, {"silence_seconds": float("nan")},
                {"max_interventions_per_hour": 1.5}, {"cpu_idle_fraction": 2},
                {"interrupt_grace_seconds": -1}, {"enabled": "yes"}, {"silence_seconds": None}):
        with pytest.raises(ConfigError, match="sentinel"):
            SentinelConfig.from_dict(bad)
    with pytest.raises(ConfigError):
        SentinelConfig.from_dict(["silence_seconds"])


def test_samplers_on_a_real_process_group(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.time() + 30\nwhile time.time() < end: pass"],
                            start_new_session=True)
    try:
        first = process_group_cpu_ticks(busy.pid)
        assert first is not None
        wait_for(lambda: (process_group_cpu_ticks(busy.pid) or 0) - first >= 10, 10,
                 "a busy loop to accumulate CPU ticks", poll=0.1)
        assert pid_alive(busy.pid) and group_alive(busy.pid)
    finally:
        os.killpg(busy.pid, signal.SIGKILL)
        busy.wait(timeout=10)
    assert not pid_alive(busy.pid)
    assert not group_alive(busy.pid)
    assert process_group_cpu_ticks(busy.pid) is None


def test_zombie_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    wait_for(lambda: not pid_alive(child.pid), 10, "the child to exit")  # not reaped yet: a zombie
    child.wait(timeout=10)


def test_newest_mtime_skips_git_and_is_bounded(tmp_path):
    root = tmp_path / "wt"
    (root / "src" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    old = time.time() - 1000
    for p in [root / "src" / "a.py", root / "src" / "deep" / "b.py"]:
        p.write_text("x")
        os.utime(p, (old, old))
    for d in [root / "src" / "deep", root / "src", root]:
        os.utime(d, (old, old))
    (root / ".git" / "index").write_text("new")
    os.utime(root / ".git", (old, old))
    assert newest_mtime(root) == pytest.approx(old, abs=1)
    os.utime(root / "src" / "deep" / "b.py", (old + 500, old + 500))
    assert newest_mtime(root) == pytest.approx(old + 500, abs=1)
    assert newest_mtime(root, max_entries=1) is not None
    assert newest_mtime(tmp_path / "missing") is None
