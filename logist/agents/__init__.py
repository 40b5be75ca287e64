"""Agents: providers that build a step's invocation and read its result, selected by name.

The registry is an explicit dict; the job file names an agent (``agent = "claude"``) and the
step's options go to it. Importing this package is cheap: the standard library and logist's
own small agent modules, nothing else (the mock agent process starts through it).
"""

from __future__ import annotations

from typing import Any

from logist.agents.aider import AiderAgent
from logist.agents.base import Agent, AgentResult, Invocation, StepContext
from logist.agents.claude import ClaudeAgent
from logist.agents.cline import ClineAgent
from logist.agents.codex import CodexAgent
from logist.agents.command import CommandAgent
from logist.agents.gemini import GeminiAgent
from logist.agents.mock import MockAgent
from logist.agents.outcome import OUTCOME_INSTRUCTIONS, find_outcome
from logist.core.errors import AgentError

AGENTS: dict[str, type[Agent]] = {
    "mock": MockAgent,
    "command": CommandAgent,
    "claude": ClaudeAgent,
    "codex": CodexAgent,
    "aider": AiderAgent,
    "cline": ClineAgent,
    "gemini": GeminiAgent,
}


def agent_names() -> list[str]:
    """The known agent names, in registry order."""
    return list(AGENTS)


def get_agent(name: str) -> Agent:
    """The agent called ``name``; AgentError naming the known ones otherwise."""
    cls = AGENTS.get(name)
    if cls is None:
        raise AgentError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}",
                         hint='set agent = "<name>" in the job file or step')
    return cls()


def validate_agent_options(name: str, options: dict[str, Any]) -> None:
    """Check that agent ``name`` exists and accepts ``options`` (used at job creation)."""
    get_agent(name).validate_options(options)


__all__ = ["AGENTS", "OUTCOME_INSTRUCTIONS", "Agent", "AgentResult", "Invocation",
           "StepContext", "agent_names", "find_outcome", "get_agent", "validate_agent_options"]
