"""May a job's worktree go? (docs/sharing.md, cleanup): git's list of worktrees, the processes
working inside a folder, and every reason to keep a worktree (locked, uncommitted changes, a
process in it, commits not on the job branch). Used by cleanup and `logist doctor`."""

from __future__ import annotations

import os

from logist.core.jobid import JobId
from logist.core.procs import processes_in
from logist.git.gitcmd import git, git_out
from logist.share.remotes import is_ancestor
from logist.store.jobstore import JobStore


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


def worktree_blockers(store: JobStore, job_id: JobId, keep_tip: str,
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
