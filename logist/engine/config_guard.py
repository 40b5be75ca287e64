"""A step cannot change the repository's git configuration.

An agent runs in a linked worktree, and ``git config core.hooksPath x`` there writes the
repository's shared ``config`` (a worktree has no config of its own unless
``extensions.worktreeConfig`` is on): the next ``git pull`` of the person would run the agent's
hooks. So before an agent starts, logist keeps a copy of the shared config in the job's run
directory; after the agent (at the same place the branch is settled), every key the step added
or changed is put back as it was, and the step's record says which (``warnings``). A key the
step removed is left removed (a later writer may have removed it on purpose; nothing runs from
a missing key). See docs/refs.md ("Secrets and control characters") and docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from logist.core.jobid import JobId
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore

SNAPSHOT = "git-config.before"
_MAX = 1 << 20


def _config_path(store: JobStore) -> Path:
    return store.paths.common_dir / "config"


def snapshot(store: JobStore, job_id: JobId) -> None:
    """Keep the shared config as it is now (before an agent starts)."""
    try:
        data = _config_path(store).read_bytes()[: _MAX + 1]
        if len(data) > _MAX:
            return
        d = store.run_dir(job_id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (SNAPSHOT + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(d / SNAPSHOT)
    except OSError:
        pass


def _entries(path: Path, store: JobStore) -> dict[str, list[str]]:
    proc = git(["config", "--file", str(path), "--list", "-z"], cwd=store.root, check=False)
    out: dict[str, list[str]] = {}
    for item in proc.stdout.split("\0"):
        if not item:
            continue
        key, _, value = item.partition("\n")
        out.setdefault(key, []).append(value)
    return out


def revert(store: JobStore, job_id: JobId) -> list[str]:
    """Put back every key of the shared config the step added or changed since
    :func:`snapshot`; the warnings to record (empty when nothing changed)."""
    snap = store.run_dir(job_id) / SNAPSHOT
    cfg = _config_path(store)
    try:
        before = snap.read_bytes()
    except OSError:
        return []
    try:
        if cfg.read_bytes() == before:
            snap.unlink(missing_ok=True)
            return []
    except OSError:
        return []
    old = _entries(snap, store)
    new = _entries(cfg, store)
    changed = sorted(k for k, v in new.items() if old.get(k) != v)
    for key in changed:
        git(["config", "--file", str(cfg), "--unset-all", key], cwd=store.root, check=False)
        for value in old.get(key, []):
            git(["config", "--file", str(cfg), "--add", key, value], cwd=store.root, check=False)
    snap.unlink(missing_ok=True)
    if not changed:
        return []
    return [f"the step changed the repository's git config ({', '.join(changed[:10])}); "
            "logist put it back as it was before the step"]
