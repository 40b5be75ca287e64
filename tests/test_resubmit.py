"""`job resubmit` is a new attempt (docs/cli.md#logist-job-resubmit): the person's fix made in the
worktree is their own commit, the retry gets its own log, and the old attempt's error is not the
job's last signal any more."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _core import create_from_toml, trailers, write
from conftest import git, wait_for

PY = json.dumps(sys.executable)
PROG = ("import pathlib, sys\n"
        "if not pathlib.Path('fixed.txt').exists():\n"
        "    print('API Error: 529 overloaded, the service is unavailable'); sys.exit(1)\n"
        "pathlib.Path('built.txt').write_text('built')\n"
        "print('all good now')\n")


def test_resubmit_commits_the_persons_fix_and_starts_a_new_attempt(cli):
    repo = cli.repo
    jid = create_from_toml(cli, f'title = "Fix by hand"\n[[steps]]\nname = "build"\n'
                                f'command = [{PY}, "-c", {json.dumps(PROG)}]\n', "--activate")
    assert cli("job", "run", jid).code == 6
    failed_tip = git(repo, "rev-parse", f"logist/{jid}")
    st = cli.ok("job", "status", jid, "--json").json()
    assert st["state"] == "INTERVENTION_REQUIRED"
    # the observer noted the error on the first attempt's EXECUTING commit
    wait_for(lambda: cli.ok("job", "status", jid, "--json").json()["last_signal"], what="the observer's note")
    first_log = cli.ok("job", "log", jid).out
    assert "API Error" in first_log

    wt = Path(cli.ok("job", "path", jid).out.strip())
    write(wt / "fixed.txt", "fixed by a person\n")
    r = cli("job", "resubmit", jid, "--message", "added the missing file")
    assert r.code == 0, r
    commits = git(repo, "rev-list", "--reverse", f"{failed_tip}..logist/{jid}").split()
    assert len(commits) == 2
    person, transition = commits
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn", person) == "Test User <test@example.invalid>|Test User"
    assert trailers(repo, person)["Logist-Event"] == "resubmit"
    assert trailers(repo, person)["Logist-Job"] == jid
    assert git(repo, "diff", "--name-only", failed_tip, person) == "fixed.txt"
    assert trailers(repo, transition)["Logist-To"] == "PENDING"
    assert git(wt, "status", "--porcelain") == ""

    assert cli("job", "run", jid).code == 0
    # the harvest holds only the agent's work; the person's change stays theirs
    harvest = git(repo, "rev-parse", f"logist/{jid}")
    assert git(repo, "diff", "--name-only", transition, harvest, "--", ".", ":(exclude).logist") == "built.txt"
    # a log of its own: the retry's output only, and no old error as the last signal
    assert cli.ok("job", "log", jid).out.strip() == "all good now"
    logs = sorted(p.name for p in (repo / ".git/logist/run" / jid).glob("run1-step1-*.log")
                  if not p.name.endswith(".watcher.log"))
    assert logs == ["run1-step1-attempt1-2.log", "run1-step1-attempt1.log"], logs
    st = cli.ok("job", "status", jid, "--json").json()
    assert st["state"] == "SUCCESS" and st["last_signal"] is None, st


def test_resubmit_with_nothing_changed_makes_one_commit(cli):
    repo = cli.repo
    jid = create_from_toml(cli, f'title = "Flaky"\n[[steps]]\nname = "build"\n'
                                f'command = [{PY}, "-c", {json.dumps(PROG)}]\n', "--activate")
    assert cli("job", "run", jid).code == 6
    tip = git(repo, "rev-parse", f"logist/{jid}")
    assert cli("job", "resubmit", jid).code == 0
    assert git(repo, "rev-list", "--count", f"{tip}..logist/{jid}") == "1"
