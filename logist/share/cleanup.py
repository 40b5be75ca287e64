"""Cleanup (docs/sharing.md, cleanup): integration detection, `logist gc`, `logist job clean`, the hooks.

Rules that hold whatever the options:

- DRAFT, PENDING and running jobs (a transient state, or a live lease) are never touched;
- ``refs/logist/archive/<id>`` is written (compare-and-swap) before anything is deleted, so a
  job's history and its notes stay reachable;
- a worktree is removed only when it is clean, no process runs in it, it is not locked, and its
  HEAD is contained in the archived tip; otherwise the job is kept and the reason is printed;
- a branch is deleted only after its worktree is gone, by compare-and-swap fenced by the job's
  lease (a runner that started meanwhile wins, nothing is lost);
- planning never changes anything: callers apply a plan only when the user said ``--yes``.

A job is *integrated* into the base when it has work beyond its record (a branch that only
carries ``.logist/jobs/<id>/`` is never "merged") and the base contains it as *that* job: its
branch or its review branch ``logist-review/<id>`` is an ancestor of the base (merge commit or
fast-forward), or a commit of the base names it (``Logist-Job: <id>``, kept in a squash message)
and changes files the job changed (squash merge; "edited in review" when the changes differ).
Identical content alone never counts (see :mod:`logist.share.review`). Cleaning up an integrated
job deletes its review branch too, when nothing on it would be lost.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from logist.core.errors import JobStateError, LockHeldError, LogistError, UsageError
from logist.core.model import TERMINAL, TRANSIENT, Manifest, State
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.share.adopt import remote_holder, remote_lease_expired
from logist.share.hooklog import append_log
from logist.share.push import run_push
from logist.share.remotes import default_remote, for_each_ref, is_ancestor, resolve_remote, rev
from logist.store.jobstore import JobStore

NEVER_TOUCHED = frozenset({State.DRAFT, State.PENDING}) | TRANSIENT


# --------------------------------------------------------------------------- base and integration

def default_base(store: JobStore, remote: str | None = None) -> str:
    """The branch jobs are merged into: <remote>/HEAD (e.g. origin/main), else main/master,
    else HEAD."""
    r = remote or default_remote(store)
    if r:
        head = git(["symbolic-ref", "-q", f"refs/remotes/{r}/HEAD"], cwd=store.root,
                   check=False).stdout.strip()
        if head and rev(store, head):
            return head
        for name in ("main", "master"):
            if rev(store, f"refs/remotes/{r}/{name}"):
                return f"refs/remotes/{r}/{name}"
    for name in ("main", "master"):
        if rev(store, f"refs/heads/{name}"):
            return f"refs/heads/{name}"
    return "HEAD"


def resolve_base(store: JobStore, base: str | None, remote: str | None = None) -> tuple[str, str]:
    """(name, commit) of the base."""
    name = base or default_base(store, remote)
    if name.startswith("-"):
        raise UsageError(f"invalid base {name!r}")
    oid = git(["rev-parse", "-q", "--verify", "--end-of-options", name + "^{commit}"],
              cwd=store.root, check=False).stdout.strip()
    if not oid:
        raise UsageError(f"base {name!r} is not a commit in this repository",
                         hint="pass --base with the branch PRs are merged into (e.g. origin/main)")
    return name, oid


@dataclass
class Integration:
    integrated: bool
    how: str


def _exclude_record(job_id: str) -> str:
    return f":(top,exclude){refs.record_dir(job_id)}"


def has_work(store: JobStore, job_id: str, tip: str, job_base: str) -> bool:
    """Does the branch change anything outside its own record, relative to where it started?"""
    start = job_base if rev(store, job_base + "^{commit}") else None
    if start is None:
        return True  # cannot tell: treat as work (the safe side: it will not count as merged)
    proc = git(["diff", "--quiet", start, tip, "--", _exclude_record(job_id)], cwd=store.root,
               check=False)
    return proc.returncode == 1


def integration(store: JobStore, job_id: str, tip: str, job_base: str, base_oid: str,
                base_name: str = "the base") -> Integration:
    if not has_work(store, job_id, tip, job_base):
        return Integration(False, "no work beyond its record")
    if is_ancestor(store, tip, base_oid):
        fp = git(["rev-list", "--first-parent", "--max-count=5000", base_oid], cwd=store.root,
                 check=False).stdout.split()
        return Integration(True, "fast-forward" if tip in fp else "merge commit")
    # its review branch, or a squash that names it (never identical content alone)
    from logist.share.review import integration as review_integration

    found = review_integration(store, job_id, tip, job_base, base_oid, base_name)
    return Integration(found.integrated, found.how)


# --------------------------------------------------------------------------- worktrees

def worktree_entries(store: JobStore) -> dict[str, dict[str, str]]:
    """`git worktree list --porcelain` as {path: {key: value}}."""
    out = git_out(["worktree", "list", "--porcelain"], cwd=store.root)
    entries: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            cur = {}
            entries[line[len("worktree "):]] = cur
        elif cur is not None and line:
            key, _, value = line.partition(" ")
            cur[key] = value
    return entries


def processes_in(path: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``path`` (Linux /proc; else [])."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return []
    try:
        target = str(path.resolve())
    except OSError:
        return []
    pids = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == target or cwd.startswith(target + os.sep):
            pids.append(int(entry.name))
    return pids


def worktree_blockers(store: JobStore, job_id: str, keep_tip: str,
                      entries: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Why the job's worktree must not be removed now (empty: it may go)."""
    wt = store.worktree_path(job_id)
    if not wt.exists():
        return []
    if not (wt / ".git").exists():
        if any(wt.iterdir()):
            return [f"{wt} is not a git worktree (left alone; see `logist doctor`)"]
        return []
    entries = worktree_entries(store) if entries is None else entries
    entry = entries.get(str(wt)) or entries.get(str(wt.resolve())) or {}
    out = []
    if "locked" in entry:
        out.append(f"its worktree is locked (a step may be running): `git worktree unlock {wt}` "
                   "if nothing runs there")
    status = git(["status", "--porcelain", "--untracked-files=all"], cwd=wt, check=False)
    if status.returncode != 0:
        out.append(f"`git status` fails in its worktree {wt}")
    elif status.stdout.strip():
        n = len(status.stdout.strip().splitlines())
        out.append(f"its worktree has {n} uncommitted change(s): commit or discard them "
                   f"(`git -C {wt} status`)")
    pids = [p for p in processes_in(wt) if p != os.getpid()]
    if pids:
        out.append(f"process(es) {', '.join(map(str, pids[:5]))} run in its worktree")
    head = git(["rev-parse", "-q", "--verify", "HEAD"], cwd=wt, check=False).stdout.strip()
    if head and not is_ancestor(store, head, keep_tip):
        out.append(f"its worktree HEAD {head[:12]} has commits that are not on the job branch")
    return out


