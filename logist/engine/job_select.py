"""Which job a command means (docs/cli.md, "The job id"): an id or a unique prefix of one,
$LOGIST_JOB, the worktree the command runs in, or `logist job select`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from logist.core.errors import UsageError
from logist.core.jobid import JobId
from logist.git import refs
from logist.store.jobstore import JobStore

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    pass


def selected_job(store: JobStore, job_id: str | None) -> JobId:
    """Which job a command means (docs/cli.md, "The job id"): the id given (or a unique prefix
    of one: :func:`resolve_job`), else $LOGIST_JOB, else the job whose worktree the command runs
    in, else the one chosen with `logist job select`."""

    if job_id is not None:  # given, even empty: it must be valid
        return resolve_job(store, job_id)
    env = os.environ.get("LOGIST_JOB")
    if env:
        return refs.validate_job_id(env)
    here = job_of_worktree(store)
    if here is not None:
        return here
    path = store.paths.logist_dir / "selected"
    try:
        chosen = path.read_text().strip()
    except OSError:
        chosen = ""
    if not chosen:
        raise UsageError("no job given and none selected",
                         hint=_candidates_hint(store, "pass one of: ", "there are no jobs yet: "
                                               "`logist job create --title ...` makes one")
                         + "; or set one with `logist job select ID` (or $LOGIST_JOB)")
    return refs.validate_job_id(chosen)


def job_of_worktree(store: JobStore) -> JobId | None:
    """The job whose worktree the store was opened in (its HEAD is ``logist/<id>``), or None.
    Reads one file; no git process."""
    if store.paths.git_dir == store.paths.common_dir:
        return None
    try:
        head = (store.paths.git_dir / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    prefix = "ref: " + refs.BRANCH_PREFIX
    if not head.startswith(prefix):
        return None
    try:
        return refs.validate_job_id(head[len(prefix):])
    except UsageError:
        return None


def _job_ids(store: JobStore) -> list[JobId]:
    return [jid for jid, _ in store._refs_under(refs.BRANCH_PREFIX)[refs.BRANCH_PREFIX]]


def _candidates_hint(store: JobStore, lead: str, none: str, ids: list[JobId] | None = None) -> str:
    ids = _job_ids(store) if ids is None else ids
    if not ids:
        return none
    shown = ", ".join(sorted(ids)[:8]) + (f" (and {len(ids) - 8} more: `logist job list`)" if len(ids) > 8 else "")
    return lead + shown


def _by_prefix(store: JobStore, given: str, ids: list[JobId]) -> JobId | None:
    """The one id of ``ids`` that starts with ``given``; None if none does; a UsageError
    listing the candidates if several do."""
    matches = [j for j in ids if j.startswith(given)]
    if len(matches) > 1:
        raise UsageError(f"{given!r} is the start of {len(matches)} job ids",
                         hint=_candidates_hint(store, "say which: ", "", matches))
    return matches[0] if matches else None


def _packed_branch(store: JobStore, job_id: JobId) -> bool:
    """Whether the job's branch is in ``packed-refs`` (read from the file: a search, not a
    listing of every job); False when the reader cannot say (git is asked then)."""
    from logist.git.gitread import Unsupported

    try:
        return store.reader.ref(refs.branch_ref(job_id)) is not None
    except Unsupported:
        return False


def resolve_job(store: JobStore, given: str) -> JobId:
    """The job ``given`` names: its id, or a prefix of exactly one job's id. An ambiguous prefix
    is a UsageError listing the candidates; an unknown one a JobNotFoundError. The one place ids
    typed by a person are resolved (every command with a job argument goes through it)."""
    from logist.core.errors import JobNotFoundError

    if isinstance(given, str) and given.endswith("-") and refs.JOB_ID_RE.match(given):
        found = _by_prefix(store, given, _job_ids(store))  # "fix-the-": a prefix ending where a word does
        if found is not None:
            return found
    given = refs.validate_job_id(given)  # a prefix follows the rules of ids too: a JobId from here
    if (store.paths.common_dir / refs.branch_ref(given)).is_file() or _packed_branch(store, given):
        return given  # an existing job (a loose or packed branch ref): no git process, no listing
    ids = _job_ids(store)
    if given in ids:
        return given
    found = _by_prefix(store, given, ids)
    if found is not None:
        return found
    if store.restore_branch(given):  # a deleted branch whose tip logist kept (docs/refs.md)
        return given
    remotes = _fetched_from(store, given)
    if remotes:
        r = remotes[0]
        raise JobNotFoundError(f"no job {given!r} here; it was fetched from {', '.join(remotes)}",
                               hint=f"`logist job status {given} --remote {r}` reads it as fetched; "
                                    f"`logist job adopt {given} --remote {r}` takes it to work on here")
    raise JobNotFoundError(f"no job {given!r}",
                           hint=_candidates_hint(store, "jobs here: ", "there are no jobs yet")
                           + "; `logist job list --all` lists them")


def _fetched_from(store: JobStore, job_id: JobId) -> list[str]:
    """The remotes whose fetched job branches (``refs/remotes/<R>/logist/<id>``) hold
    ``job_id`` (the error path of :func:`resolve_job` only: one git process)."""
    from logist.git.gitcmd import git

    proc = git(["for-each-ref", "--format=%(refname)", "--", f"refs/remotes/*/logist/{job_id}"],
               cwd=store.root, check=False)
    found = []
    for name in proc.stdout.splitlines():
        remote = name[len("refs/remotes/"):-len(f"/logist/{job_id}")]
        if name.endswith(f"/logist/{job_id}") and refs.REMOTE_RE.match(remote) and ".." not in remote:
            found.append(remote)
    return found


def select_job(store: JobStore, job_id: str) -> JobId:
    jid = resolve_job(store, job_id)
    store.tip(jid)  # must exist
    path = store.paths.logist_dir / "selected"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jid + "\n")
    return jid
