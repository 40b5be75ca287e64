"""`logist gc` and `logist job clean`: remove what merged (or abandoned) jobs left behind."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, say


def _print_plan(store, jobs, *, yes: bool, verbose: bool) -> None:
    changed = 0
    for jp in jobs:
        if jp.actions:
            how = f" ({jp.integration.how})" if jp.integration else ""
            if yes:
                say(f"{jp.job_id}{how}:")
                for line in jp.done:
                    say(f"  {line}")
                for line in jp.errors:
                    say(f"  kept: {line}")
                changed += bool(jp.done)
            else:
                say(f"{jp.job_id}{how}: would")
                for line in jp.describe_actions(store):
                    say(f"  {line}")
                changed += 1
            for line in jp.kept if verbose or jp.actions else []:
                say(f"  note: {line}")
        elif verbose or (jp.integration and jp.integration.integrated):
            say(f"{jp.job_id} [{jp.state}]: kept: {'; '.join(jp.kept) or 'nothing to do'}")
    if not yes and changed:
        say("\ndry run: nothing was changed; run again with --yes to do it")
    elif not changed:
        say("nothing to clean up")


def gc(*, yes: bool = False, base: str | None = None, keep_days: float | None = None,
       remote: str | None = None, verbose: Annotated[bool, Parameter(name=["--verbose", "-v"])] = False,
       json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Clean up jobs whose branches are merged into the base (merge, fast-forward or squash).

    For each integrated job: archive its tip as refs/logist/archive/<id> (history and notes stay
    reachable), remove its worktree (only when clean, unlocked and unused) and delete its
    branch. DRAFT, PENDING and running jobs are never touched. Dry run unless --yes.

    Parameters
    ----------
    yes
        Do it (without it, only print what would be done).
    base
        The branch jobs are merged into (default: <remote>/HEAD, else main/master).
    keep_days
        Also remove the worktrees (not the branches) of finished jobs that are not merged, once
        their last transition is this many days old.
    remote
        Also delete the merged branches on this remote (their archive refs are pushed), and
        clean up merged jobs that exist only there.
    verbose
        Also list the jobs that are kept and why.
    json_
        Print the plan (and what was done) as JSON.
    """
    from logist.share.cleanup import run_gc

    store = cli.store()
    plan = run_gc(store, yes=yes, base=base, keep_days=keep_days, remote=remote)
    if json_:
        emit_json({"base": plan.base, "base_oid": plan.base_oid, "remote": plan.remote, "dry_run": not yes,
                   "jobs": [jp.to_dict(store) for jp in plan.jobs]})
    else:
        say(f"base: {plan.base} ({plan.base_oid[:12]})")
        _print_plan(store, plan.jobs, yes=yes, verbose=verbose)
    return 1 if any(jp.errors for jp in plan.jobs) else 0


def clean(id: str, /, *, yes: bool = False, keep_branch: bool = False,
          json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Give a job up: archive its tip, remove its worktree, delete its branch (merged or not).

    The tip stays reachable as refs/logist/archive/<id>. A worktree with uncommitted changes,
    a lock or a process in it is never removed. DRAFT, PENDING and running jobs are refused
    (cancel them first). Dry run unless --yes.

    Parameters
    ----------
    id
        The job.
    yes
        Do it (without it, only print what would be done).
    keep_branch
        Keep the branch (only archive and remove the worktree).
    json_
        Print the plan (and what was done) as JSON.
    """
    from logist.share.cleanup import apply_job
    from logist.share.gc_plan import plan_clean

    store = cli.store()
    from logist.engine.job_select import resolve_job

    jp = plan_clean(store, resolve_job(store, id), keep_branch=keep_branch)
    if yes and not jp.errors:
        apply_job(store, jp)
    if json_:
        emit_json({**jp.to_dict(store), "dry_run": not yes})
    elif jp.errors and not jp.done:
        for e in jp.errors:
            say(f"{jp.job_id}: kept: {e}")
    else:
        _print_plan(store, [jp], yes=yes, verbose=True)
    return 1 if jp.errors else 0
