"""Stopping a job that a worker on another machine runs (docs/stopping.md#another-machine).

The worker holds the job's lock on the shared remote. `logist job stop ID --remote R` writes the
stop request to ``refs/logist/stop/<id>`` on R (a forced push of one small blob); the worker
fetches that ref with each heartbeat, its engine stops the agent and commits the transition
under its lease, pushes the result, and deletes the request it answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from logist.core.errors import BusyError, JobNotFoundError, RemoteError
from logist.core.jobid import JobId
from logist.engine.stop import new_request
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore


def request_remote_stop(store: JobStore, remote: str, job_id: JobId, event: str, message: str | None, *,
                        wait: float = 0.0, progress: Callable[[str], None] | None = None) -> str | None:
    """Push a stop request for ``job_id`` to ``remote``; with ``wait`` seconds, fetch until the
    job there rests in SUSPENDED/CANCELED (its state then), else None."""
    from logist.share.fetch import fetch
    from logist.share.push import run_push
    from logist.share.remotes import rev

    refs.validate_remote(remote)
    refs.validate_job_id(job_id)
    if rev(store, refs.remote_branch_ref(remote, job_id)) is None:
        raise JobNotFoundError(f"no job {job_id} fetched from {remote}",
                               hint=f"run `logist fetch {remote}` first (`logist job list --remote {remote}`)")
    req = new_request(event, message)
    proc = git(["hash-object", "-w", "--stdin"], cwd=store.root, input=req.to_bytes().decode(), check=False)
    if proc.returncode != 0:
        raise BusyError(f"cannot record the stop request: {proc.stderr.strip()}")
    ok, lines, err = run_push(store, remote, [f"+{proc.stdout.strip()}:{refs.stop_ref(job_id)}"], verify=False)
    if not ok:
        why = "; ".join(f"{ln.dst}: {ln.reason}" for ln in lines if ln.rejected) or err.strip()
        raise RemoteError(f"could not push the stop request to {remote}: {why}")
    if wait <= 0:
        return None
    say = progress or (lambda msg: None)
    target = "SUSPENDED" if event == "suspend" else "CANCELED"
    say(f"{job_id}: stop request pushed to {remote}; waiting for its worker (up to {wait:g}s)")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(2.0)
        fetch(store, remote, merge_notes=False)
        tip = rev(store, refs.remote_branch_ref(remote, job_id))
        if tip is None:
            continue
        _, m = store.read(job_id, at=tip)
        if m.state.value in (target, "SUCCESS", "CANCELED"):
            return m.state.value
    return None
