"""The ``command`` agent: any program, run with an explicit argv (never a shell).

``command = ["make", "test"]`` in a step runs that argv in the worktree. The prompt reaches the
program through the environment (``LOGIST_PROMPT``, with ``LOGIST_JOB_ID``, ``LOGIST_STEP`` ...),
never through argv. Exit 0 is COMPLETED unless the output holds a fenced outcome JSON (which then
decides); a non-zero exit is FAILED with the exit code recorded.

Because it runs arbitrary programs, a job fetched from a remote that uses it is not executed until
the user trusts it (``runs_commands``).
"""

from __future__ import annotations

import shutil
from typing import Any

from logist.agents.base import ARGV_PROMPT_LIMIT, Invocation, StepContext
from logist.agents.families import PlainAgent
from logist.agents.options import check_str_list
from logist.core.errors import AgentError


class CommandAgent(PlainAgent):
    """Runs ``options["command"]`` as given; the prompt is in ``LOGIST_PROMPT``."""

    name: str = "command"
    label: str = "command"
    runs_commands: bool = True

    def validate_options(self, options: dict[str, Any]) -> None:
        """A ``command`` that is a non-empty list of strings is required."""
        super().validate_options(options)
        if "command" not in options:
            raise AgentError('agent "command" needs command = ["program", "arg", ...] in the step')
        check_str_list(options["command"], "command", non_empty=True)

    def build(self, ctx: StepContext) -> Invocation:
        """argv = the step's command (plus ``args``); a bare program name must be on PATH."""
        self.validate_options(ctx.options)
        argv = [*ctx.options["command"], *(ctx.options.get("args") or [])]
        if "/" not in argv[0] and shutil.which(argv[0]) is None:
            raise AgentError(f"command {argv[0]!r} is not on PATH",
                             hint="install it, or give its path in the step's command")
        if len(ctx.prompt.encode("utf-8")) > ARGV_PROMPT_LIMIT:
            raise AgentError(f"the prompt of step {ctx.step_number} is too long to pass in "
                             f"LOGIST_PROMPT ({len(ctx.prompt.encode('utf-8'))} bytes)",
                             hint="shorten the job or step prompt")
        return Invocation(argv, {**self.step_env(ctx), "LOGIST_PROMPT": ctx.prompt})
