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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from logist.core.errors import LogistError
from logist.core.model import TERMINAL, TRANSIENT, State
from logist.git import refs
from logist.git.gitcmd import CatFileBatch, git
from logist.share.push import preserved
from logist.share.remotes import default_remote, for_each_ref, is_ancestor, rev
from logist.share.worktree_checks import processes_in, worktree_entries
from logist.store.jobstore import JobStore

STALE_LOCK_FILE_SECONDS = 60.0


@dataclass
class Finding:
    kind: str
    message: str
    fix: str  # what to run
    job: str | None = None
    severity: str = "problem"  # "problem" or "info"
    apply: Callable[[], str] | None = field(default=None, repr=False)
    fixed: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "job": self.job, "severity": self.severity,
                "message": self.message, "fix": self.fix, "auto_fix": self.apply is not None,
                "fixed": self.fixed, "error": self.error}


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    remote: str | None = None
    hooks: dict[str, dict] = field(default_factory=dict)  # hook -> {"wired": bool, "how": str}

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem" and not f.fixed]


def diagnose(store: JobStore, *, remote: str | None = None) -> DoctorReport:
    rep = DoctorReport()
    if not _config(store, rep):
        return rep  # the other checks need the config (where worktrees live)
    jobs = {s.id: s for s in store.list_jobs()}
    _records(store, jobs, rep)
    _symlinks(store, jobs, rep)
    if not any(f.kind == "invalid-config" and "(worktrees.dir)" in f.fix for f in rep.findings):
        _worktrees(store, jobs, rep)  # with a refused worktrees.dir, nothing there is looked at
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


def _running(store: JobStore, job_id: str, state: State | None) -> bool:
    from logist.store.locks import read_lock

    cur = read_lock(store, job_id)
    return cur is not None and cur[1] is not None and cur[1].stale_reason() is None


def _worktrees(store: JobStore, jobs, rep: DoctorReport) -> None:
    wdir = store.worktrees_dir()
    entries = worktree_entries(store)
    registered: dict[str, dict[str, str]] = {}
    for path, e in entries.items():
        p = Path(path)
        if p.parent != wdir and p.parent.resolve() != wdir.resolve():
            continue
        registered[p.name] = e
        if "prunable" in e or not p.exists():
            rep.findings.append(Finding(
                "missing-worktree-dir", f"worktree {p} is registered but its directory is gone",
                job=p.name, fix="git worktree prune", apply=lambda: _prune(store)))
    # Directories under the worktrees dir: only in a directory logist created (marked), and
    # only an empty one named after a job of this repository is removed; nothing else is
    # removed or advised for removal (it may be a user's).
    from logist.core.config import WORKTREES_MARKER
    from logist.store.jobstore import default_worktrees_dir

    owned = (wdir / WORKTREES_MARKER).is_file() or store.paths.logist_dir in wdir.parents \
        or wdir == default_worktrees_dir(store.paths.common_dir)
    if wdir.is_dir() and not owned:
        rep.findings.append(Finding(
            "unowned-worktrees-dir", f"worktrees.dir {wdir} was not created by logist (no "
            f"{WORKTREES_MARKER}); doctor looks at nothing in it",
            fix="set worktrees.dir to a new directory (logist creates it), or remove the setting"))
    elif wdir.is_dir():
        for d in sorted(wdir.iterdir()):
            if not d.is_dir() or d.is_symlink():
                continue
            jid = d.name
            if jid not in registered:
                if not any(d.iterdir()) and jid in jobs:
                    rep.findings.append(Finding(
                        "empty-worktree-dir", f"{d} is an empty directory, not a worktree", job=jid,
                        fix=f"rmdir {d}", apply=functools.partial(_remove_empty_dir, d)))
                else:
                    rep.findings.append(Finding(
                        "stray-directory", f"{d} is not a registered git worktree", job=jid,
                        fix=f"inspect it and move it out of {wdir} if it is yours "
                            "(`git worktree repair` if a job's worktree was moved here)"))
    for jid, e in registered.items():
        wt = wdir / jid
        if not wt.exists():
            continue
        s = jobs.get(jid)
        branch = e.get("branch")
        if s is None:
            kept = rev(store, refs.tip_ref(jid))
            if kept is not None:  # an erased branch, not an orphan: logist kept its tip
                rep.findings.append(Finding(
                    "erased-branch", f"job {jid}: its branch {refs.branch_name(jid)} is gone; "
                    f"{refs.tip_ref(jid)} still holds its last commit {kept[:12]}", job=jid,
                    fix=f"git branch {refs.branch_name(jid)} {kept}",
                    apply=functools.partial(_restore_branch, store, jid)))
                continue
            _orphan(store, jid, wt, e, rep)
            continue
        if branch != refs.branch_ref(jid):
            rep.findings.append(Finding(
                "wrong-branch", f"worktree {wt} has {branch or 'a detached HEAD'} checked out, not "
                f"{refs.branch_name(jid)}", job=jid,
                fix=f"git -C {wt} switch {refs.branch_name(jid)}  (after saving any work there)"))
        state = s.manifest.state if s.manifest else None
        if "locked" in e and not _running(store, jid, state):
            rep.findings.append(Finding(
                "locked-worktree", f"worktree {wt} is locked but no live process holds job {jid}",
                job=jid, fix=f"git worktree unlock {wt}",
                apply=functools.partial(_git_fix, store, ["worktree", "unlock", "--end-of-options", str(wt)],
                                        f"unlocked {wt}")))
        if (wt / ".git").exists() and [p.name for p in wt.iterdir()] == [".git"] \
                and git(["ls-tree", "--name-only", "HEAD"], cwd=wt, check=False).stdout.strip():
            rep.findings.append(Finding(
                "emptied-worktree", f"worktree {wt} was emptied (its files are deleted)", job=jid,
                fix=f"git -C {wt} checkout -- .",
                apply=functools.partial(_git_fix, store, ["-C", str(wt), "checkout", "--", "."],
                                        f"restored the files of {wt}")))
    for jid, s in jobs.items():
        m = s.manifest
        # with [worktrees] at_first_step only a running job needs its worktree now; the others
        # get theirs when a command needs it
        if m is None or m.state in TERMINAL or (store.config.worktrees.at_first_step and m.state not in TRANSIENT):
            continue
        wt = store.worktree_path(jid)
        if wt.exists():
            continue
        rep.findings.append(Finding(
            "missing-worktree", f"job {jid} ({m.state.value}) has no worktree", job=jid,
            fix=f"git worktree add {wt} {refs.branch_name(jid)}",
            apply=functools.partial(_create_worktree, store, jid)))


