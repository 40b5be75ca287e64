"""`logist recover`: see and resume interrupted jobs (docs/recovery.md#logist-recover)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, err, say, table, warn
from logist.core.jobid import JobId


def _progress(msg: str) -> None:
    err(msg)


def recover(job: str | None = None, /, *, check: bool = False, list_: Annotated[bool, Parameter(name="--list")] = False,
            abandon: str | None = None, cleanup: bool = False, keep_days: float | None = None,
            dry_run: bool = False, trust: bool = False, message: str | None = None,
            json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Find jobs that a crash, a kill or a reboot interrupted, and carry them on from the tip.

    With no option: remove stale `*.lock` files under the git directory, then recover every
    interrupted job (its interrupted step or restep is finished; the job then rests) and print
    what was done. `logist job run` carries on with the remaining steps.

    Parameters
    ----------
    job
        Recover just this job.
    check
        Print how many jobs are interrupted, by state (always exit 0).
    list_
        List interrupted jobs: id, title, state, step, holder, since, what recovery will do.
    abandon
        Give this interrupted job up: stop its agent if it still runs, release its dead lock and
        move it to INTERVENTION_REQUIRED (its worktree's changes are committed; history is kept).
        An interrupted restep is recorded as failed instead; the job keeps its state.
    cleanup
        Archive (refs/logist/archive/<id>) and then remove the worktrees of finished jobs
        (SUCCESS, CANCELED) older than --keep-days; dirty worktrees, and worktrees whose HEAD has
        commits the job branch lacks, are kept.
    keep_days
        With --cleanup: keep finished jobs changed within this many days (default 14).
    dry_run
        With --cleanup: only say what would be done.
    trust
        Run command steps of a job fetched from a remote while recovering it.
    message
        With --abandon: the reason recorded in the commit.
    json_
        Print JSON.
    """
    from logist.engine import recovery

    store = cli.store()
    jid, abandon_id = _resolve_jobs(store, job, abandon)
    _check_options(check=check, list_=list_, abandon=abandon_id, cleanup=cleanup, job=jid,
                   keep_days=keep_days, dry_run=dry_run, message=message)
    if check:
        return _check(store, json_)
    if list_:
        return _list(store, json_)
    if abandon_id:
        r = recovery.abandon(store, abandon_id, reason=message, progress=_progress)
        return _report([r], [], json_)
    if cleanup:
        return _cleanup(store, keep_days, dry_run, json_)
    if jid:
        from logist.git.reftx import remove_stale_lock_files

        removed = remove_stale_lock_files(store.paths.common_dir, store.git_places())
        r = recovery.recover_job(store, jid, progress=_progress, trust=trust)
        return _report([r], removed, json_)
    removed, results = recovery.recover_all(store, progress=_progress, trust=trust)
    return _report(results, removed, json_)


def _resolve_jobs(store, job: str | None, abandon: str | None) -> tuple[JobId | None, JobId | None]:
    """The jobs named by JOB and --abandon, resolved (an id or a unique prefix)."""
    from logist.engine.job_select import resolve_job

    return (resolve_job(store, job) if job is not None else None,
            resolve_job(store, abandon) if abandon is not None else None)


def _check_options(*, check: bool, list_: bool, abandon: str | None, cleanup: bool, job: str | None,
                   keep_days: float | None, dry_run: bool, message: str | None) -> None:
    """UsageError for options that do not go together."""
    from logist.core.errors import UsageError

    chosen = sum(bool(x) for x in (check, list_, abandon, cleanup, job))
    if chosen > 1:
        raise UsageError("give one of JOB, --check, --list, --abandon JOB, --cleanup",
                         hint="see `logist recover --help`")
    if (keep_days is not None or dry_run) and not cleanup:
        raise UsageError("--keep-days and --dry-run go with --cleanup")
    if message and not abandon:
        raise UsageError("--message goes with --abandon")


def _check(store, json_: bool) -> int:
    """--check: how many jobs are interrupted, by state."""
    from logist.engine import recovery

    counts = recovery.check_counts(store)
    if json_:
        emit_json({"interrupted": sum(counts.values()), "by_state": counts})
    elif not counts:
        say("no interrupted jobs")
    else:
        say(f"{sum(counts.values())} interrupted job(s): "
            + ", ".join(f"{state} {n}" for state, n in counts.items()))
        say("run `logist recover --list` to see them, `logist recover` to resume them")
    return 0


def _list(store, json_: bool) -> int:
    """--list: the interrupted jobs and what recovery will do."""
    from logist.engine import recovery

    jobs = recovery.interrupted_jobs(store)
    if json_:
        emit_json([j.to_dict() for j in jobs])
        return 0
    if not jobs:
        say("no interrupted jobs")
        return 0
    table(["id", "title", "state", "step", "holder", "since", "recovery will"],
          [[j.id, j.title[:40], j.state, f"{j.step}/{j.step_count}", _holder(j.holder),
            j.since or "", j.action] for j in jobs])
    return 0


def _cleanup(store, keep_days: float | None, dry_run: bool, json_: bool) -> int:
    """--cleanup: archive, then remove, the worktrees of old finished jobs."""
    from logist.engine import recovery

    done = recovery.cleanup(store, keep_days=14.0 if keep_days is None else keep_days, dry_run=dry_run)
    if json_:
        emit_json([c.to_dict() for c in done])
        return 0
    if not done:
        say("nothing to clean up")
    for c in done:
        say(f"{c.id}: {c.reason}" + (f" ({c.archive_ref})" if c.archive_ref else ""))
    return 0


def _holder(h) -> str:
    if not h:
        return "-"
    if "pid" not in h:
        return f"unreadable lock ({h.get('stale_reason', '')})"
    return f"pid {h['pid']} on {h['host']} ({h.get('stale_reason') or 'alive'})"


def _report(results, removed, json_: bool) -> int:
    code = max([r.exit_code for r in results] or [0])
    if json_:
        emit_json({"removed_lock_files": [str(p) for p in removed],
                   "jobs": [r.to_dict() for r in results]})
        return code
    for p in removed:
        say(f"removed stale lock file {p}")
    if not results and not removed:
        say("no interrupted jobs")
    for r in results:
        if r.error:
            warn(f"{r.id}: not recovered: {r.error}")
            continue
        say(f"{r.id}: {r.before} -> {r.after} (step {r.step})")
        for d in r.did:
            say(f"  {d}")
    return code
