"""The record survives the agent (docs/architecture.md#invariants, 8).

Command steps play a hostile agent in the job's worktree: they edit or delete `.logist/`,
commit, amend, `reset --hard HEAD~2` and rebase the checked-out job branch. Harvest detects
it, restores the record on top of the agent's work, notes what happened, and every commit
logist made stays reachable (the branch, or refs/logist/displaced/<id>/<k>).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _crashkit import (
    assert_consistent,
    assert_released,
    create,
    fsck_clean,
    history,
    logist,
    manifest,
    run_dir,
    sh_step,
)
from conftest import git, wait_for

from logist.core.faults import crash_env

REC = ".logist/jobs/$LOGIST_JOB_ID"

HOSTILE = {
    "edit-record": f'echo garbage > {REC}/manifest.json; echo "{{}}" >> {REC}/history.jsonl; '
                   'echo w > edit.txt',
    "delete-logist": 'rm -rf .logist; echo w > delete.txt',
    "extra-record-file": f'echo evil > {REC}/extra.json; echo w > extra.txt',
    "commit": 'echo w > commit.txt; git add -A; git commit -qm "agent: work"',
    "commit-record": f'echo junk > {REC}/manifest.json; rm {REC}/history.jsonl; echo w > crec.txt; '
                     'git add -A; git commit -qm "agent: rewrote the record"',
    "amend": 'echo w > amend.txt; git add -A; git commit -q --amend -m "agent: amended"',
    "reset": 'git reset -q --hard HEAD~2; echo w > reset.txt',
    "rebase": 'git commit -q --allow-empty -m "agent: one"; '
              'git -c user.name=Rebaser -c user.email=r@example.invalid rebase -q --force-rebase HEAD~3; '
              'echo w > rebase.txt',
    "delete-and-commit": 'rm -rf .logist; echo w > dc.txt; git add -A; git commit -qm "agent: no record"',
}
FILES = {"edit-record": "edit.txt", "delete-logist": "delete.txt", "extra-record-file": "extra.txt",
         "commit": "commit.txt", "commit-record": "crec.txt", "amend": "amend.txt", "reset": "reset.txt",
         "rebase": "rebase.txt", "delete-and-commit": "dc.txt"}
REWRITES = {"amend", "reset", "rebase"}


def reachable_tids(repo) -> set[str]:
    out = git(repo, "log", "--all", "--format=%x1e%(trailers:key=Logist-Transition-Id,valueonly)")
    return {t.strip() for t in out.split("\x1e") if t.strip()}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_step_cannot_corrupt_the_record(project, kind):
    toml = ('title = "hostile"\n' + sh_step("warm-up", "echo 0 > warm.txt")
            + sh_step(kind, HOSTILE[kind]) + sh_step("after", "echo 1 > after.txt"))
    job = create(project, toml)
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stdout + r.stderr
    h = assert_consistent(project, job, files_added_once=("warm.txt", FILES[kind], "after.txt"),
                          rewritten=kind in REWRITES)
    m = manifest(project, job)
    assert [s["status"] for s in m["steps"]] == ["SUCCESS"] * 3
    # the hostile step's harvest says what happened
    harvest = [e for e in h if e.get("from") == "HARVESTING" and e.get("step") == 2][0]
    warnings = " ".join(harvest.get("data", {}).get("warnings", []))
    assert warnings, harvest
    if kind in REWRITES:
        assert "rewrote the job branch" in warnings
        displaced = git(project, "for-each-ref", "--format=%(refname)", f"refs/logist/displaced/{job}/")
        assert displaced.splitlines() == [f"refs/logist/displaced/{job}/1"]
    if kind in ("edit-record", "delete-logist", "extra-record-file", "commit-record", "delete-and-commit"):
        assert "job record" in warnings
    # every transition logist made is still reachable from some ref
    assert {e["transition_id"] for e in h} <= reachable_tids(project)
    # the agent's own commits are kept on the branch (or, when rewritten, reachable)
    if kind in ("commit", "commit-record", "delete-and-commit"):
        assert git(project, "log", "--format=%s", f"logist/{job}").count("agent:") == 1
    # nothing the agent left in the record directory stays in the worktree: it was given back
    # clean (an extra file there would have kept it)
    assert_released(project, job)


@pytest.mark.parametrize("kind", ["commit", "amend", "reset"])
def test_a_hostile_restep_keeps_logists_own_commits(project, tmp_path, kind):
    """An in-place restep's agent commits on, amends or resets the job branch: the outcome is
    recorded on logist's own restep start (its history kept, never an older record), what the
    agent rewrote away stays reachable, and the agent's commits stay on the branch."""
    marker = tmp_path / "hostile"
    toml = ('title = "hostile restep"\n' + sh_step("warm-up", "echo 0 > warm.txt")
            + sh_step(kind, f'if [ -e "{marker}" ]; then {HOSTILE[kind]}; fi; echo w >> r.txt'))
    job = create(project, toml)
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stdout + r.stderr
    start_tip = git(project, "rev-parse", f"refs/heads/logist/{job}")
    marker.write_text("")
    r = logist(project, "job", "restep", job, "2")
    assert r.returncode == 0, r.stdout + r.stderr
    h = history(project, job)
    start, done = h[-2], h[-1]
    assert (start["event"], start["data"]["phase"]) == ("restep", "start")
    assert (done["event"], done["data"]["phase"]) == ("restep", "done")
    assert done["data"]["success"] is True
    warnings = " ".join(done["data"].get("warnings", []))
    if kind == "commit":
        assert "made its own commits" in warnings
        assert git(project, "log", "--format=%s", f"logist/{job}").count("agent:") == 1
    else:
        assert "rewrote the job branch" in warnings, warnings
        displaced = git(project, "for-each-ref", "--format=%(objectname)", f"refs/logist/displaced/{job}/")
        # the restep's start (logist's commit the agent rewrote away) is kept
        assert git(project, "rev-parse", f"refs/heads/logist/{job}~0") != start_tip
        assert displaced.splitlines(), "nothing kept at refs/logist/displaced/"
    m = manifest(project, job)
    assert (m["state"], m["resteps"], m["execution"]) == ("SUCCESS", 1, None)
    # every transition logist made is still reachable from some ref, and git agrees the repo is sound
    assert {e["transition_id"] for e in h} <= reachable_tids(project)
    fsck_clean(project)


