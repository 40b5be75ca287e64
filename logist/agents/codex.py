"""The ``codex`` agent: OpenAI Codex CLI, ``codex exec --json``.

argv: ``codex exec --json [--full-auto | --dangerously-bypass-approvals-and-sandbox]
[--model M] [args...] [resume SESSION_ID] PROMPT`` (``-`` instead of PROMPT reads it from stdin).
``--full-auto`` lets Codex edit its worktree (``codex exec`` is read-only by default).

Output: JSON Lines events. ``thread.started`` carries ``thread_id`` (the session id to resume);
``item.completed`` items of type ``agent_message`` carry the agent's text (the last one is its
final answer); ``turn.completed`` carries ``usage`` (input_tokens, cached_input_tokens,
output_tokens; cached tokens are part of the input); ``turn.failed`` and ``error`` carry an error
message. Codex reports no cost.
"""

from __future__ import annotations

from logist.agents.base import (
    CliAgent,
    NativeOutput,
    StepContext,
    error_text,
    iter_json_objects,
    model_args,
    positional,
    token_sum,
    user_args,
)


class CodexAgent(CliAgent):
    """OpenAI Codex CLI, ``codex exec``."""

    name: str = "codex"
    binary: str = "codex"
    install_hint: str = "install the Codex CLI (npm install -g @openai/codex)"

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """``exec --json`` flags, the optional ``resume ID``, then the prompt or ``-``."""
        opts = ctx.options
        args = ["exec", "--json"]
        args += (["--dangerously-bypass-approvals-and-sandbox"] if opts.get("skip_permissions")
                 else ["--full-auto"])
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
                native.error = error_text(obj.get("message")) or error_text(obj.get("error")) \
                    or "error"
        return native
