"""Review through pull requests (docs/sharing.md, "Review"): the review branch on a remote,
`logist job diff`, integration that knows which job it was, and the warning after a job branch
was merged by hand.

The review branch itself (``logist-review/<id>``: the job's work, one commit per step, no
``.logist/`` path) is built in :mod:`logist.store.review`. This module pushes it next to the job
branch, never dropping a reviewer's commits there, and decides whether a base (``origin/main``)
contains a job:

- the base contains the job's review branch (logist's, or the remote's with a reviewer's
  commits on top) or its job branch: merge commit or fast-forward;
- a commit of the base names the job (a ``Logist-Job: <id>`` line, which GitHub and GitLab keep
  in a squash message built from the commits) and changes some of the files the job changed:
  a squash (or rebase) merge; "edited in review" when its changes to those files are not
  exactly the job's.

Identical content alone never counts: a second job that made the same edit is not integrated
when the first one's pull request is merged.

Layer 5 (share): returns data, raises :class:`~logist.core.errors.LogistError`; never prints.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from logist.core.errors import JobNotFoundError, LogistError, UsageError
from logist.core.jobid import JobId, is_job_id
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.store import review as store_review
from logist.store.jobstore import JobStore
from logist.store.review_objects import trailers

MAX_SCAN = 5000  # base commits read when looking for a squash that names the job


def _rev(store: JobStore, ref: str) -> str | None:
    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", ref], cwd=store.root, check=False)
    return proc.stdout.strip() or None


def _is_ancestor(store: JobStore, a: str, b: str) -> bool:
    if a == b:
        return True
    return git(["merge-base", "--is-ancestor", a, b], cwd=store.root, check=False).returncode == 0


def _refs_under(store: JobStore, *prefixes: str) -> dict[str, str]:
    out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", "--", *prefixes],
                  cwd=store.root)
    return {ref: oid for oid, _, ref in (ln.partition(" ") for ln in out.splitlines()) if ref}


# --------------------------------------------------------------------------- push

@dataclass
class ReviewPush:
    specs: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # ref -> why ("diverged: ..." = conflict)


def plan_push(store: JobStore, remote: str, job_ids: list[JobId] | None) -> ReviewPush:
    """Which review branches to push, each by compare-and-swap against what ``remote`` had at
    the last fetch (a lease: a remote that moved meanwhile rejects the push).

    A remote review branch whose commits logist made is replaced (a rerun rewrites it); one
    that has commits logist did not make (a reviewer pushed a fixup) is kept: left alone when
    it already contains this clone's branch, refused with the commits named when pushing would
    drop them."""
    plan = ReviewPush()
    for given in job_ids or []:  # jobs named on the command line: bring their review branch along
        if _rev(store, refs.branch_ref(given)):  # first (a process killed right after a harvest left it behind)
            store_review.refresh(store, given)
    local = {r[len(refs.REVIEW_PREFIX):]: oid for r, oid in _refs_under(store, refs.REVIEW_PREFIX).items()}
    prefix = refs.remote_review_prefix(remote)
    tracking = {r[len(prefix):]: oid for r, oid in _refs_under(store, prefix).items()}
    wanted = set(job_ids) if job_ids is not None else None
    for jid, ours in sorted(local.items()):
        if not is_job_id(jid) or (wanted is not None and jid not in wanted):
            continue
        job = JobId(jid)
        ref = refs.review_ref(jid)
        theirs = tracking.get(jid)
        if theirs == ours:
            continue
        if theirs is None:
            plan.specs.append(f"{ref}:{ref}")
            plan.leases.append(f"{ref}:")  # must still not exist there
            continue
        if _is_ancestor(store, theirs, ours) or store_review.made_by_logist(store, job, theirs):
            plan.specs.append(f"{ref}:{ref}")
            plan.leases.append(f"{ref}:{theirs}")
            continue
        foreign, _ = store_review.foreign_commits(store, job, theirs)
        named = ", ".join(f"{o[:12]} {s[:40]!r}" for o, s in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        if _is_ancestor(store, ours, theirs):
            plan.skipped[ref] = (f"kept: {remote} has {len(foreign)} commit(s) on top of it that logist "
                                 f"did not make ({named}); nothing to push")
            continue
        plan.skipped[ref] = (
            f"diverged: {remote}'s {refs.review_name(jid)} has {len(foreign)} commit(s) logist did not "
            f"make ({named}) that pushing the rebuilt branch would drop; not pushed. Keep them: "
            f"`git branch {jid}-fixups {remote}/{refs.review_name(jid)}` and cherry-pick them onto "
            f"{refs.review_name(jid)} (then push again); or drop them: "
            f"`git push --force-with-lease={ref}:{theirs} {remote} {ref}`")
    return plan


# --------------------------------------------------------------------------- integration

_PATCH_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


@dataclass
class Found:
    integrated: bool
    how: str


def _work_paths(store: JobStore, job_base: str, tip: str) -> list[str]:
    out = git(["diff", "--name-only", "-z", "--no-renames", job_base, tip, "--", ".", ":(exclude,top).logist"],
              cwd=store.root, check=False).stdout
    return [p for p in out.split("\0") if p]


def _patch_id(store: JobStore, argv: list[str]) -> str | None:
    diff = git(argv, cwd=store.root, check=False, text=False).stdout
    if not diff:
        return None
    proc = git(["patch-id", "--stable"], cwd=store.root, input=diff, text=False, check=False)
    words = proc.stdout.split()
    return words[0].decode() if words else None


def _names_job(body: str, job_id: JobId) -> bool:
    return re.search(r"(?m)^[ \t]*Logist-Job:[ \t]*" + re.escape(job_id) + r"[ \t]*$", body) is not None


def review_tips(store: JobStore, job_id: JobId, tip: str) -> list[str]:
    """The review branch as logist computes it from ``tip``, and as this clone and its remotes
    have it (maybe with a reviewer's commits)."""
    out: list[str] = []
    try:  # computed, not written: if the base contains it, it exists
        head = store_review.build(store, job_id, tip, write=False).head
        if head:
            out.append(head)
    except LogistError:
        pass
    mine = _rev(store, refs.review_ref(job_id))
    if mine:
        out.append(mine)
    out += _refs_under(store, f"refs/remotes/*/logist-review/{job_id}").values()  # fnmatch pattern
    return list(dict.fromkeys(out))


def integration(store: JobStore, job_id: JobId, tip: str, job_base: str, base_oid: str,
                base_name: str = "the base") -> Found:
    """Is the job (already known to have work, and its branch not contained in the base)
    integrated into ``base_oid`` through its review branch or a squash that names it?"""
    first_parent: list[str] | None = None
    for rt in review_tips(store, job_id, tip):
        if _is_ancestor(store, rt, base_oid):
            if first_parent is None:
                first_parent = git(["rev-list", "--first-parent", "--max-count=5000", base_oid],
                                   cwd=store.root, check=False).stdout.split()
            how = "fast-forward" if rt in first_parent else "merge commit"
            return Found(True, f"{how} of {refs.review_name(job_id)}")
    start = job_base if _rev(store, job_base + "^{commit}") else \
        git(["merge-base", tip, base_oid], cwd=store.root, check=False).stdout.strip()
    if not start:
        return Found(False, f"not merged into {base_name}")
    paths = set(_work_paths(store, start, tip))
    if not paths:
        return Found(False, "no work beyond its record")
    out = git(["log", "-z", "--no-merges", f"--max-count={MAX_SCAN}", "-F",
               f"--grep=Logist-Job: {job_id}", "--name-only", "--no-renames", "--format=%x01%H%x1f%B",
               "--end-of-options", base_oid, f"^{start}", "--"], cwd=store.root, check=False).stdout
    hits: list[tuple[str, set[str]]] = []
    for rec in out.split("\x01")[1:]:
        head, _, rest = rec.partition("\x1f")
        # `--name-only -z`: the message ends with a NUL, then the NUL-separated paths
        body, _, names = rest.partition("\0")
        changed = {p.strip("\n") for p in names.split("\0") if p.strip("\n")}
        if _names_job(body, job_id) and changed & paths:
            hits.append((head.strip(), changed))
    if not hits:
        return Found(False, f"not merged into {base_name}")
    work = _patch_id(store, ["diff", start, tip, "--", *sorted(paths)])
    if len(hits) == 1:
        theirs = _patch_id(store, ["diff", f"{hits[0][0]}^", hits[0][0], "--", *sorted(paths)])
        if work and theirs == work and {p for p in hits[0][1] if not p.startswith(".logist/")} <= paths:
            return Found(True, "squash merge")
    else:
        chain = store_review.build(store, job_id, tip, write=False)
        mine = {_patch_id(store, ["diff", a, b, "--", ".", ":(exclude,top).logist"])
                for a, b in _step_ranges(chain)}
        theirs_set = {_patch_id(store, ["diff", f"{h}^", h, "--", *sorted(paths)]) for h, _ in hits}
        if mine and mine <= theirs_set:
            return Found(True, "rebase merge")
    return Found(True, "squash merge, edited in review")


def _step_ranges(chain: store_review.ReviewChain) -> list[tuple[str, str]]:
    """(from, to) commits on the job branch of each review commit (diff them without .logist/)."""
    out, prev = [], chain.base
    for s in chain.steps:
        out.append((prev, s.harvest))
        prev = s.harvest
    return out


# --------------------------------------------------------------------------- cleanup

def deletable(store: JobStore, job_id: JobId, oid: str, base_oid: str | None, tip: str | None) -> bool:
    """May cleanup delete a review branch at ``oid``? Only when nothing on it is lost: logist
    made it (it can be rebuilt from the archived job) or the base contains it."""
    if base_oid and _is_ancestor(store, oid, base_oid):
        return True
    return store_review.made_by_logist(store, job_id, oid, tip=tip)


def delete_local(store: JobStore, job_id: JobId, base_oid: str | None, tip: str | None) -> str | None:
    """Delete ``logist-review/<id>`` (compare-and-swap) when :func:`deletable`. What was done,
    or why it was kept; None when there is no review branch."""
    oid = _rev(store, refs.review_ref(job_id))
    if oid is None:
        return None
    if not deletable(store, job_id, oid, base_oid, tip):
        return (f"kept {refs.review_name(job_id)}: it has commits logist did not make that the base "
                "does not contain")
    store.update_refs(f"delete {refs.review_ref(job_id)} {oid}\n")
    return f"deleted branch {refs.review_name(job_id)}"


def remote_delete_spec(store: JobStore, remote: str, job_id: JobId, base_oid: str | None,
                       tip: str | None) -> tuple[list[str], list[str]]:
    """(refspecs, leases) that delete the remote's review branch, if it has one that may go."""
    theirs = _rev(store, refs.remote_review_ref(remote, job_id))
    if theirs is None or not deletable(store, job_id, theirs, base_oid, tip):
        return [], []
    ref = refs.review_ref(job_id)
    return [f":{ref}"], [f"{ref}:{theirs}"]


# --------------------------------------------------------------------------- job diff

@dataclass
class DiffPlan:
    job_id: JobId
    start: str
    end: str
    step: int | None
    argv: list[str]


def diff_plan(store: JobStore, job_id: JobId, *, step: int | None = None, stat: bool = False,
              extra: list[str] | None = None) -> DiffPlan:
    """The `git diff` that shows the job's work (or one step's) without its record."""
    refs.validate_job_id(job_id)
    tip = store.tip(job_id)
    chain = store_review.build(store, job_id, tip, write=False)  # a read command writes nothing
    ranges = _step_ranges(chain)
    if step is None:
        start, end = chain.base, ranges[-1][1] if ranges else chain.base
    else:
        _, m = store.read(job_id, at=tip)
        if step < 1 or step > m.step_count:
            raise UsageError(f"step {step} is not a step of job {job_id} (it has {m.step_count})",
                             hint=f"steps are 1 to {m.step_count}; see `logist job show {job_id}`")
        found = [r for s, r in zip(chain.steps, ranges, strict=True) if s.step == step]
        if found:
            start, end = found[-1]
        elif step in chain.harvests:
            start = end = chain.harvests[step]  # it ran and changed nothing
        else:
            raise JobNotFoundError(
                f"step {step} of job {job_id} has no harvested work in the current run",
                hint=f"see `logist job history {job_id}`; `logist job diff {job_id}` shows the whole job")
    # the review branch's trees are these with .logist/ as in the base: the same diff
    argv = ["diff"] + (["--stat"] if stat else []) + list(extra or []) + \
        [start, end, "--", ".", ":(exclude,top).logist"]
    return DiffPlan(job_id, start, end, step, argv)


def harvest_commits(store: JobStore, job_id: JobId, tip: str | None = None) -> dict[int, str]:
    """{step: the commit that carries its work on the current run} (for `job show/history`)."""
    try:
        return dict(store_review.build(store, job_id, tip, write=False).harvests)
    except LogistError:
        return {}


# --------------------------------------------------------------------------- post-merge warning

def merged_record_warning(store: JobStore, cwd: str | Path | None = None) -> str | None:
    """After `git merge`/`git pull`: did it bring a job's record (``.logist/jobs/<id>/``) into
    the current branch? Then a warning that says how to undo it (once per merge: a marker under
    .git/logist/ remembers the merges already warned about)."""
    where = Path(cwd) if cwd else store.root
    head = git(["rev-parse", "-q", "--verify", "HEAD"], cwd=where, check=False).stdout.strip()
    orig = git(["rev-parse", "-q", "--verify", "ORIG_HEAD"], cwd=where, check=False).stdout.strip()
    if not head or not orig or head == orig:
        return None
    branch = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=where, check=False).stdout.strip()
    if branch.startswith(("logist/", "logist-review/")):
        return None
    out = git(["diff", "--name-only", "-z", "--no-renames", orig, head, "--", ".logist/jobs/"],
              cwd=where, check=False).stdout
    jobs = sorted({p.split("/")[2] for p in out.split("\0")
                   if p.startswith(".logist/jobs/") and p.count("/") >= 3
                   and refs.JOB_ID_RE.match(p.split("/")[2])})
    if not jobs:
        return None
    marker = store.paths.logist_dir / "merge-warned"
    try:
        seen = set(marker.read_text().split()) if marker.exists() else set()
    except OSError:
        seen = set()
    if head in seen:
        return None
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        with marker.open("a") as fh:
            fh.write(head + "\n")
    except OSError:
        pass
    names = ", ".join(jobs[:5]) + (", ..." if len(jobs) > 5 else "")
    merge = git(["rev-list", "--count", "--merges", f"{orig}..{head}"], cwd=where,
                check=False).stdout.strip()
    undo = (f"`git reset --hard {orig[:12]}` (ORIG_HEAD) if you have not pushed it, else "
            f"`git revert -m 1 {head[:12]}`" if merge and merge != "0" else
            f"`git reset --hard {orig[:12]}` (ORIG_HEAD) if you have not pushed it")
    where_to = branch or "HEAD"
    return (f"logist: this merge brought the record of job(s) {names} (.logist/jobs/, and every "
            f"transition commit) into {where_to}: the job branch is the audit trail, not the work.\n"
            f"  undo: {undo}\n"
            f"  then merge the work only: `logist job pr {jobs[0]}` (branch "
            f"{refs.review_name(jobs[0])}), or `git merge {refs.review_name(jobs[0])}`")


