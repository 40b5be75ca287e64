"""`logist job step|run`: steps run in this terminal (logist.cli.commands.foreground) or
detached; `job attach|metrics|log` are in logist.cli.commands.job_output."""

from __future__ import annotations

import sys

from logist import cli
from logist.cli.commands.foreground import CtrlC, StatusLine, progress
from logist.cli.output import emit_json, exit_for_states, say
from logist.core.jobid import JobId


def _interrupted_report(result, json_: bool) -> int:
    """After a first Ctrl-C: what became of the job, and how to go on (exit 130)."""
    from logist.core.errors import ExitCode

    _report(result, json_)
    if result.state.value == "SUSPENDED":
        progress(f"logist: {result.job_id} is SUSPENDED; carry on with "
                  f"`logist job resume {result.job_id}` then `logist job run {result.job_id}`")
    return ExitCode.INTERRUPTED


def _bell(store, states) -> None:
    """Ring the terminal's bell when a job this command ran came to need a person or finished
    (``[notify] on``; off with ``[notify] bell = false``)."""
    try:
        cfg = store.config.notify
    except Exception:
        return
    if cfg.bell and sys.stderr.isatty() and any(s in cfg.on for s in states if s):
        sys.stderr.write("\a")
        sys.stderr.flush()


def _report(result, json_: bool, *, step: bool = False) -> int:
    from logist.core.model import State

    data = {"id": result.job_id, "state": result.state.value, "step": result.step,
            "outcome": result.outcome, "reason": result.reason}
    if json_:
        emit_json(data)
    else:
        say(f"{result.job_id}: {result.state.value} (step {result.step})"
            + (f": {result.reason}" if result.reason and result.state != State.SUCCESS else ""))
    return exit_for_states([result.state], step=step)


def step(id: str | None = None, /, *, trust: bool = False,
         json_: bool = False) -> int:
    """Run exactly one step of a PENDING job (or finish an interrupted one).

    Exit 0 when the job rests in PENDING (its next step) or SUCCESS, 5 in APPROVAL_REQUIRED,
    6 in INTERVENTION_REQUIRED (or suspended/canceled meanwhile): see docs/exit-codes.md.

    Parameters
    ----------
    id
        The job (default: the selected one).
    trust
        Run command steps of a job fetched from a remote (see `logist job trust`).
    json_
        Print the result as JSON.
    """
    from logist.engine.job_select import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    return _foreground(store, job_id, trust=trust, json_=json_, one_step=True)


def _foreground(store, job_id: JobId, *, trust: bool, json_: bool, one_step: bool) -> int:
    """`job step` / `job run ID` in this terminal: the status line, Ctrl-C handling, the bell."""
    from logist.engine.repair import make_engine

    with CtrlC() as ctrl_c, StatusLine(store):
        try:
            engine = make_engine(store, progress=progress, trust=trust)
            result = engine.step(job_id) if one_step else engine.run(job_id)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [job_id])
    if ctrl_c.interrupted:
        return _interrupted_report(result, json_)
    _bell(store, [result.state.value])
    return _report(result, json_, step=one_step)


def run(id: str | None = None, /, *, detach: bool = False, trust: bool = False,
        parallel: int = 1, json_: bool = False) -> int:
    """Run steps until the job rests in anything but PENDING; with no id, every PENDING job.

    Exit 0 only when every job it ran rests in SUCCESS; 5 when the worst is APPROVAL_REQUIRED
    (`logist job approve`), 6 when a job needs intervention (INTERVENTION_REQUIRED, or
    suspended/canceled meanwhile), 1 when a job could not be run at all: see docs/exit-codes.md.
    So `logist job run ID && git push` pushes only finished work.

    Parameters
    ----------
    id
        The job. Without it (and without $LOGIST_JOB), every PENDING job is run.
    detach
        Hand the loop to a background process that survives the terminal; `job attach` follows it.
    trust
        Run command steps of a job fetched from a remote.
    parallel
        With no id: how many jobs run at once.
    json_
        Print the result(s) as JSON.
    """
    import os

    from logist.engine.runner import detach_run

    if parallel < 1:
        from logist.core.errors import UsageError

        raise UsageError(f"--parallel must be at least 1, not {parallel}")
    store = cli.store()
    job_id = id if id is not None else (os.environ.get("LOGIST_JOB") or None)
    if job_id is not None:
        from logist.engine.job_select import resolve_job

        job_id = resolve_job(store, job_id)  # a bad or unknown id fails here, not in the background
        store.tip(job_id)
    if detach:
        pid, log = detach_run(store, job_id, trust=trust, parallel=parallel)
        say(f"running in the background (pid {pid}); output: {log}")
        if job_id:
            say(f"follow it with `logist job attach {job_id}`")
        return 0
    from logist.cli.commands.job_warnings import warn_interrupted

    warn_interrupted(store, exclude=job_id)
    if job_id:
        return _foreground(store, job_id, trust=trust, json_=json_, one_step=False)
    return _run_all(store, parallel=parallel, trust=trust, json_=json_)


def _run_all(store, *, parallel: int, trust: bool, json_: bool) -> int:
    """`job run` with no id: every PENDING job, ``parallel`` at once, in this terminal."""
    from logist.engine.runner import run_all

    with CtrlC() as ctrl_c, StatusLine(store):
        try:
            results = run_all(store, parallel=parallel, trust=trust, progress=progress)
        except KeyboardInterrupt:
            return ctrl_c.leave(store, [])
    _bell(store, [r.state.value for r in results if r.state])
    if json_:
        # state null: the job was skipped (held elsewhere) or failed with an error
        emit_json([{"id": r.job_id, "state": r.state.value if r.state else None, "step": r.step,
                    "reason": r.reason, "error": r.error} for r in results])
    else:
        if not results:
            _nothing_to_run(store)
        for r in results:
            say(f"{r.job_id}: {r.state.value if r.state else ('ERROR' if r.error else 'not run')} (step {r.step})"
                + (f": {r.reason}" if r.reason else ""))
    if ctrl_c.interrupted:
        from logist.core.errors import ExitCode

        progress("logist: interrupted; `logist job list --state SUSPENDED` shows what was stopped")
        return ExitCode.INTERRUPTED
    if any(r.error for r in results):
        return 1
    return exit_for_states([r.state for r in results if r.state is not None])


def _nothing_to_run(store) -> None:
    """`job run` found no PENDING job: say so, and name the DRAFT jobs that wait for activation."""
    drafts = [s.id for s in store.list_jobs() if s.manifest and s.manifest.state.value == "DRAFT"]
    if not drafts:
        say("no PENDING jobs")
        return
    names = ", ".join(drafts[:5]) + (f" and {len(drafts) - 5} more" if len(drafts) > 5 else "")
    say(f"no PENDING jobs; {len(drafts)} DRAFT job{'s wait' if len(drafts) != 1 else ' waits'} for "
        f"`logist job activate ID`: {names}")
