"""The one check before anything of a job runs: is it trusted in this clone?

A job made here is trusted; a job adopted from a remote is trusted only when this clone decided
so (``logist job trust``, or nothing in it needs trust: see docs/sharing.md, "Trust"). The
decision is kept in the record's ``trusted`` field, written by logist at adoption; a step of an
untrusted job never starts, resumes or is re-executed, whatever its agent (a command, an AI
agent with extra options, or a mock agent whose tree has a symlink out of the worktree).
"""

from __future__ import annotations

from logist.core.errors import TrustError
from logist.core.model import Manifest


def require_trust(m: Manifest, n: int | None = None, *, trust: bool = False, again: bool = False) -> None:
    """Raise TrustError when step ``n`` (default: the current step) of ``m`` may not run here
    (``again``: an interrupted restep that would execute once more)."""
    if m.trusted or trust:
        return
    from logist.agents import get_agent

    n = m.step if n is None else n
    step = m.steps[n - 1]
    try:
        runs_commands = get_agent(step.agent).runs_commands
    except Exception:  # an unknown agent is refused later, with its own message
        runs_commands = False
    if runs_commands:
        what = f"its step {n} runs a command: {step.options.get('command')!r}"
    else:
        what = ("it names options or symlinks (out of its worktree or into .git) that need "
                "trust; `logist job trust` shows them")
    run = "an interrupted restep of it is not executed again" if again else "it is not executed"
    raise TrustError(f"job {m.id} came from {m.origin} and {what}; {run} until you trust the job",
                     hint=f"review it, then `logist job trust {m.id}` (or pass --trust)")