# --------------------------------------------------------------------------- job pr

def prepare_pr(store: JobStore, job_id: JobId) -> store_review.ReviewUpdate:
    """Bring ``logist-review/<id>`` up to date before it is pushed for a pull request. A job
    with no work yet has nothing to review; a local branch with commits logist did not make is
    pushed as it is (they are this clone's own fixups)."""
    from logist.core.errors import JobStateError

    upd = store_review.update(store, job_id)
    if upd.new is None:
        raise JobStateError(f"job {job_id} has no work to review yet: no step changed a file",
                            hint=f"run it first (`logist job run {job_id}`); `logist job diff {job_id}` "
                                 "shows its work")
    return upd


def post_merge_warning(cwd: str | Path | None = None) -> str | None:
    """The post-merge hook's warning (see :func:`merged_record_warning`), or None. Never raises;
    silent inside a job's worktree or an agent's process, and where logist is not set up."""
    try:
        if os.environ.get("LOGIST_JOB_ID"):
            return None
        store = JobStore.discover(cwd)
        if not store.is_initialized():
            return None
        here = Path(cwd or os.getcwd()).resolve()
        try:
            here.relative_to(store.worktrees_dir().resolve())
            return None  # inside a job worktree
        except ValueError:
            pass
        text = merged_record_warning(store, here)
        if text:
            from logist.share.hooklog import append_log

            append_log(store.paths.logist_dir / "hooks.log", "post-merge", text.splitlines())
            # the shims run the hook detached and silent: the next `logist job list`,
            # `job status` or `gc` shows it (take_merge_warning)
            pending = store.paths.logist_dir / MERGE_WARNING
            tmp = pending.with_name(f".{MERGE_WARNING}.tmp")
            tmp.write_text(text + "\n")
            os.replace(tmp, pending)
        return text
    except Exception:  # a hook never fails the user's git command
        return None


