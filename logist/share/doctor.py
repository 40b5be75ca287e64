"""`logist doctor`: reconcile worktrees, branches, records, locks and notes; say how to fix each.

Every check only reads. Each finding carries the exact fix (a command a person can run) and,
where the fix is safe to automate, a function that applies it (`logist doctor --fix`). Fixes
never delete uncommitted work: a worktree with changes is reported, never removed.
Remote checks use what the last `logist fetch` saw (doctor itself never talks to the network;
the fixes for them push or merge).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from logist.core.errors import LogistError
from logist.core.jobid import JobId
from logist.core.model import TRANSIENT
from logist.git import refs
from logist.git.gitcmd import CatFileBatch
from logist.share.doctor_worktrees import check_worktrees
from logist.share.findings import DoctorReport, Finding
from logist.share.push import preserved
from logist.share.remotes import default_remote, for_each_ref, is_ancestor, rev
from logist.store.jobstore import JobStore

STALE_LOCK_FILE_SECONDS = 60.0


def diagnose(store: JobStore, *, remote: str | None = None) -> DoctorReport:
    rep = DoctorReport()
    if not _config(store, rep):
        return rep  # the other checks need the config (where worktrees live)
    jobs = {s.id: s for s in store.list_jobs()}
    _records(store, jobs, rep)
    _symlinks(store, jobs, rep)
    if not any(f.kind == "invalid-config" and "(worktrees.dir)" in f.fix for f in rep.findings):
        check_worktrees(store, jobs, rep)  # with a refused worktrees.dir, nothing there is looked at
    _locks(store, jobs, rep)
    _lock_files(store, rep)
    _merge_refs(store, rep)
    _hooks(store, rep)
    r = remote or default_remote(store)
    if r:
        rep.remote = r
        _remote(store, jobs, r, rep)
    return rep


def _config(store: JobStore, rep: DoctorReport) -> bool:
    """Every invalid setting of .logist/config.toml (+ config.local.toml): what `logist job
    create` refuses (bad observer regexes, unknown or mistyped sentinel settings, ...). Fixed by
    hand only. False when the config cannot be loaded at all."""
    from logist.core.errors import ConfigError
    from logist.engine.config_check import config_problems

    problems = config_problems(store)
    for p in problems:
        rep.findings.append(Finding("invalid-config", p.message,
                                    f"edit {p.path}" + (f" ({p.key})" if p.key else "")
                                    + "; `logist help cli` lists the keys under Configuration"))
    if not problems:
        return True
    try:
        store.config  # noqa: B018 - loads (and caches) it, or says it cannot be loaded
    except ConfigError:
        return False
    return True


def fix(report: DoctorReport) -> DoctorReport:
    for f in report.findings:
        if f.apply is None or f.fixed:
            continue
        try:
            f.fixed = f.apply() or "fixed"
        except LogistError as exc:
            f.error = exc.message
        except OSError as exc:
            f.error = str(exc)
    return report


# --------------------------------------------------------------------------- checks

def _records(store: JobStore, jobs, rep: DoctorReport) -> None:
    for s in jobs.values():
        if s.manifest is None:
            rep.findings.append(Finding(
                "invalid-record", f"job {s.id}: {s.error}", job=s.id,
                fix=f"inspect `git show {s.tip[:12]}:{refs.manifest_path(s.id)}`; "
                    f"`logist recover {s.id}` restores logist's last record"))


def _symlinks(store: JobStore, jobs, rep: DoctorReport) -> None:
    """Jobs that came from a remote whose tree holds a symlink pointing out of the worktree or
    into a .git (docs/sharing.md, "Trust"): logist never writes through one and does not run
    the job until it is trusted, but its agent or a person could follow it."""
    from logist.share.trust import job_link_problems

    for s in jobs.values():
        m = s.manifest
        if m is None or m.origin == "local":
            continue
        for why in job_link_problems(store, s.tip):
            rep.findings.append(Finding(
                "dangerous-symlink", f"job {s.id} (from {m.origin}) has a symlink out of its "
                f"worktree: {why}" + ("" if m.trusted else "; it is not trusted, so it does not run"),
                job=s.id,
                fix=f"inspect it (`git ls-tree -r {refs.branch_name(s.id)}`); cancel the job "
                    f"(`logist job cancel {s.id}`) unless you trust it (`logist job trust {s.id}`)"))


def _delete_ref(store: JobStore, ref: str, oid: str) -> str:
    """Delete ``ref`` if it still points at ``oid`` (a lock taken again meanwhile is kept)."""
    store.update_refs(f"delete {ref} {oid}\n")
    return f"deleted {ref}"


def _locks(store: JobStore, jobs, rep: DoctorReport) -> None:
    from logist.store.locks import Holder

    locks = for_each_ref(store, refs.LOCKS_PREFIX)
    if not locks:
        return
    with CatFileBatch(store.root) as batch:
        raws = batch.read_many(list(locks.values()))
    for (ref, oid), raw in zip(locks.items(), raws, strict=True):
        jid = ref[len(refs.LOCKS_PREFIX):]
        holder = Holder.from_bytes(raw[:4096]) if raw else None
        reason = "unreadable lock record" if holder is None else holder.stale_reason()
        s = jobs.get(jid)
        delete = functools.partial(_delete_ref, store, ref, oid)
        if s is None:
            if reason is None:
                continue  # a job being created or adopted right now
            rep.findings.append(Finding("dead-lock", f"{ref} locks a job that does not exist ({reason})",
                                        job=jid, fix=f"git update-ref -d {ref} {oid}", apply=delete))
            continue
        if reason is None:
            continue
        state = s.manifest.state if s.manifest else None
        if state in TRANSIENT:
            rep.findings.append(Finding(
                "interrupted-job", f"job {jid} was interrupted in {state.value} ({reason})", job=jid,
                fix=f"logist recover {jid}"))
        else:
            rep.findings.append(Finding(
                "dead-lock", f"job {jid} is locked by a dead holder ({reason})", job=jid,
                fix=f"git update-ref -d {ref} {oid}", apply=delete))


def _lock_files(store: JobStore, rep: DoctorReport) -> None:
    common = store.paths.common_dir
    candidates: list[Path] = []
    for top in ("refs", "logs"):
        base = common / top
        if base.is_dir():
            candidates += [p for p in base.rglob("*.lock") if p.is_file()]
    candidates += [p for p in common.glob("*.lock") if p.is_file()]
    wts = common / "worktrees"
    if wts.is_dir():
        candidates += [p for p in wts.glob("*/*.lock") if p.is_file()]
    now = time.time()
    for p in sorted(candidates):
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if age < STALE_LOCK_FILE_SECONDS:
            continue
        rep.findings.append(Finding(
            "stale-lock-file", f"{p} is {int(age)}s old: left by a killed git process, it blocks "
            "every update of that ref", fix=f"rm {p}",
            apply=functools.partial(_remove_file, p)))


def _hooks(store: JobStore, rep: DoctorReport) -> None:
    """Does `git pull` run logist's hook shims? Never changed by doctor: a hook that is somebody
    else's (pre-commit's legacy slot taken, husky, a tracked .githooks/) gets the line to add."""
    from logist.share.install import HOOKS, wiring

    for name in HOOKS:
        w = wiring(store.paths, name)
        rep.hooks[name] = {"wired": w.wired, "how": w.how}
        if not w.wired:
            where = w.edit or (w.hooks_dir / w.name)
            rep.findings.append(Finding(
                "hook-not-wired", f"the {name} hook does not run logist ({w.how}): `git pull` "
                "will not clean up merged jobs (`logist gc` still does)",
                (f"add this line to {where}: " if where.exists()
                 else f"create {where} (#!/bin/sh, executable) with this line: ") + w.line,
                severity="info"))


def _merge_refs(store: JobStore, rep: DoctorReport) -> None:
    for ref, oid in for_each_ref(store, refs.NOTES_MERGE_PREFIX).items():
        rep.findings.append(Finding(
            "leftover-ref", f"{ref} was left by an interrupted notes merge",
            fix=f"git update-ref -d {ref}",
            apply=functools.partial(_delete_ref, store, ref, oid)))


def _remote(store: JobStore, jobs, remote: str, rep: DoctorReport) -> None:
    prefix = refs.remote_branch_prefix(remote)
    tracking = {r[len(prefix):]: oid for r, oid in for_each_ref(store, prefix).items()}
    never = []
    for jid, s in sorted(jobs.items()):
        t = tracking.get(jid)
        if t is None:
            never.append(jid)
            continue
        if t == s.tip or is_ancestor(store, s.tip, t):
            continue
        if is_ancestor(store, t, s.tip) or preserved(store, jid, t):
            rep.findings.append(Finding(
                "unpushed", f"job {jid} has transitions {remote} does not have", job=jid,
                fix=f"logist push {remote} {jid}",
                apply=functools.partial(_push, store, remote, [jid])))
        else:
            rep.findings.append(Finding(
                "diverged", f"job {jid} diverged from {remote}/{refs.branch_name(jid)}", job=jid,
                fix=f"compare `git log --oneline {refs.branch_name(jid)}...{remote}/"
                    f"{refs.branch_name(jid)}`, keep one side (`logist job adopt {jid}` takes "
                    "the remote's once the local commits are saved)"))
    if never and tracking:
        rep.findings.append(Finding(
            "never-pushed", f"{len(never)} job(s) were never pushed to {remote}: "
            f"{', '.join(never[:10])}{' ...' if len(never) > 10 else ''}",
            fix=f"logist push {remote} {' '.join(never[:10])}", severity="info"))
    notes_behind = []
    notes_ahead = []
    for local in refs.NOTES_REFS:
        theirs_ref = refs.remote_notes_ref(remote, local)
        ours, theirs = rev(store, local), rev(store, theirs_ref)
        if theirs and (ours is None or not is_ancestor(store, theirs, ours)):
            notes_behind.append(local)
        elif ours and ours != theirs:
            notes_ahead.append(local)
    for local in notes_behind:
        theirs_ref = refs.remote_notes_ref(remote, local)
        ours_oid, theirs_oid = rev(store, local), rev(store, theirs_ref)
        diverged = (ours_oid is not None and theirs_oid is not None
                    and not is_ancestor(store, ours_oid, theirs_oid))
        rep.findings.append(Finding(
            "notes-diverged" if diverged else "notes-behind",
            f"{local} {'diverged from' if diverged else 'lacks notes of'} {remote}", fix=
            f"git notes --ref {local} merge -s cat_sort_uniq {theirs_ref} && logist push {remote}",
            apply=functools.partial(_merge_notes_and_push, store, remote, local, theirs_ref)))
    if notes_ahead and tracking:
        rep.findings.append(Finding(
            "notes-unpushed", f"{', '.join(notes_ahead)} ha{'s' if len(notes_ahead) == 1 else 've'} "
            f"notes {remote} does not have", fix=f"logist push {remote}",
            apply=functools.partial(_push, store, remote, [])))


# --------------------------------------------------------------------------- helpers

def _push(store: JobStore, remote: str, job_ids: list[JobId]) -> str:
    """Push ``job_ids`` (``[]``: the notes only); what was pushed, or LogistError."""
    from logist.share.push import push

    res = push(store, remote, job_ids)
    if res.skipped:
        ref, why = next(iter(res.skipped.items()))
        raise LogistError(f"{ref} was not pushed: {why}")
    return f"pushed {len(res.pushed)} ref(s) to {res.remote}" if res.pushed else f"{res.remote} up to date"


def _merge_notes_and_push(store: JobStore, remote: str, local: str, theirs_ref: str) -> str:
    from logist.share.notes_merge import merge_notes_ref

    merge_notes_ref(store, local, theirs_ref)
    return _push(store, remote, [])


def _remove_file(p: Path) -> str:
    p.unlink(missing_ok=True)
    return f"removed {p}"
