"""The git-native job store (docs/refs.md, docs/architecture.md#invariants): a job is a branch plus a worktree,
every transition is one commit made through the worktree and published by compare-and-swap."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from _core import (
    create_from_toml,
    create_job,
    git_input,
    history_at,
    job_worktree,
    record_at,
    refs_snapshot,
    subject,
    tip,
    trailers,
    tree_digest,
    worktree_status,
    write,
)
from _oracle import Oracle
from conftest import git, wtdir

from logist.core.errors import ConcurrentUpdateError, ManifestError
from logist.core.model import State

TRANSITION_SUBJECT = re.compile(r"^logist\(([a-z0-9-]+)\): ([A-Z_]+|create) -> ([A-Z_]+) \(step (\d+)/(\d+)\)$")
REQUIRED_TRAILERS = ("Logist-Job", "Logist-Run", "Logist-Step", "Logist-From", "Logist-To",
                     "Logist-Transition-Id")


def store_of(repo):
    from logist.store.jobstore import JobStore

    return JobStore.discover(repo)


def user_checkout(repo: Path) -> dict:
    """Everything of the user's own checkout that logist must never touch."""
    index = repo / ".git" / "index"
    return {
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "head_oid": git(repo, "rev-parse", "HEAD"),
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "files": tree_digest(repo, skip=(".git",)),
        "status": git(repo, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"),
        "branches": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main"),
    }


def fsck_clean(repo: Path) -> None:
    import subprocess

    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [line for line in (proc.stdout + proc.stderr).splitlines()
           if line.split(" ")[0] in ("error:", "missing", "broken", "warning") or "error" in line]
    assert not bad, bad


def check_transition_commit(repo: Path, oid: str, job_id: str) -> dict:
    """Subject, trailers and record of one logist commit agree; returns the trailers."""
    subj = subject(repo, oid)
    m = TRANSITION_SUBJECT.match(subj)
    assert m, subj
    t = trailers(repo, oid)
    for key in REQUIRED_TRAILERS:
        assert t.get(key), (key, subj, t)
    rec = record_at(repo, oid, job_id)
    assert m.group(1) == t["Logist-Job"] == job_id
    assert m.group(2) == t["Logist-From"] and m.group(3) == t["Logist-To"] == rec["state"]
    assert f"{m.group(4)}/{m.group(5)}" == t["Logist-Step"]
    assert int(m.group(5)) == len(rec["steps"])
    assert t["Logist-Run"] == str(rec["run"])
    last = history_at(repo, oid, job_id)[-1]
    assert last["transition_id"] == t["Logist-Transition-Id"]
    assert last["to"] == rec["state"]
    return t


# ----------------------------------------------------------------------------- create

def test_create_makes_branch_worktree_and_first_commit(cli):
    repo = cli.repo
    head = git(repo, "rev-parse", "HEAD")
    r = cli.ok("job", "create", "--title", "Add greeting", "--step", "write it", "--step", "check it", "--json")
    data = r.json()
    job_id = data["id"]
    assert re.fullmatch(r"add-greeting-[a-z0-9]{4}", job_id)
    assert data["branch"] == f"logist/{job_id}"
    oid = tip(repo, job_id)
    assert git(repo, "rev-parse", f"{oid}^") == head  # built on --base (default HEAD)
    assert git(repo, "rev-list", "--count", f"{head}..{oid}") == "1"
    # the first commit holds the record and nothing else changes
    assert git(repo, "diff", "--name-only", head, oid).splitlines() == [
        f".logist/jobs/{job_id}/history.jsonl", f".logist/jobs/{job_id}/manifest.json"]
    rec = record_at(repo, oid, job_id)
    assert (rec["id"], rec["state"], rec["step"], rec["run"], rec["base"]) == (job_id, "DRAFT", 1, 1, head)
    assert [s["prompt"] for s in rec["steps"]] == ["write it", "check it"]
    assert [e["event"] for e in history_at(repo, oid, job_id)] == ["create"]
    t = check_transition_commit(repo, oid, job_id)
    assert t["Logist-From"] == "create" and t["Logist-To"] == "DRAFT"
    # no worktree yet (the first step makes it); `job path` makes it now: outside the user's
    # working tree and the git directory, on the job branch
    wt = Path(data["worktree"])
    assert wt == wtdir(repo) / job_id and not wt.exists()
    assert str(wt) not in git(repo, "worktree", "list", "--porcelain")
    assert job_worktree(cli, job_id) == wt
    assert git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{job_id}"
    assert (wt / "README.md").read_text() == "# project\n"
    assert json.loads((wt / ".logist" / "jobs" / job_id / "manifest.json").read_text()) == rec
    assert worktree_status(wt) == ""
    assert str(wt) in git(repo, "worktree", "list", "--porcelain")
    oracle = Oracle(repo)
    assert oracle.check_job(job_id, state="DRAFT") == rec and oracle.tip(job_id) == oid
    fsck_clean(repo)


def test_create_from_another_base(cli):
    repo = cli.repo
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo / "feature.txt", "f\n")
    git(repo, "add", "feature.txt")
    git(repo, "commit", "-q", "-m", "feature")
    feature = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    job_id = create_job(cli, "--title", "On feature", "--step", "x", "--base", "feature")
    assert git(repo, "rev-parse", f"{tip(repo, job_id)}^") == feature
    assert record_at(repo, tip(repo, job_id), job_id)["base"] == feature
    assert (job_worktree(cli, job_id) / "feature.txt").exists()


