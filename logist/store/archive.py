"""Keeping a job's last commit at ``refs/logist/archive/<id>`` (docs/refs.md).

The one rule, for `logist gc` and `logist recover --cleanup` alike: the archive ref is created,
or moved forward by compare-and-swap from a commit that is part of the new tip; an archive
that keeps a commit the tip does not contain is never overwritten (that commit would be lost).
"""

from __future__ import annotations

from logist.core.errors import JobStateError
from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore


def archive_tip(store: JobStore, job_id: JobId, tip: str) -> bool:
    """Keep ``tip`` at the job's archive ref. True when the ref moved, False when it already
    pointed there; JobStateError (nothing changed) when it keeps a commit not part of ``tip``."""
    ref = refs.archive_ref(job_id)
    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", ref], cwd=store.root, check=False)
    old = proc.stdout.strip() if proc.returncode == 0 else ""
    if old == tip:
        return False
    if old and git(["merge-base", "--is-ancestor", old, tip], cwd=store.root,
                   check=False).returncode != 0:
        raise JobStateError(f"{ref} already keeps {old[:12]}, which is not part of {tip[:12]}; "
                            "not overwriting it",
                            hint=f"inspect it with `git log {ref}`; delete it with "
                                 f"`git update-ref -d {ref}` if it is not needed")
    store.update_refs((f"update {ref} {tip} {old}" if old else f"create {ref} {tip}") + "\n")
    return True