# --------------------------------------------------------------------------- plans

@dataclass
class JobPlan:
    job_id: str
    state: str
    tip: str | None = None  # what gets archived
    local_tip: str | None = None  # the local branch value (None: remote-only job)
    remote: str | None = None
    remote_tip: str | None = None
    base_oid: str | None = None  # the base it was judged against
    integration: Integration | None = None
    actions: list[str] = field(default_factory=list)  # archive, remove-worktree, delete-branch, delete-remote-branch
    kept: list[str] = field(default_factory=list)  # why something is not done
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def judged_tip(self) -> str:
        """The tip that was judged: every plan that reaches the checks (and so gets actions) has one."""
        assert self.tip is not None, self.job_id
        return self.tip

    def describe_actions(self, store: JobStore) -> list[str]:
        out = []
        for a in self.actions:
            if a == "archive":
                out.append(f"archive {self.judged_tip[:12]} as {refs.archive_ref(self.job_id)}")
            elif a == "remove-worktree":
                out.append(f"remove worktree {store.worktree_path(self.job_id)}")
            elif a == "delete-branch":
                out.append(f"delete branch {refs.branch_name(self.job_id)} (and "
                           f"{refs.review_name(self.job_id)} if it has one)")
            elif a == "delete-remote-branch":
                out.append(f"delete {refs.branch_name(self.job_id)} (and {refs.review_name(self.job_id)}) "
                           f"on {self.remote}")
        return out

    def to_dict(self, store: JobStore) -> dict:
        return {"id": self.job_id, "state": self.state, "tip": self.tip,
                "integrated": bool(self.integration and self.integration.integrated),
                "how": self.integration.how if self.integration else None,
                "actions": self.actions, "would": self.describe_actions(store), "kept": self.kept,
                "done": self.done, "errors": self.errors}


