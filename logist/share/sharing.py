"""Sharing jobs through any git remote (docs/sharing.md): push, fetch, adopt, trust, pull requests.

Layer 3/5: talks to git only through :mod:`logist.git.gitcmd`, builds every ref name through
:mod:`logist.git.refs`, returns results and raises :class:`~logist.core.errors.LogistError`; never prints.

The remote layout mirrors the local one exactly (``refs/heads/logist/<id>``,
``refs/logist/{runs,resteps,displaced,archive,locks}/...``, ``refs/notes/logist/*``), so any clone
can read it with plain git. Fetched refs land in namespaces that never collide with local ones::

    refs/heads/logist/<id>     -> refs/remotes/<R>/logist/<id>
    refs/logist/<ns>/...       -> refs/logist/remotes/<R>/<ns>/...
    refs/notes/logist/<kind>   -> refs/notes/remotes/<R>/logist/<kind>  (then merged, cat_sort_uniq)

Everything fetched is data: manifests are validated by the pydantic model before use, notes are
merged as text, and a job whose steps run commands is never executed because of anything the
remote says (see :func:`trusted_here`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logist.core.errors import (
    ConcurrentUpdateError,
    GitError,
    JobNotFoundError,
    LockHeldError,
    LogistError,
    RemoteError,
    UsageError,
)
from logist.core.model import Manifest
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.store.jobstore import JobStore, new_transition_id, utcnow

PUSH_ATTEMPTS = 4
NOTES_MERGE_ATTEMPTS = 30
NETWORK_TIMEOUT = 600.0


# --------------------------------------------------------------------------- small git helpers

def rev(store: JobStore, ref: str) -> str | None:
    """The object a ref points at (not peeled), or None."""
    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", ref], cwd=store.root, check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def is_ancestor(store: JobStore, a: str, b: str) -> bool:
    """True when commit ``a`` is reachable from commit ``b`` (a == b counts)."""
    if a == b:
        return True
    return git(["merge-base", "--is-ancestor", a, b], cwd=store.root, check=False).returncode == 0


def for_each_ref(store: JobStore, *prefixes: str) -> dict[str, str]:
    """{refname: oid} under the given prefixes."""
    if not prefixes:
        return {}
    out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", "--", *prefixes],
                  cwd=store.root)
    result = {}
    for line in out.splitlines():
        oid, _, ref = line.partition(" ")
        if ref:
            result[ref] = oid
    return result


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    interesting = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (interesting or lines or ["(no output)"])[-1]


# --------------------------------------------------------------------------- remotes

def remote_names(store: JobStore) -> list[str]:
    return git_out(["remote"], cwd=store.root).split()


def resolve_remote(store: JobStore, remote: str | None = None) -> str:
    """The remote to talk to: ``remote``, else the current branch's upstream remote, else
    ``origin``, else the only remote. Always a validated, configured remote name."""
    names = remote_names(store)
    if remote:
        refs.validate_remote(remote)
        if remote not in names:
            raise RemoteError(f"no remote named {remote!r} in this repository",
                              hint="run `git remote -v` to list remotes, or `git remote add NAME URL`")
        return remote
    branch = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=store.root, check=False).stdout.strip()
    if branch:
        upstream = git(["config", "--get", f"branch.{branch}.remote"], cwd=store.root,
                       check=False).stdout.strip()
        if upstream in names:
            return refs.validate_remote(upstream)
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return refs.validate_remote(names[0])
    if not names:
        raise RemoteError("this repository has no remote to share jobs through",
                          hint="add one with `git remote add origin URL`")
    raise RemoteError(f"several remotes ({', '.join(names)}) and none is the upstream or 'origin'",
                      hint="name the remote: `logist push REMOTE`")


def default_remote(store: JobStore) -> str | None:
    """Like :func:`resolve_remote` without a name, but None when there is no remote."""
    try:
        return resolve_remote(store)
    except RemoteError:
        return None


def remote_url(store: JobStore, remote: str) -> str:
    return git_out(["remote", "get-url", "--", refs.validate_remote(remote)], cwd=store.root)


# --------------------------------------------------------------------------- push (porcelain)

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
        raise RemoteError(f"pushing to {remote} failed: {_last_line(proc.stderr)}",
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


# --------------------------------------------------------------------------- fetch

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
        raise RemoteError(f"fetching from {remote} failed: {_last_line(proc.stderr)}",
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


# --------------------------------------------------------------------------- notes

def merge_notes_ref(store: JobStore, local_ref: str, theirs_ref: str) -> bool:
    """Merge notes ``theirs_ref`` into ``local_ref`` with ``cat_sort_uniq``.

    ``git notes merge`` moves its ref without an old-value check, so the merge runs on a
    short-lived ref and the result is published on ``local_ref`` by compare-and-swap (retried
    when a local note writer moved it meanwhile). Returns True when ``local_ref`` changed.
    """
    theirs = rev(store, theirs_ref)
    if theirs is None:
        return False
    for attempt in range(NOTES_MERGE_ATTEMPTS):
        ours = rev(store, local_ref)
        if ours is None:
            proc = store.ref_transaction(f"create {local_ref} {theirs}\n")
            if proc.returncode == 0:
                return True
            continue
        if is_ancestor(store, theirs, ours):
            return False
        if is_ancestor(store, ours, theirs):
            merged = theirs
        else:
            merged = _notes_merge_commit(store, ours, theirs_ref)
        proc = store.ref_transaction(f"update {local_ref} {merged} {ours}\n")
        if proc.returncode == 0:
            return True
        time.sleep(min(0.2, 0.005 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.5))
    raise ConcurrentUpdateError(f"could not merge {theirs_ref} into {local_ref}: it kept moving",
                                hint="run `logist fetch` again")


def _notes_merge_commit(store: JobStore, ours: str, theirs_ref: str) -> str:
    tmp = f"{refs.NOTES_MERGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    store.update_refs(f"create {tmp} {ours}\n")
    try:
        proc = git(["notes", "--ref", tmp, "merge", "-q", "-s", "cat_sort_uniq", "--end-of-options",
                    theirs_ref], cwd=store.root, check=False)
        if proc.returncode != 0:
            raise GitError(f"merging notes from {theirs_ref} failed: {_last_line(proc.stderr)}",
                           stderr=proc.stderr, hint="run `logist doctor`")
        merged = rev(store, tmp)
        assert merged
        return merged
    finally:
        git(["update-ref", "-d", tmp], cwd=store.root, check=False)


def oversized_note(store: JobStore, notes_ref: str, limit: int | None = None) -> str | None:
    """``<commit>: <size>`` of the first note of ``notes_ref`` larger than ``limit`` bytes
    (default: logist.core.limits.MAX_NOTE_BYTES), or None. One ``git ls-tree -r -l``."""
    from logist.core.limits import MAX_NOTE_BYTES

    limit = MAX_NOTE_BYTES if limit is None else limit
    proc = git(["ls-tree", "-r", "-l", "--end-of-options", notes_ref], cwd=store.root, check=False)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        if len(parts) == 4 and parts[1] == "blob" and parts[3].isdigit() and int(parts[3]) > limit:
            return f"{path.replace('/', '')[:12]}: {int(parts[3])} bytes"
    return None


def note_with_controls(store: JobStore, theirs: str, ours: str | None) -> str | None:
    """``<commit>`` of the first note of ``theirs`` (new since ``ours``) that holds a raw
    control or escape character, or None. Notes are printed by plain ``git log``
    (notes.displayRef): logist writes them escaped (docs/refs.md), so a raw one was written by
    something else and is not merged."""
    from logist.core.termsafe import has_controls
    from logist.git.gitcmd import CatFileBatch

    args = (["diff-tree", "-r", "--no-commit-id", "--end-of-options", ours, theirs] if ours
            else ["ls-tree", "-r", "--end-of-options", theirs])
    proc = git(args, cwd=store.root, check=False)
    if proc.returncode != 0:
        return None
    blobs: list[tuple[str, str]] = []
    for line in proc.stdout.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        oid = parts[3] if ours and len(parts) >= 5 else (parts[2] if len(parts) == 3 else "")
        if len(oid) == 40 and oid.strip("0"):
            blobs.append((path.replace("/", ""), oid))
    if not blobs:
        return None
    with CatFileBatch(store.root) as batch:
        datas = batch.read_many([oid for _p, oid in blobs])
    for (commit, _oid), data in zip(blobs, datas, strict=True):
        if data and has_controls(data.decode("utf-8", "replace")):
            return commit[:12]
    return None


def merge_remote_notes(store: JobStore, remote: str, *, refused: list[str] | None = None) -> list[str]:
    """Merge every fetched logist notes ref of ``remote`` into the local one. A fetched notes
    ref holding a note larger than logist.core.limits.MAX_NOTE_BYTES is data nobody should
    print or merge: it is not merged (``"<ref>: why"`` is added to ``refused``)."""
    from logist.core.limits import MAX_NOTE_BYTES, human_bytes

    changed = []
    for local in refs.NOTES_REFS:
        theirs = refs.remote_notes_ref(remote, local)
        ours = rev(store, local)
        tip = rev(store, theirs)
        if tip is not None and not (ours and is_ancestor(store, tip, ours)):
            big = oversized_note(store, theirs)
            if big:
                if refused is not None:
                    refused.append(f"{theirs}: note on {big} (more than {human_bytes(MAX_NOTE_BYTES)}); not merged")
                continue
            raw = note_with_controls(store, theirs, ours)
            if raw:
                if refused is not None:
                    refused.append(f"{theirs}: the note on {raw} holds raw control or escape "
                                   "characters (a terminal would obey them); not merged")
                continue
        if merge_notes_ref(store, local, theirs):
            changed.append(local)
    return changed


# --------------------------------------------------------------------------- push

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


def _tracking_of(remote: str, ref: str) -> str:
    """Where ``logist fetch`` keeps the remote's copy of the local ``ref``."""
    if ref.startswith(refs.BRANCH_PREFIX):
        return refs.remote_branch_prefix(remote) + ref[len(refs.BRANCH_PREFIX):]
    if ref.startswith("refs/notes/logist/"):
        return refs.remote_notes_ref(remote, ref)
    if ref.startswith(refs.REVIEW_PREFIX):
        return refs.remote_review_prefix(remote) + ref[len(refs.REVIEW_PREFIX):]
    ns, _, rest = ref[len("refs/logist/"):].partition("/")
    return refs.remote_logist_prefix(remote, ns) + rest


