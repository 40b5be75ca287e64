"""The outcome protocol: how an agent tells logist how its step went.

Every prompt ends with :data:`OUTCOME_INSTRUCTIONS`. The agent answers by ending its output with a
fenced JSON object::

    ```json
    {"action": "COMPLETED", "summary": "what was done", "evidence_files": ["src/x.py"]}
    ```

:func:`find_outcome` reads it back: the **last** fenced block (```json or a plain ```) that holds
a valid outcome wins; blocks that are not JSON, not an object, or fail the type checks are
ignored. The example in the instructions is deliberately *not* a valid outcome, so an agent that
echoes its prompt does not report an outcome by accident.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

ACTIONS = ("COMPLETED", "STUCK", "RETRY")

OUTCOME_INSTRUCTIONS = """\
## Reporting your outcome (required)

When you have finished, end your reply with exactly one fenced JSON block that reports the
outcome of this step:

```json
{"action": "<COMPLETED|STUCK|RETRY>", "summary": "<what you did>", "evidence_files": ["<path>"]}
```

- "action" is one of "COMPLETED" (the step is done), "STUCK" (you cannot go on without a person:
  say why in "summary") or "RETRY" (a transient problem: running the step again may work).
- "summary" is a string: one or two sentences on what you did, or on what blocks you.
- "evidence_files" lists the files you created or changed, as paths relative to the repository
  root (it may be empty).
- Optional fields: "reason" (string, why you are STUCK), "approval" (true to ask a person to
  review and sign off), "cost_usd" (number) and "tokens" (integer).
- Put nothing after the block. If you write several blocks, only the last one counts.
"""

# An opening fence: up to 3 spaces, ``` or more, an optional info string.
_OPEN = re.compile(r"^ {0,3}(`{3,})[ \t]*([^`\s]*)[^`]*$")
_CLOSE = re.compile(r"^ {0,3}(`{3,})[ \t]*$")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block in ``text`` as ``(info, body)``, in order.

    A line-based scan (as CommonMark does it), so a ```python block's closing fence is never
    mistaken for the opening of the next block. An unclosed fence runs to the end of the text.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            c = _CLOSE.match(lines[i])
            if c and len(c.group(1)) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        blocks.append((info, "\n".join(body)))
        i += 1
    return blocks


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def validate_outcome(data: Any) -> dict[str, Any] | None:
    """A normalised outcome dict when ``data`` is a valid outcome object, else None.

    Required: ``action`` (one of :data:`ACTIONS`). Optional, type-checked: ``summary`` (str),
    ``evidence_files`` (list of str), ``reason`` (str), ``cost_usd`` (number >= 0), ``tokens``
    (int >= 0), ``approval`` (bool). Unknown keys are allowed and dropped.
    """
    if not isinstance(data, dict) or data.get("action") not in ACTIONS:
        return None
    out: dict[str, Any] = {"action": data["action"], "summary": "", "evidence_files": [],
                           "reason": "", "approval": False}
    summary = data.get("summary", "")
    if not isinstance(summary, str):
        return None
    out["summary"] = summary
    files = data.get("evidence_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    out["evidence_files"] = list(files)
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return None
    out["reason"] = reason
    approval = data.get("approval", False)
    if not isinstance(approval, bool):
        return None
    out["approval"] = approval
    if "cost_usd" in data:
        if not _is_number(data["cost_usd"]):
            return None
        out["cost_usd"] = float(data["cost_usd"])
    if "tokens" in data:
        tokens = data["tokens"]
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            return None
        out["tokens"] = tokens
    return out


def find_outcome(text: str) -> dict[str, Any] | None:
    """The last valid outcome in a fenced ```json (or plain ```) block of ``text``, or None."""
    if not text or "```" not in text:
        return None
    for info, body in reversed(_fenced_blocks(text)):
        if info not in ("", "json"):
            continue
        try:
            data = json.loads(body)
        except ValueError:
            continue
        outcome = validate_outcome(data)
        if outcome is not None:
            return outcome
    return None

