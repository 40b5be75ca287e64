"""`logist job rerun` and `logist job restep` (docs/rerun.md)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, err, exit_for_states, say
from logist.core.errors import ExitCode
from logist.core.jobid import JobId


def _progress(msg: str) -> None:
    err(msg)


def rerun(id: str, /, *, step: str | None = None,
          no_run: Annotated[bool, Parameter(name="--no-run", negative="")] = False,
          trust: bool = False, json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Start a new run of a job: from step 1, or from --step N (steps before N are not run again).

    The current tip is kept at refs/logist/runs/<id>/<run>; the job branch (and its worktree)
    continues from the commit where step N started in that run. Then the job runs like
    `logist job run` until it rests; --no-run only prepares the new run (PENDING). Allowed
    from any resting state, SUCCESS and CANCELED included; refused while a step runs (exit 4).
    Exit codes as `logist job run` (0 only when the job rests in SUCCESS, 5 APPROVAL_REQUIRED,
    6 intervention); with --no-run, 0 once the new run is prepared.

    Parameters
    ----------
    id
        The job.
    step
        The step the new run starts at (1-based; default 1).
    no_run
        Only prepare the new run: the job rests in PENDING at step N.
    trust
        Run command steps of a job fetched from a remote (see `logist job trust`).
    json_
        Print the result as JSON.
    """
    from logist.engine.rerun import parse_step, rerun_job

    if step is not None:
        parse_step(step)  # a bad number is refused before anything is read
    result = rerun_job(cli.store(), JobId(id), step=step, run=not no_run, trust=trust, progress=_progress)
    code = exit_for_states([result.state]) if result.ran else 0
    if json_:
        emit_json(result.to_dict())
        return code
    skipped = (f"; step{'s' if len(result.skipped) > 1 else ''} "
               f"{result.skipped[0]}{'-' + str(result.skipped[-1]) if len(result.skipped) > 1 else ''} "
               "not run again") if result.skipped else ""
    say(f"{result.job_id}: run {result.run} from step {result.from_step} "
        f"(at {result.start_commit[:12]}){skipped}; run {result.previous_run} kept at {result.run_ref}")
    if result.ran:
        say(f"{result.job_id}: {result.state.value} (step {result.step})"
            + (f": {result.reason}" if result.reason and result.state.value != "SUCCESS" else ""))
    else:
        say(f"{result.job_id}: PENDING (step {result.step}); run it with `logist job run {result.job_id}`")
    return code


def restep(id: str, step: str, /, *, isolated: bool = False, advance: bool = False,
           trust: bool = False, json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Re-execute one step, leaving the job's state, run and current step as they are.

    In place (default), the step runs in the job's worktree on its current code (a fix made by
    hand there is used) and its outputs are committed like a normal step. --isolated runs it in
    a temporary worktree at the commit where the step first started and keeps the result at
    refs/logist/resteps/<id>/<k>. Exit 0 when the step succeeded, 6 (intervention) when it
    failed; with --advance, as `logist job step` for where the job then rests (5 when it moved on
    to APPROVAL_REQUIRED).

    Parameters
    ----------
    id
        The job.
    step
        The step to re-execute (1-based).
    isolated
        Run it in a temporary worktree at the commit where the step first started; keep the
        result at refs/logist/resteps/<id>/<k> and print how to diff it.
    advance
        When the job rests in INTERVENTION_REQUIRED at this step and the restep succeeds, move
        the job on as if the step had completed (next step PENDING, or SUCCESS/APPROVAL_REQUIRED).
    trust
        Run command steps of a job fetched from a remote.
    json_
        Print the result as JSON.
    """
    from logist.engine.rerun import parse_step, restep_job

    parse_step(step)
    result = restep_job(cli.store(), JobId(id), step, isolated=isolated, advance=advance, trust=trust,
                        progress=_progress)
    if json_:
        emit_json(result.to_dict())
    else:
        what = f"{result.job_id}: restep {result.restep} of step {result.step}"
        if result.isolated:
            what += " (isolated)"
        say(f"{what}: {'succeeded' if result.success else 'failed'} ({result.outcome or 'no outcome'})")
        if result.ref:
            say(f"result kept at {result.ref} ({result.result_commit[:12]}); compare it with:")
            for line in result.diff:
                say(f"  {line}")
        say(f"{result.job_id}: {result.state.value} (step {result.current_step})"
            + ("; moved on by --advance" if result.advanced else ""))
    if not result.success:
        err(f"logist: error: restep {result.restep} of step {result.step} failed: {result.reason}")
        return ExitCode.INTERVENTION
    return exit_for_states([result.state], step=True) if result.advanced else 0
