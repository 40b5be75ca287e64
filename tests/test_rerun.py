"""`logist job rerun` and `logist job restep` (docs/rerun.md), end to end through the CLI (in
process; a crash point or a concurrent runner in a process of its own).

Every test works in its own real repository. Steps are `command` agents running a small
script that appends its name to a counter file *outside* the worktree (so we can prove
which steps ran and how often) and a line to a file *inside* the worktree (so we can see
which code a run started from).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import git, run_cli, run_logist, wait_for

from logist.core.faults import crash_env

STEP_SCRIPT = r'''
import os, sys, time
counter, name = sys.argv[1], sys.argv[2]
flags = sys.argv[3:]
with open(counter, "a") as fh:
    fh.write(name + "\n")
if "wait" in flags:  # block until the test releases us (bounded)
    release = counter + ".release"
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
with open(name + ".txt", "a") as fh:
    fh.write("run %s step %s\n" % (os.environ.get("LOGIST_RUN"), os.environ.get("LOGIST_STEP")))
if "needs-fix" in flags and not os.path.exists("FIXED"):
    print("error: FIXED is missing", flush=True)
    sys.exit(1)
print("```json")
print('{"action": "COMPLETED", "summary": "%s done"}' % name)
print("```", flush=True)
'''


@pytest.fixture(autouse=True)
def no_watcher(monkeypatch):
    # The side process is exercised by its own tests (and by test_restep_with_watcher here).
    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")


@pytest.fixture
def proj(repo, tmp_path):
    r = run_cli("init", cwd=repo)
    assert r.returncode == 0, r.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "logist init")
    script = tmp_path / "step_script.py"
    script.write_text(STEP_SCRIPT)
    return Project(repo, tmp_path, script)


class Project:
    def __init__(self, repo: Path, tmp: Path, script: Path) -> None:
        self.repo = repo
        self.tmp = tmp
        self.script = script
        self.counter = tmp / "calls.log"

    def job(self, *steps: str | tuple[str, ...], job_id: str = "job-1", extra: str = "") -> str:
        """A job whose steps run the step script; a step is a name or (name, *flags)."""
        lines = [f'title = "rerun test {job_id}"', extra]
        for s in steps:
            name, *flags = (s,) if isinstance(s, str) else s
            argv = [sys.executable, str(self.script), str(self.counter), name, *flags]
            lines += ["[[steps]]", f'name = "{name}"', 'agent = "command"',
                      "command = " + json.dumps(argv)]
        path = self.tmp / f"{job_id}.toml"
        path.write_text("\n".join(lines) + "\n")
        r = self.cli("job", "create", "--file", path, "--activate", "--id", job_id)
        assert r.returncode == 0, r.stderr
        return job_id

    def cli(self, *args, env=None, **kw) -> subprocess.CompletedProcess:
        """The CLI in process; a crash point needs a process of its own."""
        if env and "LOGIST_CRASH_AT" in env:
            return run_logist(*args, cwd=self.repo, env=env, **kw)
        return run_cli(*args, cwd=self.repo, env=env, **kw)

    def ok(self, *args, env=None) -> subprocess.CompletedProcess:
        r = self.cli(*args, env=env)
        assert r.returncode == 0, f"{args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def calls(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.counter.exists():
            for line in self.counter.read_text().split():
                out[line] = out.get(line, 0) + 1
        return out

    def manifest(self, job_id: str) -> dict:
        """The record at the branch tip, read with plain git (no logist needed to audit a job)."""
        return json.loads(self.show(f"logist/{job_id}", f".logist/jobs/{job_id}/manifest.json"))

    def history(self, job_id: str) -> list[dict]:
        raw = self.show(f"logist/{job_id}", f".logist/jobs/{job_id}/history.jsonl")
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def refs(self) -> str:
        return git(self.repo, "for-each-ref", "--format=%(refname) %(objectname)")

    def job_refs(self, job_id: str) -> str:
        """The refs a rerun/restep may write (not the lock, which a running holder refreshes)."""
        return "\n".join(line for line in self.refs().splitlines()
                         if "/locks/" not in line and job_id in line)

    def wt(self, job_id: str) -> Path:
        """The job's worktree: the one `git worktree list` shows on branch logist/<id>."""
        path = None
        for line in git(self.repo, "worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                path = Path(line[len("worktree "):])
            elif line == f"branch refs/heads/logist/{job_id}":
                return path
        raise AssertionError(f"no worktree for {job_id}")

    def path(self, job_id: str) -> Path:
        """The job's worktree, made again if it was given back (`logist job path`)."""
        return Path(self.ok("job", "path", job_id).stdout.strip())

    def tip(self, job_id: str) -> str:
        return git(self.repo, "rev-parse", f"logist/{job_id}")

    def show(self, rev: str, path: str) -> str | None:
        proc = subprocess.run(["git", "-C", str(self.repo), "show", f"{rev}:{path}"],
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None


def assert_consistent(p: Project, job_id: str) -> None:
    """git fsck clean, and the worktree shows nothing logist caused."""
    fsck = subprocess.run(["git", "-C", str(p.repo), "fsck", "--no-progress"], capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stderr
    bad = [ln for ln in (fsck.stdout + fsck.stderr).splitlines()
           if ln and not ln.startswith("dangling")]
    assert not bad, bad
    listed = git(p.repo, "worktree", "list", "--porcelain") + "\n"
    if f"branch refs/heads/logist/{job_id}\n" not in listed:
        # only a finished job gives its worktree back (docs/architecture.md#worktrees)
        assert p.manifest(job_id)["state"] in ("SUCCESS", "CANCELED"), listed
        return
    wt = p.wt(job_id)
    if wt.exists():
        assert git(wt, "status", "--porcelain", "--untracked-files=no") == ""
        assert git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{job_id}"
        assert git(wt, "rev-parse", "HEAD") == p.tip(job_id)


def assert_clean_error(r: subprocess.CompletedProcess, *needles: str, code: int | None = None) -> None:
    assert r.returncode != 0
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert "internal error" not in r.stderr
    text = (r.stderr + r.stdout).lower()
    for n in needles:
        assert n.lower() in text, (n, r.stderr)


# ============================================================================ rerun: CLI surface

def test_rerun_command_registered(proj):
    r = proj.ok("job", "--help")
    assert "rerun" in r.stdout
    r = proj.ok("job", "rerun", "--help")
    assert "--step" in r.stdout and "--no-run" in r.stdout and "--json" in r.stdout


def test_rerun_requires_job_id(proj):
    before = proj.refs()
    r = proj.cli("job", "rerun")
    assert_clean_error(r, "ID", code=2)
    assert proj.refs() == before


def test_rerun_non_existent_job(proj):
    proj.job("one")
    before = proj.refs()
    r = proj.cli("job", "rerun", "no-such-job")
    assert_clean_error(r, "no job 'no-such-job'", code=1)
    r = proj.cli("job", "rerun", "Not_An_Id")
    assert_clean_error(r, "invalid job id", code=2)
    assert proj.refs() == before


def test_rerun_invalid_step_number(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    before = proj.refs()
    for bad, needle in (("0", "numbered from 1"), ("-1", "numbered from 1"),
                        ("3", "does not exist"), ("99", "has 2 steps"), ("abc", "invalid step")):
        r = proj.cli("job", "rerun", jid, "--step", bad)
        assert_clean_error(r, needle, code=2)
        assert proj.refs() == before, bad
    assert proj.manifest(jid)["run"] == 1
    assert proj.calls() == {"one": 1, "two": 1}


# ============================================================================ rerun: behaviour

def test_rerun_job_from_start(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    first_tip = proj.tip(jid)
    first_log = git(proj.repo, "rev-list", f"logist/{jid}").split()
    assert proj.manifest(jid)["state"] == "SUCCESS"

    r = proj.ok("job", "rerun", jid)
    assert "run 2 from step 1" in r.stdout
    assert f"refs/logist/runs/{jid}/1" in r.stdout
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2 and m["step"] == 2
    assert [s["status"] for s in m["steps"]] == ["SUCCESS", "SUCCESS"]
    assert proj.calls() == {"one": 2, "two": 2}
    # the code of run 2 was built from where step 1 started: each file has only run 2's line
    assert proj.show(f"logist/{jid}", "one.txt") == "run 2 step 1\n"
    assert proj.show(f"logist/{jid}", "two.txt") == "run 2 step 2\n"

    hist = proj.history(jid)
    runs = [e for e in hist if e["event"] == "run"]
    assert len(runs) == 1
    run = runs[0]
    assert run["run"] == 2 and run["step"] == 1 and run["from"] == "SUCCESS" and run["to"] == "PENDING"
    assert run["data"]["previous_tip"] == first_tip and run["data"]["from_step"] == 1
    # the record keeps the whole history: run 1's entries are still there
    assert {e["run"] for e in hist} == {1, 2}
    assert hist[0]["event"] == "create"
    assert [r_["run"] for r_ in m["runs"]] == [1, 2]
    cli_hist = json.loads(proj.ok("job", "history", jid, "--json").stdout)
    assert [e["event"] for e in cli_hist] == [e["event"] for e in hist]

    # run 1 stays reachable and auditable at refs/logist/runs/<id>/1
    assert git(proj.repo, "rev-parse", f"refs/logist/runs/{jid}/1") == first_tip
    for c in first_log:
        git(proj.repo, "merge-base", "--is-ancestor", c, f"refs/logist/runs/{jid}/1")
    assert_consistent(proj, jid)


def test_rerun_job_from_specific_step(proj):
    jid = proj.job("one", "two", "three")
    proj.ok("job", "run", jid)
    assert proj.calls() == {"one": 1, "two": 1, "three": 1}
    m1 = proj.manifest(jid)
    start3 = m1["steps"][2]["started_commit"]

    r = proj.ok("job", "rerun", jid, "--step", "3")
    assert "steps 1-2 not run again" in r.stdout
    # steps before 3 were not executed again: the side-effect counter proves it
    assert proj.calls() == {"one": 1, "two": 1, "three": 2}
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2
    assert [s["status"] for s in m["steps"]] == ["SKIPPED", "SKIPPED", "SUCCESS"]
    assert m["runs"][-1]["from_step"] == 3 and m["runs"][-1]["start_commit"] == start3
    # the branch continues from the commit at which step 3 started in run 1
    run_commit = git(proj.repo, "log", "--format=%H", "--grep", r"run SUCCESS -> PENDING",
                     f"logist/{jid}").split()[0]
    assert git(proj.repo, "rev-parse", f"{run_commit}^") == start3
    assert proj.show(f"logist/{jid}", "one.txt") == "run 1 step 1\n"
    assert proj.show(f"logist/{jid}", "three.txt") == "run 2 step 3\n"
    # the history records the resumed run
    run_entry = [e for e in proj.history(jid) if e["event"] == "run"][-1]
    assert run_entry["data"]["from_step"] == 3 and run_entry["data"]["skipped_steps"] == [1, 2]
    assert run_entry["commit"] == start3
    # the step transitions of run 2 only concern step 3
    run2 = [e for e in proj.history(jid) if e["run"] == 2 and e["event"] == "transition"]
    assert run2 and {e["step"] for e in run2} == {3}
    assert_consistent(proj, jid)


def test_git_log_and_run_refs_tell_the_story(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    tip1 = proj.tip(jid)
    proj.ok("job", "rerun", jid, "--step", "2")
    tip2 = proj.tip(jid)
    proj.ok("job", "rerun", jid)
    assert proj.manifest(jid)["run"] == 3
    # plain git, no logist: the runs refs hold each replaced run's tip
    runs = git(proj.repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/logist/runs")
    assert runs.splitlines() == [f"refs/logist/runs/{jid}/1 {tip1}", f"refs/logist/runs/{jid}/2 {tip2}"]
    # the branch log names the current run, its start and the ref of the run it replaced;
    # that run's log (at the ref) names the one before: every run can be followed in plain git
    fmt = ("--format=%H|%s|%(trailers:key=Logist-Run,valueonly,separator=)|"
           "%(trailers:key=Logist-Run-Ref,valueonly,separator=)|"
           "%(trailers:key=Logist-From-Step,valueonly,separator=)|"
           "%(trailers:key=Logist-Previous-Tip,valueonly,separator=)")

    def run_commits(rev):
        return [ln.split("|") for ln in git(proj.repo, "log", fmt, rev).splitlines() if "): run " in ln]

    on_branch = run_commits(f"logist/{jid}")
    assert [c[1:] for c in on_branch] == [
        [f"logist({jid}): run SUCCESS -> PENDING (step 1/2)", "3", f"refs/logist/runs/{jid}/2", "1", tip2]]
    in_run2 = run_commits(f"refs/logist/runs/{jid}/2")
    assert [c[1:] for c in in_run2] == [
        [f"logist({jid}): run SUCCESS -> PENDING (step 2/2)", "2", f"refs/logist/runs/{jid}/1", "2", tip1]]
    assert run_commits(f"refs/logist/runs/{jid}/1") == []
    # run 3 started where step 1 first started: the job's create commit
    create = git(proj.repo, "log", "--format=%H", "--grep", r"create -> PENDING", f"logist/{jid}")
    assert git(proj.repo, "rev-parse", on_branch[0][0] + "^") == create
    assert len([e for e in proj.history(jid) if e["event"] == "run"]) == 2
    assert_consistent(proj, jid)


def test_rerun_no_run_prepares_pending(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.ok("job", "rerun", jid, "--step", "2", "--no-run", "--json")
    data = json.loads(r.stdout)
    assert data["state"] == "PENDING" and data["run"] == 2 and data["from_step"] == 2
    assert data["ran"] is False and data["run_ref"] == f"refs/logist/runs/{jid}/1"
    assert proj.calls() == {"one": 1, "two": 1}
    wt = proj.path(jid)
    # the worktree holds exactly the code where step 2 started: no two.txt yet
    assert not (wt / "two.txt").exists()
    assert (wt / "one.txt").read_text() == "run 1 step 1\n"
    assert_consistent(proj, jid)
    proj.ok("job", "run", jid)
    assert proj.manifest(jid)["state"] == "SUCCESS"
    assert proj.calls() == {"one": 1, "two": 2}
    assert_consistent(proj, jid)


def test_rerun_failed_step_after_fix_in_worktree(proj):
    jid = proj.job("one", ("two", "needs-fix"))
    proj.cli("job", "run", jid)
    m = proj.manifest(jid)
    assert m["state"] == "INTERVENTION_REQUIRED" and m["step"] == 2
    (proj.wt(jid) / "FIXED").write_text("a person fixed it\n")  # uncommitted fix
    proj.ok("job", "rerun", jid, "--step", "2")
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2
    assert proj.calls() == {"one": 1, "two": 2}
    assert proj.show(f"logist/{jid}", "FIXED") == "a person fixed it\n"
    # the failed attempt's work is not on the branch any more, but kept in run 1
    assert proj.show(f"logist/{jid}", "two.txt") == "run 2 step 2\n"
    assert proj.show(f"refs/logist/runs/{jid}/1", "two.txt") == "run 1 step 2\n"
    assert_consistent(proj, jid)


def test_rerun_after_stopping_partway(proj):
    jid = proj.job("one", "two", "three")
    proj.ok("job", "step", jid)
    proj.ok("job", "cancel", jid, "--message", "stop for now")
    assert proj.manifest(jid)["state"] == "CANCELED"
    before = proj.refs()
    # step 3 was never reached: there is no commit to continue from
    r = proj.cli("job", "rerun", jid, "--step", "3")
    assert_clean_error(r, "never started", code=1)
    assert proj.refs() == before
    proj.ok("job", "rerun", jid, "--step", "2")
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2
    assert proj.calls() == {"one": 1, "two": 1, "three": 1}
    assert_consistent(proj, jid)


def test_rerun_refuses_conflicting_local_changes(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    wt = proj.path(jid)
    (wt / "two.txt").write_text("local edit\n")  # two.txt differs between step 2's start and the tip
    before = proj.refs()
    r = proj.cli("job", "rerun", jid, "--step", "2")
    assert_clean_error(r, "uncommitted changes", code=1)
    assert proj.refs() == before
    assert (wt / "two.txt").read_text() == "local edit\n"
    assert git(wt, "status", "--porcelain") == "M two.txt"
    assert proj.manifest(jid)["run"] == 1


def test_rerun_refused_while_lease_held(proj):
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    jid = proj.job("one")
    proj.ok("job", "run", jid)
    lease = acquire(JobStore.discover(proj.repo), jid)  # a live holder: this test process
    try:
        before = proj.refs()
        r = proj.cli("job", "rerun", jid)
        assert_clean_error(r, "busy", code=4)
        r = proj.cli("job", "restep", jid, "1")
        assert_clean_error(r, "busy", code=4)
        assert proj.refs() == before
    finally:
        lease.release()
    assert proj.calls() == {"one": 1}


def test_rerun_and_restep_refused_while_a_step_runs(proj):
    jid = proj.job("one", ("two", "wait"))
    runner = subprocess.Popen([sys.executable, "-m", "logist", "job", "run", jid], cwd=proj.repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proj.calls().get("two"), what="step 2 to run")
        assert proj.manifest(jid)["state"] == "EXECUTING"
        before = proj.job_refs(jid)
        for args in (("job", "rerun", jid), ("job", "rerun", jid, "--step", "2"),
                     ("job", "restep", jid, "1"), ("job", "restep", jid, "1", "--isolated")):
            r = proj.cli(*args)
            assert_clean_error(r, "running", code=4)
        assert proj.job_refs(jid) == before
    finally:
        Path(str(proj.counter) + ".release").write_text("go")
        runner.wait(timeout=60)
    assert proj.manifest(jid)["state"] == "SUCCESS"
    assert proj.calls() == {"one": 1, "two": 1}


def test_rerun_json(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    tip = proj.tip(jid)
    data = json.loads(proj.ok("job", "rerun", jid, "--step", "2", "--json").stdout)
    assert data["id"] == jid and data["run"] == 2 and data["previous_run"] == 1
    assert data["previous_tip"] == tip and data["skipped_steps"] == [1]
    assert data["state"] == "SUCCESS" and data["ran"] is True


# ============================================================================ restep: CLI surface

def test_restep_command_registered(proj):
    r = proj.ok("job", "--help")
    assert "restep" in r.stdout
    r = proj.ok("job", "restep", "--help")
    assert "--isolated" in r.stdout and "--advance" in r.stdout


def test_restep_requires_job_id_and_step_number(proj):
    jid = proj.job("one")
    before = proj.refs()
    r = proj.cli("job", "restep")
    assert_clean_error(r, "ID", code=2)
    r = proj.cli("job", "restep", jid)
    assert_clean_error(r, "STEP", code=2)
    assert proj.refs() == before


def test_restep_non_existent_job(proj):
    proj.job("one")
    before = proj.refs()
    r = proj.cli("job", "restep", "no-such-job", "1")
    assert_clean_error(r, "no job 'no-such-job'", code=1)
    assert proj.refs() == before


def test_restep_invalid_step_number(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    before = proj.refs()
    for bad, needle in (("0", "numbered from 1"), ("-2", "numbered from 1"), ("3", "does not exist"),
                        ("x", "invalid step"), ("1.5", "invalid step")):
        r = proj.cli("job", "restep", jid, bad)
        assert_clean_error(r, needle, code=2)
        assert proj.refs() == before, bad
    assert proj.calls() == {"one": 1, "two": 1}


# ============================================================================ restep: behaviour

def test_restep_single_step_success(proj):
    jid = proj.job("one", "two", "three")
    proj.ok("job", "run", jid)
    before = proj.manifest(jid)
    tip = proj.tip(jid)

    r = proj.ok("job", "restep", jid, "2")
    assert "restep 1 of step 2: succeeded" in r.stdout
    # only that step ran
    assert proj.calls() == {"one": 1, "two": 2, "three": 1}
    m = proj.manifest(jid)
    assert (m["state"], m["run"], m["step"]) == (before["state"], before["run"], before["step"])
    assert m["steps"][1]["status"] == "SUCCESS" and m["resteps"] == 1
    assert m["execution"] is None
    # its outputs are committed like a normal step's
    assert proj.show(f"logist/{jid}", "two.txt") == "run 1 step 2\nrun 1 step 2\n"
    # two commits: RUNNING, then the outcome; the history gets the restep entries
    assert git(proj.repo, "rev-list", "--count", f"{tip}..logist/{jid}") == "2"
    hist = proj.history(jid)
    start, done = hist[-2], hist[-1]
    assert start["event"] == done["event"] == "restep"
    assert start["step"] == done["step"] == 2
    assert start["data"]["phase"] == "start" and done["data"]["phase"] == "done"
    assert done["outcome"] == "COMPLETED" and done["data"]["success"] is True
    assert done["commit"] == tip
    assert start["from"] == start["to"] == done["to"] == "SUCCESS"
    # the history stays consistent: the RUNNING commit's record says so, the tip's does not
    running = json.loads(proj.show(f"logist/{jid}~1", f".logist/jobs/{jid}/manifest.json"))
    assert running["steps"][1]["status"] == "RUNNING" and running["execution"]["restep"] is True
    assert [e["t"] for e in hist] == sorted(e["t"] for e in hist)
    trailers = git(proj.repo, "log", "-1", "--format=%(trailers:key=Logist-Restep,valueonly)"
                   "%(trailers:key=Logist-Restep-Result,valueonly)", f"logist/{jid}")
    assert trailers.split() == ["1", "success"]
    assert_consistent(proj, jid)


def test_restep_single_step_failure(proj):
    jid = proj.job("one", ("two", "needs-fix"), "three")
    proj.cli("job", "run", jid)
    m = proj.manifest(jid)
    assert m["state"] == "INTERVENTION_REQUIRED" and m["step"] == 2

    r = proj.cli("job", "restep", jid, "2")
    assert_clean_error(r, "failed", "exited with code 1", code=6)
    assert proj.calls() == {"one": 1, "two": 2}
    m = proj.manifest(jid)
    assert m["state"] == "INTERVENTION_REQUIRED" and m["step"] == 2 and m["run"] == 1
    assert m["steps"][1]["status"] == "FAILURE"
    assert "exited with code 1" in m["steps"][1]["reason"]
    done = proj.history(jid)[-1]
    assert done["event"] == "restep" and done["outcome"] == "FAILED"
    assert done["data"]["success"] is False and done["step"] == 2
    assert_consistent(proj, jid)

    # a fix by hand in the worktree, then a restep that moves the job on (--advance)
    (proj.wt(jid) / "FIXED").write_text("fixed\n")
    r = proj.ok("job", "restep", jid, "2", "--advance")
    assert "moved on by --advance" in r.stdout
    m = proj.manifest(jid)
    assert m["state"] == "PENDING" and m["step"] == 3 and m["steps"][1]["status"] == "SUCCESS"
    assert proj.show(f"logist/{jid}", "FIXED") == "fixed\n"
    proj.ok("job", "run", jid)
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 1
    assert proj.calls() == {"one": 1, "two": 3, "three": 1}
    assert_consistent(proj, jid)


def test_restep_failure_without_advance_keeps_state(proj):
    jid = proj.job(("one", "needs-fix"))
    proj.cli("job", "run", jid)
    (proj.wt(jid) / "FIXED").write_text("fixed\n")
    r = proj.ok("job", "restep", jid, "1", "--json")
    data = json.loads(r.stdout)
    assert data["success"] is True and data["advanced"] is False
    assert data["state"] == "INTERVENTION_REQUIRED"
    # the last step with --advance ends the job
    r = proj.ok("job", "restep", jid, "1", "--advance")
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS"
    assert_consistent(proj, jid)


def test_restep_advance_refused_when_not_intervention(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    before = proj.refs()
    r = proj.cli("job", "restep", jid, "1", "--advance")
    assert_clean_error(r, "--advance only", code=2)
    r = proj.cli("job", "restep", jid, "1", "--advance", "--isolated")
    assert_clean_error(r, "cannot be combined", code=2)
    assert proj.refs() == before
    assert proj.calls() == {"one": 1, "two": 1}


def test_restep_isolated(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    m1 = proj.manifest(jid)
    tip_tree = git(proj.repo, "rev-parse", f"logist/{jid}^{{tree}}:one.txt")
    first = m1["steps"][0]["first_started_commit"]

    r = proj.ok("job", "restep", jid, "1", "--isolated")
    ref = f"refs/logist/resteps/{jid}/1"
    assert ref in r.stdout and "git diff" in r.stdout
    assert proj.calls() == {"one": 2, "two": 1}
    # the branch's code is untouched; the result sits at the restep ref, built on where step 1 first started
    assert git(proj.repo, "rev-parse", f"logist/{jid}^{{tree}}:one.txt") == tip_tree
    assert git(proj.repo, "rev-parse", f"{ref}^") == first
    assert proj.show(ref, "one.txt") == "run 1 step 1\n"
    assert proj.show(ref, "two.txt") is None
    m = proj.manifest(jid)
    assert m["steps"][0]["status"] == "SUCCESS" and m["state"] == "SUCCESS" and m["run"] == 1
    done = proj.history(jid)[-1]
    assert done["data"]["isolated"] is True and done["data"]["ref"] == ref
    assert done["data"]["result"] == git(proj.repo, "rev-parse", ref) and done["commit"] == first
    # the printed diff commands work as printed
    for line in r.stdout.splitlines():
        if line.strip().startswith("git diff"):
            out = subprocess.run(line.strip(), shell=True, cwd=proj.repo, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
    # no temporary worktree is left behind (and the finished job gave its own back)
    assert len(git(proj.repo, "worktree", "list").splitlines()) == 1
    assert_consistent(proj, jid)


def test_restep_isolated_needs_a_started_step(proj):
    jid = proj.job("one", "two")
    before = proj.refs()
    r = proj.cli("job", "restep", jid, "2", "--isolated")
    assert_clean_error(r, "never started", code=1)
    assert proj.refs() == before


def test_restep_with_watcher(proj, monkeypatch):
    monkeypatch.delenv("LOGIST_NO_WATCHER")
    jid = proj.job("one")
    proj.ok("job", "run", jid)
    proj.ok("job", "restep", jid, "1")
    assert proj.calls() == {"one": 2}
    assert_consistent(proj, jid)


# ============================================================================ interrupted midway

def test_rerun_killed_before_the_branch_moved_recovers(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    proj.path(jid)  # a worktree for the rerun to move (the finished job gave its own back)
    tip = proj.tip(jid)
    r = proj.cli("job", "rerun", jid, "--step", "2", env=crash_env("rerun-after-worktree-move"))
    assert r.returncode == 137
    assert proj.tip(jid) == tip  # the tip is the truth: still run 1
    assert "refs/logist/runs/" not in proj.refs()
    r = proj.ok("job", "run", jid)  # repairs the worktree from the tip; nothing to run
    assert "SUCCESS" in r.stdout
    assert proj.tip(jid) == tip
    assert (proj.path(jid) / "two.txt").read_text() == "run 1 step 2\n"
    assert_consistent(proj, jid)
    proj.ok("job", "rerun", jid, "--step", "2")
    assert proj.manifest(jid)["run"] == 2
    assert proj.calls() == {"one": 1, "two": 2}
    assert_consistent(proj, jid)


def test_rerun_killed_after_the_branch_moved_recovers(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.cli("job", "rerun", jid, "--step", "2", env=crash_env("rerun-after-publish"))
    assert r.returncode == 137
    m = proj.manifest(jid)
    assert m["run"] == 2 and m["state"] == "PENDING"
    assert f"refs/logist/runs/{jid}/1" in proj.refs()
    proj.ok("job", "run", jid)
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2
    assert proj.calls() == {"one": 1, "two": 2}
    assert_consistent(proj, jid)


def test_rerun_killed_during_its_step_recovers(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.cli("job", "rerun", jid, "--step", "2", env=crash_env("after-agent-exit"))
    assert r.returncode == 137
    assert proj.manifest(jid)["state"] == "EXECUTING"
    before = proj.refs()
    for args in (("job", "rerun", jid), ("job", "restep", jid, "1")):
        assert_clean_error(proj.cli(*args), "interrupted", "logist job run", code=1)
    assert proj.refs() == before
    proj.ok("job", "run", jid)
    m = proj.manifest(jid)
    assert m["state"] == "SUCCESS" and m["run"] == 2
    assert_consistent(proj, jid)


@pytest.mark.parametrize("point, phases", [
    ("restep-after-start", ["start", "restart", "done"]),  # the agent never started: run it
    ("restep-after-agent", ["start", "done"]),  # it finished: its recorded exit is harvested
])
def test_restep_killed_midway_recovers(proj, point, phases):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.cli("job", "restep", jid, "2", env=crash_env(point))
    assert r.returncode == 137
    m = proj.manifest(jid)
    assert m["execution"]["restep"] is True and m["steps"][1]["status"] == "RUNNING"
    # other commands refuse clearly until it is finished
    before = proj.refs()
    r = proj.cli("job", "rerun", jid)
    assert_clean_error(r, "interrupted", code=1)
    assert proj.refs() == before
    # `job run` finishes it; the step's agent ran exactly once for the restep
    proj.ok("job", "run", jid)
    m = proj.manifest(jid)
    assert m["execution"] is None and m["state"] == "SUCCESS" and m["steps"][1]["status"] == "SUCCESS"
    assert proj.calls() == {"one": 1, "two": 2}
    assert [e["data"]["phase"] for e in proj.history(jid) if e["event"] == "restep"] == phases
    assert proj.show(f"logist/{jid}", "two.txt") == "run 1 step 2\nrun 1 step 2\n"
    assert_consistent(proj, jid)


def test_isolated_restep_killed_after_its_result_was_kept(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.cli("job", "restep", jid, "1", "--isolated",
                 env=crash_env("restep-after-isolated-ref"))
    assert r.returncode == 137
    assert f"refs/logist/resteps/{jid}/1" in proj.refs()
    proj.ok("job", "step", jid)  # finishes from the kept result without running the agent again
    assert proj.calls() == {"one": 2, "two": 1}
    m = proj.manifest(jid)
    assert m["execution"] is None and m["steps"][0]["status"] == "SUCCESS"
    done = proj.history(jid)[-1]
    assert done["data"]["phase"] == "done" and done["data"]["success"] is True
    assert len(git(proj.repo, "worktree", "list").splitlines()) == 1  # a finished job has none
    assert_consistent(proj, jid)


def test_restep_killed_while_its_agent_runs_reattaches(proj):
    jid = proj.job("one", ("two", "wait"))
    release = Path(str(proj.counter) + ".release")
    release.write_text("go")
    proj.ok("job", "run", jid)
    release.unlink()
    r = proj.cli("job", "restep", jid, "2", env=crash_env("run-agent-running"))
    assert r.returncode == 137  # the runner is gone; its agent still waits for the release file
    lines: queue.Queue[str] = queue.Queue()
    runner = subprocess.Popen([sys.executable, "-m", "logist", "job", "run", jid], cwd=proj.repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def pump():
        for line in runner.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "re-attaching" in line:
                break
    finally:
        release.write_text("go")
        runner.wait(timeout=60)
    assert runner.returncode == 0
    assert proj.calls() == {"one": 1, "two": 2}  # the same agent finished; it did not run again
    m = proj.manifest(jid)
    assert m["execution"] is None and m["steps"][1]["status"] == "SUCCESS"
    phases = [e["data"]["phase"] for e in proj.history(jid) if e["event"] == "restep"]
    assert phases == ["start", "done"]
    assert_consistent(proj, jid)


# ============================================================================ `logist recover` of a restep

def _recover_list(proj: Project) -> list[dict]:
    r = proj.ok("recover", "--list", "--json")
    return json.loads(r.stdout)


def _assert_finished_by_recover(proj: Project, jid: str, *, step_status: str = "SUCCESS") -> str:
    """`logist recover JOB` finishes the restep: no restep in flight, no lock, fsck clean."""
    r = proj.cli("recover", jid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "finished the interrupted restep" in r.stdout, r.stdout
    m = proj.manifest(jid)
    assert m["execution"] is None and m["state"] == "SUCCESS"
    assert m["steps"][1]["status"] == step_status
    assert git(proj.repo, "for-each-ref", "refs/logist/locks/") == ""
    assert "locked" not in git(proj.repo, "worktree", "list", "--porcelain")
    assert _recover_list(proj) == []
    assert proj.ok("recover", "--check").stdout.strip() == "no interrupted jobs"
    assert_consistent(proj, jid)
    return r.stdout


@pytest.mark.parametrize("point, isolated, phases, action", [
    ("restep-after-start", False, ["start", "restart", "done"], "re-execute restep 1 of step 2 (attempt 2 of 3)"),
    ("restep-after-agent", False, ["start", "done"],
     "record the outcome of restep 1 of step 2: its agent finished (exit code 0)"),
    ("restep-after-isolated-ref", True, ["start", "done"],
     "finish restep 1 of step 2 (isolated) from its result kept at"),
])
def test_recover_lists_and_finishes_an_interrupted_restep(proj, point, isolated, phases, action):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    r = proj.cli("job", "restep", jid, "2", *(["--isolated"] if isolated else []),
                 env=crash_env(point))
    assert r.returncode == 137
    assert proj.manifest(jid)["state"] == "SUCCESS"  # the job rests; only the restep is in flight
    assert git(proj.repo, "for-each-ref", "refs/logist/locks/")  # the dead runner's lock is left
    # every command that looks for interrupted jobs sees it
    st = proj.ok("job", "status", jid, "--json")
    assert json.loads(st.stdout)["interrupted"] is True
    st = proj.ok("job", "status", jid)
    assert f"run `logist recover {jid}`" in st.stdout
    assert f"job {jid}: a restep of step 2 was interrupted; run `logist recover {jid}`" in st.stderr
    assert "restep of step 2 was interrupted" in proj.ok("job", "list").stderr
    assert json.loads(proj.ok("recover", "--check", "--json").stdout) == {
        "interrupted": 1, "by_state": {"SUCCESS": 1}}
    [row] = _recover_list(proj)
    assert row["id"] == jid and row["kind"] == "restep" and row["restep_step"] == 2, row
    assert row["holder"]["stale"] is True
    assert row["action"].startswith(action), row["action"]
    before = proj.calls()
    _assert_finished_by_recover(proj, jid)
    ran_again = {"restep-after-start": 1, "restep-after-agent": 0, "restep-after-isolated-ref": 0}[point]
    assert proj.calls() == {"one": 1, "two": before["two"] + ran_again}
    assert [e["data"]["phase"] for e in proj.history(jid) if e["event"] == "restep"] == phases
    if phases[1] == "restart":
        assert proj.history(jid)[-2]["data"]["attempt"] == 2


def test_recover_finishes_a_restep_whose_runner_and_agent_were_killed(proj):
    """SIGKILL of the runner's and the agent's process groups mid-restep (no crash hook)."""
    jid = proj.job("one", ("two", "wait"))
    release = Path(str(proj.counter) + ".release")
    release.write_text("go")
    proj.ok("job", "run", jid)
    release.unlink()
    runner = subprocess.Popen([sys.executable, "-m", "logist", "job", "restep", jid, "2"],
                              cwd=proj.repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    agent_pgid = None
    try:
        def agent_running():
            try:
                info = json.loads((proj.repo / ".git/logist/run" / jid / "agent.json").read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pgid") and proj.calls().get("two") == 2 else None

        info = wait_for(agent_running, timeout=60, what="the restep's agent to run")
        agent_pgid = info["pgid"]
        os.killpg(runner.pid, 9)
        os.killpg(agent_pgid, 9)
        runner.wait(timeout=30)
    finally:
        for pgid in (runner.pid, agent_pgid):
            if pgid:
                try:
                    os.killpg(pgid, 9)
                except (ProcessLookupError, PermissionError):
                    pass
        runner.wait(timeout=30)
    assert proj.manifest(jid)["execution"]["restep"] is True
    [row] = _recover_list(proj)
    assert row["kind"] == "restep" and "re-execute restep 1 of step 2 (attempt 2 of 3)" in row["action"]
    release.write_text("go")  # the re-executed agent does not wait
    out = _assert_finished_by_recover(proj, jid)
    assert "took over the lease" in out
    assert proj.calls() == {"one": 1, "two": 3}  # the killed restep and its re-execution
    restarts = [e for e in proj.history(jid) if e["event"] == "restep" and e["data"]["phase"] == "restart"]
    assert [e["data"]["attempt"] for e in restarts] == [2]


def test_recover_abandon_records_an_interrupted_restep_as_failed(proj):
    jid = proj.job("one", "two")
    proj.ok("job", "run", jid)
    assert proj.cli("job", "restep", jid, "2", env=crash_env("restep-after-start")
                    ).returncode == 137
    r = proj.cli("recover", "--abandon", jid, "--message", "not worth it", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)["jobs"][0]
    assert out["before"] == "SUCCESS" and out["after"] == "SUCCESS"
    assert any("recorded restep 1 of step 2 as failed" in d for d in out["did"]), out
    m = proj.manifest(jid)
    assert m["execution"] is None and m["state"] == "SUCCESS"
    assert m["steps"][1]["status"] == "FAILURE" and "not worth it" in m["steps"][1]["reason"]
    assert proj.calls() == {"one": 1, "two": 1}  # nothing was executed again
    assert git(proj.repo, "for-each-ref", "refs/logist/locks/") == ""
    assert _recover_list(proj) == []
    assert_consistent(proj, jid)