def test_create_with_activate_and_explicit_id(cli):
    job_id = create_job(cli, "--title", "T", "--step", "x", "--activate", "--id", "my-job-1")
    assert job_id == "my-job-1"
    assert record_at(cli.repo, tip(cli.repo, job_id), job_id)["state"] == "PENDING"
    r = cli("job", "create", "--title", "T", "--step", "x", "--id", "my-job-1")
    assert r.code == 1 and "already exists" in r.err


def test_worktree_dir_is_configurable(cli, tmp_path):
    where = tmp_path / "elsewhere"
    cfg = cli.repo / ".logist" / "config.toml"
    cfg.write_text(cfg.read_text().replace('dir = ""', f'dir = "{where}"'))
    job_id = create_job(cli, "--title", "Moved", "--step", "x")
    assert cli.ok("job", "path", job_id).out.strip() == str(where / job_id)
    assert git(where / job_id, "symbolic-ref", "HEAD") == f"refs/heads/logist/{job_id}"


# ----------------------------------------------------------------------------- transitions

def test_each_transition_is_one_commit_with_subject_and_trailers(cli):
    repo = cli.repo
    job_id = create_job(cli, "--title", "Walk", "--step", "a", "--step", "b")
    wt = job_worktree(cli, job_id)
    expected = ["DRAFT"]
    for action, state in (("activate", "PENDING"), ("suspend", "SUSPENDED"), ("resume", "PENDING"),
                          ("cancel", "CANCELED")):
        before = tip(repo, job_id)
        cli.ok("job", action, job_id)
        after = tip(repo, job_id)
        assert git(repo, "rev-parse", f"{after}^") == before  # exactly one commit on top
        t = check_transition_commit(repo, after, job_id)
        assert (t["Logist-From"], t["Logist-To"]) == (expected[-1], state)
        assert subject(repo, after) == f"logist({job_id}): {expected[-1]} -> {state} (step 1/2)"
        if state == "CANCELED":  # a finished job gives its clean worktree back
            assert not wt.exists() and str(wt) not in git(repo, "worktree", "list", "--porcelain")
        else:
            assert worktree_status(wt) == ""
        assert cli.ok("job", "status", job_id, "--json").json()["state"] == state
        expected.append(state)
    # the log alone is enough to audit the job
    tos = git(repo, "log", "--reverse", "--format=%(trailers:key=Logist-To,valueonly)", f"logist/{job_id}",
              "--not", "main").split()
    assert tos == expected
    hist = history_at(repo, tip(repo, job_id), job_id)
    assert [e["to"] for e in hist] == expected
    assert Oracle(repo).check_job(job_id, state="CANCELED")["steps"][1]["prompt"] == "b"
    fsck_clean(repo)


def test_transition_ids_are_unique(cli):
    job_id = create_job(cli, "--title", "Ids", "--step", "a")
    for action in ("activate", "suspend", "resume", "suspend"):
        cli.ok("job", action, job_id)
    ids = git(cli.repo, "log", "--format=%(trailers:key=Logist-Transition-Id,valueonly)",
              f"logist/{job_id}", "--not", "main").split()
    assert len(ids) == 5 and len(set(ids)) == 5


def test_a_message_goes_into_the_commit(cli):
    job_id = create_job(cli, "--title", "Msg", "--step", "a", "--activate")
    cli.ok("job", "suspend", job_id, "--message", "waiting for the API keys")
    body = git(cli.repo, "log", "-1", "--format=%b", f"logist/{job_id}")
    assert "waiting for the API keys" in body
    assert history_at(cli.repo, tip(cli.repo, job_id), job_id)[-1]["reason"] == "waiting for the API keys"


