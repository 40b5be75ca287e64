"""What a hostile agent or remote says never leaks a secret or drives a terminal.

An agent ends its step with an outcome whose summary, reason and evidence names hold an AWS key,
a GitHub token and terminal escape sequences (window title, clear screen, ``ESC[6n``, DCS, an
8-bit CSI, a bidi override). Checked with git itself: no object of the repository, nor of the
bare remote after ``logist push``, holds a secret; the commit messages and notes logist wrote
hold no raw control character (plain ``git log`` is safe); and every read command (text and
``--json``), also on the clone that fetched the job, prints the secrets masked and the control
characters escaped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _crashkit import create, init_project, logist, manifest
from _sharekit import lg
from conftest import git

AWS = "AKIA" + "Q" * 12 + "7XYZ"
GH = "ghp_" + "a1B2" * 9
ESCAPES = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1b[6n", "\x1bP+q544e\x1b\\", "\x9b31m", "\u202e"]
RAW = [e for e in ESCAPES] + ["\x1b", "\x07", "\x9b", "\u202e"]


def outcome_text() -> str:
    out = {"action": "STUCK", "summary": f"used {AWS} and {GH} " + "".join(ESCAPES),
           "reason": f"token={GH} {ESCAPES[0]}", "evidence_files": [f"keys/{AWS}.txt", "x\x1b[2J.txt"]}
    return "working " + ESCAPES[1] + f" key {AWS}\n```json\n" + json.dumps(out) + "\n```\n"


def hostile_job(repo: Path, tmp: Path) -> str:
    out = tmp / "outcome.txt"
    out.write_text(outcome_text())
    argv = [sys.executable, "-c", f"import sys; sys.stdout.write(open({str(out)!r}).read())"]
    toml = f'title = "leaky"\n[[steps]]\nname = "say"\nagent = "command"\ncommand = {json.dumps(argv)}\n'
    job = create(repo, toml)
    r = logist(repo, "job", "run", job)
    assert r.returncode == 6 and "Traceback" not in r.stderr, r.stderr  # 6: a person must look
    assert manifest(repo, job)["state"] == "INTERVENTION_REQUIRED"
    return job


def all_objects(git_dir: Path) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"],
                          capture_output=True, check=True).stdout


def assert_clean_text(text: str, what: str) -> None:
    assert AWS not in text and GH not in text, f"{what} leaks a secret: {text[:2000]!r}"
    for c in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert c not in text, f"{what} prints a raw {c!r}: {text[:2000]!r}"


@pytest.fixture
def project(repo):
    init_project(repo)
    return repo


def test_secrets_and_escapes_of_an_agent_stay_out(project, tmp_path):
    job = hostile_job(project, tmp_path)
    # every object logist wrote: records, history, commit messages, notes
    git(project, "gc", "-q", "--prune=now")  # drop objects of earlier attempts no ref holds
    blob = all_objects(project / ".git")
    assert AWS.encode() not in blob and GH.encode() not in blob
    log = subprocess.run(["git", "-C", str(project), "log", "--all", "--notes=*", "--format=%B%n%N"],
                         capture_output=True, text=True, check=True).stdout
    assert "[REDACTED]" in log
    assert_clean_text(log, "git log")
    # the escaped form is still there to read
    assert "\\x1b]0;pwned\\x07" in log or "\\u001b]0;pwned" in log
    m = manifest(project, job)
    assert "[REDACTED]" in m["steps"][0]["summary"]
    for args in (["job", "status", job], ["job", "show", job], ["job", "history", job], ["job", "list"],
                 ["job", "log", job], ["job", "status", job, "--json"], ["job", "show", job, "--json"],
                 ["job", "history", job, "--json"], ["job", "list", "--json"], ["job", "metrics", job]):
        r = logist(project, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert_clean_text(r.stdout + r.stderr, " ".join(args))
        if "--json" in args:
            json.loads(r.stdout)


def test_fetched_escapes_and_secrets_are_shown_escaped(net, tmp_path):
    job = hostile_job(net.a, tmp_path)
    # the attacker also writes raw escapes into the record by hand (bypassing logist's writer)
    m = manifest(net.a, job)
    m["title"] = "evil \x1b]0;title\x07\x1b[2J"
    m["reason"] = "\x9b6n " + AWS
    raw = json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    wt = Path(git(net.a, "worktree", "list", "--porcelain").split("worktree ")[-1].splitlines()[0])
    assert wt.name == job or (wt / ".logist" / "jobs" / job).exists()
    (wt / ".logist" / "jobs" / job / "manifest.json").write_text(raw)
    git(wt, "commit", "-qam", "forged record \x1b[2J")
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "fetch")
    for args in (["job", "list", "--remote", "origin"], ["job", "list", "--remote", "origin", "--json"]):
        r = logist(b, *args)
        assert "Traceback" not in r.stderr
        assert_clean_text(r.stdout + r.stderr, " ".join(args))
    # the notes logist pushed hold no raw control character
    notes = subprocess.run(["git", "-C", str(b), "log", "--notes=remotes/origin/logist/*", "--format=%N",
                            f"origin/logist/{job}"], capture_output=True, text=True).stdout
    assert_clean_text(notes, "fetched notes")


def test_pushed_data_holds_no_secret(net, tmp_path):
    hostile_job(net.a, tmp_path)
    lg(net.a, "push")
    blob = all_objects(net.remote)
    assert AWS.encode() not in blob and GH.encode() not in blob
    for c in (b"\x1b", b"\x07", b"\xc2\x9b"):
        out = subprocess.run(["git", "--git-dir", str(net.remote), "log", "--all", "--format=%B"],
                             capture_output=True, check=True).stdout
        assert c not in out


def test_a_fetched_note_with_raw_escapes_is_not_merged(net, tmp_path):
    job = hostile_job(net.a, tmp_path)
    head = git(net.a, "rev-parse", f"logist/{job}")
    git(net.a, "notes", "--ref=logist/observer", "add", "-f", "-m", "evil \x1b]0;pwned\x07\x1b[2J", head)
    lg(net.a, "push")
    b = net.clone("b")
    res = lg(b, "fetch", "--json").json()
    assert any("raw control" in r for r in res["notes_refused"]), res
    assert git(b, "config", "--get-all", "notes.displayRef")  # set by logist init
    # plain `git log` shows notes through notes.displayRef: the merged ones, all escaped
    log = subprocess.run(["git", "-C", str(b), "log", "--all", "--format=%B%n%N"],
                         capture_output=True, text=True, check=True).stdout
    assert "working \\x1b[2J key [REDACTED]" in log  # the step's log note, merged, escaped
    assert_clean_text(log.replace("[REDACTED]", ""), "git log in the clone that fetched")