def _last_reflog_commit(wt: Path) -> str:
    """The commit the last entry of a worktree's HEAD reflog moved to ("" if none)."""
    gd = git(["rev-parse", "--git-dir"], cwd=wt, check=False).stdout.strip()
    if not gd:
        return ""
    try:
        lines = (Path(wt) / gd / "logs" / "HEAD").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    parts = lines[-1].split(" ", 2) if lines else []
    return parts[1] if len(parts) > 1 and len(parts[1]) == 40 else ""


def _restore_branch(store: JobStore, jid: str) -> str:
    oid = store.restore_branch(jid)
    if oid is None:
        raise LogistError(f"job {jid}: {refs.tip_ref(jid)} is gone too; nothing to restore")
    return f"restored {refs.branch_name(jid)} at {oid[:12]} from {refs.tip_ref(jid)}"


def _orphan(store: JobStore, jid: str, wt: Path, entry: dict[str, str], rep: DoctorReport) -> None:
    status = git(["status", "--porcelain", "--untracked-files=all"], cwd=wt, check=False)
    head = entry.get("HEAD", "")
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    busy = bool(processes_in(wt)) or "locked" in entry
    msg = f"worktree {wt} belongs to no job (branch {refs.branch_name(jid)} is gone)"
    if dirty or busy:
        # Never advise deleting the last ref or reflog of commits: keep HEAD under a ref first
        # (a HEAD whose branch was deleted is unborn; its reflog still names the last commit).
        keep = ""
        if not (head and len(head) == 40 and head != refs.ZERO_OID):
            head = _last_reflog_commit(wt)
        if head and len(head) == 40 and rev(store, head + "^{commit}"):
            old = rev(store, refs.archive_ref(jid))
            if old is None:
                keep = f"`git update-ref {refs.archive_ref(jid)} {head}`, "
            elif old != head and not is_ancestor(store, head, old):
                used = for_each_ref(store, refs.DISPLACED_PREFIX + jid + "/")
                k = len(used) + 1
                while refs.displaced_ref(jid, k) in used:
                    k += 1
                keep = f"`git update-ref {refs.displaced_ref(jid, k)} {head}`, "
        rep.findings.append(Finding(
            "orphaned-worktree", msg + ("; it has uncommitted changes" if dirty else "; it is in use"),
            job=jid, fix=f"save what you need from {wt}, then {keep}`git worktree remove --force {wt}`"))
        return

    def apply() -> str:
        done = []
        if head and len(head) == 40 and rev(store, head + "^{commit}"):
            old = rev(store, refs.archive_ref(jid))
            if old is None:
                store.update_refs(f"create {refs.archive_ref(jid)} {head}\n")
                done.append(f"archived {head[:12]} as {refs.archive_ref(jid)}")
            elif not is_ancestor(store, head, old):
                raise LogistError(f"{wt} has commits that {refs.archive_ref(jid)} lacks; not removing it")
        _git_fix(store, ["worktree", "remove", "--end-of-options", str(wt)], "")
        return "; ".join(done + [f"removed {wt}"])

    rep.findings.append(Finding("orphaned-worktree", msg, job=jid,
                                fix=f"git worktree remove {wt}", apply=apply))


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

def _push(store: JobStore, remote: str, job_ids: list[str]) -> str:
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


def _remove_empty_dir(d: Path) -> str:
    d.rmdir()
    return f"removed {d}"


def _remove_file(p: Path) -> str:
    p.unlink(missing_ok=True)
    return f"removed {p}"


def _create_worktree(store: JobStore, job_id: str) -> str:
    return f"created {store.ensure_worktree(job_id)}"


def _prune(store: JobStore) -> str:
    git(["worktree", "prune"], cwd=store.root)
    return "pruned stale worktree entries"


def _git_fix(store: JobStore, argv: list[str], done: str) -> str:
    if argv and argv[0] == "-C":
        proc = git(argv[2:], cwd=argv[1], check=False)
    else:
        proc = git(argv, cwd=store.root, check=False)
    if proc.returncode != 0:
        raise LogistError(f"`git {' '.join(argv)}` failed: {proc.stderr.strip()}")
    return done