def test_the_tip_record_is_the_state_not_the_working_copy(cli):
    repo = cli.repo
    job_id = create_job(cli, "--title", "Truth", "--step", "a", "--activate")
    store = store_of(repo)
    wt = job_worktree(cli, job_id)
    copy = wt / ".logist" / "jobs" / job_id / "manifest.json"
    forged = json.loads(copy.read_text())
    forged["state"] = "SUCCESS"
    forged["cost_usd"] = 99.0
    copy.write_text(json.dumps(forged))
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "PENDING"
    assert store.read(job_id)[1].state == State.PENDING
    cli.ok("job", "suspend", job_id)  # the next transition overwrites the working copy
    assert json.loads(copy.read_text())["state"] == "SUSPENDED"
    assert json.loads(copy.read_text())["cost_usd"] == 0.0
    assert worktree_status(wt) == ""
    # and a direct repair reports that the copy differed
    copy.write_text("garbage")
    assert store.sync_worktree_record(job_id) is True
    assert store.sync_worktree_record(job_id) is False
    assert copy.read_bytes() == git(repo, "show", f"logist/{job_id}:.logist/jobs/{job_id}/manifest.json"
                                    ).encode() + b"\n"
    assert worktree_status(wt) == ""


def test_agent_style_commit_after_a_transition_keeps_the_record(cli):
    """The worktree's index must follow the branch, or `git add -A && git commit` in the worktree
    silently reverts the last transition (docs/architecture.md#known-hazards-of-git)."""
    repo = cli.repo
    job_id = create_job(cli, "--title", "Agent commits", "--step", "a")
    wt = job_worktree(cli, job_id)
    for n, action in enumerate(("activate", "suspend", "resume")):
        cli.ok("job", action, job_id)
        logist_tip = tip(repo, job_id)
        write(wt / f"work{n}.txt", f"agent work {n}\n")
        git(wt, "add", "-A")
        git(wt, "commit", "-q", "-m", f"agent commit {n}")
        agent_tip = tip(repo, job_id)
        assert agent_tip != logist_tip
        assert git(repo, "diff", "--name-only", logist_tip, agent_tip).splitlines() == [f"work{n}.txt"]
        assert record_at(repo, agent_tip, job_id) == record_at(repo, logist_tip, job_id)
        assert history_at(repo, agent_tip, job_id) == history_at(repo, logist_tip, job_id)
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "PENDING"
    cli.ok("job", "cancel", job_id)
    final = tip(repo, job_id)
    assert record_at(repo, final, job_id)["state"] == "CANCELED"
    for n in range(3):  # the agent's work survives logist's next commit
        assert git(repo, "show", f"{final}:work{n}.txt") == f"agent work {n}"
    assert not wt.exists()  # all of it is on the branch: the worktree was given back
    fsck_clean(repo)


def test_users_checkout_is_never_touched(cli):
    repo = cli.repo
    write(repo / "staged.txt", "staged\n")
    git(repo, "add", "staged.txt")
    write(repo / "README.md", "# project, edited but not staged\n")
    write(repo / "scratch.txt", "untracked\n")
    before = user_checkout(repo)
    job_id = create_from_toml(cli, '''
title = "Hands off"
[[steps]]
prompt = "write"
[steps.mock]
writes = { "README.md" = "agent's readme\\n", "new.txt" = "new\\n" }
[[steps]]
prompt = "check"
command = ["python3", "-c", "open('checked.txt', 'w').write('ok')"]
''', "--activate")
    cli.ok("job", "run", job_id)
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"
    cli.ok("job", "list", "--all")
    assert user_checkout(repo) == before
    final = tip(repo, job_id)
    assert git(repo, "show", f"{final}:README.md") == "agent's readme"
    assert git(repo, "show", f"{final}:checked.txt") == "ok"
    fsck_clean(repo)


