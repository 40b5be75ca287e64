"""In-process reads (logist.git.gitread) give git's answer, or step aside so that git is asked.

Every expectation below is git's own answer (`git rev-parse`, `git cat-file`), compared with
what the store read without starting a process.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from _core import create_job, tip
from conftest import git

from logist.core.errors import JobNotFoundError


def _store(repo):
    from logist.store.jobstore import JobStore

    return JobStore.discover(repo)


def _count_gits(monkeypatch) -> list[list[str]]:
    """Records the git processes started from here on (every git goes through Popen)."""
    calls: list[list[str]] = []
    real = subprocess.Popen

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            if isinstance(args, (list, tuple)) and args and args[0] == "git":
                calls.append(list(args))
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Counting)
    return calls


def test_tip_record_and_history_are_read_without_a_git_process(cli, monkeypatch):
    """In a process that reads objects in process (dulwich loaded: the engine, a worker),
    reads start no git process."""
    job = create_job(cli, "--title", "read me", "--step", "one")
    store = _store(cli.repo)
    store.writer.load_objects()  # what a runner does first
    calls = _count_gits(monkeypatch)
    oid, m = store.read(job)
    history = store.read_history(job)
    assert calls == []
    assert oid == tip(cli.repo, job)
    assert m.id == job and m.title == "read me"
    assert [e.event for e in history] == ["create"]


def test_packed_refs_are_read_and_a_repack_is_noticed(cli):
    a = create_job(cli, "--title", "packed a", "--step", "one")
    b = create_job(cli, "--title", "packed b", "--step", "one")
    store = _store(cli.repo)
    assert store.tip(a) == tip(cli.repo, a)  # loose
    git(cli.repo, "pack-refs", "--all")
    assert not (cli.repo / ".git" / "refs" / "heads" / "logist" / a).exists()
    assert store.tip(a) == tip(cli.repo, a)  # now from packed-refs
    # another process moves b and packs again: the cached packed-refs must not be believed
    cli.ok("job", "suspend", b)
    git(cli.repo, "pack-refs", "--all")
    assert store.tip(b) == tip(cli.repo, b)
    assert store.read(b)[1].state.value == "SUSPENDED"


def test_objects_moved_into_a_pack_by_gc_are_still_found(cli):
    job = create_job(cli, "--title", "gc me", "--step", "one")
    store = _store(cli.repo)
    before = store.read(job)
    git(cli.repo, "gc", "-q", "--prune=now")
    fresh = _store(cli.repo)
    assert fresh.read(job)[0] == before[0]
    cli.ok("job", "suspend", job)
    git(cli.repo, "gc", "-q", "--prune=now")
    # the long-lived store sees the new tip, whose objects now live only in a pack
    oid, m = store.read(job)
    assert oid == tip(cli.repo, job) and m.state.value == "SUSPENDED"


def test_a_symbolic_ref_is_left_to_git(cli):
    job = create_job(cli, "--title", "sym", "--step", "one")
    store = _store(cli.repo)
    git(cli.repo, "symbolic-ref", "refs/heads/logist/alias-of-it", f"refs/heads/logist/{job}")
    from logist.git.gitread import Unsupported

    with pytest.raises(Unsupported):
        store.reader.ref("refs/heads/logist/alias-of-it")
    assert store.resolve_commit("refs/heads/logist/alias-of-it") == tip(cli.repo, job)


def test_a_reftable_repository_is_left_to_git(cli):
    job = create_job(cli, "--title", "rt", "--step", "one")
    (cli.repo / ".git" / "reftable").mkdir()  # what a reftable repository has
    store = _store(cli.repo)
    from logist.git.gitread import Unsupported

    with pytest.raises(Unsupported):
        store.reader.ref(f"refs/heads/logist/{job}")
    assert store.tip(job) == tip(cli.repo, job)  # git answered


@pytest.mark.parametrize("writes", [True, False], ids=["in-process", "cat-file"])
def test_a_missing_job_and_a_missing_file(cli, writes):
    """Both ways of reading (dulwich in a runner, `git cat-file` in a short command) give the
    same answers."""
    job = create_job(cli, "--title", "here", "--step", "one")
    store = _store(cli.repo)
    if writes:
        store.writer.load_objects()
    with pytest.raises(JobNotFoundError):
        store.tip("no-such-job")
    assert store.blob_at(store.tip(job), f".logist/jobs/{job}/nope.json") is None
    assert store.blob_at(store.tip(job), f".logist/jobs/{job}") is None  # a tree, not a file
    expected = git(cli.repo, "cat-file", "blob", f"{store.tip(job)}:.logist/jobs/{job}/manifest.json")
    assert store.blob_at(store.tip(job), f".logist/jobs/{job}/manifest.json").decode() == expected + "\n"


def test_an_object_missing_locally_falls_back_to_git(cli, tmp_path):
    """An object the local store lacks (think: a partial clone) is asked of git, which has
    the same answer: absent."""
    job = create_job(cli, "--title", "missing", "--step", "one")
    store = _store(cli.repo)
    store.writer.load_objects()
    from logist.git.gitread import Unsupported

    with pytest.raises(Unsupported):
        store.reader.blob_at("0" * 40, f".logist/jobs/{job}/manifest.json")
    assert store.blob_at("0" * 40, f".logist/jobs/{job}/manifest.json") is None


def test_a_failed_transition_leaves_no_waiting_git_behind(cli, monkeypatch):
    """The pre-started update-ref / update-index are ended when the transition fails early."""
    job = create_job(cli, "--title", "fail", "--step", "one")
    store = _store(cli.repo)
    store.ensure_worktree(job)  # so that a transition starts its update-index too
    tip_before = tip(cli.repo, job)
    from logist.git import gitcmd
    from logist.store.job_state import Update, apply_update
    from logist.store.jobstore import new_transition_id, utcnow

    _, m = store.read(job)
    new, entry = apply_update(m, Update(event="suspend"), now=utcnow(), transition_id=new_transition_id())

    def boom(*a, **kw):
        raise RuntimeError("commit building failed")

    monkeypatch.setattr(store.writer, "commit", boom)
    with pytest.raises(RuntimeError):
        store.commit_transition(job, tip_before, new, [entry])
    assert gitcmd.waiting_pids() == set()
    assert tip(cli.repo, job) == tip_before
    wt = store.worktree_path(job)
    lock = git(wt, "rev-parse", "--path-format=absolute", "--git-path", "index.lock")
    assert lock.endswith("index.lock") and not os.path.exists(lock)
    assert git(wt, "status", "--porcelain") == ""
    # and the next transition goes through
    monkeypatch.undo()
    store.commit_transition(job, tip_before, new, [entry])
    assert tip(cli.repo, job) != tip_before
    assert git(store.worktree_path(job), "status", "--porcelain") == ""


def test_packed_refs_are_found_by_their_whole_name(cli):
    """packed-refs is searched, not parsed line by line: a name that starts another name, a
    peeled line and a namespace are each found as git finds them."""
    a = create_job(cli, "--title", "a", "--id", "pk", "--step", "one")
    b = create_job(cli, "--title", "b", "--id", "pk-2", "--step", "one")
    git(cli.repo, "tag", "-a", "-m", "annotated", "v1", tip(cli.repo, a))  # a peeled ^ line
    git(cli.repo, "pack-refs", "--all")
    packed = (cli.repo / ".git" / "packed-refs").read_bytes()
    assert b"^" in packed and not (cli.repo / ".git" / "refs" / "heads" / "logist" / a).exists()
    from logist.store.jobstore import JobStore

    reader = JobStore.discover(cli.repo).reader
    for job in (a, b):
        assert reader.ref(f"refs/heads/logist/{job}") == git(cli.repo, "rev-parse", f"refs/heads/logist/{job}")
    assert reader.ref("refs/heads/logist/pk-") is None and reader.ref("refs/heads/logist/p") is None
    assert reader.any_ref_under("refs/heads/logist/") is True
    assert reader.any_ref_under("refs/logist/locks/") is False
