"""Issue 6 end to end: the observer + sentinel side process next to real steps.

Real repositories, the real CLI (in process via ``logist.cli.main`` or as ``python -m logist``
subprocesses), real agent processes (the mock agent and real programs) and real git notes.
Thresholds are small (``silence_seconds = 1``, short grace periods) so a hung agent is stopped
in about a second; every wait polls against a deadline and every process started here is killed
in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _core import create_from_toml, trailers, worktree_status, write
from conftest import git, wait_for, wtdir

from logist.agents import mock_agent
from logist.engine.sentinel import group_alive, pid_alive

PY = json.dumps(sys.executable)
# The side process starts within a few tens of ms of the agent, so a 1 s CPU window includes
# the agent's own interpreter start (~30-60 ms of CPU: 3-6%); a hung agent is one below 20%.
FAST = ("[sentinel]\nsilence_seconds = 1\ninterrupt_grace_seconds = 0.5\n"
        "terminate_grace_seconds = 0.5\ncpu_idle_fraction = 0.2\n")
SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"


# ----------------------------------------------------------------------------- helpers

def job_text(title: str, mock: str = "", *, attempts: int = 1, sentinel: str = FAST,
             head: str = "", step: str | None = None) -> str:
    """A one-step job file: a [steps.mock] body, or ``step`` (the body of a [[steps]] table)."""
    text = f'title = "{title}"\nprompt = "the job"\n{head}\n[budget]\nmax_attempts = {attempts}\n'
    text += sentinel + "\n"
    if step is not None:
        return text + f"[[steps]]\n{step}\n"
    return text + f'[[steps]]\nprompt = "do it"\n[steps.mock]\n{mock}\n'


def command_step(code: str) -> str:
    return f'prompt = "run it"\nagent = "command"\ncommand = [{PY}, "-u", "-c", {json.dumps(code)}]'


def commits(repo: Path, job_id: str) -> list[tuple[str, dict[str, str]]]:
    """(commit, trailers) of the job's commits, oldest first."""
    oids = git(repo, "rev-list", "--reverse", f"logist/{job_id}", "--not", "main").split()
    return [(c, trailers(repo, c)) for c in oids]


def executing_commits(repo: Path, job_id: str) -> list[str]:
    return [c for c, t in commits(repo, job_id) if t.get("Logist-To") == "EXECUTING"]


def states(repo: Path, job_id: str) -> list[str]:
    return [t["Logist-To"] for _c, t in commits(repo, job_id)]


def notes(repo: Path, kind: str, commit: str) -> list[dict]:
    """The JSON lines of ``git notes --ref=logist/<kind> show <commit>`` (plain git)."""
    out = git(repo, "notes", f"--ref=logist/{kind}", "show", commit, check=False)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def signals(repo: Path, kind: str, commit: str) -> list[str]:
    return [n["signal"] for n in notes(repo, kind, commit)]