def transition_commits(store: JobStore, job_id: JobId, tip: str | None = None) -> dict[str, str]:
    """{transition id: commit} of the commits that carry a step's work (harvests and in-place
    restep results), on the branch and on the runs a rerun replaced."""
    tip = tip or store.tip(job_id)
    base = store.read_record(job_id, at=tip)[1]["base"]
    starts = [tip, *_refs_under(store, f"{refs.RUNS_PREFIX}{refs.validate_job_id(job_id)}/").values()]
    # bounded by the job: its own commits only, never the project's history behind its base
    out = git(["log", "-z", "--max-count=20000", "--format=%H%x1f%B", "--end-of-options", *starts,
               f"^{base}", "--"], cwd=store.root, check=False).stdout
    found: dict[str, str] = {}
    for rec in out.split("\0"):
        oid, _, body = rec.strip("\n").partition("\x1f")
        t = trailers(body)
        if t.get("Logist-Job") != job_id or not t.get("Logist-Transition-Id"):
            continue
        if t.get("Logist-From") == "HARVESTING" or "Logist-Restep-Result" in t:
            found[t["Logist-Transition-Id"]] = oid
    return found


MERGE_WARNING = "merge-warning"  # .git/logist/merge-warning: the post-merge warning not shown yet


def take_merge_warning(store: JobStore) -> str | None:
    """The post-merge warning the hook left (once: it is removed when read), or None."""
    path = store.paths.logist_dir / MERGE_WARNING
    try:
        text = path.read_text()
        path.unlink()
    except OSError:
        return None
    return text.strip() or None
