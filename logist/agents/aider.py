"""The ``aider`` agent: aider in scripting mode (``aider --message ...``).

argv: ``aider --message PROMPT --yes-always --no-auto-commits --no-dirty-commits --no-gitignore
--no-check-update --no-show-model-warnings --no-pretty --analytics-disable
--no-show-release-notes --input-history-file /dev/null --chat-history-file /dev/null
[--edit-format diff] [--model M] [args...]``.

Decisions: logist commits the agent's changes itself at harvest (one commit per transition), so
aider must not commit (``--no-auto-commits``, ``--no-dirty-commits``) nor edit ``.gitignore``
(``--no-gitignore``); its history files go to ``/dev/null``; its repo-map cache
(``.aider.tags.cache.v4/``) and other ``.aider*`` files are excluded from the harvest
(:attr:`AiderAgent.state_files`). ``--yes-always`` answers its confirmations, since nobody is
there to; ``--no-check-update`` keeps it from offering to upgrade itself and
``--analytics-disable`` from asking about analytics. With no model and no key aider offers a
browser login and waits 5 minutes for it: that line is fatal (the step goes to a person at once).
Edit format: logist's outcome is a fenced JSON block, which aider's ``whole`` format reads as a
file listing without a file name; so ``--edit-format diff`` is passed unless ``args`` name an
edit format. aider cannot read the message from stdin, so a prompt over the argv limit is an
error, and it has no session id to resume. Endpoint and key: the variables of the model's
provider (``OPENAI_API_KEY``, ``OPENAI_API_BASE``, ...), the model by ``--model``/``AIDER_MODEL``.

Output is plain text. The outcome block is read from it; cost and tokens from aider's usage
lines, ``Tokens: 3.0k sent, 42 received. Cost: $0.0063 message, $0.0063 session.`` (tokens
are summed over the lines; the cost is the last ``session`` figure). aider exits 0 after an
authentication error: "The API provider is not able to authenticate you" makes the step FAILED.
"""

from __future__ import annotations

import re

from logist.agents.base import StepContext
from logist.agents.families import CliAgent, model_args, option_value, user_args
from logist.agents.results import NativeOutput

_TOKENS = re.compile(r"Tokens:\s*([\d.,]+)\s*([kKmM]?)\s*sent,\s*([\d.,]+)\s*([kKmM]?)\s*received")
_COST = re.compile(r"Cost:\s*\$([\d.,]+)\s*message,\s*\$([\d.,]+)\s*session")
_AUTH = re.compile(r"not able to authenticate you"
                   r"|no llm model was specified and no api keys|please open this url in your browser"
                   r"|waiting up to \d+ minutes for you to finish in the browser"
                   r"|login to openrouter"
                   # an offer --yes-always would accept: installing packages is not the step's job
                   r"|^run pip install\?|^install playwright\?", re.I)
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
    state_files: tuple[str, ...] = (".aider*",)

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """``--message`` plus the non-interactive, no-commit flags."""
        if prompt is None:
            raise self.too_long(ctx)
        opts = ctx.options
        extra = user_args(opts)
        fmt = [] if any(a == "--edit-format" or a.startswith(("--edit-format=", "--chat-mode"))
                        for a in extra) else ["--edit-format", "diff"]
        return [*option_value("--message", prompt), "--yes-always", "--no-auto-commits",
                "--no-dirty-commits", "--no-gitignore", "--no-check-update",
                "--no-show-model-warnings", "--no-pretty", "--analytics-disable",
                "--no-show-release-notes", "--input-history-file", "/dev/null",
                "--chat-history-file", "/dev/null", *fmt, *model_args(opts), *extra]

    def read_output(self, output: str) -> NativeOutput:
        """The whole output is the text; usage lines give tokens and the session cost."""
        tokens = sum(_count(m[0], m[1]) + _count(m[2], m[3]) for m in _TOKENS.findall(output))
        costs = _COST.findall(output)
        cost = float(costs[-1][1].replace(",", "")) if costs else 0.0
        return NativeOutput(text=output, cost_usd=cost, tokens=tokens)

    def line_problem(self, line: str) -> tuple[str, str] | None:
        """aider's words for a missing/refused key, a login offer, and its retries."""
        s = line.strip()
        if _AUTH.search(s):
            return "fatal", s
        if s.startswith("litellm."):  # wrapped at 80 columns; its summary line follows
            return None
        return super().line_problem(line)