def test_hostile_agent_and_a_crash(project, tmp_path):
    """The agent deletes the record and commits, and the runner dies meanwhile: the tip has no
    record at all. Commands say so (no traceback); recovery restores the record from logist's
    own EXECUTING commit and carries on."""
    gate = tmp_path / "gate"
    toml = ('title = "hostile crash"\n'
            + sh_step("evil", f'while [ ! -f "{gate}" ]; do sleep 0.05; done; rm -rf .logist; '
                              'echo w > evil.txt; git add -A; git commit -qm "agent: gone"')
            + sh_step("after", "echo 1 > after.txt"))
    job = create(project, toml)
    r = logist(project, "job", "run", job, env=crash_env("agent-running"))
    assert r.returncode == 137
    gate.write_text("go")
    wait_for(lambda: list(run_dir(project, job).glob("exec-*.exit")), what="the agent to finish")
    st = logist(project, "job", "status", job)
    assert st.returncode == 1 and "has no record" in st.stderr and "logist recover" in st.stderr
    assert "Traceback" not in st.stderr
    lst = logist(project, "recover", "--list", "--json")
    (entry,) = json.loads(lst.stdout)
    assert entry["state"] == "EXECUTING" and entry["action"].startswith("harvest the finished agent")
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    run = logist(project, "job", "run", job)
    assert run.returncode == 0, run.stderr
    h = assert_consistent(project, job, files_added_once=("evil.txt", "after.txt"))
    assert any("job record" in w for e in h for w in e.get("data", {}).get("warnings", []))