def _select_jobs(store: JobStore, job_ids: list[str] | None) -> dict[str, str]:
    branches = {jid: oid for jid, oid in store.job_ids()}
    if job_ids is None:
        return branches
    chosen = {}
    for jid in job_ids:
        refs.validate_job_id(jid)
        if jid not in branches:
            if rev(store, refs.archive_ref(jid)) is None:
                raise JobNotFoundError(f"no job {jid!r} in this repository",
                                       hint="run `logist job list` to see jobs")
            continue
        chosen[jid] = branches[jid]
    return chosen


def _plan_push(store: JobStore, remote: str, job_ids: list[str] | None, include_notes: bool) -> _Plan:
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
        theirs = tracking.get(_tracking_of(remote, ref))
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


def preserved(store: JobStore, job_id: str, oid: str) -> bool:
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


def push(store: JobStore, remote: str | None = None, job_ids: list[str] | None = None, *,
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
            _update_tracking(store, remote, lines)
            return result
        if not _retryable(lines) or attempt == attempts:
            bad = [f"{ln.dst}: {ln.reason}" for ln in lines
                   if ln.rejected and ln.reason != "atomic push failed"]
            raise RemoteError(f"{remote} refused the push: {'; '.join(bad) or _last_line(stderr)}",
                              hint=f"run `logist fetch {remote}` and `logist doctor`, then push again")
        fetched = fetch(store, remote)
        result.notes_merged += fetched.notes_merged
    return result  # pragma: no cover - the loop always returns or raises


def _update_tracking(store: JobStore, remote: str, lines: list[PushLine]) -> None:
    """After a successful push the remote has these values: record them like a fetch would."""
    cmds = []
    for ln in lines:
        if ln.flag not in " +*-":
            continue
        try:
            track = _tracking_of(remote, ln.dst)
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


# --------------------------------------------------------------------------- trust

# Step options that cannot change what runs or where it writes. Every other option (``command``,
# ``args``, ``skip_permissions``, ``env``, allowed tools, a runtime, worktree settings, and any
# option a later version adds) is shown to the user and covered by the trust decision.
NO_TRUST_OPTIONS = frozenset({"mock", "model", "output_format"})


def steps_needing_trust(m: Manifest) -> list[tuple[int, str, list[str]]]:
    """[(step number, agent, what is shown to the user)] of the steps that would run something
    the job itself names: ``command`` steps, extra ``args`` given to an AI agent's CLI (flags
    such as MCP configs or permission switches can make it run programs), and every other
    option outside :data:`NO_TRUST_OPTIONS` (shown as ``key=value``)."""
    from logist.agents import get_agent

    out = []
    for n, step in enumerate(m.steps, 1):
        try:
            agent = get_agent(step.agent)
        except LogistError:
            out.append((n, step.agent, [f"<unknown agent {step.agent!r}>"]))
            continue
        args = [str(a) for a in (step.options.get("args") or [])]
        extra = [f"{k}={json.dumps(step.options[k], sort_keys=True, default=str)}"
                 for k in sorted(step.options) if k not in NO_TRUST_OPTIONS | {"command", "args"}]
        if agent.runs_commands:
            command = [str(a) for a in (step.options.get("command") or [])]
            out.append((n, step.agent, command + args + extra))
        elif args or extra:
            out.append((n, step.agent, [step.agent, *args, *extra]))
    return out


_LINKS_CACHE: dict[tuple[str, str], list[str]] = {}


def job_link_problems(store: JobStore, oid: str) -> list[str]:
    """The symlinks of commit ``oid``'s tree that point outside the worktree or into a ``.git``
    (remembered per commit: a worker's survey asks again every poll)."""
    from logist.git.treelinks import dangerous_links

    key = (str(store.root), oid)
    if key not in _LINKS_CACHE:
        if len(_LINKS_CACHE) > 4096:
            _LINKS_CACHE.clear()
        _LINKS_CACHE[key] = dangerous_links(store.root, oid)
    return list(_LINKS_CACHE[key])


def commands_digest(m: Manifest, links: list[str] | tuple[str, ...] = ()) -> str:
    """A digest of everything a trust decision covers: what :func:`steps_needing_trust` shows
    (with the steps' full options) and the dangerous symlinks of the job's tree."""
    data: list[Any] = [{"step": n, "agent": a, "argv": argv, "options": m.steps[n - 1].options}
                       for n, a, argv in steps_needing_trust(m)]
    if links:
        data.append({"symlinks": sorted(links)})
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _trust_file(store: JobStore, job_id: str) -> Path:
    return store.paths.logist_dir / "trust" / f"{refs.validate_job_id(job_id)}.json"


def read_trust(store: JobStore, job_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_trust_file(store, job_id).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_trust(store: JobStore, m: Manifest, links: list[str] | tuple[str, ...] = ()) -> str:
    """Remember, in this clone only, that the user trusts ``m``'s commands (and the symlinks
    ``links``) as they are now."""
    digest = commands_digest(m, links)
    path = _trust_file(store, m.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"job": m.id, "digest": digest, "trusted_at": utcnow(),
                               "commands": [argv for _n, _a, argv in steps_needing_trust(m)],
                               "symlinks": list(links)},
                              indent=2) + "\n")
    os.replace(tmp, path)
    return digest


