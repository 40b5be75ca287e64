"""A rerun's worktree move between two commits, and its repair after an interruption.

The job's worktree is moved with a two-tree ``git read-tree -m -u`` (what ``git checkout``
does), so its index follows and uncommitted changes that do not conflict are carried along; a
marker under the git directory records the move, so an interruption anywhere is repaired from
the tip (undone while the branch is still at the old tip, finished once it moved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from logist.core.errors import JobStateError
from logist.core.jobid import JobId
from logist.engine.rerun_base import OID_RE
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore

Progress = Callable[[str], None]

_MOVE_MARKER = "rerun-move.json"


def move_marker(store: JobStore, job_id: JobId) -> Path:
    return store.run_dir(job_id) / _MOVE_MARKER


def write_marker(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, path)


def has_worktree(store: JobStore, job_id: JobId) -> bool:
    return (store.worktree_path(job_id) / ".git").exists()


def check_worktree_on_branch(store: JobStore, job_id: JobId) -> None:
    wt = store.worktree_path(job_id)
    head = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False).stdout.strip()
    if head != refs.branch_ref(job_id):
        raise JobStateError(f"the worktree of job {job_id} ({wt}) is not on its branch "
                            f"{refs.branch_name(job_id)} (HEAD: {head or 'detached'})",
                            hint=f"run `git -C {wt} switch {refs.branch_name(job_id)}`, then try again")


def read_tree(store: JobStore, job_id: JobId, old: str, new: str) -> None:
    """Move the worktree's index and files from commit ``old`` to ``new`` (two-tree merge).

    What ``git checkout`` does: paths that differ between the commits are updated, local
    changes elsewhere are kept, and a local change in a path that differs refuses the whole
    move before anything is written.
    """
    wt = store.worktree_path(job_id)
    git(["update-index", "-q", "--refresh"], cwd=wt, check=False)
    proc = git(["read-tree", "-m", "-u", old, new], cwd=wt, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines()
                 if ln.strip() and not ln.lower().startswith(("please", "aborting", "hint"))]
        detail = "; ".join(lines)[:500] or "git read-tree failed"
        raise JobStateError(
            f"the worktree of job {job_id} has uncommitted changes that moving it to "
            f"{new[:12]} would overwrite ({detail})",
            hint=f"commit, stash or discard them (`git -C {wt} status`), then try again")


def repair_worktree_move(store: JobStore, job_id: JobId, progress: Progress | None = None) -> bool:
    """Repair a worktree left between two commits by an interrupted rerun (call under the lease).

    The tip is the truth: still at the old tip, the worktree is moved back; at the run
    commit, the move is finished. Returns True when there was something to repair.
    """
    path = move_marker(store, job_id)
    try:
        data = json.loads(path.read_text())
        frm, to = str(data["from"]), str(data["to"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return False
    say = progress or (lambda msg: None)
    if not (OID_RE.match(frm) and OID_RE.match(to)):
        path.unlink(missing_ok=True)
        return False
    tip = store.tip(job_id)
    if has_worktree(store, job_id):
        if tip == frm:
            say(f"{job_id}: an interrupted rerun left the worktree moved; moving it back to {frm[:12]}")
            read_tree(store, job_id, to, frm)
        elif tip == to:
            say(f"{job_id}: finishing the worktree move of an interrupted rerun ({to[:12]})")
            read_tree(store, job_id, frm, to)
        store.sync_worktree_record(job_id)
    path.unlink(missing_ok=True)
    return True
