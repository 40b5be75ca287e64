"""`logist push`: job branches, their write-once refs and the notes in one atomic
``git push --porcelain`` (docs/sharing.md). A ref the remote moved meanwhile is fetched, merged
where that is safe and pushed again; a rewritten branch is forced only when its old remote tip
stays reachable from one of the job's write-once refs. Lock refs are never pushed here.

Layer 5: git only through :mod:`logist.git.gitcmd`, ref names through :mod:`logist.git.refs`;
never prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from logist.core.errors import GitError, JobNotFoundError, LogistError, RemoteError
from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.fetch import fetch
from logist.share.remotes import NETWORK_TIMEOUT, error_line, for_each_ref, is_ancestor, resolve_remote, rev
from logist.store.jobstore import JobStore

PUSH_ATTEMPTS = 4


@dataclass
class PushLine:
    flag: str  # ' ' ok, '+' forced, '-' deleted, '*' new, '!' rejected, '=' up to date
    src: str
    dst: str
    summary: str

    @property
    def rejected(self) -> bool:
        return self.flag == "!"

    @property
    def reason(self) -> str:
        s = self.summary
        if "(" in s and s.endswith(")"):
            return s[s.rindex("(") + 1:-1]
        return s


def parse_porcelain(stdout: str) -> list[PushLine]:
    lines = []
    for raw in stdout.splitlines():
        parts = raw.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            src, _, dst = parts[1].rpartition(":")
            lines.append(PushLine(parts[0], src, dst, parts[2]))
    return lines


def run_push(store: JobStore, remote: str, refspecs: list[str], *, leases: Sequence[str] = (),
             atomic: bool = True, verify: bool = True) -> tuple[bool, list[PushLine], str]:
    """One ``git push --porcelain`` (atomic by default). (ok, per-ref lines, stderr)."""
    argv = ["push", "--porcelain"]
    if atomic:
        argv.append("--atomic")
    if not verify:
        argv.append("--no-verify")
    argv += [f"--force-with-lease={lease}" for lease in leases]
    argv += ["--end-of-options", refs.validate_remote(remote), *refspecs]
    try:
        proc = git(argv, cwd=store.root, check=False, timeout=NETWORK_TIMEOUT)
    except GitError as exc:  # with check=False: it did not finish
        raise RemoteError(f"pushing to {remote} failed: {exc.message}") from None
    lines = parse_porcelain(proc.stdout)
    if proc.returncode == 0:
        return True, lines, proc.stderr
    if not any(ln.rejected for ln in lines):
        raise RemoteError(f"pushing to {remote} failed: {error_line(proc.stderr)}",
                          hint=f"check the remote with `git remote -v` and `git ls-remote {remote}`")
    return False, lines, proc.stderr


def _retryable(lines: list[PushLine]) -> bool:
    """Rejected only because the remote moved (non-fast-forward, fetch first, stale lease)."""
    reasons = {ln.reason for ln in lines if ln.rejected}
    ok = {"non-fast-forward", "fetch first", "stale info", "atomic push failed", "already exists"}
    # the server lost a compare-and-swap to a concurrent push (its ref transaction failed)
    raced = ("atomic transaction failed", "failed to update ref", "cannot lock ref", "failed to lock",
             "incorrect old value", "but expected")
    return bool(reasons) and all(r in ok or any(x in r for x in raced) for r in reasons)


@dataclass
class PushResult:
    remote: str
    pushed: list[str] = field(default_factory=list)  # refs created or moved on the remote
    skipped: dict[str, str] = field(default_factory=dict)  # ref -> why it was not pushed
    attempts: int = 0
    notes_merged: list[str] = field(default_factory=list)

    @property
    def conflicts(self) -> dict[str, str]:
        return {r: why for r, why in self.skipped.items() if why.startswith("diverged")}


@dataclass
class _Plan:
    specs: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def tracking_of(remote: str, ref: str) -> str:
    """Where ``logist fetch`` keeps the remote's copy of the local ``ref``."""
    if ref.startswith(refs.BRANCH_PREFIX):
        return refs.remote_branch_prefix(remote) + ref[len(refs.BRANCH_PREFIX):]
    if ref.startswith("refs/notes/logist/"):
        return refs.remote_notes_ref(remote, ref)
    if ref.startswith(refs.REVIEW_PREFIX):
        return refs.remote_review_prefix(remote) + ref[len(refs.REVIEW_PREFIX):]
    ns, _, rest = ref[len("refs/logist/"):].partition("/")
    return refs.remote_logist_prefix(remote, ns) + rest


def _select_jobs(store: JobStore, job_ids: list[JobId] | None) -> dict[str, str]:
    branches = {jid: oid for jid, oid in store.job_ids()}
    if job_ids is None:
        return branches
    chosen: dict[str, str] = {}
    for jid in job_ids:
        refs.validate_job_id(jid)
        if jid not in branches:
            if rev(store, refs.archive_ref(jid)) is None:
                raise JobNotFoundError(f"no job {jid!r} in this repository",
                                       hint="run `logist job list` to see jobs")
            continue
        chosen[jid] = branches[jid]
    return chosen