def needs_trust(m: Manifest, links: list[str] | tuple[str, ...] = ()) -> bool:
    """Does running ``m`` (whose tree has the dangerous symlinks ``links``) need trust?"""
    return bool(links) or bool(steps_needing_trust(m))


def trusted_here(store: JobStore, m: Manifest, *, previous: Manifest | None = None,
                 links: list[str] | tuple[str, ...] = ()) -> bool:
    """May this clone run ``m`` without asking? Never decided by the fetched record itself:

    - it names no commands or options that need trust and its tree has no symlink pointing
      outside the worktree or into a ``.git`` (``links``: :func:`job_link_problems`), or
    - the user trusted exactly these commands and symlinks here (`logist job trust`), or
    - this clone's own previous record of the job was trusted, the commands are unchanged and
      the tree has no dangerous symlink.
    """
    if not needs_trust(m, links):
        return True
    digest = commands_digest(m, links)
    t = read_trust(store, m.id)
    if t and t.get("digest") == digest:
        return True
    return (not links and previous is not None and previous.trusted
            and commands_digest(previous) == digest)


@dataclass
class TrustInfo:
    job_id: str
    commands: list[tuple[int, str, list[str]]]
    where: str  # "local" or "<remote>/logist/<id>"
    links: list[str] = field(default_factory=list)  # symlinks out of the worktree or into .git
    already: bool = False
    committed: str | None = None


