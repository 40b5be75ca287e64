"""`logist fetch`: a remote's job branches, logist refs and notes, into namespaces that never
collide with local ones (docs/sharing.md)::

    refs/heads/logist/<id>     -> refs/remotes/<R>/logist/<id>
    refs/logist/<ns>/...       -> refs/logist/remotes/<R>/<ns>/...
    refs/notes/logist/<kind>   -> refs/notes/remotes/<R>/logist/<kind>  (then merged, cat_sort_uniq)

The remote layout mirrors the local one exactly, so any clone can read it with plain git.
Everything fetched is data: manifests are validated by the pydantic model before use, notes are
merged as text (:mod:`logist.share.notes_merge`), and a job whose steps run commands is never
executed because of anything the remote says (:func:`logist.share.trust.trusted_here`).

Layer 5: git only through :mod:`logist.git.gitcmd`; never prints."""

from __future__ import annotations

from dataclasses import dataclass, field

from logist.core.errors import GitError, RemoteError
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.notes_merge import merge_remote_notes
from logist.share.remotes import NETWORK_TIMEOUT, error_line, for_each_ref, resolve_remote
from logist.store.jobstore import JobStore


@dataclass
class FetchResult:
    remote: str
    jobs: int = 0
    new: list[str] = field(default_factory=list)  # job ids seen for the first time
    updated: list[str] = field(default_factory=list)  # job ids whose remote tip moved
    gone: list[str] = field(default_factory=list)  # job ids deleted on the remote
    notes_merged: list[str] = field(default_factory=list)
    notes_refused: list[str] = field(default_factory=list)  # "<ref>: why" (a note over the cap)


def fetch_refspecs(remote: str) -> list[str]:
    specs = [f"+{refs.BRANCH_PREFIX}*:{refs.remote_branch_prefix(remote)}*",
             f"+{refs.REVIEW_PREFIX}*:{refs.remote_review_prefix(remote)}*"]
    for ns in refs.SHARED_NAMESPACES:
        specs.append(f"+refs/logist/{ns}/*:{refs.remote_logist_prefix(remote, ns)}*")
    specs.append(f"+refs/notes/logist/*:refs/notes/remotes/{refs.validate_remote(remote)}/logist/*")
    return specs


def fetch(store: JobStore, remote: str | None = None, *, merge_notes: bool = True) -> FetchResult:
    """Fetch job branches, logist refs and notes of ``remote`` into the remote-tracking
    namespaces (pruning what the remote deleted), then merge the notes into the local ones."""
    remote = resolve_remote(store, remote)
    prefix = refs.remote_branch_prefix(remote)
    before = for_each_ref(store, prefix)
    try:
        proc = git(["fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head",
                    "--end-of-options", remote, *fetch_refspecs(remote)],
                   cwd=store.root, check=False, timeout=NETWORK_TIMEOUT)
    except GitError as exc:  # with check=False: it did not finish
        raise RemoteError(f"fetching from {remote} failed: {exc.message}") from None
    if proc.returncode != 0:
        raise RemoteError(f"fetching from {remote} failed: {error_line(proc.stderr)}",
                          hint=f"check the remote with `git remote -v` and `git ls-remote {remote}`")
    after = for_each_ref(store, prefix)
    result = FetchResult(remote)
    ids_after = {r[len(prefix):]: oid for r, oid in after.items()}
    ids_before = {r[len(prefix):]: oid for r, oid in before.items()}
    valid = {j for j in ids_after if refs.JOB_ID_RE.match(j) and not j.endswith("-")}
    result.jobs = len(valid)
    result.new = sorted(j for j in valid if j not in ids_before)
    result.updated = sorted(j for j in valid if j in ids_before and ids_before[j] != ids_after[j])
    result.gone = sorted(j for j in ids_before if j not in ids_after)
    if merge_notes:
        result.notes_merged = merge_remote_notes(store, remote, refused=result.notes_refused)
    return result