def test_worktree_is_clean_after_every_engine_transition(cli):
    """Every commit of a step leaves nothing in the worktree that logist caused."""
    from logist.engine.job_processor import Engine

    repo = cli.repo
    job_id = create_from_toml(cli, '''
title = "Clean steps"
[[steps]]
prompt = "one"
[steps.mock]
writes = { "one.txt" = "1\\n" }
[[steps]]
prompt = "two"
[steps.mock]
writes = { "sub/two.txt" = "2\\n" }
''', "--activate")
    store = store_of(repo)
    wt = store.worktree_path(job_id)
    seen = []

    def progress(msg):
        if " -> " not in msg or not wt.exists():
            return
        status = worktree_status(wt)
        seen.append((msg, status))

    Engine(store, progress=progress, watch=False).run(job_id)
    assert len(seen) == 7  # 4 transitions per step; the worktree is made by the first
    for msg, status in seen:
        ours = [line for line in status.splitlines() if ".logist" in line]
        assert not ours, (msg, status)
        if msg.split(" -> ")[1].startswith(("PENDING", "SUCCESS")):
            assert status == "", (msg, status)
    assert not wt.exists()  # SUCCESS: released, everything is on the branch
    commits = git(repo, "rev-list", "--reverse", f"logist/{job_id}", "--not", "main").split()
    assert len(commits) == 1 + 8  # create + one commit per transition
    for oid in commits:
        check_transition_commit(repo, oid, job_id)
    hist = history_at(repo, commits[-1], job_id)
    assert len(hist) == len(commits)
    fsck_clean(repo)


# ----------------------------------------------------------------------------- compare-and-swap

def test_publish_refuses_a_moved_branch(cli):
    repo = cli.repo
    job_id = create_job(cli, "--title", "CAS", "--step", "a")
    store = store_of(repo)
    stale_tip, stale = store.read(job_id)
    cli.ok("job", "activate", job_id)
    before = refs_snapshot(repo)
    from logist.store.job_state import Update, apply_update

    new, entry = apply_update(stale, Update(event="cancel"), now="2030-01-01T00:00:00Z", transition_id="x" * 16)
    with pytest.raises(ConcurrentUpdateError) as info:
        store.commit_transition(job_id, stale_tip, new, [entry])
    assert info.value.exit_code == 4
    assert refs_snapshot(repo) == before
    assert not store.worktree_path(job_id).exists()  # none made by the refused transition


def test_publish_is_fenced_by_the_lease(cli):
    from logist.store.job_state import Update, apply_update
    from logist.store.locks import acquire

    repo = cli.repo
    job_id = create_job(cli, "--title", "Fence", "--step", "a")
    store = store_of(repo)
    t, m = store.read(job_id)
    new, entry = apply_update(m, Update(event="activate"), now="2030-01-01T00:00:00Z", transition_id="y" * 16)
    before = refs_snapshot(repo)
    with pytest.raises(ConcurrentUpdateError, match="lost its lease"):  # no lock held at all
        store.commit_transition(job_id, t, new, [entry], lease="1" * 40)
    assert refs_snapshot(repo) == before
    with acquire(store, job_id) as lease:
        lease.heartbeat()
        store.commit_transition(job_id, t, new, [entry], lease=lease.oid)
    assert store.read(job_id)[1].state == State.PENDING
    assert "refs/logist/locks/" not in refs_snapshot(repo)  # released
    # another process takes the lease over: this one's next write is refused
    t, m = store.read(job_id)
    new, entry = apply_update(m, Update(event="suspend"), now="2030-01-01T00:00:01Z", transition_id="z" * 16)
    lease = acquire(store, job_id)
    thief = git_input(repo, "hash-object", "-w", "--stdin", input='{"pid": 1, "host": "elsewhere"}')
    git(repo, "update-ref", f"refs/logist/locks/{job_id}", thief, lease.oid)
    before = refs_snapshot(repo)
    with pytest.raises(ConcurrentUpdateError):
        store.commit_transition(job_id, t, new, [entry], lease=lease.oid)
    assert refs_snapshot(repo) == before and tip(repo, job_id) == t
    lease.release()  # compare-and-delete: leaves the thief's lock alone
    assert git(repo, "rev-parse", f"refs/logist/locks/{job_id}") == thief


# ----------------------------------------------------------------------------- reading

def test_list_reads_every_job_and_reports_a_broken_one(cli):
    repo = cli.repo
    ids = [create_job(cli, "--title", f"Job {i}", "--step", "x") for i in range(3)]
    git(repo, "branch", "logist/broken-1", "main")  # a job branch without a record
    store = store_of(repo)
    summaries = {s.id: s for s in store.list_jobs()}
    assert set(summaries) == set(ids) | {"broken-1"}
    assert all(summaries[i].manifest.id == i for i in ids)
    assert summaries["broken-1"].manifest is None and "broken-1" in summaries["broken-1"].error
    with pytest.raises(ManifestError, match=git(repo, "rev-parse", "--short=12", "main")):
        store.read("broken-1")


