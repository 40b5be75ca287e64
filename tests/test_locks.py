"""Lease locks (docs/recovery.md): create-only acquire, CAS heartbeat, compare-and-delete release,
staleness, takeover by CAS, fencing, and stale `*.lock` files under the git directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _crashkit import dead_pid, logist, no_traceback
from conftest import git, wait_for


@pytest.fixture
def store(repo):
    from logist.store.jobstore import JobStore

    (repo / ".logist").mkdir()
    (repo / ".logist" / "config.toml").write_text("")
    return JobStore.discover(repo)


def _where(store):
    """What the stale .lock sweep is given: the git dir, and where a live git may work."""
    return store.paths.common_dir, store.git_places()


def make_job(store, title="lock test") -> str:
    from logist.core.jobfile import JobFile, StepFile
    from logist.engine.jobs import create_job

    spec = JobFile(title=title, steps=[StepFile(name="s1", prompt="do it")])
    return create_job(store, spec, activate=True).id


def plant_lock(store, job_id: str, **fields) -> str:
    """Write a lock ref whose holder has the given fields (defaults: this host, a dead pid)."""
    from logist.store.locks import Holder, boot_id

    now = time.time()
    raw = fields.pop("raw", None)
    data = dict(pid=dead_pid(), host=socket.gethostname(), boot_id=boot_id(), start_time=None,
                command="logist job run", acquired_at=now, heartbeat_at=now, lease_seconds=120.0)
    data.update(fields)
    blob = store.writer.blob(raw if raw is not None else Holder(**data).to_bytes()).decode()
    git(store.root, "update-ref", f"refs/logist/locks/{job_id}", blob)
    return blob


def lock_oid(store, job_id):
    return git(store.root, "rev-parse", "-q", "--verify", f"refs/logist/locks/{job_id}", check=False) or None


# ---- acquire / release -------------------------------------------------------------------

def test_acquire_creates_a_holder_record_and_release_deletes_it(store):
    from logist.store.locks import acquire, read_lock

    lease = acquire(store, "job-a", command="logist job run job-a")
    oid, holder = read_lock(store, "job-a")
    assert oid == lease.oid
    assert holder.pid == os.getpid() and holder.host == socket.gethostname()
    assert holder.command == "logist job run job-a" and holder.stale_reason() is None
    assert holder.start_time is not None and holder.lease_seconds == 120.0
    raw = json.loads(git(store.root, "cat-file", "-p", "refs/logist/locks/job-a"))
    assert set(raw) == {"pid", "host", "boot_id", "start_time", "command", "acquired_at",
                        "heartbeat_at", "lease_seconds"}
    lease.release()
    assert read_lock(store, "job-a") is None
    lease.release()  # idempotent


def test_a_held_lock_is_refused_with_who_and_since(store):
    from logist.core.errors import LockHeldError
    from logist.store.locks import acquire

    with acquire(store, "job-a"):
        with pytest.raises(LockHeldError) as exc:
            acquire(store, "job-a")
        assert exc.value.exit_code == 4
        assert f"held by pid {os.getpid()} on {socket.gethostname()}" in exc.value.message
        assert "since 20" in exc.value.message and "UTC" in exc.value.message


def test_cli_exits_4_naming_the_holder(store):
    from logist.store.locks import acquire

    job = make_job(store)
    with acquire(store, job, command="logist job run (test)"):
        r = logist(store.root, "job", "suspend", job)
        assert r.returncode == 4, r.stderr
        assert f"held by pid {os.getpid()}" in r.stderr and "since" in r.stderr
        no_traceback(r.stderr)
        st = logist(store.root, "job", "status", job)
        assert f"pid {os.getpid()} on {socket.gethostname()} since" in st.stdout
        data = json.loads(logist(store.root, "job", "status", job, "--json").stdout)
        assert data["holder"]["pid"] == os.getpid() and data["holder"]["stale"] is False
    assert json.loads(logist(store.root, "job", "status", job, "--json").stdout)["holder"] is None


@pytest.mark.parametrize("case", ["dead-pid", "other-start-time", "other-boot", "expired", "unreadable",
                                  "other-host-expired"])
def test_stale_locks_are_taken_over(store, case):
    from logist.store.locks import acquire, process_start_time, read_lock

    now = time.time()
    fields = {
        "dead-pid": {},
        "other-start-time": {"pid": os.getpid(), "start_time": process_start_time(os.getpid()) + 1},
        "other-boot": {"pid": os.getpid(), "boot_id": "another-boot-id"},
        "expired": {"pid": os.getpid(), "heartbeat_at": now - 100, "lease_seconds": 10},
        "unreadable": {"raw": b"not json at all"},
        "other-host-expired": {"host": "elsewhere.invalid", "pid": 1, "heartbeat_at": now - 100,
                               "lease_seconds": 10},
    }[case]
    old = plant_lock(store, "job-a", **fields)
    lease = acquire(store, "job-a")
    assert lease.oid != old and read_lock(store, "job-a")[0] == lease.oid
    assert lease.takeover_reason
    expected = {"dead-pid": "is gone", "other-start-time": "is gone", "other-boot": "reboot",
                "expired": "lease expired", "unreadable": "unreadable",
                "other-host-expired": "lease expired"}[case]
    assert expected in lease.takeover_reason
    lease.release()


def test_live_holders_are_not_stale(store):
    from logist.core.errors import LockHeldError
    from logist.store.locks import acquire, process_start_time

    plant_lock(store, "job-a", pid=os.getpid(), start_time=process_start_time(os.getpid()))
    with pytest.raises(LockHeldError):
        acquire(store, "job-a")
    plant_lock(store, "job-b", host="elsewhere.invalid", pid=1)  # another machine, lease fresh
    with pytest.raises(LockHeldError):
        acquire(store, "job-b")
    plant_lock(store, "job-c")  # stale, but takeover not allowed
    with pytest.raises(LockHeldError):
        acquire(store, "job-c", takeover=False)


def test_holder_records_are_untrusted_input():
    from logist.store.locks import Holder

    for raw in (b"", b"[]", b"{}", b'{"pid": "x"}', b'{"pid": 1, "host": "h", "acquired_at": "nan", '
                b'"heartbeat_at": 1, "lease_seconds": 1}', b"\xff\xfe", b'{"pid": 1e400}'):
        assert Holder.from_bytes(raw) is None, raw
    h = Holder.from_bytes(b'{"pid": 5, "host": "h", "acquired_at": 1, "heartbeat_at": 2, '
                          b'"lease_seconds": 3, "command": "' + b"x" * 1000 + b'"}')
    assert h.pid == 5 and len(h.command) == 300 and h.boot_id == "" and h.start_time is None


def test_lease_seconds_from_the_environment(store, monkeypatch):
    from logist.core.errors import UsageError
    from logist.store.locks import acquire

    monkeypatch.setenv("LOGIST_LEASE_SECONDS", "2.5")
    with acquire(store, "job-a") as lease:
        assert lease.holder.lease_seconds == 2.5
        assert lease.heartbeat_interval() <= 2.5 / 3
    for bad in ("abc", "0", "-1", "inf"):
        monkeypatch.setenv("LOGIST_LEASE_SECONDS", bad)
        with pytest.raises(UsageError):
            acquire(store, "job-b")


# ---- heartbeat and fencing -----------------------------------------------------------------

def test_heartbeat_moves_the_lock_by_cas(store):
    from logist.store.locks import acquire, read_lock

    lease = acquire(store, "job-a")
    first = lease.oid
    before = lease.holder.heartbeat_at
    wait_for(lambda: time.time() > before, what="the clock to move past the first heartbeat")
    lease.heartbeat()
    oid, holder = read_lock(store, "job-a")
    assert oid == lease.oid != first and holder.heartbeat_at > before
    assert holder.acquired_at == lease.holder.acquired_at
    lease.release()


def test_a_lost_lease_cannot_heartbeat_write_or_release(store, monkeypatch):
    from logist.core.errors import ConcurrentUpdateError
    from logist.engine.human_transitions import human_transition
    from logist.store.locks import acquire, read_lock

    job = make_job(store)
    monkeypatch.setenv("LOGIST_LEASE_SECONDS", "0.2")
    old = acquire(store, job)
    wait_for(lambda: read_lock(store, job)[1].stale_reason(), what="the lease to expire")
    monkeypatch.delenv("LOGIST_LEASE_SECONDS")
    new = acquire(store, job)
    assert "lease expired" in new.takeover_reason
    tip, m = store.read(job)
    from logist.store.job_state import Update, apply_update
    from logist.store.jobstore import new_transition_id, utcnow

    nm, entry = apply_update(m, Update(event="suspend"), now=utcnow(), transition_id=new_transition_id())
    with pytest.raises(ConcurrentUpdateError) as exc:
        store.commit_transition(job, tip, nm, [entry], lease=old.oid)
    assert "lost its lease" in exc.value.message
    assert store.tip(job) == tip
    with pytest.raises(ConcurrentUpdateError):
        old.heartbeat()
    old.release()
    assert read_lock(store, job)[0] == new.oid  # the new holder keeps it
    new.release()
    assert human_transition(store, job, "suspend").state.value == "SUSPENDED"


def test_fenced_writes_never_race_their_own_heartbeat(store):
    """A write that captured the lease value just before a heartbeat moved it still succeeds
    (the value is brought up to date under the lease's mutex); a foreign value is refused."""
    from logist.core.errors import ConcurrentUpdateError
    from logist.store.job_state import Update, apply_update
    from logist.store.jobstore import new_transition_id, utcnow
    from logist.store.locks import acquire

    job = make_job(store)
    lease = acquire(store, job)
    lease.start_heartbeat(interval=0.003)
    try:
        for _ in range(12):
            captured = lease.oid
            wait_for(lambda captured=captured: lease.oid != captured, what="a heartbeat", timeout=10, poll=0.001)
            tip, m = store.read(job)
            event = "suspend" if m.state.value == "PENDING" else "resume"
            nm, entry = apply_update(m, Update(event=event), now=utcnow(), transition_id=new_transition_id())
            store.commit_transition(job, tip, nm, [entry], lease=captured)
        foreign = store.writer.blob(b"someone else\n").decode()
        tip, m = store.read(job)
        nm, entry = apply_update(m, Update(event="cancel"), now=utcnow(), transition_id=new_transition_id())
        with pytest.raises(ConcurrentUpdateError):
            store.commit_transition(job, tip, nm, [entry], lease=foreign)
    finally:
        lease.release()
    assert len(store.read_history(job)) == 13


def test_fencing_a_paused_holder(store, procs, tmp_path):
    """SIGSTOP a holder, take over after its lease expired, SIGCONT it: its write is refused
    (exit 4, no traceback) and the record is the new holder's."""
    job = make_job(store)
    ready, go, result = tmp_path / "ready", tmp_path / "go", tmp_path / "result"
    script = f"""
import json, sys, time
from pathlib import Path
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import acquire
from logist.store.job_state import Update, apply_update
from logist.core.errors import LogistError
store = JobStore.discover({str(store.root)!r})
lease = acquire(store, {job!r})
lease.start_heartbeat()
tip, m = store.read({job!r})
Path({str(ready)!r}).write_text("1")
while not Path({str(go)!r}).exists():
    time.sleep(0.01)
new, entry = apply_update(m, Update(event="suspend", reason="paused writer"), now=utcnow(),
                          transition_id=new_transition_id())
try:
    store.commit_transition({job!r}, tip, new, [entry], lease=lease.oid)
    Path({str(result)!r}).write_text("written")
except LogistError as exc:
    Path({str(result)!r}).write_text(type(exc).__name__ + ": " + exc.message)
    lease.release()
    sys.exit(exc.exit_code)
"""
    env = {**os.environ, "LOGIST_LEASE_SECONDS": "1"}
    holder = procs.popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(ready.exists, what="the holder to take the lease")
    os.kill(holder.pid, signal.SIGSTOP)
    from logist.store.locks import read_lock

    wait_for(lambda: read_lock(store, job)[1].stale_reason(), what="the paused holder's lease to expire")
    r = logist(store.root, "job", "cancel", job, "--message", "taken over")
    assert r.returncode == 0, r.stderr
    tip_after = store.tip(job)
    go.write_text("1")
    os.kill(holder.pid, signal.SIGCONT)
    out, err = holder.communicate(timeout=30)
    assert holder.returncode == 4, err
    no_traceback(err)
    assert result.read_text().startswith("ConcurrentUpdateError") and "lost its lease" in result.read_text()
    assert store.tip(job) == tip_after
    _, m = store.read(job)
    assert m.state.value == "CANCELED" and m.reason == "taken over"
    assert [e.event for e in store.read_history(job)] == ["create", "transition"]
    assert read_lock(store, job) is None


def test_break_lock(store):
    from logist.core.errors import LockHeldError
    from logist.store.locks import acquire, break_lock, read_lock

    with acquire(store, "job-a"):
        with pytest.raises(LockHeldError):
            break_lock(store, "job-a")
    plant_lock(store, "job-b")
    assert break_lock(store, "job-b").command == "logist job run"
    assert read_lock(store, "job-b") is None
    assert break_lock(store, "job-b") is None


def test_read_locks_lists_every_lock(store):
    from logist.store.locks import acquire, read_locks

    a = acquire(store, "job-a")
    plant_lock(store, "job-b", raw=b"garbage")
    locks = read_locks(store)
    assert set(locks) == {"job-a", "job-b"}
    assert locks["job-a"][0] == a.oid and locks["job-a"][1].pid == os.getpid()
    assert locks["job-b"][1] is None
    a.release()


def test_boot_id_override_is_test_only_and_simulates_a_reboot(store, monkeypatch):
    from logist.store.locks import acquire, boot_id

    real = boot_id()
    monkeypatch.setenv("LOGIST_BOOT_ID", "before")
    lease = acquire(store, "job-a")
    assert lease.holder.boot_id == "before"
    monkeypatch.delenv("LOGIST_BOOT_ID")
    if real:
        took = acquire(store, "job-a")  # same live pid, but "another boot"
        assert took.takeover_reason == "holder ran before the last reboot"
        took.release()


# ---- stale *.lock files --------------------------------------------------------------------

def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_stale_ref_lock_file_is_removed_and_fresh_one_kept(store):
    from logist.git.reftx import remove_stale_lock_files, stale_lock_files

    job = make_job(store)
    ref_lock = store.paths.common_dir / "refs" / "heads" / "logist" / f"{job}.lock"
    ref_lock.write_text("0" * 40 + "\n")
    assert stale_lock_files(*_where(store)) == []  # fresh: the sweep keeps it (a live git may be writing it)
    # (a write that runs into it removes it at once when no live git can hold it, and exits 4
    # naming it when one may: tests/test_crash_index_lock.py)
    _age(ref_lock, 120)
    assert stale_lock_files(*_where(store)) == [ref_lock]
    # Removal also waits until no git process could be working in the repository; under
    # `pytest -n auto` other tests start gits all the time (a just-started one counts as live
    # until /proc shows where it runs), so poll with a deadline.
    removed = wait_for(lambda: remove_stale_lock_files(*_where(store)), 20, "the stale .lock file to be removed",
                       poll=0.05)
    assert removed == [ref_lock]
    assert not ref_lock.exists()
    assert logist(store.root, "job", "suspend", job).returncode == 0


def test_an_old_ref_lock_is_cleared_by_the_next_write(store):
    """A killed git left `<ref>.lock`: the next transition that hits it removes it (it is old
    and no git runs) and goes through."""
    job = make_job(store)
    ref_lock = store.paths.common_dir / "refs" / "heads" / "logist" / f"{job}.lock"
    ref_lock.write_text("")
    _age(ref_lock, 300)
    r = logist(store.root, "job", "suspend", job)
    assert r.returncode == 0, r.stderr
    assert not ref_lock.exists()


def test_lock_files_with_a_live_git_are_kept(store, procs):
    from logist.git.reftx import find_lock_files, stale_lock_files

    index_lock = store.paths.common_dir / "index.lock"
    index_lock.write_text("")
    _age(index_lock, 600)
    packed = store.paths.common_dir / "packed-refs.lock"
    packed.write_text("")
    _age(packed, 600)
    obj = store.paths.common_dir / "objects" / "ab"
    obj.mkdir(exist_ok=True)
    (obj / "cdef.lock").write_text("")
    _age(obj / "cdef.lock", 600)
    assert set(find_lock_files(store.paths.common_dir)) >= {index_lock, packed, obj / "cdef.lock"}
    # a git working in the repository (think: `git commit` waiting for its editor)
    live = procs.popen(["git", "-C", str(store.root), "cat-file", "--batch"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
    from logist.git.reftx import live_git_processes

    # found even in the instant after its start, when /proc/<pid>/cmdline may still read empty
    assert live.pid in live_git_processes([store.paths.common_dir, store.root])
    assert stale_lock_files(*_where(store)) == []
    live.stdin.close()
    live.wait(timeout=10)
    assert set(stale_lock_files(*_where(store))) == {index_lock, packed, obj / "cdef.lock"}


def test_worktree_index_lock_is_removed_by_recover(repo):
    from _crashkit import create, init_project, mock_step

    init_project(repo)
    job = create(repo, 'title = "wt"\n' + mock_step("one", {"one.txt": "1\n"}))
    assert logist(repo, "job", "path", job).returncode == 0
    lock = repo / ".git" / "worktrees" / job / "index.lock"
    assert lock.parent.is_dir()
    lock.write_text("")
    _age(lock, 120)
    rec = logist(repo, "recover")
    assert rec.returncode == 0, rec.stderr
    assert f"removed stale lock file {lock}" in rec.stdout
    assert logist(repo, "job", "run", job).returncode == 0


def test_the_host_a_lock_records_is_the_socket_hostname():
    """Locks and stop requests name the host with logist.core.procs.hostname (no socket import);
    other code compares with socket.gethostname(): the same name."""
    import socket

    from logist.core.procs import hostname

    assert hostname() == socket.gethostname()