def _age_days(m: Manifest) -> float:
    try:
        t = datetime.fromisoformat(m.updated_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.now(timezone.utc) - t).total_seconds() / 86400.0


def _local_live_holder(store: JobStore, job_id: str) -> str | None:
    from logist.store.locks import read_lock

    cur = read_lock(store, job_id)
    if cur is None:
        return None
    _, holder = cur
    if holder is None:
        return "an unreadable lock record"
    if holder.stale_reason() is None:
        return holder.describe()
    return None


@dataclass
class GcPlan:
    base: str
    base_oid: str
    remote: str | None
    jobs: list[JobPlan] = field(default_factory=list)


def plan_gc(store: JobStore, *, base: str | None = None, keep_days: float | None = None,
            remote: str | None = None, job_ids: list[str] | None = None) -> GcPlan:
    """What `logist gc` would do. Changes nothing.

    Cheap for many jobs (it runs after every `git pull`): locks, archives and "merged into the
    base" come from one `for-each-ref` each, "has work" and "did the base touch the job's files"
    from one `diff-tree --stdin` and one `cat-file --batch-check`; only jobs that may be
    integrated get the full check (:func:`integration`).
    """
    from logist.core.limits import check_number

    check_number(keep_days, "--keep-days")
    if remote is not None:
        remote = resolve_remote(store, remote)
    base_name, base_oid = resolve_base(store, base, remote)
    plan = GcPlan(base_name, base_oid, remote)
    track_remote = remote or default_remote(store)
    tracking: dict[str, str] = {}
    if track_remote:
        prefix = refs.remote_branch_prefix(track_remote)
        tracking = {r[len(prefix):]: oid for r, oid in for_each_ref(store, prefix).items()}
    ctx = _Context(store, base_name, base_oid, worktree_entries(store),
                   locks=set(for_each_ref(store, refs.LOCKS_PREFIX)),
                   archives=for_each_ref(store, refs.ARCHIVE_PREFIX))
    wanted = set(job_ids) if job_ids is not None else None
    todo: list[tuple[JobPlan, Manifest, bool, float | None]] = []
    seen = set()
    for s in store.list_jobs():
        if wanted is not None and s.id not in wanted:
            continue
        seen.add(s.id)
        jp = JobPlan(s.id, "INVALID", local_tip=s.tip, remote=remote)
        plan.jobs.append(jp)
        if s.manifest is None:
            jp.kept.append(f"its record is invalid ({s.error}); see `logist doctor`")
            continue
        m, tip = s.manifest, s.tip
        t_tip = tracking.get(s.id)
        if t_tip and t_tip != tip and is_ancestor(store, tip, t_tip):
            try:  # the job went on elsewhere: judge the newest tip we know
                _, m = store.read(s.id, at=t_tip)
                tip = t_tip
            except LogistError:
                pass
        jp.tip, jp.state = tip, m.state.value
        if remote and t_tip:
            jp.remote_tip = t_tip
        todo.append((jp, m, True, keep_days))
    if remote:
        for rs in store.list_jobs(prefix=refs.remote_branch_prefix(remote)):
            if rs.id in seen or (wanted is not None and rs.id not in wanted):
                continue
            jp = JobPlan(rs.id, "INVALID", remote=remote, remote_tip=rs.tip, tip=rs.tip)
            if rs.manifest is None:
                continue  # reported by `logist job list --remote`; never cleaned
            jp.state = rs.manifest.state.value
            todo.append((jp, rs.manifest, False, None))
    verdicts = _prefilter(store, [(jp.job_id, jp.judged_tip, m.base) for jp, m, _h, _k in todo
                                  if m.state not in NEVER_TOUCHED], base_oid)
    for jp, m, has_branch, kd in todo:
        _plan_one(ctx, jp, m, kd, has_branch=has_branch, verdict=verdicts.get(jp.job_id))
        if not has_branch and (jp.actions or jp.integration and jp.integration.integrated):
            plan.jobs.append(jp)
    return plan


