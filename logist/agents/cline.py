"""The ``cline`` agent: Cline CLI in headless mode (``cline -y --json ...``).

argv: ``cline -y --json [--model M] [args...] PROMPT`` (``-y``/``--yolo``: act without asking and
exit when done; ``--json``: machine-readable output). Without PROMPT (over the argv limit) Cline
reads the task from stdin. Cline CLI has no session id to resume from the command line.

Output: one JSON object per line. Two shapes are read:

* ``ClineMessage`` objects (``{"type": "say"|"ask", "say"|"ask": SUBTYPE, "text": ..., "ts":
  ..., "partial": ...}``): ``say: completion_result`` holds the final text; ``say:
  api_req_started`` holds a JSON text with ``tokensIn``, ``tokensOut``, ``cacheReads``,
  ``cacheWrites`` and ``cost`` (re-sent under the same ``ts`` as it fills in, so the last copy
  per ``ts`` counts); ``ask: api_req_failed`` is an API failure. Partial messages are skipped.
* a final ``run_result`` event (newer versions): ``text``, ``finishReason`` and ``usage``
  (``inputTokens``, ``outputTokens``, ``cacheReadTokens``, ``cacheWriteTokens``, ``totalCost``).
"""

from __future__ import annotations

import json
from typing import Any

from logist.agents.base import (
    CliAgent,
    NativeOutput,
    StepContext,
    iter_json_objects,
    model_args,
    number,
    positional,
    token_sum,
    user_args,
)

_FAILED_FINISH = {"error", "failed", "aborted", "cancelled", "canceled"}


def _api_info(text: Any) -> dict[str, Any]:
    """The JSON payload of an ``api_req_started`` message, or {}."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class ClineAgent(CliAgent):
    """Cline CLI, headless."""

    name: str = "cline"
    binary: str = "cline"
    install_hint: str = "install Cline CLI (npm install -g cline)"

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """Autonomous JSON mode, then the prompt (absent: Cline reads stdin)."""
        opts = ctx.options
        args = ["-y", "--json", *model_args(opts), *user_args(opts)]
        return args + (positional(prompt) if prompt is not None else [])

    def read_output(self, output: str) -> NativeOutput:
        """Final text, summed API usage and cost, and an unanswered API failure."""
        native = NativeOutput()
        requests: dict[Any, dict[str, Any]] = {}
        texts: list[str] = []
        for obj in iter_json_objects(output):
            kind, sub = obj.get("type"), obj.get("say") or obj.get("ask")
            if kind == "run_result":
                native.text = str(obj.get("text") or native.text)
                usage = obj.get("usage")
                native.cost_usd = number((usage or {}).get("totalCost")) \
                    if isinstance(usage, dict) else 0.0
                native.tokens = token_sum(usage, "inputTokens", "outputTokens",
                                          "cacheReadTokens", "cacheWriteTokens")
                requests.clear()
                finish = str(obj.get("finishReason") or "").lower()
                native.error = f"finish reason {finish}" if finish in _FAILED_FINISH else None
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