def trust_candidates(store: JobStore, job_id: str, remote: str | None = None) -> tuple[TrustInfo, Manifest]:
    """The job's commands, from the local branch or (without one) the fetched remote branch."""
    refs.validate_job_id(job_id)
    if remote is None and rev(store, refs.branch_ref(job_id)):
        oid, m = store.read(job_id)
        where = "local"
    else:
        r = resolve_remote(store, remote)
        fetched = rev(store, refs.remote_branch_ref(r, job_id))
        if fetched is None:
            raise JobNotFoundError(f"no job {job_id!r} here or fetched from {r}",
                                   hint=f"run `logist fetch {r}` first")
        oid, m = store.read(job_id, at=fetched)
        where = f"{r}/{refs.branch_name(job_id)}"
    info = TrustInfo(job_id, steps_needing_trust(m), where, job_link_problems(store, oid))
    t = read_trust(store, job_id)
    info.already = (bool(t and t.get("digest") == commands_digest(m, info.links))
                    and (where != "local" or m.trusted))
    return info, m


def trust_job(store: JobStore, job_id: str, remote: str | None = None) -> TrustInfo:
    """Trust the job's commands in this clone: a local trust record (pinned to a digest of the
    commands shown) and, when the job has a local branch, a committed record change
    (``trusted: true``) made under the job's lease."""
    info, m = trust_candidates(store, job_id, remote)
    if not info.commands and not info.links:
        return info
    record_trust(store, m, info.links)
    if info.where == "local" and not m.trusted:
        from logist.store.job_state import Update, update_job_manifest
        from logist.store.locks import acquire

        with acquire(store, job_id) as lease:
            tip, cur = store.read(job_id)
            if commands_digest(cur, job_link_problems(store, tip)) != commands_digest(m, info.links):
                raise ConcurrentUpdateError(f"job {job_id}: its commands changed while trusting it",
                                            hint=f"run `logist job trust {job_id}` again")

            def mut(x: Manifest) -> None:
                x.trusted = True

            done = update_job_manifest(
                store, job_id, Update(reason="trusted by the user", mutate=mut, history_event="note",
                                      data={"trusted": commands_digest(cur, info.links),
                                            "commands": [a for _n, _g, a in info.commands],
                                            **({"symlinks": info.links} if info.links else {})}),
                now=utcnow(), transition_id=new_transition_id(), tip=tip, current=cur, lease=lease.oid,
                body="The user reviewed and trusted the commands of this job:\n\n" + "\n".join(
                    [f"step {n} ({a}): {json.dumps(argv)}" for n, a, argv in info.commands]
                    + [f"symlink {why}" for why in info.links]))
            if done is not None:
                info.committed = done[0]
    return info