def test_reset_then_crash_keeps_commits_reachable(project, tmp_path):
    """The agent resets the branch back past logist's commits and the runner dies: recovery
    keeps logist's EXECUTING commit reachable (displaced ref) and finishes the step."""
    gate = tmp_path / "gate"
    toml = ('title = "reset crash"\n' + sh_step("warm", "echo 0 > warm.txt")
            + sh_step("reset", f'while [ ! -f "{gate}" ]; do sleep 0.05; done; git reset -q --hard HEAD~3; '
                               'echo w > r.txt'))
    job = create(project, toml)
    r = logist(project, "job", "run", job, env=crash_env("agent-running", 2))
    assert r.returncode == 137
    gate.write_text("go")
    wait_for(lambda: list(run_dir(project, job).glob("exec-*.exit")), what="the agent to finish")
    before = reachable_tids(project)
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    h = assert_consistent(project, job, files_added_once=("r.txt",), rewritten=True)
    assert {e["transition_id"] for e in h} <= reachable_tids(project)
    assert before <= reachable_tids(project)
    assert git(project, "for-each-ref", f"refs/logist/displaced/{job}/")


# ---------------------------------------------------------------- symlinks out of the worktree

def _hooks(repo) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((repo / ".git" / "hooks").iterdir()) if p.is_file()}


def test_mock_writes_never_follow_a_link_the_agent_made(project, tmp_path):
    """Step 1 (an agent) plants links; step 2's mock writes through them are refused, nothing
    outside the worktree changes, and the job stops for a person."""
    from _crashkit import mock_step

    outside = tmp_path / "outside"
    outside.mkdir()
    hooks = "../" * 40 + str(project / ".git" / "hooks").lstrip("/")
    toml = ('title = "links"\n' + sh_step("plant", f"ln -s {hooks} hk; ln -s {outside} abs")
            + mock_step("through", {"hk/post-merge": "#!/bin/sh\necho PWNED\n"}))
    job = create(project, toml)
    before = _hooks(project)
    r = logist(project, "job", "run", job)
    assert manifest(project, job)["state"] == "INTERVENTION_REQUIRED", r.stdout + r.stderr
    assert "never writes through a symlink" in logist(project, "job", "log", job).stdout
    assert _hooks(project) == before and list(outside.iterdir()) == []
    # and the second path, absolute
    toml = ('title = "abs"\n' + sh_step("plant", f"ln -s {outside} abs")
            + mock_step("through", {"abs/x.txt": "owned"}))
    job = create(project, toml)
    logist(project, "job", "run", job)
    assert manifest(project, job)["state"] == "INTERVENTION_REQUIRED"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("what", ["record-dir", "logist-dir", "record-file"])
