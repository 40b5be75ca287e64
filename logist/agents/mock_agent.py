"""The mock agent process: ``python -m logist.agents.mock_agent``.

A real child process, deterministic and offline, that behaves like an AI coding agent in one of a
few scenarios, so every path of a step (and every observer signal) can be exercised without a
model. Its behaviour comes from environment variables set by :class:`logist.agents.mock.MockAgent`:

``LOGIST_MOCK_SPEC``
    JSON of the step's ``[steps.mock]`` table: ``scenario`` (default ``success``), ``writes``
    ({relative path: content}, written before the outcome), ``cost_usd``, ``tokens``, ``delay_s``,
    ``succeed_on_attempt`` (retry), ``summary``, ``output`` (extra lines to print) and
    ``ignore_signals`` (e.g. ``["INT", "TERM"]``, to exercise a sentinel's escalation).
``LOGIST_MOCK_ATTEMPT``
    The attempt number (1-based), for the ``retry`` scenario.

Every line is flushed as it is printed (the observer tails the log live). Only the standard
library and :mod:`logist.core.safepath` are imported here, so the process starts fast. The
``writes`` never leave the worktree: a symlink on the way (committed on the job branch, perhaps
fetched from a remote), a ``..``, an absolute path or a ``.git`` component is refused
(docs/sharing.md, "Trust").
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from logist.core.safepath import UnsafePathError, why_unsafe, write_file

SCENARIOS = ("success", "stuck", "retry", "error", "hang", "slow", "api_error", "rate_limit",
             "context_full", "auth_error", "waiting_input", "approval")

API_ERROR = "API Error: 500 Internal Server Error"
RATE_LIMIT = "Error: 429 Too Many Requests - rate limit exceeded, retrying in 1s"
CONTEXT_FULL = "Error: prompt is too long: context window exceeded (context_length_exceeded)"
AUTH_ERROR = "Error: 401 Unauthorized - invalid API key (authentication_error)"
QUESTION = "Do you want to proceed? (y/n)"
APPROVAL = "Requesting approval: please review and sign off"


def say(line: str, *, err: bool = False) -> None:
    """Print one line and flush it at once."""
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def unsafe_path(rel: str) -> str | None:
    """Why the mock must not write ``rel`` (absolute, empty, ``..``, ``.git``), or None."""
    return why_unsafe(rel)


def do_writes(writes: dict[str, Any]) -> None:
    """Create or replace each file (relative to the working directory), parents included,
    never through a symlink: the first unsafe path stops the agent (exit 2, nothing more written)."""
    for rel, content in writes.items():
        try:
            write_file(Path.cwd(), rel, str(content).encode("utf-8"), mode=0o644)
        except UnsafePathError as exc:
            say(f"error: mock agent: {exc.message}", err=True)
            sys.exit(2)
        except OSError as exc:
            say(f"error: mock agent cannot write {rel!r}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        say(f"mock: wrote {rel}")


def outcome(spec: dict[str, Any], action: str, summary: str, **extra: Any) -> None:
    """Print the fenced outcome block, with cost and tokens when the spec gives them."""
    data: dict[str, Any] = {"action": action, "summary": spec.get("summary") or summary,
                            "evidence_files": sorted(spec.get("writes") or {})}
    data.update(extra)
    for key in ("cost_usd", "tokens"):
        if key in spec:
            data[key] = spec[key]
    say("```json")
    say(json.dumps(data))
    say("```")


def block_forever() -> None:
    """Sleep until killed, printing nothing and never reading stdin."""
    while True:
        time.sleep(3600)


def finish(spec: dict[str, Any], delay: float) -> None:
    """The success path: progress, extra output, writes, then the COMPLETED outcome."""
    say("mock: reading the task")
    for line in spec.get("output") or []:
        say(str(line))
    if delay:
        time.sleep(delay)
    do_writes(spec.get("writes") or {})
    say("mock: done")
    outcome(spec, "COMPLETED", "mock agent completed the step")


def run(spec: dict[str, Any], attempt: int) -> int:
    """Play the scenario; returns the exit code."""
    scenario = spec.get("scenario", "success")
    delay = float(spec.get("delay_s", 0) or 0)
    if scenario != "hang":  # a hung agent prints nothing at all
        say(f"mock agent starting (attempt {attempt})")  # neutral: must not trip observer patterns
    if scenario == "success":
        finish(spec, delay)
    elif scenario == "stuck":
        say("mock: I cannot find what the task refers to")
        outcome(spec, "STUCK", "mock agent is stuck: the task is ambiguous",
                reason="the task is ambiguous; a person must clarify it")
    elif scenario == "retry":
        wanted = int(spec.get("succeed_on_attempt", 2))
        if attempt < wanted:
            say(f"mock: transient failure on attempt {attempt}; retry (succeeds on {wanted})")
            outcome(spec, "RETRY", f"transient failure on attempt {attempt}")
        else:
            finish(spec, delay)
    elif scenario == "error":
        say("error: mock agent failed (scenario 'error')", err=True)
        return 3
    elif scenario == "hang":
        block_forever()
    elif scenario == "slow":
        total = delay or 1.0
        for i in range(5):
            say(f"mock: working slowly ({i + 1}/5)")
            time.sleep(total / 5)
        finish(spec, 0.0)
    elif scenario == "api_error":
        say(API_ERROR)
        return 1
    elif scenario == "rate_limit":
        total = delay or 0.3
        for _ in range(3):
            say(RATE_LIMIT)
            time.sleep(total / 3)
        finish(spec, 0.0)
    elif scenario == "context_full":
        say(CONTEXT_FULL)
        outcome(spec, "STUCK", "context window exceeded", reason="context window exceeded")
    elif scenario == "auth_error":
        say(AUTH_ERROR)
        return 1
    elif scenario == "waiting_input":
        say(QUESTION)
        block_forever()
    elif scenario == "approval":
        do_writes(spec.get("writes") or {})
        say(APPROVAL)
        outcome(spec, "COMPLETED", "mock agent asks for sign-off", approval=True)
    else:
        say(f"error: unknown mock scenario {scenario!r}; known: {', '.join(SCENARIOS)}",
            err=True)
        return 2
    return 0


def _quiet_interrupt(signum: int, frame: Any) -> None:
    """Exit 130 on SIGINT without a traceback (like a CLI that was interrupted)."""
    os._exit(128 + signum)


def main() -> int:
    """Read the spec from the environment and run it."""
    try:
        spec = json.loads(os.environ.get("LOGIST_MOCK_SPEC") or "{}")
        attempt = int(os.environ.get("LOGIST_MOCK_ATTEMPT") or "1")
    except ValueError as exc:
        say(f"error: bad mock spec: {exc}", err=True)
        return 2
    if not isinstance(spec, dict):
        say("error: bad mock spec: not an object", err=True)
        return 2
    signal.signal(signal.SIGINT, _quiet_interrupt)
    for name in spec.get("ignore_signals") or []:
        signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_IGN)
    return run(spec, attempt)


if __name__ == "__main__":
    sys.exit(main())