# --------------------------------------------------------------------------- adopt / import

@dataclass
class ImportResult:
    job_id: str
    remote: str
    tip: str
    action: str  # created, fast-forward, up-to-date, ahead, replaced
    record_commit: str | None = None
    trusted: bool = True
    displaced: str | None = None
    worktree: str | None = None
    state: str = ""


def remote_holder(store: JobStore, remote: str, job_id: str):
    """(lock oid, Holder or None) of the fetched remote lock, or None when it is free."""
    from logist.git.gitcmd import CatFileBatch
    from logist.store.locks import Holder

    oid = rev(store, refs.remote_lock_ref(remote, job_id))
    if oid is None:
        return None
    with CatFileBatch(store.root) as batch:
        raw = batch.read(oid)
    return oid, (Holder.from_bytes(raw[:4096]) if raw else None)


def remote_lease_expired(holder, now: float | None = None) -> bool:
    """A remote lease is judged by its heartbeat alone: a holder on another machine (or in
    another container with the same host name) cannot be checked by pid."""
    if holder is None:
        return True
    now = time.time() if now is None else now
    if holder.clock_problem(now):  # a heartbeat far in the future would hold the job forever
        return True
    return now - holder.heartbeat_at > holder.lease_seconds


def _worktree_clean(wt: Path) -> bool:
    proc = git(["status", "--porcelain", "--untracked-files=all"], cwd=wt, check=False)
    return proc.returncode == 0 and not proc.stdout.strip()


