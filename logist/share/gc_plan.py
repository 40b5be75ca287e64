"""What `logist gc` and `logist job clean` would do, job by job (docs/sharing.md, cleanup):
archive, remove the worktree, delete the branch (here and on the remote), or why each is kept.
Planning changes nothing; :mod:`logist.share.cleanup` applies a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from logist.core.errors import JobStateError, LockHeldError, LogistError, UsageError
from logist.core.jobid import JobId
from logist.core.model import TERMINAL, TRANSIENT, Manifest, State
from logist.git import refs
from logist.share.adopt import remote_holder, remote_lease_expired
from logist.share.integration import Integration, integration, integration_verdicts, resolve_base
from logist.share.remotes import default_remote, for_each_ref, is_ancestor, resolve_remote, rev
from logist.share.worktree_checks import worktree_blockers, worktree_entries
from logist.store.jobstore import JobStore

NEVER_TOUCHED = frozenset({State.DRAFT, State.PENDING}) | TRANSIENT


@dataclass
class JobPlan:
    job_id: JobId
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


def _local_live_holder(store: JobStore, job_id: JobId) -> str | None:
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


@dataclass
class _Context:
    store: JobStore
    base_name: str
    base_oid: str
    entries: dict[str, dict[str, str]]
    locks: set[str]
    archives: dict[str, str]


# (plan, record judged, has a local branch, keep_days for its worktree)
_Todo = tuple[JobPlan, Manifest, bool, float | None]


def plan_gc(store: JobStore, *, base: str | None = None, keep_days: float | None = None,
            remote: str | None = None, job_ids: list[str] | None = None) -> GcPlan:
    """What `logist gc` would do. Changes nothing.

    Cheap for many jobs (it runs after every `git pull`): locks, archives and "merged into the
    base" come from one `for-each-ref` each, "has work" and "did the base touch the job's files"
    from one `diff-tree --stdin` and one `cat-file --batch-check`; only jobs that may be
    integrated get the full check (:func:`~logist.share.integration.integration`).
    """
    from logist.core.limits import check_number

    check_number(keep_days, "--keep-days")
    if remote is not None:
        remote = resolve_remote(store, remote)
    base_name, base_oid = resolve_base(store, base, remote)
    plan = GcPlan(base_name, base_oid, remote)
    ctx = _Context(store, base_name, base_oid, worktree_entries(store),
                   locks=set(for_each_ref(store, refs.LOCKS_PREFIX)),
                   archives=for_each_ref(store, refs.ARCHIVE_PREFIX))
    wanted = set(job_ids) if job_ids is not None else None
    todo = _local_jobs(store, plan, wanted, keep_days)
    if remote:
        todo += _remote_only_jobs(store, remote, {jp.job_id for jp in plan.jobs}, wanted)
    verdicts = integration_verdicts(store, [(jp.job_id, jp.judged_tip, m.base) for jp, m, _h, _k in todo
                                            if m.state not in NEVER_TOUCHED], base_oid)
    for jp, m, has_branch, kd in todo:
        _plan_one(ctx, jp, m, kd, has_branch=has_branch, verdict=verdicts.get(jp.job_id))
        if not has_branch and (jp.actions or jp.integration and jp.integration.integrated):
            plan.jobs.append(jp)
    return plan


def _local_jobs(store: JobStore, plan: GcPlan, wanted: set[str] | None,
                keep_days: float | None) -> list[_Todo]:
    """A plan (added to ``plan.jobs``) for each local job; each one with a valid record is to be
    judged, at the newest tip this clone knows (the remote's, when the job went on there)."""
    track_remote = plan.remote or default_remote(store)
    tracking: dict[str, str] = {}
    if track_remote:
        prefix = refs.remote_branch_prefix(track_remote)
        tracking = {r[len(prefix):]: oid for r, oid in for_each_ref(store, prefix).items()}
    todo: list[_Todo] = []
    for s in store.list_jobs():
        if wanted is not None and s.id not in wanted:
            continue
        jp = JobPlan(s.id, "INVALID", local_tip=s.tip, remote=plan.remote)
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
        if plan.remote and t_tip:
            jp.remote_tip = t_tip
        todo.append((jp, m, True, keep_days))
    return todo


def _remote_only_jobs(store: JobStore, remote: str, seen: set[str],
                      wanted: set[str] | None) -> list[_Todo]:
    """The jobs only ``remote`` has (a valid record), to be judged for deleting there."""
    todo: list[_Todo] = []
    for rs in store.list_jobs(prefix=refs.remote_branch_prefix(remote)):
        if rs.id in seen or (wanted is not None and rs.id not in wanted):
            continue
        jp = JobPlan(rs.id, "INVALID", remote=remote, remote_tip=rs.tip, tip=rs.tip)
        if rs.manifest is None:
            continue  # reported by `logist job list --remote`; never cleaned
        jp.state = rs.manifest.state.value
        todo.append((jp, rs.manifest, False, None))
    return todo


def _plan_one(ctx: _Context, jp: JobPlan, m: Manifest, keep_days: float | None, *,
              has_branch: bool, verdict: str | None) -> None:
    """Fill ``jp``: what to do with the job, or why it is kept."""
    if m.state in NEVER_TOUCHED:
        jp.kept.append(f"{m.state.value} jobs are never cleaned up")
        return
    who = _held_by(ctx, jp, has_branch)
    if who:
        jp.kept.append(who)
        return
    jp.integration = _judge(ctx, jp, m, verdict)
    need_archive = ctx.archives.get(refs.archive_ref(jp.job_id)) != jp.tip
    if jp.integration.integrated:
        _plan_integrated(ctx, jp, has_branch, need_archive)
    elif keep_days is not None and has_branch and m.state in TERMINAL \
            and ctx.store.worktree_path(jp.job_id).exists():
        _plan_old_worktree(ctx, jp, m, keep_days, need_archive)
    else:
        jp.kept.append(jp.integration.how)


def _held_by(ctx: _Context, jp: JobPlan, has_branch: bool) -> str | None:
    """Why the job is not to be touched now: a live local lease, or a worker's remote lease."""
    if has_branch and refs.lock_ref(jp.job_id) in ctx.locks:
        who = _local_live_holder(ctx.store, jp.job_id)
        if who:
            return f"held by {who}"
    if jp.remote and jp.remote_tip:
        held = remote_holder(ctx.store, jp.remote, jp.job_id)
        if held is not None and not remote_lease_expired(held[1]):
            return f"held on {jp.remote} by a worker"
    return None


def _judge(ctx: _Context, jp: JobPlan, m: Manifest, verdict: str | None) -> Integration:
    """Is the job integrated into the base? The batch verdict when it is certain, else the full
    check."""
    assert jp.tip
    jp.base_oid = ctx.base_oid
    if verdict == "no-work":
        return Integration(False, "no work beyond its record")
    if verdict == "untouched":
        return Integration(False, f"not merged into {ctx.base_name}")
    return integration(ctx.store, jp.job_id, jp.tip, m.base, ctx.base_oid, ctx.base_name)


def _plan_integrated(ctx: _Context, jp: JobPlan, has_branch: bool, need_archive: bool) -> None:
    """An integrated job: archive it, remove its worktree and delete its branch (here, and on
    the remote when it has nothing more there), or say what keeps them."""
    store = ctx.store
    if need_archive:
        jp.actions.append("archive")
    if has_branch:
        blockers = worktree_blockers(store, jp.job_id, jp.judged_tip, ctx.entries)
        if blockers:
            jp.kept += blockers
            jp.kept.append("the branch stays until its worktree can go")
        else:
            if store.worktree_path(jp.job_id).exists():
                jp.actions.append("remove-worktree")
            jp.actions.append("delete-branch")
    if jp.remote and jp.remote_tip and is_ancestor(store, jp.remote_tip, jp.judged_tip) \
            and (not has_branch or "delete-branch" in jp.actions):
        jp.actions.append("delete-remote-branch")
    if jp.actions == ["archive"]:
        jp.actions = []  # archiving alone is not worth a change


def _plan_old_worktree(ctx: _Context, jp: JobPlan, m: Manifest, keep_days: float,
                       need_archive: bool) -> None:
    """A finished job not integrated: its worktree goes after ``keep_days``; the branch stays."""
    assert jp.integration is not None
    age = _age_days(m)
    if age < keep_days:
        jp.kept.append(f"{jp.integration.how}; finished {age:.1f} days ago (kept {keep_days:g})")
        return
    blockers = worktree_blockers(ctx.store, jp.job_id, jp.judged_tip, ctx.entries)
    if blockers:
        jp.kept += blockers
        return
    if need_archive:
        jp.actions.append("archive")
    jp.actions.append("remove-worktree")
    jp.kept.append(f"{jp.integration.how}: the branch stays")


def plan_clean(store: JobStore, job_id: JobId, *, keep_branch: bool = False,
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
