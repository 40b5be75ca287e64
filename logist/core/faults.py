"""Crash injection for the crash and recovery tests: the one place where logist ends its own
process abruptly.

``LOGIST_CRASH_AT=<point>`` ends the process the first time it reaches the named point,
``<point>#N`` the N-th time (e.g. ``after-publish#3``). Nothing is flushed or cleaned up: the
exit is ``os._exit(137)``, what a process killed by SIGKILL reports, so recovery sees exactly
what a ``kill -9`` at that point leaves behind. Without the variable a point costs one
environment lookup. The points and what each one interrupts are listed in
docs/recovery.md#testing-hooks-not-for-users; ``POINTS`` is that list, and the tests check
that every point is reached by the code and exercised by a test.
"""

from __future__ import annotations

import os

ENV = "LOGIST_CRASH_AT"
EXIT_CODE = 137  # 128 + SIGKILL: a crash point looks like a kill -9 to whoever waits

POINTS = frozenset({
    # the store: creating a job, publishing a transition
    "create-before-ref", "create-after-ref", "after-worktree-add", "before-publish", "after-publish",
    # human commands (suspend, resume, cancel ...)
    "human-after-lock", "human-after-commit",
    # a step
    "after-provisioning-commit", "after-provision", "after-executing-commit", "agent-spawned",
    "agent-running", "after-agent-exit", "after-harvesting-commit", "before-harvest-commit",
    "after-harvest-commit", "run-agent-running",
    # releasing a finished job's worktree
    "release-after-rename", "release-after-prune",
    # recovery
    "recover-after-takeover",
    # rerun and restep
    "rerun-after-worktree-move", "rerun-after-publish", "restep-after-start", "restep-after-agent",
    "restep-after-isolated-ref",
})

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """End the process here if ``LOGIST_CRASH_AT`` names this point (and this is the N-th time)."""
    want = os.environ.get(ENV)
    if not want:
        return
    target, _, nth = want.partition("#")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(nth) if nth.isdigit() else 1):
        os._exit(EXIT_CODE)


def crash_env(point: str, nth: int = 1) -> dict[str, str]:
    """The environment entry that makes a logist process crash at ``point`` (its ``nth`` time;
    ``point`` may also be written ``name#N``)."""
    name, _, count = point.partition("#")
    if name not in POINTS or (count and not count.isdigit()):
        raise ValueError(f"unknown crash point {point!r}")
    return {ENV: point if count or nth == 1 else f"{name}#{nth}"}