def test_record_writes_never_follow_a_link_the_agent_made(project, tmp_path, what):
    """The agent replaces the record directory (or .logist, or manifest.json) by a link to a
    directory outside; logist's next record writes replace the link, never write through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "jobs").mkdir()
    script = {"record-dir": f'rm -rf {REC}; ln -s {outside} {REC}',
              "logist-dir": f'rm -rf .logist; ln -s {outside} .logist',
              "record-file": f'rm {REC}/manifest.json; ln -s {outside}/victim {REC}/manifest.json',
              }[what] + "; echo w > work.txt"
    (outside / "victim").write_text("precious\n")
    job = create(project, 'title = "rec"\n' + sh_step("link", script) + sh_step("after", "echo 1 > a.txt"))
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["jobs", "victim"]
    assert list((outside / "jobs").iterdir()) == []
    assert (outside / "victim").read_text() == "precious\n"
    m = manifest(project, job)
    assert m["state"] == "SUCCESS"
    # the record on the branch is a real directory of real files, verified with git
    tree = git(project, "ls-tree", "-r", f"logist/{job}", "--", f".logist/jobs/{job}")
    assert tree and all(line.startswith("100644 blob") for line in tree.splitlines()), tree
    assert git(project, "fsck", "--no-dangling") == ""


# ---------------------------------------------------------------- outcome blocks the agent prints

def _outcome_job(project, tmp_path, payload: str, *, max_attempts: int = 1) -> str:
    import sys

    out = tmp_path / f"outcome-{abs(hash(payload)) % 10**8}.txt"
    out.write_text("working\n```json\n" + payload + "\n```\n")
    toml = (f'title = "outcome"\n[budget]\nmax_attempts = {max_attempts}\n[[steps]]\nname = "say"\n'
            f'agent = "command"\ncommand = {json.dumps([sys.executable, "-c", f"print(open({str(out)!r}).read())"])}\n')
    return create(project, toml)


DEEP = "[" * 100_000 + "]" * 100_000
OUTCOMES = [
    # (payload, final state, words in the harvest's reason or warnings)
    ('{"action":"STUCK","summary":"cannot continue","tokens":-1}', "INTERVENTION_REQUIRED",
     ["agent is stuck: cannot continue", "outcome tokens -1"]),
    ('{"action":"STUCK","summary":"no","cost_usd":"abc"}', "INTERVENTION_REQUIRED", ['cost_usd "abc"']),
    ('{"action":"STUCK","summary":"no","evidence_files":"a.py"}', "INTERVENTION_REQUIRED",
     ['evidence_files "a.py" is not a list']),
    ('{"action":"RETRY","summary":"again","approval":"no","tokens":1e400}', "INTERVENTION_REQUIRED",
     ["RETRY exhausted", "approval"]),
    ('{"action":"COMPLETED","summary":"ok","approval":"no"}', "APPROVAL_REQUIRED",
     ['approval "no" is not true or false']),
    ('{"action":123}', "INTERVENTION_REQUIRED", ["unknown action 123"]),
    ('{"action":"DESTROY"}', "INTERVENTION_REQUIRED", ['unknown action "DESTROY"']),
    ('{"action":"completed"}', "INTERVENTION_REQUIRED", ['unknown action "completed"']),
    ('{"action":"COMPLETED","cost_usd":1e300,"tokens":' + "9" * 400 + "}", "SUCCESS",
     ["outcome cost_usd 1e+300", "outcome tokens"]),
    ('{"action": ' + DEEP + "}", "INTERVENTION_REQUIRED", ["larger than"]),
    ('{"action":"STUCK","x":' + "[" * 40 + "]" * 40 + "}", "INTERVENTION_REQUIRED", ["nested deeper"]),
    (DEEP, "SUCCESS", []),  # not an outcome at all: a command's exit 0 is COMPLETED
]


@pytest.mark.parametrize("payload,state,words", OUTCOMES, ids=[str(i) for i in range(len(OUTCOMES))])
def test_a_malformed_outcome_never_becomes_success(project, tmp_path, payload, state, words):
    job = _outcome_job(project, tmp_path, payload)
    r = logist(project, "job", "run", job)
    assert "Traceback" not in r.stderr, r.stderr
    m = manifest(project, job)
    assert m["state"] == state, (m["state"], m["reason"], r.stderr)
    assert r.returncode == {"SUCCESS": 0, "APPROVAL_REQUIRED": 5}.get(state, 6), r.stderr  # docs/exit-codes.md
    raw = git(project, "show", f"logist/{job}:.logist/jobs/{job}/history.jsonl")
    hist = [json.loads(line) for line in raw.splitlines()]
    harvest = [e for e in hist if e.get("from") == "HARVESTING"][-1]
    said = harvest.get("reason", "") + " " + " ".join(harvest.get("data", {}).get("warnings", []))
    for w in words:
        assert w in said, said
    # amounts in the record stay finite, non-negative and bounded
    assert 0 <= m["cost_usd"] <= 1e6 and 0 <= m["tokens"] <= 10**12
    assert logist(project, "recover", "--check").returncode == 0


# ---------------------------------------------------------------- erasing or forging the record

def _tips(repo, job: str) -> str:
    return git(repo, "rev-parse", "-q", "--verify", f"refs/logist/tips/{job}")


@pytest.mark.parametrize("what", ["delete-branch", "delete-branch-and-copy", "forge-tip"])
def test_an_agent_cannot_erase_or_forge_the_job(project, what):
    script = {"delete-branch": 'git update-ref -d "refs/heads/logist/$LOGIST_JOB_ID"',
              "delete-branch-and-copy": 'git update-ref -d "refs/heads/logist/$LOGIST_JOB_ID"; '
                                        'git update-ref -d "refs/logist/tips/$LOGIST_JOB_ID"',
              "forge-tip": 'git update-ref "refs/heads/logist/$LOGIST_JOB_ID" "$(git rev-parse main)"',
              }[what] + "; echo w > erased.txt"
    job = create(project, 'title = "eraser"\n' + sh_step("warm", "echo 0 > warm.txt") + sh_step(what, script)
                 + sh_step("after", "echo 1 > after.txt"))
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stdout + r.stderr
    m = manifest(project, job)
    assert m["state"] == "SUCCESS" and [s["status"] for s in m["steps"]] == ["SUCCESS"] * 3
    # logist's copy moves with the branch; every transition logist made is reachable (git says so)
    assert _tips(project, job) == git(project, "rev-parse", f"logist/{job}")
    hist = [json.loads(x) for x in git(project, "show", f"logist/{job}:.logist/jobs/{job}/history.jsonl").splitlines()]
    assert {e["transition_id"] for e in hist} <= reachable_tids(project)
    harvest = [e for e in hist if e.get("from") == "EXECUTING" and e.get("step") == 2][0]
    said = " ".join(harvest.get("data", {}).get("warnings", []))
    if what.startswith("delete"):
        assert "branch" in said and "restored" in said, said
    else:
        assert "rewrote the job branch" in said, said
    assert git(project, "fsck", "--no-dangling") == ""


def test_a_deleted_branch_is_restored_by_the_next_command_and_doctor_says_so(project):
    job = create(project, 'title = "gone"\n' + sh_step("one", "echo 1 > one.txt"))
    assert logist(project, "job", "run", job).returncode == 0
    tip = git(project, "rev-parse", f"logist/{job}")
    git(project, "update-ref", "-d", f"refs/heads/logist/{job}")
    d = logist(project, "doctor", "--json")
    found = [f for f in json.loads(d.stdout)["findings"] if f["kind"] == "erased-branch"]
    assert found and found[0]["job"] == job and "rm " not in found[0]["fix"] and "--force" not in found[0]["fix"]
    assert logist(project, "doctor", "--fix").returncode == 0
    assert git(project, "rev-parse", f"logist/{job}") == tip
    git(project, "update-ref", "-d", f"refs/heads/logist/{job}")
    st = logist(project, "job", "status", job, "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["state"] == "SUCCESS"
    assert git(project, "rev-parse", f"logist/{job}") == tip


def test_doctor_never_advises_deleting_the_last_ref_of_commits(project):
    job = create(project, 'title = "orphan"\n' + sh_step("one", "echo 1 > one.txt"))
    assert logist(project, "job", "run", job).returncode == 0
    wt = Path(logist(project, "job", "path", job).stdout.strip())  # given back at SUCCESS: made again
    git(wt, "commit", "-q", "--allow-empty", "-m", "work only the worktree has")
    head = git(wt, "rev-parse", "HEAD")
    (wt / "dirty.txt").write_text("x")
    git(project, "update-ref", "-d", f"refs/heads/logist/{job}")
    git(project, "update-ref", "-d", f"refs/logist/tips/{job}")
    d = json.loads(logist(project, "doctor", "--json").stdout)
    (f,) = [f for f in d["findings"] if f["kind"] == "orphaned-worktree"]
    assert f"git update-ref refs/logist/archive/{job} {head}" in f["fix"]
    assert f["fix"].index("update-ref") < f["fix"].index("worktree remove")


def test_a_step_cannot_change_the_repository_config(project, tmp_path):
    git(project, "config", "user.name", "Person")
    script = (f"git config core.hooksPath {tmp_path}/evil-hooks; git config alias.st '!touch pwned'; "
              "git config user.name Agent; git config --unset notes.displayRef; echo w > c.txt")
    job = create(project, 'title = "config"\n' + sh_step("cfg", script) + sh_step("after", "echo 1 > a.txt"))
    r = logist(project, "job", "run", job)
    assert r.returncode == 0, r.stdout + r.stderr
    # checked with git itself, in the main checkout
    assert git(project, "config", "--get", "core.hooksPath", check=False) == ""
    assert git(project, "config", "--get", "alias.st", check=False) == ""
    assert git(project, "config", "--get", "user.name") == "Person"
    hist = [json.loads(x) for x in git(project, "show", f"logist/{job}:.logist/jobs/{job}/history.jsonl").splitlines()]
    said = " ".join(w for e in hist for w in e.get("data", {}).get("warnings", []))
    assert "git config" in said and "core.hookspath" in said.lower() and "alias.st" in said
