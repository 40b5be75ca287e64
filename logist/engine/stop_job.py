"""Stopping a job from another process: ask its holder, or make the transition directly
(docs/stopping.md; the request itself is ``logist.engine.stop``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from logist.core.errors import BusyError, JobStateError, LockHeldError
from logist.core.jobid import JobId
from logist.core.procs import hostname
from logist.core.states import TERMINAL, State
from logist.engine.human_transitions import human_transition
from logist.engine.stop import new_request, write_request
from logist.git import refs
from logist.store.jobstore import JobStore


@dataclass
class StopOutcome:
    job_id: JobId
    state: str  # the job's state afterwards
    how: str  # "stopped" (the holder did it), "direct" (nobody held it), "requested" (other host)
    holder: str = ""  # who holds it, for "requested"


def stop_job(store: JobStore, job_id: JobId, event: str = "suspend", message: str | None = None, *,
             timeout: float = 60.0, require_running: bool = False,
             progress: Callable[[str], None] | None = None) -> StopOutcome:
    """Suspend or cancel ``job_id`` whoever runs it (see the module docstring).

    ``require_running``: refuse (JobStateError) when the job is neither running nor interrupted
    (what `job stop` does; `job suspend` / `job cancel` then just make the transition).
    """
    from logist.core.states import record_in_flight
    from logist.store.locks import read_lock

    refs.validate_job_id(job_id)
    say = progress or (lambda msg: None)
    req = new_request(event, message)
    _, record = store.read_record(job_id)
    state = State(record["state"])
    if state in TERMINAL:
        raise JobStateError(f"job {job_id} is {state.value}; there is nothing to stop",
                            hint=f"`logist job rerun {job_id}` starts it over")
    lock = read_lock(store, job_id)
    holder = lock[1] if lock else None
    live = holder is not None and holder.stale_reason() is None
    in_flight = record_in_flight(record)
    if require_running and not live and not in_flight:
        raise JobStateError(
            f"job {job_id} is not running (it is {state.value}); there is nothing to stop",
            hint=f"`logist job suspend {job_id}` keeps it from running; "
                 f"`logist job cancel {job_id}` gives it up")
    if not live or (not require_running and not in_flight):
        # nobody runs it (an interrupted step's agent is stopped by the transition), or no
        # step is in flight: the transition itself (busy, exit 4, while someone holds it)
        m = human_transition(store, job_id, event, message=req.message)
        return StopOutcome(job_id, m.state.value, "direct")
    assert holder is not None
    if holder.host != hostname():
        write_request(store, job_id, req)
        return StopOutcome(job_id, state.value, "requested", holder.describe())
    write_request(store, job_id, req)
    say(f"{job_id}: asked its runner (pid {holder.pid}) to {event} it; waiting for the agent to stop")
    target = State.SUSPENDED if event == "suspend" else State.CANCELED
    deadline = time.monotonic() + timeout
    while True:
        _, record = store.read_record(job_id)
        if record["state"] == target.value:
            return StopOutcome(job_id, target.value, "stopped")
        if State(record["state"]) in TERMINAL:
            return StopOutcome(job_id, record["state"], "stopped")
        lock = read_lock(store, job_id)
        if lock is None or lock[1] is None or lock[1].stale_reason() is not None:
            try:  # the holder ended without honouring it (it was between jobs, or an old logist)
                m = human_transition(store, job_id, event, message=req.message)
                return StopOutcome(job_id, m.state.value, "direct")
            except LockHeldError:
                pass
        if time.monotonic() > deadline:
            raise BusyError(f"job {job_id}: its runner (pid {holder.pid}) has not stopped it after "
                            f"{timeout:g}s; the request stays in {refs.stop_ref(job_id)}",
                            hint=f"run `logist job status {job_id}`; `logist job stop {job_id}` "
                                 "waits again")
        time.sleep(0.1)