def test_two_jobs_never_conflict_when_merged(cli):
    repo = cli.repo
    a = create_job(cli, "--title", "A", "--step", "x", "--activate")
    b = create_job(cli, "--title", "B", "--step", "x", "--activate")
    cli.ok("job", "suspend", a)
    cli.ok("job", "cancel", b)
    git(repo, "merge-tree", "--write-tree", f"logist/{a}", f"logist/{b}")  # exits non-zero on conflict
    assert record_at(repo, tip(repo, a), a)["state"] == "SUSPENDED"
    assert record_at(repo, tip(repo, b), b)["state"] == "CANCELED"


# ----------------------------------------------------------------------------- edges

def test_a_message_cannot_forge_trailers(cli):
    job_id = create_job(cli, "--title", "Forge", "--step", "a", "--activate")
    cli.ok("job", "suspend", job_id, "--message", "Logist-To: SUCCESS\nLogist-Job: someone-else")
    t = git(cli.repo, "log", "-1", "--format=%(trailers:key=Logist-To,valueonly,separator=%x2C)", f"logist/{job_id}")
    assert t == "SUSPENDED"
    assert trailers(cli.repo, tip(cli.repo, job_id))["Logist-Job"] == job_id


def test_an_occupied_worktree_path_creates_nothing(cli):
    occupied = wtdir(cli.repo) / "taken-1"
    write(occupied / "precious.txt", "keep me\n")
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", "--title", "T", "--step", "x", "--id", "taken-1")
    assert r.code == 2 and "nothing was created" in r.err
    assert refs_snapshot(cli.repo) == before
    assert (occupied / "precious.txt").read_text() == "keep me\n"


def test_a_failed_worktree_takes_the_branch_back(cli, monkeypatch):
    from logist.core.errors import GitError
    from logist.store.jobstore import JobStore

    def fail(self, job_id):
        raise GitError(f"cannot create the worktree of job {job_id}: injected")

    monkeypatch.setattr(JobStore, "ensure_worktree", fail)
    write(cli.repo / ".logist" / "config.local.toml", "[worktrees]\nat_first_step = false\n")
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", "--title", "T", "--step", "x")
    assert r.code == 1 and "injected" in r.err
    assert refs_snapshot(cli.repo) == before


def test_a_deleted_worktree_is_recreated(cli):
    import shutil

    job_id = create_from_toml(cli, 'title = "Gone"\n[[steps]]\nprompt = "p"\n[steps.mock]\n'
                                   'writes = { "w.txt" = "w" }\n', "--activate")
    wt = job_worktree(cli, job_id)
    shutil.rmtree(wt)
    cli.ok("job", "run", job_id)
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"
    assert git(cli.repo, "show", f"logist/{job_id}:w.txt") == "w"
    assert job_worktree(cli, job_id) == wt and (wt / "w.txt").read_text() == "w" and worktree_status(wt) == ""


def test_concurrent_transitions_make_exactly_one_commit(cli):
    """Four processes race to activate one job: one wins, the others are refused or busy."""
    import subprocess
    import sys

    job_id = create_job(cli, "--title", "Race", "--step", "x")
    before = tip(cli.repo, job_id)
    procs = [subprocess.Popen([sys.executable, "-m", "logist", "job", "activate", job_id], cwd=cli.repo,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, err))
    codes = sorted(c for c, _ in results)
    assert codes.count(0) == 1 and set(codes) <= {0, 1, 4}, results
    for _, err in results:
        assert "Traceback" not in err
    after = tip(cli.repo, job_id)
    assert git(cli.repo, "rev-list", "--count", f"{before}..{after}") == "1"
    assert record_at(cli.repo, after, job_id)["state"] == "PENDING"
    assert "refs/logist/locks/" not in refs_snapshot(cli.repo)
    assert not store_of(cli.repo).worktree_path(job_id).exists()  # a transition alone makes none
    fsck_clean(cli.repo)


@pytest.mark.parametrize("configured", ["", "../job-worktrees"])
def test_logist_works_from_inside_a_job_worktree(cli, configured):
    """An agent running `logist job status` in its own worktree sees the same job and paths."""
    cfg = cli.repo / ".logist" / "config.toml"
    cfg.write_text(cfg.read_text().replace('dir = ""', f'dir = "{configured}"'))
    job_id = create_job(cli, "--title", "Inside", "--step", "x", "--activate")
    wt = job_worktree(cli, job_id)
    from_main = cli.ok("job", "status", job_id, "--json").json()
    assert Path(from_main["worktree"]) == wt
    if configured:
        assert wt == (cli.repo.parent / "job-worktrees" / job_id)
    from_inside = cli.ok("job", "status", job_id, "--json", cwd=wt).json()
    assert from_inside == from_main
    cli.ok("job", "suspend", job_id, cwd=wt)
    assert worktree_status(wt) == ""
