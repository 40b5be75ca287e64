"""`logist doctor`'s worktree checks: the worktrees git has registered in the worktrees dir and
the jobs that need one, against what is on disk. Fixes never delete uncommitted work: a worktree
with changes is reported, never removed."""

from __future__ import annotations

import functools
from pathlib import Path

from logist.core.errors import LogistError
from logist.core.jobid import JobId
from logist.core.model import TERMINAL, TRANSIENT, State
from logist.core.procs import processes_in
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.findings import DoctorReport, Finding, git_fix
from logist.share.remotes import for_each_ref, is_ancestor, rev
from logist.share.worktree_checks import worktree_entries
from logist.store.job_worktrees import RELEASING
from logist.store.jobstore import JobStore


def check_worktrees(store: JobStore, jobs, rep: DoctorReport) -> None:
    """Worktrees registered or missing, stray directories in the worktrees dir, worktrees of
    no job, on the wrong branch, locked with nobody running, or emptied."""
    wdir = store.worktrees_dir()
    registered = _registered_worktrees(store, wdir, rep)
    _worktrees_dir_contents(store, wdir, registered, jobs, rep)
    for jid, e in registered.items():
        wt = wdir / jid
        if wt.exists():
            _registered_worktree(store, jid, wt, e, jobs.get(jid), rep)
    _missing_worktrees(store, jobs, rep)
    _erased_branches(store, jobs, rep)


def _registered_worktrees(store: JobStore, wdir: Path, rep: DoctorReport) -> dict[str, dict[str, str]]:
    """{job id: git's entry} of the worktrees git has registered in the worktrees dir; one whose
    directory is gone is a finding."""
    registered: dict[str, dict[str, str]] = {}
    for path, e in worktree_entries(store).items():
        p = Path(path)
        if p.parent != wdir and p.parent.resolve() != wdir.resolve():
            continue
        registered[p.name] = e
        if "prunable" in e or not p.exists():
            rep.findings.append(Finding(
                "missing-worktree-dir", f"worktree {p} is registered but its directory is gone",
                job=p.name, fix="git worktree prune", apply=lambda: _prune(store)))
    return registered


def _worktrees_dir_contents(store: JobStore, wdir: Path, registered: dict[str, dict[str, str]],
                            jobs, rep: DoctorReport) -> None:
    """Directories under the worktrees dir that are not registered worktrees. Only in a
    directory logist created (marked), and only an empty one named after a job of this
    repository is removed; nothing else is removed or advised for removal (it may be a user's)."""
    from logist.core.config import WORKTREES_MARKER
    from logist.store.jobstore import default_worktrees_dir

    owned = (wdir / WORKTREES_MARKER).is_file() or store.paths.logist_dir in wdir.parents \
        or wdir == default_worktrees_dir(store.paths.common_dir)
    if wdir.is_dir() and not owned:
        rep.findings.append(Finding(
            "unowned-worktrees-dir", f"worktrees.dir {wdir} was not created by logist (no "
            f"{WORKTREES_MARKER}); doctor looks at nothing in it",
            fix="set worktrees.dir to a new directory (logist creates it), or remove the setting"))
        return
    if not wdir.is_dir():
        return
    for d in sorted(wdir.iterdir()):
        if not d.is_dir() or d.is_symlink() or d.name in registered:
            continue
        if d.name.startswith(RELEASING):
            rep.findings.append(Finding(
                "interrupted-release", f"{d} is a finished job's worktree whose release was "
                "interrupted (everything in it is on the job branch)", fix="logist recover",
                apply=lambda: "; ".join(store.sweep_released()) or "nothing left to delete"))
            continue
        jid = d.name
        if not any(d.iterdir()) and jid in jobs:
            rep.findings.append(Finding(
                "empty-worktree-dir", f"{d} is an empty directory, not a worktree", job=jid,
                fix=f"rmdir {d}", apply=functools.partial(_remove_empty_dir, d)))
        else:
            rep.findings.append(Finding(
                "stray-directory", f"{d} is not a registered git worktree", job=jid,
                fix=f"inspect it and move it out of {wdir} if it is yours "
                    "(`git worktree repair` if a job's worktree was moved here)"))