@dataclass
class _Context:
    store: JobStore
    base_name: str
    base_oid: str
    entries: dict[str, dict[str, str]]
    locks: set[str]
    archives: dict[str, str]


def _prefilter(store: JobStore, items: list[tuple[str, str, str]], base_oid: str) -> dict[str, str]:
    """{job: "no-work" | "untouched" | "check"} for many jobs in three git processes.

    "no-work": nothing outside its record differs from where it started; "untouched": not an
    ancestor of the base and the base never changed any file the job changed (so no merge or
    squash can have happened); "check": run :func:`integration`. Anything odd gives "check" or
    "untouched"/"no-work" only when certain (the full check decides everything else).
    """
    out: dict[str, str] = {}
    if not items:
        return out
    merged = set(git_out(["for-each-ref", f"--merged={base_oid}", "--format=%(objectname)", "--",
                          refs.BRANCH_PREFIX, "refs/remotes/"], cwd=store.root).split())
    root = store.root
    kinds = git(["cat-file", "--batch-check=%(objecttype)"], cwd=root,
                input="".join(f"{b}\n" for _j, _t, b in items), check=False).stdout.splitlines()
    usable = []
    # a short answer (git failed part-way) leaves the rest unknown: "" is not a commit
    for (j, t, b), kind in zip(items, kinds + [""] * len(items), strict=False):
        if t in merged or not kind.endswith("commit") or kind.endswith("missing"):
            out[j] = "check"
        else:
            usable.append((j, t, b))
    if not usable:
        return out
    proc = git(["diff-tree", "--stdin", "-z", "-r", "--name-only", "--always", "--format=%x01%H"],
               cwd=root, input="".join(f"{t} {b}\n" for _j, t, b in usable).encode(), check=False,
               text=False)
    changed: list[list[str]] = []
    for token in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        token = token.lstrip("\n")
        if token.startswith("\x01"):
            changed.append([])
        elif token and changed:
            changed[-1].append(token)
    if proc.returncode != 0 or len(changed) != len(usable):
        return {**out, **{j: "check" for j, _t, _b in usable}}
    specs: list[str] = []
    spans = []
    for (j, _t, b), paths in zip(usable, changed, strict=True):
        record = refs.record_dir(j) + "/"
        work = [p for p in paths if not p.startswith(record) and "\n" not in p]
        if not work:
            out[j] = "no-work"
            continue
        spans.append((j, len(specs), len(work)))
        for p in work:
            specs += [f"{base_oid}:{p}", f"{b}:{p}"]
    if spans:
        answers = git(["cat-file", "--batch-check=%(objectname)"], cwd=root,
                      input="".join(x + "\n" for x in specs), check=False).stdout.splitlines()
        if len(answers) != len(specs):
            return {**out, **{j: "check" for j, _s, _n in spans}}
        for j, start, n in spans:
            pairs = [(answers[start + 2 * i], answers[start + 2 * i + 1]) for i in range(n)]
            out[j] = "check" if any(a != b for a, b in pairs) else "untouched"
    return out


