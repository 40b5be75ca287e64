"""The ``gemini`` agent: Gemini CLI in headless mode (``gemini --prompt ...``).

argv: ``gemini --output-format stream-json --skip-trust --approval-mode (auto_edit | yolo)
[--model M] [--resume SESSION_ID] [args...] --prompt PROMPT``. Without ``--prompt`` (a prompt
over the argv limit) Gemini CLI reads it from stdin.

Trust and permissions: Gemini CLI refuses to run headless in a folder it does not trust (exit
55, "not running in a trusted directory") and then overrides any approval mode to ``default``;
``--skip-trust`` trusts the job's worktree for this run only (nothing is saved).
``--approval-mode auto_edit`` lets it edit files without asking; tools that would need a person
(shell commands) are not offered headless. ``skip_permissions`` gives ``yolo`` (every tool). A
tool call it refuses (a path outside the workspace) is a denial: the step goes to a person.
Endpoint and key: ``GEMINI_API_KEY`` and ``GOOGLE_GEMINI_BASE_URL`` (with the API-key auth type
selected in ``~/.gemini/settings.json``: ``security.auth.selectedType = "gemini-api-key"``).

Output formats (both are read; the step option ``output_format`` picks one):

* ``json``: one object at the end, ``{"session_id": ..., "response": "<final text>",
  "stats": {"models": {NAME: {"tokens": {"total": N, ...}}}, ...}, "error": {...}}``.
* ``stream-json`` (default, so the observer sees progress live): JSON Lines events ``init``
  (``session_id``), ``message`` (``role``, ``content``, ``delta``), ``tool_use``,
  ``tool_result``, ``error`` (non-fatal) and a final ``result`` (``status``, ``error``,
  ``stats.total_tokens``).

Gemini CLI reports no cost.
"""

from __future__ import annotations

import re
from typing import Any

from logist.agents.base import StepContext
from logist.agents.families import CliAgent, model_args, option_value, user_args
from logist.agents.results import NativeOutput, clip, error_text, iter_json_objects, number
from logist.core.errors import AgentError

FORMATS = ("stream-json", "json")


def _model_tokens(stats: Any) -> int:
    """The sum of ``stats.models.*.tokens.total`` of the single-object JSON format."""
    models = stats.get("models") if isinstance(stats, dict) else None
    if not isinstance(models, dict):
        return 0
    return int(sum(number((m.get("tokens") or {}).get("total")) for m in models.values()
                   if isinstance(m, dict) and isinstance(m.get("tokens"), dict)))


_DENIED = re.compile(r"not in workspace|outside (of )?the (allowed )?workspace|permission denied"
                     r"|not allowed|requires (user )?approval|denied by policy", re.I)
_FATAL = re.compile(r"\b(401|403)\b.*unauthenticated|unauthenticated|api key not valid"
                    r"|permission_denied", re.I)


class GeminiAgent(CliAgent):
    """Google Gemini CLI, headless."""

    name: str = "gemini"
    binary: str = "gemini"
    install_hint: str = "install Gemini CLI (npm install -g @google/gemini-cli)"
    grant_hint: str = ("skip_permissions = true (approval mode yolo) in the step, or a Gemini CLI "
                       "policy file passed with args = [\"--policy\", \"<file>\"]")

    def validate_options(self, options: dict[str, Any]) -> None:
        """Common checks plus ``output_format`` in ``json`` / ``stream-json``."""
        super().validate_options(options)
        if options.get("output_format", FORMATS[0]) not in FORMATS:
            raise AgentError(f"agent 'gemini': output_format must be one of "
                             f"{', '.join(FORMATS)}, got {options['output_format']!r}")

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """Headless flags, then ``--prompt`` (absent: Gemini CLI reads stdin)."""
        opts = ctx.options
        args = ["--output-format", opts.get("output_format", FORMATS[0]), "--skip-trust"]
        args += ["--approval-mode", "yolo" if opts.get("skip_permissions") else "auto_edit"]
        args += model_args(opts)
        if ctx.session_id:
            args += option_value("--resume", ctx.session_id)
        args += user_args(opts)
        return args + (option_value("--prompt", prompt) if prompt is not None else [])

    def read_output(self, output: str) -> NativeOutput:
        """Either format: the response text, tokens, session id and a fatal error."""
        native = NativeOutput()
        chunks: list[str] = []
        for obj in iter_json_objects(output):
            kind = obj.get("type")
            if kind is None and ("response" in obj or "stats" in obj or "error" in obj):
                if isinstance(obj.get("response"), str):
                    native.text = obj["response"]
                native.tokens = _model_tokens(obj.get("stats"))
                native.error = error_text(obj.get("error"))
                if isinstance(obj.get("session_id"), str):
                    native.session_id = obj["session_id"]
            elif kind == "init" and isinstance(obj.get("session_id"), str):
                native.session_id = obj["session_id"]
            elif kind == "message" and obj.get("role") == "assistant":
                content = str(obj.get("content", ""))
                chunks.append(content if obj.get("delta") or not chunks else "\n" + content)
            elif kind == "tool_result" and obj.get("status") == "error":
                err = obj["error"] if isinstance(obj.get("error"), dict) else {}
                text = str(err.get("message") or obj.get("output") or "")
                if _DENIED.search(text):
                    native.denials.append(clip(text, 200))
            elif kind == "result":
                stats = obj.get("stats")
                if isinstance(stats, dict):
                    native.tokens = int(number(stats.get("total_tokens")))
                if obj.get("status") == "error":
                    native.error = error_text(obj.get("error")) or "gemini reported an error"
        if chunks:
            native.text = "".join(chunks)
        return native

    def event_problem(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """A final ``result``/``error`` event whose error says the key is missing or refused."""
        if obj.get("type") in ("result", "error") or (obj.get("type") is None and "error" in obj):
            err = error_text(obj.get("error")) or error_text(obj.get("message")) or ""
            if err and _FATAL.search(err):
                inner = re.findall(r'\\?"message\\?"\s*:\s*\\?"([^"\\]+)', err)
                return "fatal", clip(f"{inner[-1]} ({err[:120]})" if inner else err)
        return None