def _registered_worktree(store: JobStore, jid: str, wt: Path, e: dict[str, str], s,
                         rep: DoctorReport) -> None:
    """One registered worktree: of an erased branch or no job at all, on the wrong branch,
    locked with nobody running, or emptied."""
    if s is None:
        kept = rev(store, refs.tip_ref(jid))
        if kept is not None:  # an erased branch, not an orphan: logist kept its tip
            rep.findings.append(Finding(
                "erased-branch", f"job {jid}: its branch {refs.branch_name(jid)} is gone; "
                f"{refs.tip_ref(jid)} still holds its last commit {kept[:12]}", job=jid,
                fix=f"git branch {refs.branch_name(jid)} {kept}",
                apply=functools.partial(_restore_branch, store, JobId(jid))))
        else:
            _orphan(store, jid, wt, e, rep)
        return
    branch = e.get("branch")
    if branch != refs.branch_ref(jid):
        rep.findings.append(Finding(
            "wrong-branch", f"worktree {wt} has {branch or 'a detached HEAD'} checked out, not "
            f"{refs.branch_name(jid)}", job=jid,
            fix=f"git -C {wt} switch {refs.branch_name(jid)}  (after saving any work there)"))
    state = s.manifest.state if s.manifest else None
    if "locked" in e and not _running(store, JobId(jid), state):
        rep.findings.append(Finding(
            "locked-worktree", f"worktree {wt} is locked but no live process holds job {jid}",
            job=jid, fix=f"git worktree unlock {wt}",
            apply=functools.partial(git_fix, store, ["worktree", "unlock", "--end-of-options", str(wt)],
                                    f"unlocked {wt}")))
    if (wt / ".git").exists() and [p.name for p in wt.iterdir()] == [".git"] \
            and git(["ls-tree", "--name-only", "HEAD"], cwd=wt, check=False).stdout.strip():
        rep.findings.append(Finding(
            "emptied-worktree", f"worktree {wt} was emptied (its files are deleted)", job=jid,
            fix=f"git -C {wt} checkout -- .",
            apply=functools.partial(git_fix, store, ["-C", str(wt), "checkout", "--", "."],
                                    f"restored the files of {wt}")))


def _missing_worktrees(store: JobStore, jobs, rep: DoctorReport) -> None:
    """Jobs that need a worktree now and have none."""
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


def _erased_branches(store: JobStore, jobs, rep: DoctorReport) -> None:
    """A job whose branch is gone while logist's copy of its tip is not (a finished job has no
    worktree to show it): `git branch` brings it back. Jobs reported with their worktree are
    not reported twice."""
    told = {f.job for f in rep.findings if f.kind == "erased-branch"}
    for ref, oid in sorted(for_each_ref(store, refs.TIPS_PREFIX).items()):
        name = ref[len(refs.TIPS_PREFIX):]
        if name in jobs or name in told or not refs.JOB_ID_RE.match(name) or name.endswith("-"):
            continue
        jid = refs.validate_job_id(name)
        rep.findings.append(Finding(
            "erased-branch", f"job {jid}: its branch {refs.branch_name(jid)} is gone; "
            f"{ref} still holds its last commit {oid[:12]}", job=jid,
            fix=f"git branch {refs.branch_name(jid)} {oid}",
            apply=functools.partial(_restore_branch, store, jid)))


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


def _restore_branch(store: JobStore, jid: JobId) -> str:
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
        git_fix(store, ["worktree", "remove", "--end-of-options", str(wt)], "")
        return "; ".join(done + [f"removed {wt}"])

    rep.findings.append(Finding("orphaned-worktree", msg, job=jid,
                                fix=f"git worktree remove {wt}", apply=apply))


def _running(store: JobStore, job_id: JobId, state: State | None) -> bool:
    from logist.store.locks import read_lock

    cur = read_lock(store, job_id)
    return cur is not None and cur[1] is not None and cur[1].stale_reason() is None


def _remove_empty_dir(d: Path) -> str:
    d.rmdir()
    return f"removed {d}"


def _create_worktree(store: JobStore, job_id: JobId) -> str:
    return f"created {store.ensure_worktree(job_id)}"


def _prune(store: JobStore) -> str:
    git(["worktree", "prune"], cwd=store.root)
    return "pruned stale worktree entries"