def _plan_one(ctx: _Context, jp: JobPlan, m: Manifest, keep_days: float | None, *,
              has_branch: bool, verdict: str | None) -> None:
    store = ctx.store
    if m.state in NEVER_TOUCHED:
        jp.kept.append(f"{m.state.value} jobs are never cleaned up")
        return
    if has_branch and refs.lock_ref(jp.job_id) in ctx.locks:
        who = _local_live_holder(store, jp.job_id)
        if who:
            jp.kept.append(f"held by {who}")
            return
    if jp.remote and jp.remote_tip:
        held = remote_holder(store, jp.remote, jp.job_id)
        if held is not None and not remote_lease_expired(held[1]):
            jp.kept.append(f"held on {jp.remote} by a worker")
            return
    assert jp.tip
    jp.base_oid = ctx.base_oid
    if verdict == "no-work":
        jp.integration = Integration(False, "no work beyond its record")
    elif verdict == "untouched":
        jp.integration = Integration(False, f"not merged into {ctx.base_name}")
    else:
        jp.integration = integration(store, jp.job_id, jp.tip, m.base, ctx.base_oid, ctx.base_name)
    archived = ctx.archives.get(refs.archive_ref(jp.job_id))
    need_archive = archived != jp.tip
    entries = ctx.entries
    if jp.integration.integrated:
        if need_archive:
            jp.actions.append("archive")
        if has_branch:
            blockers = worktree_blockers(store, jp.job_id, jp.tip, entries)
            if blockers:
                jp.kept += blockers
                jp.kept.append("the branch stays until its worktree can go")
            else:
                if store.worktree_path(jp.job_id).exists():
                    jp.actions.append("remove-worktree")
                jp.actions.append("delete-branch")
        if jp.remote and jp.remote_tip and is_ancestor(store, jp.remote_tip, jp.tip) \
                and (not has_branch or "delete-branch" in jp.actions):
            jp.actions.append("delete-remote-branch")
        if jp.actions == ["archive"]:
            jp.actions = []  # archiving alone is not worth a change
        return
    if keep_days is not None and has_branch and m.state in TERMINAL \
            and store.worktree_path(jp.job_id).exists():
        age = _age_days(m)
        if age >= keep_days:
            blockers = worktree_blockers(store, jp.job_id, jp.tip, entries)
            if blockers:
                jp.kept += blockers
            else:
                if need_archive:
                    jp.actions.append("archive")
                jp.actions.append("remove-worktree")
                jp.kept.append(f"{jp.integration.how}: the branch stays")
            return
        jp.kept.append(f"{jp.integration.how}; finished {age:.1f} days ago (kept {keep_days:g})")
        return
    jp.kept.append(jp.integration.how)


# --------------------------------------------------------------------------- applying a plan

def apply_job(store: JobStore, jp: JobPlan) -> JobPlan:
    """Do what ``jp.actions`` says, in the safe order, under the job's lease. Errors are
    recorded in ``jp.errors`` (the job is then left as it is from that point on)."""
    from logist.store.locks import acquire

    if not jp.actions:
        return jp
    lease = None
    try:
        if jp.local_tip is not None:
            try:
                lease = acquire(store, jp.job_id, command="logist gc")
            except LockHeldError as exc:
                jp.errors.append(exc.message)
                return jp
            if rev(store, refs.branch_ref(jp.job_id)) != jp.local_tip:
                jp.errors.append("the job changed while cleaning up; run gc again")
                return jp
        _archive(store, jp)
        if "remove-worktree" in jp.actions:
            _remove_worktree(store, jp)
        if "delete-branch" in jp.actions:
            _delete_branch(store, jp, lease.oid if lease else None)
        if "delete-remote-branch" in jp.actions:
            _delete_remote(store, jp)
    except LogistError as exc:
        jp.errors.append(exc.message)
    finally:
        if lease is not None:
            lease.release()
    return jp


def _archive(store: JobStore, jp: JobPlan) -> None:
    from logist.store.archive import archive_tip

    tip = jp.judged_tip
    if archive_tip(store, jp.job_id, tip):
        jp.done.append(f"archived {tip[:12]} as {refs.archive_ref(jp.job_id)}")


