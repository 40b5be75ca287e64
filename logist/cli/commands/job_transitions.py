"""`logist job activate|suspend|resume|cancel|approve|reject|resubmit|stop`: the human transitions
of a job (docs/states.md), and stopping a running one (docs/stopping.md)."""

from __future__ import annotations

from logist import cli
from logist.cli.output import err, say
from logist.core.jobid import JobId


def _human(event: str, id: str | None, message: str | None) -> int:
    from logist.engine.human_transitions import human_transition
    from logist.engine.job_select import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    if event in ("suspend", "cancel"):  # a running job: its runner is asked to stop it
        return _stop(store, job_id, event, message, require_running=False, timeout=60.0)
    m = human_transition(store, job_id, event, message=message)
    say(f"{job_id}: {m.state.value} (step {m.step}/{m.step_count})")
    return 0


def _stop(store, job_id: JobId, event: str, message: str | None, *, require_running: bool,
          timeout: float) -> int:

    from logist.engine.stop_job import stop_job

    out = stop_job(store, job_id, event, message, timeout=timeout, require_running=require_running,
                   progress=err)
    if out.how == "requested":
        say(f"{job_id}: stop requested; its runner ({out.holder}) runs on another machine and "
            f"honours the request once it sees refs/logist/stop/{job_id} (push it to the shared "
            "remote with `logist push`)")
        return 0
    _, d = store.read_record(job_id)  # no models for the record this process just wrote
    say(f"{job_id}: {d['state']} (step {d['step']}/{len(d['steps'])})"
        + (f"; `logist job resume {job_id}` makes it runnable again" if d["state"] == "SUSPENDED" else ""))
    return 0


def stop(id: str | None = None, /, *, cancel: bool = False, message: str | None = None,
         timeout: float = 60.0, remote: str | None = None) -> int:
    """Stop a running job: its runner stops the agent and the job becomes SUSPENDED (or CANCELED).

    The runner (a `job run` in another terminal, a detached runner, a worker) is asked through
    refs/logist/stop/<id>; it stops the agent's process group (SIGINT, SIGTERM, SIGKILL) and
    commits the transition itself. A job whose runner is gone is stopped here.

    Example: logist job stop fix-login-7k2q --message "wrong approach"

    Parameters
    ----------
    id
        The job.
    cancel
        Cancel the job (terminal) instead of suspending it (resumable).
    message
        Why (recorded in the commit).
    timeout
        Seconds to wait for the runner to stop it (exit 4 after that; the request stays).
    remote
        The job runs on a worker of this shared remote: push the request there; the worker
        honours it at its next heartbeat.
    """
    from logist.engine.job_select import selected_job

    store = cli.store()
    if remote:
        import sys

        from logist.core.errors import BusyError
        from logist.git.refs import validate_job_id
        from logist.share.remote_stop import request_remote_stop

        if id is None:
            from logist.core.errors import UsageError

            raise UsageError("--remote needs the job id", hint=f"`logist job list --remote {remote}` lists them")
        job_id = validate_job_id(id)
        state = request_remote_stop(store, remote, job_id, "cancel" if cancel else "suspend",
                                    message or "stopped with `logist job stop`", wait=timeout,
                                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        if state is None:
            raise BusyError(f"job {job_id}: its worker has not stopped it after {timeout:g}s; the request "
                            f"stays on {remote} in refs/logist/stop/{job_id}",
                            hint=f"`logist fetch {remote} && logist job status {job_id} --remote {remote}`")
        say(f"{job_id}: {state} on {remote}")
        return 0
    return _stop(store, selected_job(store, id), "cancel" if cancel else "suspend",
                 message or "stopped with `logist job stop`",
                 require_running=True, timeout=timeout)


def activate(id: str | None = None, /) -> int:
    """DRAFT -> PENDING: the job may run.

    Parameters
    ----------
    id
        The job.
    """
    return _human("activate", id, None)


def suspend(id: str | None = None, /, *, message: str | None = None) -> int:
    """Any non-terminal state -> SUSPENDED.

    Parameters
    ----------
    id
        The job.
    message
        Why (recorded in the commit).
    """
    return _human("suspend", id, message)


def resume(id: str | None = None, /, *, message: str | None = None) -> int:
    """SUSPENDED -> PENDING.

    Parameters
    ----------
    id
        The job.
    message
        Recorded in the commit.
    """
    return _human("resume", id, message)


def cancel(id: str | None = None, /, *, message: str | None = None) -> int:
    """Any non-terminal state -> CANCELED (terminal; `job rerun` starts over).

    Parameters
    ----------
    id
        The job.
    message
        Why (recorded in the commit).
    """
    return _human("cancel", id, message)


def approve(id: str | None = None, /, *, message: str | None = None) -> int:
    """APPROVAL_REQUIRED -> SUCCESS.

    Parameters
    ----------
    id
        The job.
    message
        The reviewer's note (recorded in the commit).
    """
    return _human("approve", id, message)


def reject(id: str | None = None, /, *, message: str | None = None) -> int:
    """APPROVAL_REQUIRED -> PENDING: the last step runs again, with the message in its prompt.

    Parameters
    ----------
    id
        The job.
    message
        What to change (required; recorded in the commit and given to the agent).
    """
    if not (message or "").strip():
        from logist.core.errors import UsageError
        from logist.engine.job_select import selected_job

        store = cli.store()
        job_id = selected_job(store, id)
        _, record = store.read_record(job_id)
        if record["state"] == "APPROVAL_REQUIRED":  # else the state's own refusal says more
            raise UsageError("reject needs --message: what should change (it is given to the agent)",
                             hint=f'logist job reject {job_id} --message "also handle the empty case"')
        id = job_id
    return _human("reject", id, message)


def resubmit(id: str | None = None, /, *, message: str | None = None) -> int:
    """INTERVENTION_REQUIRED -> PENDING: the failed step runs again (attempts start over).

    What you changed in the job's worktree (outside .logist/) is committed first as your own
    commit (your git identity, trailer Logist-Event: resubmit), so the next harvest holds only
    the agent's work. The retry is a new attempt: its own log file, its own notes, and the old
    attempt's error is no longer the job's last signal. Run it with `logist job run`.

    Parameters
    ----------
    id
        The job.
    message
        What was fixed (recorded in the commit and given to the agent).
    """
    return _human("resubmit", id, message)
