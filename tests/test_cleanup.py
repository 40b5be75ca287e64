"""Cleanup after pull requests (docs/sharing.md, cleanup): merge commit, fast-forward and squash merges are
recognised; unmerged, DRAFT, PENDING, record-only and unpushed jobs are never touched; nothing is
deleted before refs/logist/archive/<id> is written; dry run by default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _sharekit import lg, make_job, refs_snapshot, remote_refs
from conftest import git, wtdir


def server_merge(net, jid: str, how: str, *, extra: str | None = None) -> Path:
    """Merge origin/logist/<jid> into main in a second clone and push main (a merged PR)."""
    srv = net.tmp / "server"
    if not srv.exists():
        git(net.tmp, "clone", "-q", str(net.remote), str(srv))
    git(srv, "fetch", "-q", "origin")
    git(srv, "reset", "-q", "--hard", "origin/main")
    if how == "merge":
        git(srv, "merge", "-q", "--no-ff", "-m", f"Merge {jid}", f"origin/logist/{jid}")
    elif how == "ff":
        git(srv, "merge", "-q", "--ff-only", f"origin/logist/{jid}")
    elif how == "squash":  # git's squash message quotes the commits: their Logist-Job lines too
        git(srv, "merge", "-q", "--squash", f"origin/logist/{jid}")
        git(srv, "commit", "-q", "--no-edit")
    if extra:
        (srv / extra).write_text((srv / extra).read_text() + "more\n")
        git(srv, "commit", "-q", "-am", "later change to the same file")
    git(srv, "push", "-q", "origin", "HEAD:main")
    return srv


def gc_json(repo: Path, *args) -> dict:
    return lg(repo, "gc", "--json", *args).json()


def job_entry(plan: dict, jid: str) -> dict:
    return next(j for j in plan["jobs"] if j["id"] == jid)


def assert_cleaned(repo: Path, jid: str, tip: str) -> None:
    assert git(repo, "rev-parse", f"refs/logist/archive/{jid}") == tip
    assert git(repo, "branch", "--list", f"logist/{jid}", f"logist-review/{jid}") == ""
    assert not (wtdir(repo) / jid).exists()
    assert str(wtdir(repo) / jid) not in git(repo, "worktree", "list")
    # history stays readable from the archive
    assert f"logist({jid}):" in git(repo, "log", "--format=%s", f"refs/logist/archive/{jid}")


@pytest.mark.parametrize("how,label", [("merge", "merge commit"), ("ff", "fast-forward"),
                                       ("squash", "squash merge")])
def test_gc_cleans_merged_jobs(net, how, label):
    jid = make_job(net.a, f"Merged by {how}", writes={"f.txt": "hello\n"})
    lg(net.a, "push")
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    harvest_note = git(net.a, "notes", "--ref", "refs/notes/logist/logs", "show", tip)
    server_merge(net, jid, how)
    git(net.a, "fetch", "-q", "origin")  # (a plain fetch: no hook runs)
    before = refs_snapshot(net.a)
    plan = gc_json(net.a)
    entry = job_entry(plan, jid)
    assert plan["dry_run"] and entry["integrated"] and entry["how"] == label
    # the job gave its worktree back when it finished: only the branch is left to clean up
    assert entry["actions"] == ["archive", "delete-branch"]
    assert refs_snapshot(net.a) == before  # dry run: nothing changed
    out = lg(net.a, "gc").out
    assert f"{jid} ({label}): would" in out and "dry run" in out
    lg(net.a, "gc", "--yes")
    assert_cleaned(net.a, jid, tip)
    # the notes of the archived commits are still there
    assert git(net.a, "notes", "--ref", "refs/notes/logist/logs", "show", tip) == harvest_note
    # the remote branch is left alone without --remote
    assert f"refs/heads/logist/{jid}" in remote_refs(net.remote)
    assert "nothing to clean up" in lg(net.a, "gc", "--yes").out


def test_squash_merge_found_by_patch_id_after_the_base_moved_on(net):
    jid = make_job(net.a, "Squashed then edited", writes={"f.txt": "hello\n"})
    lg(net.a, "push")
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    server_merge(net, jid, "squash", extra="f.txt")
    git(net.a, "fetch", "-q", "origin")
    assert job_entry(gc_json(net.a), jid)["how"] == "squash merge"
    lg(net.a, "gc", "--yes")
    assert_cleaned(net.a, jid, tip)


def test_gc_never_touches_unmerged_draft_pending_record_only_or_unpushed_jobs(net):
    merged = make_job(net.a, "Merged", writes={"m.txt": "m\n"})
    unmerged = make_job(net.a, "Unmerged", writes={"u.txt": "u\n"})
    draft = make_job(net.a, "Draft", activate=False)
    pending = make_job(net.a, "Pending", run=False)
    record_only = make_job(net.a, "Record only")  # mock without writes: no work beyond its record
    lg(net.a, "push")
    unpushed = make_job(net.a, "Unpushed", writes={"p.txt": "p\n"})
    server_merge(net, merged, "merge")
    server_merge(net, record_only, "merge")
    # a record-only branch that was merged even so, and a DRAFT/PENDING job whose branch is merged
    server_merge(net, pending, "merge")
    server_merge(net, draft, "merge")
    git(net.a, "fetch", "-q", "origin")
    plan = gc_json(net.a, "--yes")
    by = {j["id"]: j for j in plan["jobs"]}
    assert by[merged]["done"] and not by[merged]["errors"]
    assert by[unmerged]["actions"] == [] and "not merged" in by[unmerged]["kept"][0]
    assert by[record_only]["actions"] == [] and by[record_only]["kept"] == ["no work beyond its record"]
    assert by[unpushed]["actions"] == [] and "not merged" in by[unpushed]["kept"][0]
    for j in (draft, pending):
        assert by[j]["actions"] == [] and "never cleaned up" in by[j]["kept"][0]
    for j in (unmerged, draft, pending, record_only, unpushed):
        assert git(net.a, "rev-parse", "--verify", f"logist/{j}")
        assert git(net.a, "rev-parse", "-q", "--verify", f"refs/logist/archive/{j}", check=False) == ""


def test_gc_keeps_a_dirty_or_locked_worktree_and_its_branch(net):
    dirty = make_job(net.a, "Dirty", writes={"d.txt": "d\n"})
    locked = make_job(net.a, "Locked", writes={"l.txt": "l\n"})
    lg(net.a, "push")
    server_merge(net, dirty, "merge")
    server_merge(net, locked, "merge")
    git(net.a, "fetch", "-q", "origin")
    for j in (dirty, locked):  # brought back after they finished (a person looks at them)
        lg(net.a, "job", "path", j)
    (wtdir(net.a) / dirty / "scratch.txt").write_text("unsaved work\n")
    git(net.a, "worktree", "lock", str(wtdir(net.a) / locked))
    before = refs_snapshot(net.a)
    plan = gc_json(net.a, "--yes")
    d, lk = job_entry(plan, dirty), job_entry(plan, locked)
    assert d["actions"] == [] and any("uncommitted" in k for k in d["kept"])
    assert lk["actions"] == [] and any("locked" in k for k in lk["kept"])
    assert refs_snapshot(net.a) == before
    assert (wtdir(net.a) / dirty / "scratch.txt").read_text() == "unsaved work\n"
    out = lg(net.a, "gc").out
    assert "uncommitted" in out and "locked" in out


def test_gc_skips_a_job_held_by_a_live_process(net):
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    jid = make_job(net.a, "Held", writes={"h.txt": "h\n"})
    lg(net.a, "push")
    server_merge(net, jid, "merge")
    git(net.a, "fetch", "-q", "origin")
    lease = acquire(JobStore.discover(net.a), jid)
    try:
        entry = job_entry(gc_json(net.a, "--yes"), jid)
        assert entry["actions"] == [] and "held by" in entry["kept"][0]
    finally:
        lease.release()
    assert git(net.a, "rev-parse", "--verify", f"logist/{jid}")


def test_gc_remote_deletes_merged_branches_there_and_pushes_the_archive(net):
    local = make_job(net.a, "Local and remote", writes={"x.txt": "x\n"})
    lg(net.a, "push")
    b = net.clone("b")
    remote_only = make_job(b, "Only on the remote", writes={"y.txt": "y\n"})
    lg(b, "push")
    kept = make_job(b, "Not merged", writes={"z.txt": "z\n"})
    lg(b, "push")
    server_merge(net, local, "squash")
    server_merge(net, remote_only, "merge")
    git(net.a, "fetch", "-q", "origin")
    tip_remote_only = git(net.a, "rev-parse", f"origin/logist/{remote_only}")
    lg(net.a, "job", "path", local)  # a finished job's worktree, brought back: gc removes it too
    plan = gc_json(net.a, "--remote", "origin")
    assert job_entry(plan, local)["actions"] == ["archive", "remove-worktree", "delete-branch",
                                                 "delete-remote-branch"]
    assert job_entry(plan, remote_only)["actions"] == ["archive", "delete-remote-branch"]
    assert all(j["id"] != kept for j in plan["jobs"] if j["actions"])
    lg(net.a, "gc", "--remote", "origin", "--yes")
    theirs = remote_refs(net.remote)
    assert f"refs/heads/logist/{local}" not in theirs and f"refs/heads/logist/{remote_only}" not in theirs
    assert theirs[f"refs/logist/archive/{remote_only}"] == tip_remote_only
    assert f"refs/logist/archive/{local}" in theirs
    assert f"refs/heads/logist/{kept}" in theirs
    assert git(net.a, "rev-parse", f"refs/logist/archive/{remote_only}") == tip_remote_only
    assert git(net.a, "for-each-ref", f"refs/remotes/origin/logist/{remote_only}") == ""


def test_gc_refuses_to_delete_a_remote_branch_that_moved(net):
    jid = make_job(net.a, "Moving", writes={"x.txt": "x\n"})
    lg(net.a, "push")
    server_merge(net, jid, "merge")
    git(net.a, "fetch", "-q", "origin")
    # someone pushes more work to the job branch after a's fetch
    b = net.clone("b")
    lg(b, "job", "adopt", jid)
    (wtdir(b) / jid / "more.txt").write_text("more\n")
    git(wtdir(b) / jid, "add", "more.txt")
    git(wtdir(b) / jid, "commit", "-q", "-m", "more work")
    lg(b, "push")
    new_remote = remote_refs(net.remote)[f"refs/heads/logist/{jid}"]
    plan = lg(net.a, "gc", "--json", "--remote", "origin", "--yes", code=1).json()
    entry = job_entry(plan, jid)
    assert any("stale info" in e for e in entry["errors"]), entry
    assert remote_refs(net.remote)[f"refs/heads/logist/{jid}"] == new_remote


def test_keep_days_removes_old_finished_worktrees_but_keeps_branches(net):
    (net.a / ".logist" / "config.local.toml").write_text("[worktrees]\nkeep_finished = true\n")
    jid = make_job(net.a, "Finished long ago", writes={"k.txt": "k\n"})
    assert (wtdir(net.a) / jid).exists()  # kept after SUCCESS, as configured
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    entry = job_entry(gc_json(net.a, "--keep-days", "1"), jid)
    assert entry["actions"] == []  # finished seconds ago
    entry = job_entry(gc_json(net.a, "--keep-days", "0", "--yes"), jid)
    assert entry["actions"] == ["archive", "remove-worktree"], entry
    assert not (wtdir(net.a) / jid).exists()
    assert git(net.a, "rev-parse", f"logist/{jid}") == tip
    assert git(net.a, "rev-parse", f"refs/logist/archive/{jid}") == tip


def test_job_clean(net):
    jid = make_job(net.a, "Abandoned", writes={"a.txt": "a\n"})
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    before = refs_snapshot(net.a)
    out = lg(net.a, "job", "clean", jid).out
    assert "would" in out and f"delete branch logist/{jid}" in out and "dry run" in out
    assert refs_snapshot(net.a) == before
    res = lg(net.a, "job", "clean", jid, "--yes", "--json").json()
    assert res["errors"] == [] and len(res["done"]) == 3  # archive, branch, review branch (no worktree)
    assert f"deleted branch logist-review/{jid}" in res["done"]
    assert_cleaned(net.a, jid, tip)
    # refused for PENDING/DRAFT jobs and dirty worktrees, with nothing changed
    pending = make_job(net.a, "Pending", run=False)
    res = lg(net.a, "job", "clean", pending, "--yes", code=1)
    assert "never cleaned up" in res.err and f"logist job cancel {pending}" in res.err
    dirty = make_job(net.a, "Dirty", writes={"d.txt": "d\n"})
    lg(net.a, "job", "path", dirty)
    (wtdir(net.a) / dirty / "d.txt").write_text("edited\n")
    before = refs_snapshot(net.a)
    res = lg(net.a, "job", "clean", dirty, "--yes", code=1)
    assert "uncommitted" in res.out
    assert refs_snapshot(net.a) == before and (wtdir(net.a) / dirty / "d.txt").read_text() == "edited\n"
    # --keep-branch
    done = make_job(net.a, "Keep branch", writes={"k.txt": "k\n"})
    lg(net.a, "job", "path", done)
    lg(net.a, "job", "clean", done, "--yes", "--keep-branch")
    assert git(net.a, "rev-parse", "--verify", f"logist/{done}")
    assert not (wtdir(net.a) / done).exists()
    # an existing archive that is not part of the tip is never overwritten
    other = make_job(net.a, "Other", writes={"o.txt": "o\n"})
    empty_tree = git(net.a, "hash-object", "-t", "tree", "/dev/null")
    unrelated = git(net.a, "commit-tree", empty_tree, "-m", "unrelated")
    git(net.a, "update-ref", f"refs/logist/archive/{other}", unrelated)
    res = lg(net.a, "job", "clean", other, "--yes", code=1)
    assert "not overwriting" in res.out
    assert git(net.a, "rev-parse", "--verify", f"logist/{other}")


def test_integration_rules_unit(net):
    from logist.share.integration import integration
    from logist.store.jobstore import JobStore

    store = JobStore.discover(net.a)
    jid = make_job(net.a, "Unit", writes={"u.txt": "u\n"})
    tip, m = store.read(jid)
    main = git(net.a, "rev-parse", "main")
    assert not integration(store, jid, tip, m.base, main).integrated
    assert integration(store, jid, tip, m.base, tip).how == "fast-forward"
    # a base that already has the same file content, made independently (or by a twin job),
    # is not this job: identical content alone never counts (tests/test_review.py)
    (net.a / "u.txt").write_text("u\n")
    git(net.a, "add", "u.txt")
    git(net.a, "commit", "-q", "-m", "same change")
    assert not integration(store, jid, tip, m.base, git(net.a, "rev-parse", "HEAD")).integrated
    # the same commit naming the job is its squash
    git(net.a, "commit", "-q", "--amend", "-m", f"same change\n\nLogist-Job: {jid}")
    res = integration(store, jid, tip, m.base, git(net.a, "rev-parse", "HEAD"))
    assert res.integrated and res.how == "squash merge"
    # naming it with a different change to its file: edited in review
    (net.a / "u.txt").write_text("different\n")
    git(net.a, "commit", "-q", "-a", "--amend", "-m", f"reviewed\n\nLogist-Job: {jid}")
    res = integration(store, jid, tip, m.base, git(net.a, "rev-parse", "HEAD"))
    assert res.integrated and res.how == "squash merge, edited in review"
    # naming it without touching its files: not integrated
    git(net.a, "reset", "-q", "--hard", main)
    (net.a / "other.txt").write_text("o\n")
    git(net.a, "add", "other.txt")
    git(net.a, "commit", "-q", "-m", f"unrelated\n\nLogist-Job: {jid}")
    assert not integration(store, jid, tip, m.base, git(net.a, "rev-parse", "HEAD")).integrated


def test_gc_json_and_bad_base(net):
    res = lg(net.a, "gc", "--base", "no-such-branch", code=2)
    assert "not a commit" in res.err
    res = lg(net.a, "gc", "--base", "--yes", code=None)
    assert res.code != 0
    plan = gc_json(net.a)
    assert plan["base"] == "refs/remotes/origin/main" and plan["jobs"] == []
    assert json.loads(json.dumps(plan))  # plain data
    assert os.path.isdir(net.a)
