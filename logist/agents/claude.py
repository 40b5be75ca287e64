"""The ``claude`` agent: Claude Code in headless mode (``claude -p``).

argv: ``claude -p --output-format stream-json --verbose [--resume ID] [--model M]
[--permission-mode acceptEdits | --dangerously-skip-permissions] [args...] PROMPT``.

Output formats (both are read; the step option ``output_format`` picks one):

* ``json``: one object at the end, ``{"type": "result", "subtype": "success", "is_error": false,
  "result": "<final text>", "session_id": ..., "total_cost_usd": ..., "usage": {...}}``.
* ``stream-json`` (default; needs ``--verbose`` with ``-p``): one object per line, a
  ``system/init`` line, ``assistant`` messages as they come, and a final line with the same
  ``"type": "result"`` object. It is the default because logist's observer and sentinel follow the
  step's output live: ``json`` prints nothing until the very end, which looks like a hang.

Cost and tokens come from one source, the result's ``modelUsage`` (per model: ``costUSD`` and
input + output + cache read + cache creation tokens); an older result without it gives
``total_cost_usd`` and ``usage``. For a resumed session ``modelUsage`` and ``total_cost_usd``
count the whole session (``usage`` only this run): what the step already recorded is
subtracted. ``is_error`` or an ``error_*`` subtype is a failure.

Permissions: without ``skip_permissions`` the agent may edit files in its worktree
(``--permission-mode acceptEdits``), nothing more; ``allowed_tools = ["Bash(pytest:*)", ...]``
in the step grants more (``--allowedTools``). What Claude Code refused is listed in the result's
``permission_denials``: such a step is not COMPLETED (it goes to a person with the list).
A refused request is retried by Claude Code itself (``system/api_retry`` events): a 401/403 is
fatal at once. A prompt over the argv limit goes via stdin.
"""

from __future__ import annotations

from typing import Any

from logist.agents.base import StepContext
from logist.agents.families import CliAgent, model_args, option_value, positional, user_args
from logist.agents.options import check_str_list
from logist.agents.results import NativeOutput, clip, error_text, iter_json_objects, number, token_sum
from logist.core.errors import AgentError

FORMATS = ("stream-json", "json")


class ClaudeAgent(CliAgent):
    """Claude Code, ``claude -p``."""

    name: str = "claude"
    binary: str = "claude"
    install_hint: str = "install Claude Code (npm install -g @anthropic-ai/claude-code)"
    session_totals: bool = True  # a resumed session's modelUsage and total_cost_usd are cumulative
    grant_hint: str = ('allowed_tools = ["Bash(<command>:*)", "Edit", ...] in the step '
                       "(passed as --allowedTools), or skip_permissions = true")

    def validate_options(self, options: dict[str, Any]) -> None:
        """Common checks plus ``output_format`` in ``json`` / ``stream-json``."""
        super().validate_options(options)
        if options.get("output_format", FORMATS[0]) not in FORMATS:
            raise AgentError(f"agent 'claude': output_format must be one of "
                             f"{', '.join(FORMATS)}, got {options['output_format']!r}")
        if "allowed_tools" in options:
            check_str_list(options["allowed_tools"], "agent 'claude': allowed_tools")

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """Headless flags, then the prompt (absent: claude reads it from stdin)."""
        opts = ctx.options
        fmt = opts.get("output_format", FORMATS[0])
        args = ["-p", "--output-format", fmt]
        if fmt == "stream-json":
            args.append("--verbose")
        if ctx.session_id:
            args += option_value("--resume", ctx.session_id)
        args += model_args(opts)
        args += (["--dangerously-skip-permissions"] if opts.get("skip_permissions")
                 else ["--permission-mode", "acceptEdits"])
        if opts.get("allowed_tools"):
            args += [f"--allowedTools={','.join(opts['allowed_tools'])}"]
        args += user_args(opts)
        return args + (positional(prompt) if prompt is not None else [])

    def read_output(self, output: str) -> NativeOutput:
        """The last ``result`` object; assistant text and the init session id as fallbacks."""
        result: dict[str, Any] | None = None
        texts: list[str] = []
        session = None
        for obj in iter_json_objects(output):
            kind = obj.get("type")
            if kind == "result":
                result = obj
            elif kind == "system" and isinstance(obj.get("session_id"), str):
                session = obj["session_id"]
            elif kind == "assistant" and isinstance(obj.get("message"), dict):
                for part in obj["message"].get("content") or []:
                    if isinstance(part, dict) and part.get("type") == "text":
                        texts.append(str(part.get("text", "")))
        if result is None:
            return NativeOutput(text="\n".join(texts), session_id=session)
        answer = result.get("result")
        text = answer if isinstance(answer, str) else "\n".join(texts)
        subtype = str(result.get("subtype") or "")
        error = None
        if result.get("is_error") is True or subtype.startswith("error"):
            errors = result.get("errors")
            listed = "; ".join(map(str, errors)) if isinstance(errors, list) else ""
            error = error_text(answer) or listed or subtype or "is_error"
        cost = number(result.get("total_cost_usd", result.get("cost_usd")))
        tokens = token_sum(result.get("usage"), "input_tokens", "output_tokens",
                           "cache_creation_input_tokens", "cache_read_input_tokens")
        models = result.get("modelUsage")
        if isinstance(models, dict) and models:
            per = [m for m in models.values() if isinstance(m, dict)]
            cost = sum(number(m.get("costUSD")) for m in per)
            tokens = sum(token_sum(m, "inputTokens", "outputTokens", "cacheReadInputTokens",
                                   "cacheCreationInputTokens") for m in per)
        return NativeOutput(
            text=text, error=error, cost_usd=cost, tokens=tokens,
            denials=[_denial(d) for d in result.get("permission_denials") or []
                     if isinstance(d, dict)],
            session_id=result.get("session_id") if isinstance(result.get("session_id"), str)
            else session)

    def event_problem(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """``system/api_retry``: fatal for 401/403 (a bad or missing key), else a retry."""
        if obj.get("type") == "system" and obj.get("subtype") == "api_retry":
            status = obj.get("error_status")
            what = f"API request failed ({obj.get('error') or 'error'}"
            what += f", HTTP {status})" if status else ")"
            if status in (401, 403) or obj.get("error") in ("authentication_failed",
                                                            "permission_error"):
                return "fatal", f"{what}: the API key is missing or not valid"
            return "retrying", f"{what}; retry {obj.get('attempt')}/{obj.get('max_retries')}"
        if obj.get("type") == "result" and obj.get("is_error") is True:
            text = str(obj.get("result") or "")
            if "not logged in" in text.lower() or "/login" in text:
                return "fatal", clip(text)
        return None


def _denial(d: dict[str, Any]) -> str:
    """``Write /path/x`` or ``Bash: pytest -q`` from one ``permission_denials`` entry."""
    tool = str(d.get("tool_name") or "tool")
    inp = d["tool_input"] if isinstance(d.get("tool_input"), dict) else {}
    what = inp.get("file_path") or inp.get("command") or inp.get("path") or inp.get("url") or ""
    return clip(f"{tool} {what}".strip(), 160)
