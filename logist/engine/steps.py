"""What a step produces (``StepResult``, ``AgentRun``) and the prompt an agent is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from logist.core.jobid import JobId
from logist.core.model import Manifest, State, StepStatus


@dataclass
class StepResult:
    job_id: JobId
    state: State
    step: int
    outcome: str | None = None
    reason: str = ""
    commits: list[str] = field(default_factory=list)


@dataclass
class AgentRun:
    """One agent execution outside the step transitions (``Engine.run_agent``)."""

    result: object  # logist.agents.base.AgentResult
    exit_code: int | None
    output: str
    log: Path
    stopped: str | None = None  # why logist stopped it (time budget, sentinel), if it did
    warnings: list[str] = field(default_factory=list)  # e.g. processes it left that were stopped


def assemble_prompt(m: Manifest, step_no: int) -> str:
    """Job prompt + step prompt + previous step's summary + the outcome protocol.

    A step whose agent runs a command (``command``) gets what the job file says and nothing
    else: the job's prompt and the step's prompt, no headings, no outcome protocol (a command's
    result is its exit code; docs/jobfile.md)."""
    from logist.agents import get_agent
    from logist.agents.outcome import OUTCOME_INSTRUCTIONS

    step = m.steps[step_no - 1]
    if get_agent(step.agent).runs_commands:
        said = [p.strip() for p in (m.prompt, step.prompt) if p.strip()]
        return "\n\n".join(said) + "\n" if said else ""
    parts = []
    if m.prompt.strip():
        parts.append(f"# Job: {m.title}\n\n{m.prompt.strip()}")
    else:
        parts.append(f"# Job: {m.title}")
    parts.append(f"## Step {step_no}/{m.step_count}: {step.name}\n\n{step.prompt.strip()}")
    if step_no > 1:
        prev = m.steps[step_no - 2]
        if prev.summary:
            parts.append(f"## Previous step ({prev.name}) summary\n\n{prev.summary.strip()}")
    if step.reason and step.status == StepStatus.PENDING:
        parts.append(f"## Reviewer's note\n\n{step.reason.strip()}")
    parts.append(OUTCOME_INSTRUCTIONS.strip())
    return "\n\n".join(parts) + "\n"


def new_tokens(m: Manifest, tokens: int) -> int:
    return m.tokens + tokens


def elapsed_since(iso: str) -> float:
    """Seconds since an ISO-8601 UTC time (0.0 when it cannot be read)."""
    from datetime import datetime

    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    from datetime import timezone

    return max(0.0, round((datetime.now(timezone.utc) - t).total_seconds(), 3))
