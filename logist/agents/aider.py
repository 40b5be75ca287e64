"""The ``aider`` agent: aider in scripting mode (``aider --message ...``).

argv: ``aider --message PROMPT --yes-always --no-auto-commits --no-dirty-commits --no-gitignore
--no-check-update --no-show-model-warnings --no-pretty --input-history-file /dev/null
--chat-history-file /dev/null [--model M] [args...]``.

Decisions: logist commits the agent's changes itself at harvest (one commit per transition), so
aider must not commit (``--no-auto-commits``, ``--no-dirty-commits``) nor edit ``.gitignore``
(``--no-gitignore``); its history files go to ``/dev/null`` so they do not land in the job's
commits (add ``.aider*`` to ``.gitignore`` for its repo-map cache). ``--yes-always`` answers its
confirmations, since nobody is there to; ``--no-check-update`` keeps it from offering to
upgrade itself. aider cannot read the message from stdin, so a prompt over the argv limit is an
error, and it has no session id to resume.

Output is plain text. The outcome block is read from it; cost and tokens from aider's usage
lines, ``Tokens: 3.0k sent, 42 received. Cost: $0.0063 message, $0.0063 session.`` (tokens
are summed over the lines; the cost is the last ``session`` figure).
"""

from __future__ import annotations

import re

from logist.agents.base import CliAgent, NativeOutput, StepContext, model_args, option_value, user_args

_TOKENS = re.compile(r"Tokens:\s*([\d.,]+)\s*([kKmM]?)\s*sent,\s*([\d.,]+)\s*([kKmM]?)\s*received")
_COST = re.compile(r"Cost:\s*\$([\d.,]+)\s*message,\s*\$([\d.,]+)\s*session")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def _count(digits: str, suffix: str) -> int:
    """``"3.0", "k"`` -> 3000; ``"12,450", ""`` -> 12450."""
    try:
        return int(float(digits.replace(",", "")) * _SCALE[suffix.lower()])
    except ValueError:
        return 0


class AiderAgent(CliAgent):
    """aider, one ``--message`` and exit."""

    name: str = "aider"
    binary: str = "aider"
    install_hint: str = "install aider (python -m pip install aider-install && aider-install)"

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """``--message`` plus the non-interactive, no-commit flags."""
        if prompt is None:
            raise self.too_long(ctx)
        opts = ctx.options
        return [*option_value("--message", prompt), "--yes-always", "--no-auto-commits",
                "--no-dirty-commits", "--no-gitignore", "--no-check-update",
                "--no-show-model-warnings", "--no-pretty", "--input-history-file", "/dev/null",
                "--chat-history-file", "/dev/null", *model_args(opts), *user_args(opts)]

    def read_output(self, output: str) -> NativeOutput:
        """The whole output is the text; usage lines give tokens and the session cost."""
        tokens = sum(_count(m[0], m[1]) + _count(m[2], m[3]) for m in _TOKENS.findall(output))
        costs = _COST.findall(output)
        cost = float(costs[-1][1].replace(",", "")) if costs else 0.0
        return NativeOutput(text=output, cost_usd=cost, tokens=tokens)