def _move_branch(store: JobStore, job_id: str, new: str, old: str | None, lease_oid: str) -> None:
    """CAS the job branch (fenced by the lease) and bring its worktree along
    (docs/architecture.md#known-hazards-of-git)."""
    wt = store.worktree_path(job_id)
    has_wt = (wt / ".git").exists()
    if has_wt and not _worktree_clean(wt):
        raise ConcurrentUpdateError(
            f"job {job_id}: its worktree {wt} has uncommitted changes; not moving the branch",
            hint=f"commit or discard them (`git -C {wt} status`), then adopt again")
    verb = f"update {refs.branch_ref(job_id)} {new} {old}" if old else f"create {refs.branch_ref(job_id)} {new}"
    proc = store.ref_transaction(f"verify {refs.lock_ref(job_id)} {lease_oid}\n{verb}\n"
                                 f"update {refs.tip_ref(job_id)} {new}\n")
    if proc.returncode != 0:
        raise ConcurrentUpdateError(f"job {job_id} changed while it was being adopted",
                                    hint=f"run `logist job adopt {job_id}` again")
    if has_wt:
        head = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False).stdout.strip()
        if head == refs.branch_ref(job_id):
            git(["reset", "-q", "--hard", "HEAD"], cwd=wt)


def import_job(store: JobStore, remote: str, job_id: str, lease, *, replace_diverged: bool = False
               ) -> ImportResult:
    """Bring the fetched ``<remote>/logist/<id>`` into the local branch (under ``lease``).

    Creates the branch, fast-forwards it, or (``replace_diverged``: workers, whose clone the remote
    overrules) keeps a diverged local tip under ``refs/logist/displaced/<id>/<k>`` and resets to
    the remote. Then makes the record say where it came from and whether it is trusted *here*,
    by a normal fenced commit when that differs from what the remote's record says.
    """
    refs.validate_job_id(job_id)
    theirs = rev(store, refs.remote_branch_ref(remote, job_id))
    if theirs is None:
        raise JobNotFoundError(f"no job {job_id!r} fetched from {remote}",
                               hint=f"run `logist fetch {remote}` and `logist job list --remote {remote}`")
    store.read(job_id, at=theirs)  # validate the fetched record before anything changes
    local = rev(store, refs.branch_ref(job_id))
    previous: Manifest | None = None
    displaced = None
    if local is not None:
        try:
            _, previous = store.read(job_id, at=local)
        except LogistError:
            previous = None
    if local is None:
        _move_branch(store, job_id, theirs, None, lease.oid)
        action = "created"
    elif local == theirs:
        action = "up-to-date"
    elif is_ancestor(store, local, theirs):
        _move_branch(store, job_id, theirs, local, lease.oid)
        action = "fast-forward"
    elif is_ancestor(store, theirs, local):
        action = "ahead"  # this clone has everything the remote has, and more
    elif replace_diverged:
        from logist.engine.settle import keep_displaced

        displaced = keep_displaced(store, job_id, local)
        _move_branch(store, job_id, theirs, local, lease.oid)
        action = "replaced"
    else:
        raise RemoteError(
            f"job {job_id}: this clone and {remote} have diverged (both have commits the other lacks)",
            hint=f"compare with `git log --oneline {refs.branch_name(job_id)}...{remote}/"
                 f"{refs.branch_name(job_id)}`; push or discard the local commits first")
    from logist.store.review import refresh

    refresh(store, job_id)  # the job's work came from the remote: its review branch follows
    tip, m = store.read(job_id)
    origin = previous.origin if previous is not None else f"remote:{remote}"
    links = job_link_problems(store, tip)
    trusted = trusted_here(store, m, previous=previous, links=links)
    record_commit = None
    if (m.origin, m.trusted) != (origin, trusted):
        from logist.store.job_state import Update, update_job_manifest

        def mut(x: Manifest) -> None:
            x.origin = origin
            x.trusted = trusted

        what = f"adopted from {remote}" if action != "ahead" else "record of origin and trust"
        body = (f"Job {job_id} {what} ({action}); origin {origin}; "
                + ("trusted here." if trusted else
                   f"its commands are NOT trusted here: `logist job trust {job_id}` first.")
                + "".join(f"\nSymlink out of the worktree: {why}" for why in links))
        done = update_job_manifest(store, job_id,
                                   Update(reason=what, mutate=mut, history_event="note",
                                          data={"adopted_from": remote, "origin": origin,
                                                "trusted": trusted, **({"symlinks": links} if links else {})}),
                                   now=utcnow(), transition_id=new_transition_id(), tip=tip, current=m,
                                   lease=lease.oid, body=body)
        if done is not None:
            record_commit, m = done
            tip = record_commit
    return ImportResult(job_id, remote, tip, action, record_commit, m.trusted, displaced,
                        state=m.state.value)


