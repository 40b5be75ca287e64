"""Bounded resources: a step's live log is cut to ``[limits] max_log_bytes`` (head, marker,
tail), the step says so, and the outcome printed last still counts (docs/cli.md#limits)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _core import create_from_toml, write
from conftest import git

from logist.core.logcap import enforce, read_log

CAP = 256 * 1024


def _config(repo: Path, cap: int = CAP) -> None:
    cfg = repo / ".logist" / "config.local.toml"
    cfg.write_text(f"[limits]\nmax_log_bytes = {cap}\n")


def test_a_noisy_step_keeps_its_log_under_the_cap(cli, monkeypatch):
    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")
    _config(cli.repo)
    # 24 MB of output (about 100x the cap), then the outcome line the command agent reads
    prog = ("import sys, json\nw = sys.stdout.write\nline = 'x' * 1023 + '\\n'\n"
            "w('FIRST-LINE\\n')\nfor i in range(24 * 1024):\n    w(line)\n"
            "w(json.dumps({'action': 'COMPLETED', 'summary': 'noisy but done'}) + '\\n')\n")
    write(cli.repo / "noisy.py", prog)
    argv = json.dumps([sys.executable, str(cli.repo / "noisy.py")])
    job = create_from_toml(cli, f'title = "Noisy"\n[[steps]]\nagent = "command"\ncommand = {argv}\n',
                           "--activate")
    cli.ok("job", "run", job)
    status = cli.ok("job", "status", job, "--json").json()
    assert status["state"] == "SUCCESS", status
    # the log file of the step, as the runner left it
    logs = list((cli.repo / ".git" / "logist").rglob("*.log"))
    step_logs = [p for p in logs if job in str(p)]
    assert step_logs, logs
    for p in step_logs:
        size = p.stat().st_size
        assert size <= CAP + 64 * 1024 + 4096, (p, size)  # the cap plus what came between two looks
        text = p.read_text(errors="replace")
        assert text.startswith("FIRST-LINE"), text[:40]
        assert "bytes of output cut here (limits.max_log_bytes = 262144)" in text
        assert "noisy but done" in text  # the tail is kept: the outcome line is the last
    body = git(cli.repo, "log", "-1", "--format=%B", f"logist/{job}")
    assert "cut to limits.max_log_bytes" in body, body
    # the note of the step (`job log`) is capped too, and says where it was cut
    out = cli.ok("job", "log", job, "--step", "1").out
    assert len(out.encode()) < 300 * 1024


def test_enforce_keeps_head_marker_and_tail(tmp_path):
    log = tmp_path / "step.log"
    with open(log, "ab", buffering=0) as agent:  # the agent's own O_APPEND descriptor
        agent.write(b"HEAD" + b"a" * 5000)
        state: dict[str, int] = {}
        assert not enforce(log, 8192, state)
        agent.write(b"b" * 20000 + b"TAIL1")
        assert enforce(log, 8192, state)
        assert log.stat().st_size <= 8192
        agent.write(b"c" * 20000 + b"TAIL2")  # the agent goes on writing after the cut
        assert enforce(log, 8192, state)
        data = log.read_bytes()
    assert data.startswith(b"HEAD") and data.endswith(b"TAIL2")
    assert data.count(b"bytes of output cut here") == 1
    assert len(data) <= 8192
    assert state["cut"] > 40000 - 8192


def test_read_log_is_bounded_whatever_the_file(tmp_path):
    log = tmp_path / "big.log"
    with open(log, "wb") as fh:
        fh.write(b"START")
        fh.seek(50 * 1024 * 1024)
        fh.write(b"END")
    text = read_log(log, 64 * 1024)
    assert text.startswith("START") and text.endswith("END")
    assert len(text) < 64 * 1024 and "bytes of output cut here" in text
    assert read_log(tmp_path / "missing.log", 1024) == ""


def test_a_fetched_note_over_the_cap_is_not_merged(net):
    """A hostile clone pushes a 5 MiB observer note; `logist fetch` in another clone keeps it in
    the remote-tracking notes ref, refuses to merge it (warning naming the ref and the size), and
    merges nothing from that ref; a small note on another ref still merges."""
    from _sharekit import lg

    job = lg(net.a, "job", "create", "--title", "Noted", "--step", "s").out.strip()
    tip = git(net.a, "rev-parse", f"logist/{job}")
    big = net.tmp / "big-note"
    big.write_bytes(b"x" * (5 * 1024 * 1024))
    git(net.a, "notes", "--ref", "refs/notes/logist/observer", "add", "-F", str(big), tip)
    git(net.a, "notes", "--ref", "refs/notes/logist/sentinel", "add", "-m", '{"ok": 1}', tip)
    lg(net.a, "push")
    b = net.clone("b")
    res = lg(b, "fetch", "--json")
    data = json.loads(res.out)
    assert any("refs/notes/remotes/origin/logist/observer" in r and "more than 4 MiB" in r
               for r in data["notes_refused"]), data
    assert "refs/notes/logist/sentinel" in data["notes_merged"], data
    assert git(b, "rev-parse", "-q", "--verify", "refs/notes/logist/observer", check=False) == ""
    # the fetched ref is still there to inspect; human output warns
    assert git(b, "rev-parse", "refs/notes/remotes/origin/logist/observer")
    res = lg(b, "fetch")
    assert "refused notes refs/notes/remotes/origin/logist/observer" in res.err, res.err
