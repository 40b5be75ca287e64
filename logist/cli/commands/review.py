"""`logist job diff`: a job's work (or one step's) without its record, as `git diff` shows it."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter

from logist import cli


def diff(id: str | None = None, /, *, step: int | None = None, stat: bool = False,
         name_only: Annotated[bool, Parameter(name="--name-only")] = False) -> int:
    """Show the job's work without its record (.logist/): the diff of its review branch
    logist-review/<id> against the job's base, or of one step's commit. Printed by git itself
    (colour on a terminal, paged like `git diff`).

    Parameters
    ----------
    id
        The job (default: the selected one).
    step
        Only this step's work (the step's last harvest on the current run).
    stat
        A diffstat instead of the patch.
    name_only
        Only the names of the changed files.
    """
    from logist.engine.job_select import selected_job
    from logist.share.review import diff_plan

    store = cli.store()
    plan = diff_plan(store, selected_job(store, id), step=step, stat=stat,
                     extra=["--name-only"] if name_only else None)
    sys.stdout.flush()
    from logist.git.gitcmd import git_to_terminal

    return 0 if git_to_terminal(plan.argv, cwd=store.root) == 0 else 1