def adopt(store: JobStore, job_id: str, remote: str | None = None, *, do_fetch: bool = True,
          worktree: bool = True) -> ImportResult:
    """`logist job adopt`: fetch, check that nobody holds the job on the remote (or that the
    lease expired), take the local lease, bring the branch here, recreate the worktree."""
    from logist.store.locks import acquire

    refs.validate_job_id(job_id)
    remote = resolve_remote(store, remote)
    if do_fetch:
        fetch(store, remote)
    held = remote_holder(store, remote, job_id)
    if held is not None and not remote_lease_expired(held[1]):
        h = held[1]
        raise LockHeldError(f"job {job_id} is held on {remote} by {h.describe()}; its lease runs "
                            f"until {int(h.heartbeat_at + h.lease_seconds - time.time())}s from now",
                            hint=f"wait for it, or follow it with `logist fetch {remote}` and "
                                 f"`logist job status {job_id} --remote {remote}`")
    with acquire(store, job_id) as lease:
        res = import_job(store, remote, job_id, lease)
        store.run_dir(job_id).mkdir(parents=True, exist_ok=True)
        if worktree:
            res.worktree = str(store.ensure_worktree(job_id))
            store.sync_worktree_record(job_id)
    return res


# --------------------------------------------------------------------------- pull requests

@dataclass
class PrResult:
    job_id: str
    remote: str
    branch: str
    base: str
    url: str | None
    via: str  # "gh" or "url" or "none"
    output: str = ""
    pushed: PushResult | None = None
    note: str = ""  # about the review branch (e.g. kept with commits logist did not make)


def pr_text(store: JobStore, job_id: str) -> tuple[str, str]:
    """(title, markdown body): the job's title; its prompt, a table of its steps (agent,
    outcome, cost, time) and where its full record is."""
    tip, m = store.read(job_id)
    outcomes: dict[int, str] = {}
    try:
        for e in store.read_history(job_id):
            if e.outcome and e.step:
                outcomes[e.step] = e.outcome
    except LogistError:
        pass
    from logist.share.review import harvest_commits

    harvests = harvest_commits(store, job_id, tip)

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")[:200]

    lines = [f"Job `{m.id}`: {cell(m.title)}", ""]
    if m.prompt.strip():
        lines += ["> " + ln for ln in m.prompt.strip()[:4000].splitlines()] + [""]
    lines += ["| # | step | agent | outcome | cost | time | summary | commit |",
              "|---|---|---|---|---|---|---|---|"]
    for n, s in enumerate(m.steps, 1):
        commit = f"`{harvests[n][:12]}`" if n in harvests else "-"
        lines.append(f"| {n} | {cell(s.name)} | {cell(s.agent)} | {outcomes.get(n, s.status.value)} | "
                     f"${s.cost_usd:.4f} | {s.seconds:.1f}s | {cell(s.summary or s.reason or '-')} | {commit} |")
    lines += ["", f"State **{m.state.value}** · run {m.run} · cost ${m.cost_usd:.4f} · "
                  f"tokens {m.tokens} · time {m.seconds:.1f}s",
              "", f"This branch ({refs.review_name(job_id)}) carries only the work: one commit per step, "
                  "each with `Logist-Job`, `Logist-Step` and `Logist-Commit` trailers. Merge it any way "
                  "you like; in a squash message keep the `Logist-Job:` line, so `logist gc` knows "
                  "which job was merged.",
              "", f"The full record: `git log {refs.branch_name(job_id)}` (one commit per transition; "
                  f"`logist fetch` brings its notes). Head: `{tip[:12]}`."]
    return f"{m.title} [logist {m.id}]"[:250], "\n".join(lines) + "\n"


def remote_default_branch(store: JobStore, remote: str) -> str:
    out = git(["symbolic-ref", "-q", "--short", f"refs/remotes/{remote}/HEAD"], cwd=store.root,
              check=False).stdout.strip()
    if out.startswith(remote + "/"):
        return out[len(remote) + 1:]
    for name in ("main", "master"):
        if rev(store, f"refs/remotes/{remote}/{name}"):
            return name
    return "main"