def _remove_worktree(store: JobStore, jp: JobPlan) -> None:
    tip = jp.judged_tip
    wt = store.worktree_path(jp.job_id)
    blockers = worktree_blockers(store, jp.job_id, tip)
    if blockers:
        raise JobStateError(f"worktree {wt} kept: " + "; ".join(blockers))
    if (wt / ".git").exists():
        proc = git(["worktree", "remove", "--end-of-options", str(wt)], cwd=store.root, check=False)
        if proc.returncode != 0:
            raise JobStateError(f"git refused to remove worktree {wt}: {proc.stderr.strip()}")
    elif wt.exists():
        wt.rmdir()  # an empty directory (checked by worktree_blockers)
    git(["worktree", "prune"], cwd=store.root, check=False)
    jp.done.append(f"removed worktree {wt}")


def _delete_branch(store: JobStore, jp: JobPlan, lease_oid: str | None) -> None:
    if (store.worktree_path(jp.job_id) / ".git").exists():
        raise JobStateError("its worktree still exists; the branch is kept")
    lines = []
    if lease_oid:
        lines.append(f"verify {refs.lock_ref(jp.job_id)} {lease_oid}\n")
    lines.append(f"verify {refs.archive_ref(jp.job_id)} {jp.tip}\n")
    lines.append(f"delete {refs.branch_ref(jp.job_id)} {jp.local_tip}\n")
    lines.append(f"delete {refs.tip_ref(jp.job_id)}\n")  # the archive keeps the tip now
    store.update_refs("".join(lines))
    run_dir = store.run_dir(jp.job_id)
    shutil.rmtree(run_dir, ignore_errors=True)
    jp.done.append(f"deleted branch {refs.branch_name(jp.job_id)} (kept as {refs.archive_ref(jp.job_id)})")
    from logist.share.review import delete_local

    review = delete_local(store, jp.job_id, jp.base_oid, jp.tip)
    if review:
        (jp.done if review.startswith("deleted") else jp.kept).append(review)


def _delete_remote(store: JobStore, jp: JobPlan) -> None:
    from logist.share.push import update_tracking
    from logist.share.review import remote_delete_spec

    assert jp.remote and jp.remote_tip
    archive = refs.archive_ref(jp.job_id)
    branch = refs.branch_ref(jp.job_id)
    review_specs, review_leases = remote_delete_spec(store, jp.remote, jp.job_id, jp.base_oid, jp.tip)
    ok, lines, _ = run_push(store, jp.remote, [f"{archive}:{archive}", f":{branch}", *review_specs],
                            leases=[f"{branch}:{jp.remote_tip}", *review_leases])
    if not ok:
        bad = "; ".join(f"{ln.dst}: {ln.reason}" for ln in lines if ln.rejected)
        raise JobStateError(f"{jp.remote} kept {refs.branch_name(jp.job_id)}: {bad}",
                            hint=f"run `logist fetch {jp.remote}` and gc again")
    update_tracking(store, jp.remote, lines)
    jp.done.append(f"deleted {refs.branch_name(jp.job_id)} on {jp.remote} (archive pushed)")
    if review_specs:
        jp.done.append(f"deleted {refs.review_name(jp.job_id)} on {jp.remote}")


def run_gc(store: JobStore, *, yes: bool = False, base: str | None = None,
           keep_days: float | None = None, remote: str | None = None,
           job_ids: list[str] | None = None) -> GcPlan:
    """Plan, and with ``yes`` apply. Without ``yes`` nothing changes."""
    plan = plan_gc(store, base=base, keep_days=keep_days, remote=remote, job_ids=job_ids)
    if yes:
        for jp in plan.jobs:
            if jp.actions:
                apply_job(store, jp)
    return plan


# --------------------------------------------------------------------------- job clean

