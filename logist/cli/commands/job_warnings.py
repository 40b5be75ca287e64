"""What a job command warns about before its answer: interrupted jobs (`logist recover`) and a job
record merged by hand (the post-merge hook's finding)."""

from __future__ import annotations

from logist.cli.output import warn


def warn_interrupted(store, exclude: str | None = None, summaries: list | None = None,
                      running: list[str] | None = None, lock_refs: dict[str, str] | None = None
                      ) -> None:
    """One line when some job was interrupted (a step in flight and no live holder, or a lock
    left by a process that is gone); see `logist recover`.

    Cheap when nothing is wrong: one scan of the locks. A job interrupted here leaves its lock
    behind (the runner holds it through every transient state); ``running`` names the jobs
    whose record says a step is in flight, which may have no lock at all (adopted from a
    remote). ``summaries`` reuses a listing the command already made; ``lock_refs`` the lock
    refs it already found ({job id: oid}).
    """
    try:
        if summaries is None and lock_refs is None and not running and not _any_lock(store):
            return  # no lock ref at all (read from git's files, no process)
        if summaries is None and lock_refs is not None and not lock_refs and not running:
            return  # no lock and nothing in flight: nothing can be interrupted
        from logist.store.locks import read_locks

        if summaries is None:
            locks = read_locks(store, lock_refs)
            stale = any(h is None or h.stale_reason() for _, h in locks.values())
            if not stale and all(j in locks for j in running or ()):
                return
        from logist.engine.recovery import interrupted_jobs

        jobs = [j for j in interrupted_jobs(store, with_actions=False, summaries=summaries)
                if j.id != exclude]
    except Exception:
        return
    if len(jobs) == 1:
        warn(jobs[0].warning())
    elif jobs:
        names = ", ".join(j.id for j in jobs[:5]) + (", ..." if len(jobs) > 5 else "")
        warn(f"{len(jobs)} jobs were interrupted ({names}); run `logist recover --list` to see them")


def _any_lock(store) -> bool:
    from logist.git import refs
    from logist.git.gitread import Unsupported

    try:
        return bool(store.reader.any_ref_under(refs.LOCKS_PREFIX))
    except Unsupported:
        return True


def warn_merged_record(store) -> None:
    """Once, what the post-merge hook found: a job branch (its record) merged by hand."""
    if not (store.paths.logist_dir / "merge-warning").exists():
        return  # one stat when there is nothing to say
    from logist.share.review import take_merge_warning

    text = take_merge_warning(store)
    if text:
        import sys

        print(text, file=sys.stderr)