def web_base(url: str) -> tuple[str, str] | None:
    """(kind, https://host/owner/repo) of a remote URL on a web forge, or None."""
    import re

    u = url.strip()
    m = re.match(r"^(?:ssh://)?(?:[^@/]+@)?([A-Za-z0-9.-]+)(?::\d+)?[:/]([^\s]+?)(?:\.git)?/?$", u)
    if u.startswith(("http://", "https://")):
        m2 = re.match(r"^https?://(?:[^@/]+@)?([A-Za-z0-9.-]+(?::\d+)?)/([^\s?#]+?)(?:\.git)?/?$", u)
        if not m2:
            return None
        host, path = m2.group(1), m2.group(2)
    elif m and not u.startswith(("/", ".", "file:")) and "." in m.group(1):
        host, path = m.group(1), m.group(2)
    else:
        return None
    if "/" not in path or ".." in path:
        return None
    kind = "gitlab" if "gitlab" in host else "bitbucket" if "bitbucket" in host else "github"
    return kind, f"https://{host}/{path}"


def compare_url(url: str, base: str, branch: str) -> str | None:
    from urllib.parse import quote

    wb = web_base(url)
    if wb is None:
        return None
    kind, site = wb
    b, h = quote(base, safe="/"), quote(branch, safe="/")
    if kind == "gitlab":
        return (f"{site}/-/merge_requests/new?merge_request%5Bsource_branch%5D={h}"
                f"&merge_request%5Btarget_branch%5D={b}")
    if kind == "bitbucket":
        return f"{site}/pull-requests/new?source={h}&dest={b}"
    return f"{site}/compare/{b}...{h}?expand=1"


def open_pr(store: JobStore, job_id: str, remote: str | None = None, *, base: str | None = None,
            draft: bool = False, use_gh: bool = True) -> PrResult:
    """Push the job, then open a pull request with `gh` (when installed) or give the compare URL."""
    from logist.share.review import prepare_pr

    refs.validate_job_id(job_id)
    remote = resolve_remote(store, remote)
    review = prepare_pr(store, job_id)
    pushed = push(store, remote, [job_id])
    for ref in (refs.branch_ref(job_id), refs.review_ref(job_id)):
        if ref in pushed.conflicts:
            raise RemoteError(f"job {job_id} was not pushed: {pushed.conflicts[ref]}")
    base = base or remote_default_branch(store, remote)
    if base.startswith("-") or not base.strip():
        raise UsageError(f"invalid base branch {base!r}")
    branch = review.branch
    title, body = pr_text(store, job_id)
    url = compare_url(remote_url(store, remote), base, branch)
    gh = shutil.which("gh") if use_gh else None
    if gh:
        body_file = store.paths.logist_dir / "run" / f"pr-{job_id}.md"
        body_file.parent.mkdir(parents=True, exist_ok=True)
        body_file.write_text(body)
        # --opt=value: a title from a fetched record may start with "-"
        argv = [gh, "pr", "create", f"--head={branch}", f"--base={base}", f"--title={title}",
                f"--body-file={body_file}"]
        if draft:
            argv.append("--draft")
        from logist.git.gitcmd import base_env
        from logist.runtimes.programs import run_program

        try:
            proc = run_program(argv, cwd=store.root, env=base_env(), timeout=NETWORK_TIMEOUT)
        except OSError as exc:  # TimeoutError included
            raise RemoteError(f"gh pr create did not finish: {exc}",
                              hint=f"open it by hand: {url}" if url else None) from None
        finally:
            body_file.unlink(missing_ok=True)
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 and "already exists" in err:
            # the pull request is open: pushing the rebuilt review branch updated it
            link = next((w for w in err.split() if w.startswith("http")), url)
            return PrResult(job_id, remote, branch, base, link, "gh",
                            f"updated the open pull request for {branch}: {link or ''}".rstrip(": "),
                            pushed, review.message)
        if proc.returncode != 0:
            raise RemoteError(f"gh pr create failed: {_last_line(err or out)}",
                              hint=f"open it by hand: {url}" if url else
                              f"the branch is pushed as {branch} on {remote}")
        out = out.strip()
        link = next((w for w in out.split() if w.startswith("http")), url)
        return PrResult(job_id, remote, branch, base, link, "gh", out, pushed, review.message)
    return PrResult(job_id, remote, branch, base, url, "url" if url else "none", "", pushed,
                    review.message)