def plan_clean(store: JobStore, job_id: str, *, keep_branch: bool = False,
               base: str | None = None) -> JobPlan:
    """`logist job clean ID`: the user gives the job up (merged or not). Archive, remove the
    worktree (only when it is safe), delete the branch."""
    refs.validate_job_id(job_id)
    tip, m = store.read(job_id)
    jp = JobPlan(job_id, m.state.value, tip=tip, local_tip=tip)
    if m.state in NEVER_TOUCHED:
        hint = (f"cancel it first: `logist job cancel {job_id}`" if m.state not in TRANSIENT
                else f"it is running; wait for it (or `logist recover {job_id}` if it was interrupted)")
        raise JobStateError(f"job {job_id} is {m.state.value}; DRAFT, PENDING and running jobs are "
                            "never cleaned up", hint=hint)
    who = _local_live_holder(store, job_id)
    if who:
        raise LockHeldError(f"job {job_id} is held by {who}", hint="wait for it to finish")
    try:
        base_name, base_oid = resolve_base(store, base)
        jp.base_oid = base_oid
        jp.integration = integration(store, job_id, tip, m.base, base_oid, base_name)
    except UsageError:
        jp.integration = Integration(False, "no base to compare with")
    if rev(store, refs.archive_ref(job_id)) != tip:
        jp.actions.append("archive")
    blockers = worktree_blockers(store, job_id, tip)
    if blockers:
        jp.kept += blockers
        jp.errors.append("the worktree cannot go yet: " + "; ".join(blockers))
        return jp
    if store.worktree_path(job_id).exists():
        jp.actions.append("remove-worktree")
    if not keep_branch:
        jp.actions.append("delete-branch")
    return jp


# --------------------------------------------------------------------------- hooks

HOOK_BASE = "hook-base"  # <common>/logist/hook-base: "<base ref> <commit>" the hooks last checked


def run_hook(name: str, args: list[str], cwd: str | Path | None = None) -> int:
    """post-merge / post-rewrite: clean up integrated jobs quietly. Never fails, never prompts.

    The shims call this detached, only when the base has moved since ``hook-base`` was written
    (their one cheap check); it checks again under ``hook.lock`` (two merges in a row start two),
    applies the cleanup, logs one line per run in ``hooks.log`` and records the base it checked.
    The base is not recorded when an integrated job could not be cleaned up yet (its worktree is
    dirty, a process runs in it): the next hook tries again."""
    log = None
    try:
        if name not in ("post-merge", "post-rewrite"):
            return 0
        if name == "post-rewrite" and args and args[0] != "rebase":
            return 0  # `git commit --amend`: nothing was pulled
        if os.environ.get("LOGIST_JOB_ID"):
            return 0  # an agent merging inside a job's worktree
        store = JobStore.discover(cwd)
        log = store.paths.logist_dir / "hooks.log"
        if not store.is_initialized():
            return 0
        try:
            store.root.resolve().relative_to(store.worktrees_dir().resolve())
            return 0  # inside a job worktree
        except ValueError:
            pass
        import fcntl

        store.paths.logist_dir.mkdir(parents=True, exist_ok=True)
        with open(store.paths.logist_dir / "hook.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            base_name, base_oid = resolve_base(store, None)
            stamp = store.paths.logist_dir / HOOK_BASE
            try:
                if stamp.read_text().split() == [base_name, base_oid]:
                    return 0  # another hook checked this base meanwhile
            except OSError:
                pass
            plan = plan_gc(store)
            lines, retry = [], False
            for jp in plan.jobs:
                if jp.integration and jp.integration.integrated and (jp.actions or jp.errors):
                    if jp.actions:
                        apply_job(store, jp)
                    lines += [f"{jp.job_id}: {d}" for d in jp.done]
                    lines += [f"{jp.job_id}: error: {e}" for e in jp.errors]
                    retry = retry or bool(jp.errors)
            cleaned = sum(1 for jp in plan.jobs if jp.done)
            lines.append(f"checked {base_name} {base_oid[:12]}: {cleaned} job(s) cleaned up"
                         + ("; will try again at the next merge" if retry else ""))
            append_log(log, name, lines)
            if not retry:
                tmp = stamp.with_name(f".{HOOK_BASE}.tmp")
                tmp.write_text(f"{base_name} {base_oid}\n")
                os.replace(tmp, stamp)
    except BaseException as exc:
        if log is not None:
            try:
                append_log(log, name, [f"error: {type(exc).__name__}: {exc}"])
            except BaseException:
                pass
    return 0


