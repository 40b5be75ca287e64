"""The agent interface: what a step asks of an agent, and what comes back.

An agent is a provider selected by name (see :mod:`logist.agents`). It never runs anything itself:
:meth:`Agent.build` turns a :class:`StepContext` into an :class:`Invocation` (argv, environment
additions, stdin text) that a runtime starts in the job's worktree, and :meth:`Agent.parse` turns
the process's combined output and exit code into an :class:`AgentResult`.

The two families that implement it are in :mod:`logist.agents.families`; the checks of a step's
options in :mod:`logist.agents.options`; the rules that turn output into a result in
:mod:`logist.agents.results`. Nothing in the agents package prints, exits, touches git, or
imports the store, the engine or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Action = Literal["COMPLETED", "STUCK", "RETRY", "FAILED", "NO_OUTCOME"]

#: Longest prompt (in bytes) passed as one argv element. Linux refuses any single argument or
#: environment string over 128 KiB (MAX_ARG_STRLEN); longer prompts go through stdin where the
#: tool supports it.
ARGV_PROMPT_LIMIT = 100_000


@dataclass
class StepContext:
    """Everything an agent needs to build one step's invocation."""

    job_id: str
    step_number: int  # 1-based
    step_count: int
    step_name: str
    prompt: str  # the fully assembled prompt, recorded verbatim by the engine
    workdir: Path  # the job's worktree; the agent runs there
    options: dict[str, Any]  # the step's options from the job file
    attempt: int = 1
    session_id: str | None = None  # a previous session to resume, where the agent supports it
    prior_tokens: int = 0  # tokens already recorded for this step (CLIs that count per session)
    prior_cost_usd: float = 0.0  # cost already recorded for this step


@dataclass
class Invocation:
    """How to start an agent: argv (never a shell), environment additions, stdin text."""

    argv: list[str]
    env: dict[str, str]
    stdin: str | None = None


@dataclass
class AgentResult:
    """What a step's agent reported, read from its output and exit code."""

    action: Action
    summary: str = ""
    evidence_files: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    tokens: int = 0
    session_id: str | None = None
    reason: str = ""  # for FAILED / NO_OUTCOME / STUCK: why, one line
    exit_code: int | None = None
    requests_approval: bool = False
    warnings: list[str] = field(default_factory=list)  # fields of the outcome that were dropped
    denials: list[str] = field(default_factory=list)  # tool calls or writes the CLI refused
    fatal: bool = False  # a failure a retry cannot fix (auth, no key, usage, untrusted folder)


class Agent(Protocol):
    """A provider that builds a step's invocation and reads its result."""

    name: str
    ai: bool  # True: a missing or invalid outcome is NO_OUTCOME. False: plain exit 0 = COMPLETED
    runs_commands: bool  # True only for `command` (a fetched job needs explicit trust)

    def build(self, ctx: StepContext) -> Invocation: ...

    def parse(self, output: str, exit_code: int | None, ctx: StepContext) -> AgentResult: ...

    def executable(self) -> str | None: ...

    def validate_options(self, options: dict[str, Any]) -> None: ...