def group_exists(pgid: int) -> bool:
    """True while any process (a zombie too) is in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_dir(repo: Path, job_id: str) -> Path:
    return repo / ".git" / "logist" / "run" / job_id


def agent_info(repo: Path, job_id: str) -> dict:
    try:
        return json.loads((run_dir(repo, job_id) / "agent.json").read_text())
    except (OSError, ValueError):
        return {}


def start_runner(repo: Path, *args: str) -> subprocess.Popen:
    """`python -m logist job run ...` in its own session (killed as a group by ``stop``)."""
    return subprocess.Popen([sys.executable, "-m", "logist", "-C", str(repo), "job", "run", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop(proc: subprocess.Popen, *pgids: int) -> None:
    """Kill what a test started (the runner's session and any agent group), ignoring the gone."""
    for pgid in (proc.pid, *pgids):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        pass


def expected_exit(cli, job_id: str) -> int:
    """What `job run` exits with for where the job rests (docs/exit-codes.md)."""
    state = cli.ok("job", "status", job_id, "--json").json()["state"]
    return {"SUCCESS": 0, "APPROVAL_REQUIRED": 5}.get(state, 6)


def run_to_rest(cli, text: str) -> tuple[str, dict]:
    job_id = create_from_toml(cli, text, "--activate")
    r = cli("job", "run", job_id)
    assert r.code == expected_exit(cli, job_id), r
    return job_id, cli.ok("job", "status", job_id, "--json").json()


# ----------------------------------------------------------------------------- every mock scenario

# scenario: (mock table body, resting state, {observer signal: text of the line it must note},
#            sentinel triggers)
SCENARIOS = {
    "rate_limit": ('scenario = "rate_limit"\ndelay_s = 0.3', "SUCCESS",
                   {"rate_limit": mock_agent.RATE_LIMIT}, set()),
    "api_error": ('scenario = "api_error"', "INTERVENTION_REQUIRED",
                  {"api_error": mock_agent.API_ERROR}, set()),
    "auth_error": ('scenario = "auth_error"', "INTERVENTION_REQUIRED",
                   {"auth_error": mock_agent.AUTH_ERROR}, set()),
    "context_full": ('scenario = "context_full"', "INTERVENTION_REQUIRED",
                     {"context_full": mock_agent.CONTEXT_FULL}, set()),
    "slow": ('scenario = "slow"\ndelay_s = 1.5', "SUCCESS", {}, set()),
    "waiting_input": ('scenario = "waiting_input"', "INTERVENTION_REQUIRED",
                      {"waiting_input": mock_agent.QUESTION}, {"waiting_input_stuck"}),
    "hang": ('scenario = "hang"', "INTERVENTION_REQUIRED", {}, {"no_progress"}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_mock_scenario_is_noted_and_lands_where_the_table_says(cli, name):
    mock, state, want_observer, want_sentinel = SCENARIOS[name]
    repo = cli.repo
    job_id, status = run_to_rest(cli, job_text(name, mock))
    assert status["state"] == state, status
    (executing,) = executing_commits(repo, job_id)
    observed = notes(repo, "observer", executing)
    for sig, text in want_observer.items():
        # the agent's own line, as a note line or counted in a later line's "repeats"
        assert any(n["signal"] == sig and n["text"] == text for n in observed), (sig, observed)
    if name in ("slow", "hang"):  # nothing in their output is a signal
        assert observed == [], observed
    sentinel = notes(repo, "sentinel", executing)
    assert {n["signal"] for n in sentinel} == want_sentinel, sentinel
    if want_sentinel:  # stopped by the sentinel: RECOVERING, then nothing left to try
        assert states(repo, job_id)[-3:] == ["EXECUTING", "RECOVERING", "INTERVENTION_REQUIRED"]
        assert [n["action"] for n in sentinel][:2] == ["note", "interrupt"]
        assert status["reason"].startswith("sentinel: ") and "max_attempts 1" in status["reason"]
        # what it printed before it was stopped is kept: a logs note on EXECUTING -> RECOVERING
        recovering = [c for c, t in commits(repo, job_id) if t.get("Logist-To") == "RECOVERING"]
        log_note = git(repo, "notes", "--ref=logist/logs", "show", recovering[-1], check=False)
        out = cli.ok("job", "log", job_id, "--step", "1").out
        assert out == (log_note + "\n" if log_note else "")  # the hung mock prints nothing
        if name == "waiting_input":
            assert mock_agent.QUESTION in out
    else:  # the agent ended by itself: harvested
        assert states(repo, job_id)[-2:] == ["HARVESTING", state]
    # plain git shows the notes (logist init set notes.displayRef)
    log = git(repo, "log", f"logist/{job_id}")
    assert ("Notes (logist/observer):" in log) == bool(observed)
    assert ("Notes (logist/sentinel):" in log) == bool(want_sentinel)
    # `job status` names the last signal
    if observed or want_sentinel:
        last = status["last_signal"]  # "signal: text" or "signal -> action: detail"
        assert last and last.split(":")[0].split(" ")[0] in set(want_observer) | want_sentinel, last
        if want_sentinel:
            assert last.startswith(f"{min(want_sentinel)} -> interrupt: "), last
    else:
        assert status["last_signal"] is None
    if state == "SUCCESS":  # finished: its worktree was given back
        assert not status["worktree_exists"]
    else:
        assert worktree_status(status["worktree"]) == ""


def local_config(repo: Path, text: str) -> None:
    """Per-machine settings (.logist/config.local.toml overrides .logist/config.toml)."""
    write(repo / ".logist" / "config.local.toml", text)


def test_note_lines_have_the_documented_shape(cli):
    repo = cli.repo
    job_id, _ = run_to_rest(cli, job_text("Shape", 'scenario = "rate_limit"\ndelay_s = 0.3'))
    (executing,) = executing_commits(repo, job_id)
    lines = notes(repo, "observer", executing)
    for n in lines:
        assert list(n)[:4] == ["t", "signal", "line", "text"] and n["t"].endswith("Z"), n
    # the three identical rate-limit lines (log lines 2-4) come within repeat_seconds (5 s):
    # noted once, the rest counted, so lines + repeats = matches
    limited = [n for n in lines if n["text"] == mock_agent.RATE_LIMIT]
    assert sum(1 + n.get("repeats", 0) for n in limited) == 3, lines
    assert {n["line"] for n in limited} <= {2, 3, 4}


def test_repeat_seconds_from_the_config_reaches_the_watcher(cli):
    repo = cli.repo
    local_config(repo, "[observer]\nrepeat_seconds = 0\n")
    job_id, _ = run_to_rest(cli, job_text("Every line", 'scenario = "rate_limit"\ndelay_s = 0.3'))
    (executing,) = executing_commits(repo, job_id)
    limited = [n for n in notes(repo, "observer", executing) if n["text"] == mock_agent.RATE_LIMIT]
    assert [(n["line"], n.get("repeats", 0)) for n in limited] == [(2, 0), (3, 0), (4, 0)]


# ----------------------------------------------------------------------------- a real command agent

def test_command_agent_output_is_observed(cli):
    repo = cli.repo
    code = ("import sys, time\n"
            "print('calling the model')\n"
            f"print('HTTP 429 Too Many Requests for key {SECRET}')\n"
            "print('Traceback (most recent call last):')\n"
            "print('  ValueError: bad thing', file=sys.stderr)\n"
            "print('all good in the end')\n")
    job_id, status = run_to_rest(cli, job_text("Command", step=command_step(code)))
    assert status["state"] == "SUCCESS", status
    (executing,) = executing_commits(repo, job_id)
    lines = notes(repo, "observer", executing)
    assert lines[0]["signal"] == "rate_limit" and lines[0]["line"] == 2, lines
    assert SECRET not in json.dumps(lines) and "[REDACTED]" in lines[0]["text"]
    # the traceback and its error line: one note line, then the suppressed repeat at the end
    errors = [n for n in lines if n["signal"] == "error"]
    assert [(n["line"], n["text"]) for n in errors] == [
        (3, "Traceback (most recent call last):"), (4, "ValueError: bad thing")], lines
    assert {n["signal"] for n in lines} == {"rate_limit", "error"}
    assert notes(repo, "sentinel", executing) == []


def test_command_agent_that_asks_and_waits_is_stopped_with_its_children(cli):
    """A real shell that starts a child which ignores SIGINT (as background jobs of a
    non-interactive shell do) and then asks a question nobody answers: stopped, and nothing of
    its process group is left."""
    repo = cli.repo
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen(['/bin/sh', '-c', 'trap \"\" INT; sleep 60'])\n"
            "print('Press Enter to continue')\n"
            "time.sleep(60)\n")
    job_id = create_from_toml(cli, job_text("Asks", step=command_step(code)), "--activate")
    proc = start_runner(repo, job_id)
    pgid = None
    try:
        info = wait_for(lambda: agent_info(repo, job_id).get("pgid") and agent_info(repo, job_id),
                        10, "the agent to start")
        pgid = int(info["pgid"])
        wait_for(lambda: not group_alive(pgid), 1 + 2 + 2.5,
                 "the agent's whole process group to be gone")
        proc.wait(timeout=15)
        assert proc.returncode == expected_exit(cli, job_id) == 6, proc.stderr.read()
        # the orphaned child is reaped by init, not by us: give it a moment
        wait_for(lambda: not group_exists(pgid), 5, f"process group {pgid} to be reaped")
    finally:
        stop(proc, *([pgid] if pgid else []))
    (executing,) = executing_commits(repo, job_id)
    assert "waiting_input" in signals(repo, "observer", executing)
    ladder = notes(repo, "sentinel", executing)
    assert {n["signal"] for n in ladder} == {"waiting_input_stuck"}
    # SIGINT stopped the agent; its child that ignores SIGINT was ended after it
    assert [n["action"] for n in ladder] == ["note", "interrupt", "terminate"], ladder
    assert "processes of its group" in ladder[-1]["detail"]
    assert states(repo, job_id)[-2:] == ["RECOVERING", "INTERVENTION_REQUIRED"]


# ----------------------------------------------------------------------------- hang: latency, group, attempts

def test_a_silent_agent_is_stopped_within_the_threshold_and_its_group_is_gone(cli):
    repo = cli.repo
    job_id = create_from_toml(cli, job_text("Hang", 'scenario = "hang"'), "--activate")
    proc = start_runner(repo, job_id)
    pgid = None
    try:
        info = wait_for(lambda: agent_info(repo, job_id).get("pgid") and agent_info(repo, job_id),
                        10, "the agent to start")
        pgid = int(info["pgid"])
        log = Path(info["log"])
        wait_for(lambda: not group_alive(pgid), 10, "the hung agent's group to be gone", poll=0.01)
        gone_at = time.time()
        # from the agent's last output (its log's mtime: it printed nothing) to nothing left
        assert gone_at - log.stat().st_mtime <= 1 + 2, gone_at - log.stat().st_mtime
        proc.wait(timeout=15)
        assert proc.returncode == expected_exit(cli, job_id), proc.stderr.read()
        with pytest.raises(ProcessLookupError):  # reaped by the runner: not even a zombie
            os.killpg(pgid, 0)
        assert not Path(f"/proc/{info['pid']}").exists()
    finally:
        stop(proc, *([pgid] if pgid else []))
    status = cli.ok("job", "status", job_id, "--json").json()
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert states(repo, job_id)[-3:] == ["EXECUTING", "RECOVERING", "INTERVENTION_REQUIRED"]
    (executing,) = executing_commits(repo, job_id)
    verdict_rung = notes(repo, "sentinel", executing)
    assert [(n["signal"], n["action"]) for n in verdict_rung][:2] == [("no_progress", "note"),
                                                                      ("no_progress", "interrupt")]
    assert not (run_dir(repo, job_id) / "verdict.json").exists()


def test_hang_with_attempts_left_is_executed_again(cli):
    repo = cli.repo
    job_id, status = run_to_rest(cli, job_text("Hang twice", 'scenario = "hang"', attempts=2))
    assert status["state"] == "INTERVENTION_REQUIRED" and "max_attempts 2" in status["reason"]
    assert states(repo, job_id) == ["PENDING", "PROVISIONING", "EXECUTING", "RECOVERING",
                                    "EXECUTING", "RECOVERING", "INTERVENTION_REQUIRED"]
    first, second = executing_commits(repo, job_id)
    record = json.loads(git(repo, "show", f"{second}:.logist/jobs/{job_id}/manifest.json"))
    assert record["attempt"] == 2 and record["steps"][0]["attempt"] == 2
    assert "attempt 2" in git(repo, "log", "-1", "--format=%B", second)
    for executing in (first, second):  # each attempt was watched and stopped on its own
        assert [n["action"] for n in notes(repo, "sentinel", executing)][:2] == ["note", "interrupt"]
    assert status["attempt"] == 2


def test_an_agent_ignoring_int_and_term_climbs_the_whole_ladder(cli):
    repo = cli.repo
    job_id, status = run_to_rest(cli, job_text(
        "Stubborn", 'scenario = "hang"\nignore_signals = ["INT", "TERM"]'))
    assert status["state"] == "INTERVENTION_REQUIRED"
    (executing,) = executing_commits(repo, job_id)
    assert [n["action"] for n in notes(repo, "sentinel", executing)] == [
        "note", "interrupt", "terminate", "kill"]
    info = agent_info(repo, job_id)
    assert not group_alive(int(info["pgid"]))
    assert "Notes (logist/sentinel):" in git(repo, "log", "-1", executing)


# ----------------------------------------------------------------------------- status, history, log

def test_status_history_and_log_show_what_happened(cli):
    repo = cli.repo
    mock = (f'scenario = "rate_limit"\ndelay_s = 0.3\n'
            f'output = ["using {SECRET} now", "an ordinary line"]')
    job_id, status = run_to_rest(cli, job_text("Observed", mock))
    assert status["state"] == "SUCCESS"
    assert status["last_signal"].startswith("rate_limit")
    text = cli.ok("job", "status", job_id).out
    assert "last signal" in text and "rate_limit" in text
    # history --notes --json: the notes come right after the EXECUTING transition they belong to
    items = cli.ok("job", "history", job_id, "--notes", "--json").json()
    kinds = [(i.get("event"), i.get("to") or i.get("signal")) for i in items]
    at = kinds.index(("transition", "EXECUTING"))
    assert kinds[at + 1] == ("notes", "rate_limit"), kinds
    assert kinds[-2:] == [("transition", "HARVESTING"), ("transition", "SUCCESS")]
    assert all(i["ref"] == "observer" for i in items if i.get("event") == "notes")
    plain = cli.ok("job", "history", job_id, "--notes").out
    assert "rate_limit" in plain or "observer" in plain
    # job log --step 1: the harvested output from refs/notes/logist/logs, redacted
    out = cli.ok("job", "log", job_id, "--step", "1").out
    assert "an ordinary line" in out and "429" in out and SECRET not in out and "[REDACTED]" in out
    harvest = [c for c, t in commits(repo, job_id) if t.get("Logist-From") == "HARVESTING"][-1]
    assert out == git(repo, "notes", "--ref=logist/logs", "show", harvest) + "\n"


def test_user_patterns_from_the_job_file_produce_their_signal(cli):
    repo = cli.repo
    head = ('[observer.patterns]\ndeploy = "DEPLOY-[0-9]+ started"\n'
            'rate_limit = "slow down, cowboy"\n')
    mock = 'output = ["DEPLOY-42 started", "slow down, cowboy", "HTTP 429 rate limit"]'
    job_id, status = run_to_rest(cli, job_text("Patterns", mock, head=head))
    assert status["state"] == "SUCCESS"
    (executing,) = executing_commits(repo, job_id)
    found = {n["signal"]: n for n in notes(repo, "observer", executing)}
    assert found["deploy"]["text"] == "DEPLOY-42 started"
    # the job's rate_limit replaced the built-in: only its own line matches now
    assert found["rate_limit"]["text"] == "slow down, cowboy"


def test_config_patterns_and_sentinel_apply_to_every_job(cli):
    repo = cli.repo
    local_config(repo, '[observer.patterns]\nbuild_failed = "BUILD FAILED"\n' + FAST)
    code = "import time\nprint('BUILD FAILED: 3 errors')\ntime.sleep(60)\n"
    job_id, status = run_to_rest(cli, job_text("Config", step=command_step(code), sentinel=""))
    assert status["state"] == "INTERVENTION_REQUIRED", status
    (executing,) = executing_commits(repo, job_id)
    # (then the SIGINT's KeyboardInterrupt traceback is an `error`)
    assert signals(repo, "observer", executing)[0] == "build_failed"
    assert signals(repo, "sentinel", executing)[:2] == ["no_progress", "no_progress"]
    assert status["seconds"] < 10


@pytest.mark.parametrize("patterns, words", [
    ('broken = "unclosed (group"', ["broken", "regex"]),
    ('empty = ".*"', ["empty", "every line"]),
    ('"bad name!" = "x"', ["bad name!"]),
])
def test_invalid_pattern_is_a_clear_error_at_create_and_nothing_is_created(cli, patterns, words):
    repo = cli.repo
    before = git(repo, "for-each-ref")
    path = write(repo.parent / "jobfiles" / "bad.toml",
                 job_text("Bad patterns", "", head=f"[observer.patterns]\n{patterns}\n"))
    r = cli("job", "create", "--file", path)
    assert r.code != 0
    message = r.out + r.err
    assert "Traceback" not in message
    for w in words:
        assert w in message, message
    assert git(repo, "for-each-ref") == before
    assert not wtdir(repo).exists() or \
        not any(wtdir(repo).iterdir())


def test_invalid_sentinel_setting_is_a_clear_error_at_create(cli):
    repo = cli.repo
    before = git(repo, "for-each-ref")
    path = write(repo.parent / "jobfiles" / "bad.toml",
                 job_text("Bad sentinel", "", sentinel="[sentinel]\nsilence_secs = 1\n"))
    r = cli("job", "create", "--file", path)
    assert r.code != 0 and "silence_secs" in r.out + r.err and "Traceback" not in r.out + r.err
    assert git(repo, "for-each-ref") == before


# ----------------------------------------------------------------------------- crashes and concurrency

def test_a_killed_watcher_does_not_affect_the_step(cli):
    repo = cli.repo
    job_id = create_from_toml(cli, job_text("Watcher dies", 'scenario = "slow"\ndelay_s = 2.5'),
                              "--activate")
    proc = start_runner(repo, job_id)
    pgid = None
    try:
        info = wait_for(lambda: agent_info(repo, job_id).get("watcher_pid") and agent_info(repo, job_id),
                        10, "the watcher to start")
        pgid = int(info["pgid"])
        watcher = int(info["watcher_pid"])
        os.kill(watcher, signal.SIGKILL)
        wait_for(lambda: not pid_alive(watcher), 5, "the watcher to die")
        assert pid_alive(int(info["pid"]))  # the agent goes on
        proc.wait(timeout=15)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        stop(proc, *([pgid] if pgid else []))
    status = cli.ok("job", "status", job_id, "--json").json()
    assert status["state"] == "SUCCESS", status
    assert states(repo, job_id)[-2:] == ["HARVESTING", "SUCCESS"]


def test_parallel_jobs_lose_no_notes(cli):
    repo = cli.repo
    out = ["HTTP 429 rate limit", "Error: something broke", "Do you want to proceed? (y/n)",
           "please review the change", "503 Service Unavailable", "marker-{i} seen"]
    ids = []
    for i in range(4):
        head = f'[observer.patterns]\nmarker_{i} = "marker-{i} seen"\n'
        mock = f"output = {json.dumps([o.format(i=i) for o in out])}"
        ids.append(create_from_toml(cli, job_text(f"Parallel {i}", mock, head=head),
                                    "--activate", name=f"p{i}.toml"))
    proc = start_runner(repo, "--parallel", "4")
    try:
        proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        stop(proc)
    for i, job_id in enumerate(ids):
        assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"
        (executing,) = executing_commits(repo, job_id)
        got = signals(repo, "observer", executing)
        assert set(got) >= {"rate_limit", "error", "waiting_input", "approval_requested",
                            "api_error", f"marker_{i}"}, (job_id, got)
        harvest = [c for c, t in commits(repo, job_id) if t.get("Logist-From") == "HARVESTING"][-1]
        assert f"marker-{i} seen" in git(repo, "notes", "--ref=logist/logs", "show", harvest)
        (watcher_log,) = run_dir(repo, job_id).glob("*.watcher.log")
        assert "could not write" not in watcher_log.read_text()  # no write gave up, either


# ----------------------------------------------------------------------------- logist watch

def test_logist_watch_in_the_foreground(cli, tmp_path):
    """`logist watch` refuses a job with no running step and a second watcher; with
    --replace it takes over from the side process, prints what it notes, and does not note
    again what the side process already noted."""
    repo = cli.repo
    go = tmp_path / "go"
    code = ("import os, time\n"
            "print('HTTP 429 Too Many Requests')\n"
            "deadline = time.time() + 20\n"
            f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
            "    time.sleep(0.05)\n"
            "print('Error: the build broke')\n"
            "time.sleep(0.3)\n")
    job_id = create_from_toml(cli, job_text("Watched", step=command_step(code),
                                            sentinel="[sentinel]\nsilence_seconds = 60\n"),
                              "--activate")
    r = cli("watch", job_id)
    assert r.code != 0 and "no running step" in r.out + r.err
    proc = start_runner(repo, job_id)
    pgid = None
    watch = None
    try:
        info = wait_for(lambda: agent_info(repo, job_id).get("watcher_pid") and agent_info(repo, job_id),
                        10, "the step and its watcher to start")
        pgid = int(info["pgid"])
        executing = info["commit"]
        wait_for(lambda: signals(repo, "observer", executing) == ["rate_limit"], 10,
                 "the side process to note the rate limit")
        busy = subprocess.run([sys.executable, "-m", "logist", "-C", str(repo), "watch", job_id],
                              capture_output=True, text=True, timeout=15)
        assert busy.returncode != 0 and "already has a watcher" in busy.stdout + busy.stderr
        watch = subprocess.Popen([sys.executable, "-m", "logist", "-C", str(repo), "watch", job_id,
                                  "--replace"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
        assert watch.stdout.readline().startswith(f"watching {job_id}")
        wait_for(lambda: not pid_alive(int(info["watcher_pid"])), 5, "the side process to stop")
        go.write_text("go")
        out, err = watch.communicate(timeout=15)
        assert watch.returncode == 0, err
        assert "observer: error" in out and "the build broke" in out and "agent gone" in out, out
        assert "rate_limit" not in out  # already noted by the side process
        proc.wait(timeout=15)
    finally:
        if watch is not None:
            stop(watch)
        stop(proc, *([pgid] if pgid else []))
    assert signals(repo, "observer", executing) == ["rate_limit", "error"]
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"


# ----------------------------------------------------------------------------- recovery

def test_recovery_restarts_the_watcher_of_a_running_agent(cli):
    """The runner and the watcher are killed while the agent runs; `job run` re-attaches to the
    agent and starts a new watcher, which stops the (now silent) agent."""
    repo = cli.repo
    code = "import time\nprint('working')\ntime.sleep(60)\n"
    slow_ladder = FAST.replace("silence_seconds = 1", "silence_seconds = 3")
    job_id = create_from_toml(cli, job_text("Orphaned", step=command_step(code),
                                            sentinel=slow_ladder), "--activate")
    proc = start_runner(repo, job_id)
    pgid = None
    again = None
    try:
        info = wait_for(lambda: agent_info(repo, job_id).get("watcher_pid") and agent_info(repo, job_id),
                        10, "the step and its watcher to start")
        pgid = int(info["pgid"])
        os.kill(int(info["watcher_pid"]), signal.SIGKILL)
        stop(proc)  # the runner dies too: nobody watches the agent now
        assert group_alive(pgid)
        again = start_runner(repo, job_id)
        _, err = again.communicate(timeout=20)
        assert again.returncode == expected_exit(cli, job_id), err
        assert "re-attaching" in err and "watcher restarted" in err, err
        assert not group_alive(pgid)
    finally:
        for p in (again, proc):
            if p is not None:
                stop(p)
        if pgid:
            stop(proc, pgid)
    assert states(repo, job_id)[-3:] == ["EXECUTING", "RECOVERING", "INTERVENTION_REQUIRED"]
    (executing,) = executing_commits(repo, job_id)
    assert [n["action"] for n in notes(repo, "sentinel", executing)][:2] == ["note", "interrupt"]
