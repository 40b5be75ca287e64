"""The post-merge and post-rewrite hooks (docs/sharing.md, cleanup): after a pull, clean up the
jobs it integrated, quietly; never fail, never prompt. Layer 5; never prints."""

from __future__ import annotations

import os
from pathlib import Path

from logist.share.cleanup import apply_job
from logist.share.gc_plan import plan_gc
from logist.share.hooklog import append_log
from logist.share.integration import resolve_base
from logist.store.jobstore import JobStore

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
        store = _hook_store(name, args, cwd)
        if store is None:
            return 0
        log = store.paths.logist_dir / "hooks.log"
        if not _cleans_here(store):
            return 0
        import fcntl

        store.paths.logist_dir.mkdir(parents=True, exist_ok=True)
        with open(store.paths.logist_dir / "hook.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _clean_after_merge(store, name, log)
    except BaseException as exc:
        if log is not None:
            try:
                append_log(log, name, [f"error: {type(exc).__name__}: {exc}"])
            except BaseException:
                pass
    return 0


def _hook_store(name: str, args: list[str], cwd: str | Path | None) -> JobStore | None:
    """The job store of the repository the hook ran in, or None when this hook has nothing to
    clean up (another hook, an amend, an agent inside a job)."""
    if name not in ("post-merge", "post-rewrite"):
        return None
    if name == "post-rewrite" and args and args[0] != "rebase":
        return None  # `git commit --amend`: nothing was pulled
    if os.environ.get("LOGIST_JOB_ID"):
        return None  # an agent merging inside a job's worktree
    return JobStore.discover(cwd)


def _cleans_here(store: JobStore) -> bool:
    """Logist is set up here and this is not a job's worktree."""
    if not store.is_initialized():
        return False
    try:
        store.root.resolve().relative_to(store.worktrees_dir().resolve())
        return False  # inside a job worktree
    except ValueError:
        return True


def _clean_after_merge(store: JobStore, name: str, log: Path) -> None:
    """Under ``hook.lock``: clean up the jobs integrated into the base, unless another hook
    already checked this base; log what was done; record the base when nothing is left to retry."""
    base_name, base_oid = resolve_base(store, None)
    stamp = store.paths.logist_dir / HOOK_BASE
    try:
        if stamp.read_text().split() == [base_name, base_oid]:
            return  # another hook checked this base meanwhile
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
