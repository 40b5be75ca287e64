"""Telling a person that a job needs them, or finished (docs/cli.md#notifications).

When a runner's transition brings a job into one of ``[notify] on`` (default:
INTERVENTION_REQUIRED, APPROVAL_REQUIRED, SUCCESS), the command of ``[notify] command`` runs
with the job in its environment: ``LOGIST_JOB_ID``, ``LOGIST_STATE``, ``LOGIST_REASON``,
``LOGIST_TITLE``, ``LOGIST_STEP``, ``LOGIST_REPO``. It runs in the background (at most
``TIMEOUT`` seconds); a failing command never changes a job. The command is read from
``.logist/config.local.toml`` only (per machine, not committed): the shared config of a cloned
repository cannot make anyone's machine run it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from logist.store.jobstore import JobStore

TIMEOUT = 30.0
ENV_KEYS = ("LOGIST_JOB_ID", "LOGIST_STATE", "LOGIST_REASON", "LOGIST_TITLE", "LOGIST_STEP", "LOGIST_REPO")


def local_command(store: JobStore) -> list[str]:
    """``[notify] command`` of .logist/config.local.toml ([] when it sets none)."""
    from logist.core.config import config_files, read_layers

    local = config_files(store.config_root())[1]
    for path, data in read_layers(store.config_root()):
        if path == local and isinstance(data.get("notify"), dict):
            cmd = data["notify"].get("command")
            if isinstance(cmd, list) and cmd and all(isinstance(a, str) and a for a in cmd):
                return list(cmd)
    return []


def notify_env(store: JobStore, job: dict[str, Any]) -> dict[str, str]:
    return {"LOGIST_JOB_ID": str(job["id"]), "LOGIST_STATE": str(job["state"]),
            "LOGIST_REASON": str(job.get("reason") or "")[:2000], "LOGIST_TITLE": str(job.get("title") or ""),
            "LOGIST_STEP": f"{job.get('step', 1)}/{job.get('step_count', '?')}", "LOGIST_REPO": str(store.root)}


def notify(store: JobStore, job: dict[str, Any], *, warn: Callable[[str], None] | None = None,
           wait: bool = False) -> threading.Thread | None:
    """Run the notify command for ``job`` (id, state, reason, title, step, step_count) if its
    state is one of ``[notify] on``; the thread running it (``wait``: joined), or None."""
    cfg = store.config.notify
    if job.get("state") not in cfg.on:
        return None
    argv = local_command(store)
    if not argv:
        return None
    env = {**os.environ, **notify_env(store, job)}
    say = warn or (lambda msg: None)

    def run() -> None:
        from logist.runtimes.programs import run_program

        try:
            proc = run_program(argv, env=env, cwd=store.root, timeout=TIMEOUT)
        except (OSError, TimeoutError) as exc:
            say(f"warning: the notify command {argv[0]!r} failed: {exc}")
            return
        if proc.returncode != 0:
            say(f"warning: the notify command {argv[0]!r} exited {proc.returncode}")

    thread = threading.Thread(target=run, name=f"notify-{job['id']}", daemon=True)
    thread.start()
    if wait:
        thread.join(TIMEOUT + 5)
    return thread
