"""The ``codex`` agent: OpenAI Codex CLI, ``codex exec --json``.

argv: ``codex exec --json (--sandbox workspace-write | --dangerously-bypass-approvals-and-sandbox)
[--model M] [args...] [resume SESSION_ID] PROMPT`` (``-`` instead of PROMPT reads it from stdin).
``codex exec`` never asks for approval (it has no one to ask); ``--sandbox workspace-write`` lets
it write in its worktree and nowhere else (it is read-only by default). Endpoint and key: Codex's
own configuration (``$CODEX_HOME/config.toml``, e.g. a ``[model_providers.X]`` with ``base_url``
and ``env_key``) and ``CODEX_API_KEY`` / the provider's key variable.

Output: JSON Lines events. ``thread.started`` carries ``thread_id`` (the session id to resume);
``item.completed`` items of type ``agent_message`` carry the agent's text (the last one is its
final answer); ``turn.completed`` carries ``usage`` (input_tokens, cached_input_tokens,
output_tokens; cached tokens are part of the input); ``turn.failed`` and ``error`` carry an error
message. ``error`` events ``Reconnecting... n/m`` are retries. A write the sandbox refused is
logged as ``patch rejected: ...`` (a denial: the step goes to a person). Codex reports no cost.

Tokens of a resumed thread: ``turn.completed`` reports the usage of the whole thread, so the
tokens already recorded for the step (``StepContext.prior_tokens``) are subtracted.
"""

from __future__ import annotations

import re
from typing import Any

from logist.agents.base import StepContext
from logist.agents.families import CliAgent, model_args, positional, user_args
from logist.agents.results import NativeOutput, clip, error_text, iter_json_objects, token_sum

_REJECTED = re.compile(r"(patch rejected|command rejected|rejected by user approval settings"
                       r"|writing outside of the project)[^\n]*", re.I)
_FATAL_STATUS = re.compile(r"unexpected status (401|403)|missing environment variable"
                           r"|invalid api key|incorrect api key|context_length_exceeded", re.I)


class CodexAgent(CliAgent):
    """OpenAI Codex CLI, ``codex exec``."""

    name: str = "codex"
    binary: str = "codex"
    install_hint: str = "install the Codex CLI (npm install -g @openai/codex)"
    session_totals: bool = True
    grant_hint: str = ('args = ["--add-dir", "<dir>"] (more writable directories) or '
                       "skip_permissions = true (no sandbox) in the step")

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """``exec --json`` flags, the optional ``resume ID``, then the prompt or ``-``."""
        opts = ctx.options
        args = ["exec", "--json"]
        args += (["--dangerously-bypass-approvals-and-sandbox"] if opts.get("skip_permissions")
                 else ["--sandbox", "workspace-write"])
        args += model_args(opts) + user_args(opts)
        if ctx.session_id:
            args += ["resume", ctx.session_id]
        return args + (positional(prompt) if prompt is not None else ["-"])

    def read_output(self, output: str) -> NativeOutput:
        """Last agent message, summed turn usage, thread id, and an unrecovered error."""
        native = NativeOutput()
        for obj in iter_json_objects(output):
            kind = obj.get("type")
            item = obj.get("item")
            if kind == "thread.started" and isinstance(obj.get("thread_id"), str):
                native.session_id = obj["thread_id"]
            elif kind == "item.completed" and isinstance(item, dict) \
                    and item.get("type") == "agent_message":
                native.text = str(item.get("text", ""))
            elif kind == "turn.completed":
                native.tokens += token_sum(obj.get("usage"), "input_tokens", "output_tokens")
                native.error = None
            elif kind == "turn.failed":
                native.error = error_text(obj.get("error")) or "turn failed"
            elif kind == "error":
                msg = error_text(obj.get("message")) or error_text(obj.get("error")) or "error"
                if not msg.lower().startswith("reconnecting"):
                    native.error = msg
        native.denials = [clip(m.group(0), 160) for m in _REJECTED.finditer(output)]
        return native

    def event_problem(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """``error``/``turn.failed`` events: retries, and the errors no retry fixes."""
        kind = obj.get("type")
        if kind not in ("error", "turn.failed"):
            return None
        msg = error_text(obj.get("message")) or error_text(obj.get("error")) or ""
        fatal = _FATAL_STATUS.search(msg)
        if fatal:  # "Reconnecting... 1/5 (unexpected status 401 ...)": no retry fixes a key
            return "fatal", clip(msg[msg.find("(") + 1:].rstrip(")") if msg.lower().startswith(
                "reconnecting") and "(" in msg else msg)
        if msg.lower().startswith("reconnecting"):
            return "retrying", clip(msg)
        return None
