"""Locks with sane clocks: a heartbeat more than the lease length in the future (a wrong clock,
or a forged lock) is invalid, treated as expired with a warning naming the lock, and reported by
`logist doctor`; workers never wait forever on one job (docs/recovery.md)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _core import no_traceback
from conftest import git


def forge_lock(repo: Path, job_id: str, **fields) -> str:
    """A lock ref written with git alone (as a hostile agent or remote could), its blob oid."""
    now = time.time()
    data = dict(pid=1, host="elsewhere.invalid", boot_id="", start_time=None, command="logist job run",
                acquired_at=now, heartbeat_at=now + 10 * 365 * 86400, lease_seconds=120.0)
    data.update(fields)
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], input=json.dumps(data),
                          capture_output=True, text=True, check=True).stdout.strip()
    git(repo, "update-ref", f"refs/logist/locks/{job_id}", blob)
    return blob


@pytest.mark.parametrize("fields", [
    {},  # ten years ahead
    {"heartbeat_at": time.time() + 3600, "lease_seconds": 120.0},
    {"host": socket.gethostname(), "pid": 1},  # this host, a live pid, a future heartbeat
    {"lease_seconds": 1e12, "heartbeat_at": time.time()},  # a lease that never ends
], ids=["ten-years", "one-hour", "same-host-live-pid", "endless-lease"])
def test_a_lock_from_the_future_is_invalid_and_taken_over(cli, fields):
    job = cli.ok("job", "create", "--title", "Future", "--step", "s", "--activate").out.strip()
    forge_lock(cli.repo, job, **fields)
    doc = cli("doctor", "--json")
    no_traceback(doc.err)
    found = [f for f in json.loads(doc.out)["findings"] if f.get("job") == job]
    assert found and "invalid lock" in found[0]["message"], doc.out
    assert f"refs/logist/locks/{job}" in json.dumps(found)
    status = cli.ok("job", "status", job, "--json").json()
    assert status["holder"]["stale"] is True and "invalid lock" in status["holder"]["stale_reason"]
    r = cli("job", "cancel", job)
    assert r.code == 0, r
    assert f"refs/logist/locks/{job}" in r.err and "treated as expired" in r.err, r.err
    assert cli.ok("job", "status", job, "--json").json()["state"] == "CANCELED"
    assert git(cli.repo, "for-each-ref", f"refs/logist/locks/{job}") == ""


def test_a_slightly_ahead_heartbeat_is_clock_skew_not_invalid(cli):
    from logist.core.errors import LockHeldError
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    job = cli.ok("job", "create", "--title", "Skew", "--step", "s").out.strip()
    forge_lock(cli.repo, job, heartbeat_at=time.time() + 30, lease_seconds=120.0)
    with pytest.raises(LockHeldError):
        acquire(JobStore.discover(cli.repo), job)
    r = cli("job", "cancel", job)
    assert r.code == 4 and "busy" in r.err


def test_lease_seconds_bounds(cli, monkeypatch):
    for bad in ("0", "-5", "nan", "inf", "1e12"):
        monkeypatch.setenv("LOGIST_LEASE_SECONDS", bad)
        r = cli("job", "create", "--title", "t", "--step", "s", "--activate")
        job = r.out.strip()
        r = cli("job", "run", job) if job else r
        assert r.code in (1, 2), (bad, r)
        no_traceback(r.err)
    monkeypatch.delenv("LOGIST_LEASE_SECONDS")
    (cli.repo / ".logist" / "config.local.toml").write_text("[locks]\nlease_seconds = 1e12\n")
    r = cli("job", "create", "--title", "t", "--step", "s")
    assert r.code == 1 and "locks.lease_seconds" in r.err


def test_a_forged_remote_lock_does_not_stop_workers_or_gc(net):
    """A lock pushed to the remote with a heartbeat ten years ahead: `worker --until-idle` in
    another clone takes the job over, runs it and exits; before, it would wait forever."""
    from _sharekit import lg, make_job

    job = make_job(net.a, "Forged", run=False)
    lg(net.a, "push")
    forge_lock(net.a, job)
    git(net.a, "push", "-q", "origin", f"refs/logist/locks/{job}:refs/logist/locks/{job}")
    b = net.clone("b")
    started = time.monotonic()
    res = lg(b, "worker", "--until-idle", "--json", "--poll", "0.2")
    report = json.loads(res.out)
    assert report["ran"] == [job], report
    assert time.monotonic() - started < 60
    assert "treated as expired" in res.err and f"refs/logist/locks/{job}" in res.err, res.err
    manifest = json.loads(git(net.remote, "show", f"logist/{job}:.logist/jobs/{job}/manifest.json"))
    assert manifest["state"] == "SUCCESS"


def test_a_worker_gives_up_a_job_whose_run_keeps_failing(net, monkeypatch):
    """A job whose run raises every time (a bug, a poisoned record) is tried three times, then
    given up: the worker reports it and `--until-idle` ends instead of looping on it."""
    from _sharekit import lg, make_job

    from logist.engine import job_processor

    bad = make_job(net.a, "Poisoned", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    real_run = job_processor.Engine.run
    calls = []

    def run(self, job_id, *a, **kw):
        if job_id == bad:
            calls.append(job_id)
            raise RecursionError("maximum recursion depth exceeded")
        return real_run(self, job_id, *a, **kw)

    monkeypatch.setattr(job_processor.Engine, "run", run)
    res = lg(b, "worker", "--until-idle", "--json", "--poll", "0.2", code=1)
    report = json.loads(res.out)
    assert report["gave_up"] == [bad], report
    assert len(calls) == 3
    assert report["stopped"].startswith("idle"), report
    assert f"giving up on {bad} after 3 tries" in res.err


def test_gc_remote_is_not_blocked_by_a_forged_remote_lock(net):
    """A merged job whose remote lock has a heartbeat ten years ahead: `gc --remote` judges the
    lock invalid (expired) and cleans the job up, instead of keeping it forever."""
    from test_cleanup import gc_json, job_entry, server_merge
    from test_sharing import lg, make_job

    jid = make_job(net.a, "Merged", writes={"x.txt": "x\n"})
    lg(net.a, "push")
    forge_lock(net.a, jid)
    git(net.a, "push", "-q", "origin", f"refs/logist/locks/{jid}:refs/logist/locks/{jid}")
    git(net.a, "update-ref", "-d", f"refs/logist/locks/{jid}")
    server_merge(net, jid, "merge")
    git(net.a, "fetch", "-q", "origin")
    lg(net.a, "fetch")
    entry = job_entry(gc_json(net.a, "--remote", "origin"), jid)
    assert "delete-remote-branch" in entry["actions"], entry
    assert not any("held on origin" in k for k in entry["kept"]), entry