def _plan_push(store: JobStore, remote: str, job_ids: list[JobId] | None, include_notes: bool) -> _Plan:
    plan = _Plan()
    jobs = _select_jobs(store, job_ids)
    tracking = for_each_ref(store, refs.remote_branch_prefix(remote),
                            refs.REMOTE_LOGIST_PREFIX + remote + "/",
                            f"refs/notes/remotes/{remote}/")
    if job_ids is not None:
        extra_prefixes = [p for j in job_ids for p in refs.job_refs_prefixes(j)]
        extra = for_each_ref(store, *extra_prefixes) if extra_prefixes else {}
        for j in job_ids:
            a = rev(store, refs.archive_ref(j))
            if a:
                extra[refs.archive_ref(j)] = a
    else:
        extra = for_each_ref(store, refs.RUNS_PREFIX, refs.RESTEPS_PREFIX, refs.DISPLACED_PREFIX,
                             refs.ARCHIVE_PREFIX)
    # write-once refs first: a branch rewritten by a rerun may be forced only when its old
    # remote tip stays reachable from one of them.
    kept: dict[str, list[str]] = {}
    for ref, oid in sorted(extra.items()):
        theirs = tracking.get(tracking_of(remote, ref))
        if theirs == oid:
            kept.setdefault(_job_of(ref), []).append(oid)
            continue
        if theirs is None or is_ancestor(store, theirs, oid):
            plan.specs.append(f"{ref}:{ref}")
            kept.setdefault(_job_of(ref), []).append(oid)
        else:
            plan.skipped[ref] = "diverged: the remote has a different value (see `logist doctor`)"
    for jid, oid in sorted(jobs.items()):
        ref = refs.branch_ref(jid)
        theirs = tracking.get(refs.remote_branch_ref(remote, jid))
        if theirs == oid:
            continue
        if theirs is None or is_ancestor(store, theirs, oid):
            plan.specs.append(f"{ref}:{ref}")
        elif is_ancestor(store, oid, theirs):
            plan.skipped[ref] = (f"the remote is ahead (it has newer transitions); "
                                 f"`logist job adopt {jid}` brings them here")
        elif any(is_ancestor(store, theirs, k) for k in kept.get(jid, [])):
            plan.leases.append(f"{ref}:{theirs}")
            plan.specs.append(f"{ref}:{ref}")
        else:
            plan.skipped[ref] = (f"diverged: this clone and {remote} both have commits the other "
                                 f"lacks; inspect `git log {refs.branch_name(jid)}...{remote}/"
                                 f"{refs.branch_name(jid)}`")
    if include_notes:
        for local in refs.NOTES_REFS:
            notes_oid = rev(store, local)
            if notes_oid and tracking.get(refs.remote_notes_ref(remote, local)) != notes_oid:
                plan.specs.append(f"{local}:{local}")
    return plan


def preserved(store: JobStore, job_id: JobId, oid: str) -> bool:
    """Is ``oid`` kept by one of the job's write-once refs (runs, resteps, displaced, archive)?
    Then a rewritten branch (rerun) may replace it on the remote without losing anything."""
    kept = list(for_each_ref(store, *refs.job_refs_prefixes(job_id)).values())
    a = rev(store, refs.archive_ref(job_id))
    if a:
        kept.append(a)
    return any(is_ancestor(store, oid, k) for k in kept)


def _job_of(ref: str) -> str:
    rest = ref[len("refs/logist/"):]
    parts = rest.split("/")
    return parts[1] if len(parts) > 1 else ""


def push(store: JobStore, remote: str | None = None, job_ids: list[JobId] | None = None, *,
         include_notes: bool = True, attempts: int = PUSH_ATTEMPTS) -> PushResult:
    """Push job branches, their runs/resteps/displaced/archive refs and the notes in one atomic
    push (``job_ids`` None: every job; ``[]``: notes only). Refs the remote moved meanwhile (notes
    from another clone, a job that progressed elsewhere) are fetched, merged where that is safe
    (notes: cat_sort_uniq) and pushed again; at most ``attempts`` rounds. Lock refs are never
    pushed here (only workers do)."""
    remote = resolve_remote(store, remote)
    result = PushResult(remote)
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        plan = _plan_push(store, remote, job_ids, include_notes)
        from logist.share.review import plan_push as plan_review_push

        review = plan_review_push(store, remote, job_ids)  # logist-review/<id>: the work only
        plan.specs += review.specs
        plan.leases += review.leases
        plan.skipped.update(review.skipped)
        result.skipped = dict(plan.skipped)
        if not plan.specs:
            return result
        ok, lines, stderr = run_push(store, remote, plan.specs, leases=plan.leases)
        if ok:
            result.pushed = [ln.dst for ln in lines if ln.flag in " +*"]
            update_tracking(store, remote, lines)
            return result
        if not _retryable(lines) or attempt == attempts:
            bad = [f"{ln.dst}: {ln.reason}" for ln in lines
                   if ln.rejected and ln.reason != "atomic push failed"]
            raise RemoteError(f"{remote} refused the push: {'; '.join(bad) or error_line(stderr)}",
                              hint=f"run `logist fetch {remote}` and `logist doctor`, then push again")
        fetched = fetch(store, remote)
        result.notes_merged += fetched.notes_merged
    return result  # pragma: no cover - the loop always returns or raises


def update_tracking(store: JobStore, remote: str, lines: list[PushLine]) -> None:
    """After a successful push the remote has these values: record them like a fetch would."""
    cmds = []
    for ln in lines:
        if ln.flag not in " +*-":
            continue
        try:
            track = tracking_of(remote, ln.dst)
        except (ValueError, LogistError):
            continue
        if ln.flag == "-":
            cmds.append(f"delete {track}\n")
            continue
        oid = rev(store, ln.src) if ln.src else None
        if oid:
            cmds.append(f"update {track} {oid}\n")
    if cmds:
        store.ref_transaction("".join(cmds))
