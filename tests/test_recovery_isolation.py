"""Recovery isolates failures, and a broken worktree never wedges a job (docs/recovery.md).

One job that cannot be recovered is reported with its error and skipped: `logist recover` goes
on with the others and exits non-zero at the end. A worktree whose `.git` an agent overwrote,
replaced or deleted is repaired (`git worktree repair`) or moved aside (kept) and created again
from the branch. `job cancel` either commits and exits 0, or commits nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _crashkit import (
    assert_consistent,
    create,
    init_project,
    logist,
    manifest,
    no_traceback,
    sh_step,
    worktree,
)
from conftest import git

from logist.core.faults import crash_env


@pytest.fixture
def project(repo):
    init_project(repo)
    return repo


def refs(repo):
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def interrupted(project, title: str, script: str, point: str = "after-agent-exit") -> str:
    job = create(project, f'title = "{title}"\n' + sh_step("s", script))
    r = logist(project, "job", "run", job, env=crash_env(point))
    assert r.returncode == 137, r.stderr
    return job


def _tamper_command(repo, job: str, argv: list[str]) -> None:
    """Rewrite the record at the tip so the step runs ``argv`` (as a fetched record could)."""
    path = f".logist/jobs/{job}/manifest.json"
    data = json.loads(git(repo, "show", f"logist/{job}:{path}"))
    data["steps"][0]["options"]["command"] = argv
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], input=json.dumps(data),
                          capture_output=True, text=True, check=True).stdout.strip()
    env_index = repo / ".git" / "tamper-index"
    import os

    env = {**os.environ, "GIT_INDEX_FILE": str(env_index)}
    subprocess.run(["git", "-C", str(repo), "read-tree", f"logist/{job}"], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "update-index", "--cacheinfo", f"100644,{blob},{path}"], env=env,
                   check=True)
    tree = subprocess.run(["git", "-C", str(repo), "write-tree"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(repo), "commit-tree", tree, "-p", f"logist/{job}", "-m", "tamper"],
                            capture_output=True, text=True, check=True).stdout.strip()
    git(repo, "update-ref", f"refs/heads/logist/{job}", commit)
    env_index.unlink()


def test_a_job_whose_command_holds_a_nul_byte_does_not_stop_recovery(project):
    """The NUL byte reaches the runner through a record (job files refuse it): the step cannot
    start, so the job goes to INTERVENTION_REQUIRED with the reason, and the other interrupted
    job is recovered in the same `logist recover`."""
    poisoned = create(project, 'title = "nul"\n' + sh_step("s", "echo A > a.txt"))
    _tamper_command(project, poisoned, ["sh", "-c", "echo a\x00b"])
    r = logist(project, "job", "run", poisoned)
    no_traceback(r.stdout, r.stderr)
    assert manifest(project, poisoned)["state"] == "INTERVENTION_REQUIRED", r.stderr
    assert "NUL byte" in manifest(project, poisoned)["reason"]


def test_one_poisoned_job_is_reported_and_the_others_recover(project, monkeypatch, capsys):
    """Whatever one job's recovery raises (here a RecursionError injected into its step), it
    is reported with the error, the next interrupted job is recovered, and the exit is 1."""
    good1 = interrupted(project, "good one", "echo A > a.txt")
    bad = interrupted(project, "bad", "echo B > b.txt")
    good2 = interrupted(project, "good two", "echo C > c.txt")
    from logist.cli import main
    from logist.engine import job_processor

    real_step = job_processor.Engine.step

    def step(self, job_id, *a, **kw):
        if job_id == bad:
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")
        return real_step(self, job_id, *a, **kw)

    monkeypatch.setattr(job_processor.Engine, "step", step)
    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")
    code = main(["-C", str(project), "recover", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    by_id = {j["id"]: j for j in out["jobs"]}
    assert by_id[good1]["after"] == "SUCCESS" and by_id[good2]["after"] == "SUCCESS"
    assert "RecursionError" in by_id[bad]["error"] and f"recover --abandon {bad}" in by_id[bad]["error"]
    for j in (good1, good2):
        assert_consistent(project, j)
    # the poisoned job is still there, interrupted, and can be given up cleanly
    assert manifest(project, bad)["state"] in ("EXECUTING", "HARVESTING")
    monkeypatch.setattr(job_processor.Engine, "step", real_step)
    ab = logist(project, "recover", "--abandon", bad)
    assert ab.returncode == 0, ab.stderr
    assert manifest(project, bad)["state"] == "INTERVENTION_REQUIRED"


@pytest.mark.parametrize("damage", ["overwritten", "gitdir-elsewhere", "deleted"])
def test_an_agent_that_breaks_the_worktree_git_file_is_repaired(project, damage):
    script = {"overwritten": "echo A > a.txt; echo garbage > .git",
              "gitdir-elsewhere": "echo A > a.txt; echo 'gitdir: /nonexistent/x' > .git",
              "deleted": "echo A > a.txt; rm -f .git"}[damage]
    job = create(project, 'title = "breaks git"\n' + sh_step("s", script))
    r = logist(project, "job", "run", job)
    no_traceback(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert "repaired" in r.stderr, r.stderr
    assert manifest(project, job)["state"] == "SUCCESS"
    assert git(project, "show", f"logist/{job}:a.txt") == "A"  # the agent's work is in the job
    assert_consistent(project, job, files_added_once=("a.txt",))


def test_a_worktree_turned_into_another_repository_is_moved_aside(project):
    """`.git` replaced by a directory (a nested `git init`): its files are not committed into
    the wrong repository; the directory is kept aside and the worktree created again."""
    job = create(project, 'title = "nested"\n' + sh_step("s", "echo A > a.txt; rm -f .git; git init -q ."))
    r = logist(project, "job", "run", job)
    no_traceback(r.stdout, r.stderr)
    assert "moved" not in r.stderr or "kept at" in r.stderr
    assert "kept at" in r.stderr, r.stderr
    aside = [p for p in worktree(project, job).parent.iterdir() if p.name.startswith(f"{job}.broken-")]
    assert len(aside) == 1 and (aside[0] / "a.txt").read_text() == "A\n"
    state = manifest(project, job)["state"]
    assert state in ("SUCCESS", "INTERVENTION_REQUIRED")
    # the worktree made again is a good one (given back at SUCCESS: `job path` makes it once more)
    wt = Path(logist(project, "job", "path", job).stdout.strip()) if state == "SUCCESS" else worktree(project, job)
    assert (wt / ".git").is_file() and git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{job}"
    fsck = subprocess.run(["git", "-C", str(project), "fsck", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


@pytest.mark.parametrize("command", [["recover"], ["recover", "--abandon"], ["job", "cancel"]])
def test_a_job_wedged_in_harvesting_by_a_broken_worktree(project, command):
    """Interrupted after its agent exited, then its worktree's .git overwritten: `recover`,
    `recover --abandon` and `job cancel` each finish (exit 0, one consistent result)."""
    job = interrupted(project, "wedged", "echo A > a.txt")
    (worktree(project, job) / ".git").write_text("garbage\n")
    args = [*command, job]
    r = logist(project, *args)
    no_traceback(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    state = manifest(project, job)["state"]
    assert state == {"recover": "SUCCESS", "--abandon": "INTERVENTION_REQUIRED",
                     "cancel": "CANCELED"}[command[-1]], state
    assert git(project, "for-each-ref", f"refs/logist/locks/{job}") == ""
    fsck = subprocess.run(["git", "-C", str(project), "fsck", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0


def test_cancel_commits_and_exits_0_or_commits_nothing(project):
    """A cancel whose worktree cannot take the record's copy after the commit: the commit is
    the transition, so it exits 0 with a warning (never exit 1 with CANCELED committed)."""
    job = create(project, 'title = "cancel"\n' + sh_step("s", "echo A > a.txt"))
    wt = Path(logist(project, "job", "path", job).stdout.strip())
    (wt / ".git").write_text("garbage\n")
    before = refs(project)
    r = logist(project, "job", "cancel", job)
    no_traceback(r.stderr)
    if r.returncode == 0:
        assert manifest(project, job)["state"] == "CANCELED"
    else:
        assert refs(project) == before, r.stderr
