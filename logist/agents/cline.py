"""The ``cline`` agent: Cline CLI in headless mode (``cline --json ...``).

argv: ``cline --json [--model M] [args...] PROMPT`` (Cline 3.x runs a task given as an argument
in act mode and exits when done; its tools are auto-approved unless ``--auto-approve false``;
``--json``: one JSON event per line). Without PROMPT (over the argv limit) Cline reads the task
from stdin. Endpoint and key: Cline's own settings (``cline auth -p openai-compatible -k KEY -m
MODEL -b URL`` writes ``~/.cline/data/settings/providers.json``); Cline reads none from the
environment. Older releases (2.x) needed ``-y``, which 3.x hides.

Output: one JSON object per line. Three shapes are read:

* Cline 3.x events: ``agent_event`` (``content_start``/``content_end`` of text and tools,
  ``usage``, ``error`` with ``errorClass`` and ``recoverable``, ``done``), ``hook_event``, a
  top-level ``error`` (``message``) and a final ``run_result``: ``text``, ``finishReason`` and
  ``usage`` (``inputTokens``, ``outputTokens``, ``cacheReadTokens``, ``cacheWriteTokens``,
  ``totalCost``). A tool call refused for lack of approval ("requires approval") is a denial.
* ``ClineMessage`` objects of 2.x (``{"type": "say"|"ask", "say"|"ask": SUBTYPE, "text": ...,
  "ts": ..., "partial": ...}``): ``say: completion_result`` holds the final text; ``say:
  api_req_started`` holds a JSON text with ``tokensIn``, ``tokensOut``, ``cacheReads``,
  ``cacheWrites`` and ``cost`` (re-sent under the same ``ts`` as it fills in, so the last copy
  per ``ts`` counts); ``ask: api_req_failed`` is an API failure. Partial messages are skipped.
"""

from __future__ import annotations

import json
from typing import Any

from logist.agents.base import StepContext
from logist.agents.families import CliAgent, model_args, positional, user_args
from logist.agents.results import NativeOutput, clip, iter_json_objects, number, token_sum

_FAILED_FINISH = {"error", "failed", "aborted", "cancelled", "canceled"}


def _api_info(text: Any) -> dict[str, Any]:
    """The JSON payload of an ``api_req_started`` message, or {}."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _inner_error(text: str) -> str:
    """``Tool "x" requires approval ...`` out of ``{"error": "..."}``."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    return str(obj.get("error") or text) if isinstance(obj, dict) else text


class ClineAgent(CliAgent):
    """Cline CLI, headless."""

    name: str = "cline"
    binary: str = "cline"
    install_hint: str = "install Cline CLI (npm install -g cline)"
    grant_hint: str = "leave Cline's auto-approval on (no --auto-approve false in args)"

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """Autonomous JSON mode, then the prompt (absent: Cline reads stdin)."""
        opts = ctx.options
        args = ["--json", *model_args(opts), *user_args(opts)]
        return args + (positional(prompt) if prompt is not None else [])

    def read_output(self, output: str) -> NativeOutput:
        """Final text, summed API usage and cost, and an unanswered API failure."""
        native = NativeOutput()
        last_error = ""
        requests: dict[Any, dict[str, Any]] = {}
        texts: list[str] = []
        for obj in iter_json_objects(output):
            kind, sub = obj.get("type"), obj.get("say") or obj.get("ask")
            if kind == "error" and isinstance(obj.get("message"), str):
                last_error = obj["message"]
                continue
            if kind == "agent_event" and isinstance(obj.get("event"), dict):
                ev = obj["event"]
                if ev.get("type") == "error" and isinstance(ev.get("error"), dict):
                    last_error = str(ev["error"].get("message") or last_error or "error")
                elif ev.get("type") == "content_end" and ev.get("contentType") == "tool":
                    err = str(ev.get("error") or "")
                    if "requires approval" in err.lower() or "denied" in err.lower():
                        tool = ev.get("toolName") or "tool"
                        native.denials.append(clip(f"{tool}: {_inner_error(err)}", 200))
                continue
            if kind == "run_result":
                native.text = str(obj.get("text") or native.text)
                usage = obj.get("usage")
                native.cost_usd = number((usage or {}).get("totalCost")) \
                    if isinstance(usage, dict) else 0.0
                native.tokens = token_sum(usage, "inputTokens", "outputTokens",
                                          "cacheReadTokens", "cacheWriteTokens")
                requests.clear()
                finish = str(obj.get("finishReason") or "").lower()
                if finish in _FAILED_FINISH:
                    detail = last_error or (str(obj.get("text") or "") if finish == "error" else "")
                    native.error = f"finish reason {finish}" + (f": {detail}" if detail else "")
                else:
                    native.error = None
                continue
            if kind not in ("say", "ask") or obj.get("partial") is True:
                continue
            if kind == "say" and sub == "api_req_started":
                requests[obj.get("ts", len(requests))] = _api_info(obj.get("text"))
            elif kind == "say" and sub == "completion_result":
                native.text = str(obj.get("text", ""))
                native.error = None
            elif kind == "say" and sub == "text":
                texts.append(str(obj.get("text", "")))
            elif kind == "ask" and sub == "api_req_failed":
                native.error = str(obj.get("text") or "API request failed")
        if requests:
            native.cost_usd = sum(number(r.get("cost")) for r in requests.values())
            native.tokens = sum(token_sum(r, "tokensIn", "tokensOut", "cacheReads", "cacheWrites")
                                for r in requests.values())
        if not native.text and texts:
            native.text = texts[-1]
        return native

    def event_problem(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """An ``agent_event`` error Cline calls an auth error or unrecoverable."""
        ev = obj.get("event") if obj.get("type") == "agent_event" else None
        if isinstance(ev, dict) and ev.get("type") == "error" and isinstance(ev.get("error"), dict):
            msg = str(ev["error"].get("message") or "error")
            if ev.get("errorClass") == "auth":
                return "fatal", clip(msg)
            if ev.get("recoverable") is True and "retry" in msg.lower():
                return "retrying", clip(msg)
        return None
