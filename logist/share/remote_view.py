"""What plain `git fetch` brings from a remote: with or without the job branches.

Job branches stay real branches on the remote (code hosts show them, reviewers open them). A
clone that does not want 1,000 `logist/*` branches in every `git fetch`, `git branch -a` and
`git ls-remote`-driven tool says so once: a negative refspec ``^refs/heads/logist/*`` in the
remote's configured fetch refspecs. `logist fetch` names its refspecs on the command line, so it
still brings the jobs when asked (git applies configured negative refspecs only to configured
positive ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore

HIDE_REFSPEC = "^refs/heads/logist/*"


@dataclass
class RemoteView:
    remote: str
    hidden: bool
    changed: bool
    removed_tracking: int = 0


def fetch_refspecs(store: JobStore, remote: str) -> list[str]:
    key = f"remote.{refs.validate_remote(remote)}.fetch"
    out = git(["config", "--get-all", "--", key], cwd=store.root, check=False).stdout
    return [line for line in out.splitlines() if line]


def job_branches_hidden(store: JobStore, remote: str) -> bool:
    return HIDE_REFSPEC in fetch_refspecs(store, remote)


def set_job_branches_hidden(store: JobStore, remote: str, hidden: bool, *, prune: bool = False) -> RemoteView:
    """Add (``hidden``) or remove the negative refspec; idempotent. ``prune`` also deletes the
    remote-tracking refs ``refs/remotes/<remote>/logist/*`` that earlier fetches left (only
    tracking refs: the remote's branches and local job branches are untouched)."""
    remote = refs.validate_remote(remote)
    key = f"remote.{remote}.fetch"
    now = job_branches_hidden(store, remote)
    changed = now != hidden
    if hidden and not now:
        git(["config", "--add", "--", key, HIDE_REFSPEC], cwd=store.root)
    elif not hidden and now:
        # --fixed-value: the refspec is a literal, not a regex
        git(["config", "--fixed-value", "--unset-all", "--", key, HIDE_REFSPEC], cwd=store.root)
    removed = 0
    if hidden and prune:
        tracking = git(["for-each-ref", "--format=%(refname)", "--", f"refs/remotes/{remote}/logist/"],
                       cwd=store.root).stdout.split()
        if tracking:
            git(["update-ref", "--no-deref", "--stdin"], cwd=store.root,
                input="".join(f"delete {r}\n" for r in tracking))
            removed = len(tracking)
    return RemoteView(remote=remote, hidden=hidden, changed=changed, removed_tracking=removed)
