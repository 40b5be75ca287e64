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


# Bounds checked before and after parsing: a block larger or deeper than this is not parsed at
# all (a 100,000-deep JSON would otherwise exhaust the parser's recursion); numbers outside
# these ranges are dropped (with a warning); long strings are cut.
MAX_BLOCK_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_COST_USD = 1_000_000.0
MAX_TOKENS = 10**12
MAX_TEXT = 8000
MAX_FILES = 1000
MAX_PATH = 1024
# The placeholder of the example in OUTCOME_INSTRUCTIONS: an echoed prompt is not an outcome.
_EXAMPLE_ACTION = "<COMPLETED|STUCK|RETRY>"
INVALID = "INVALID"


def _too_deep(body: str, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON text nests objects/arrays deeper than ``limit`` (strings skipped)."""
    depth = 0
    in_str = esc = False
    for c in body:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _cut(text: str, field: str, warnings: list[str]) -> str:
    if len(text) <= MAX_TEXT:
        return text
    warnings.append(f"outcome {field} cut to {MAX_TEXT} characters (it had {len(text)})")
    return text[:MAX_TEXT] + " [...]"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_outcome(data: Any) -> dict[str, Any] | None:
    """The normalised outcome of ``data``, a JSON value from an outcome block, or None when it
    is not an outcome at all (not an object, or no ``action`` key).

    The action decides: one of :data:`ACTIONS` exactly, else the outcome is ``INVALID`` (its
    ``reason`` says why; the engine sends the job to a person, never to SUCCESS). Optional
    fields are checked one by one, and a bad one is dropped with a line in ``warnings`` (never
    changing the action): ``summary``/``reason`` (str, cut at MAX_TEXT), ``evidence_files``
    (list of str, at most MAX_FILES), ``cost_usd`` (finite, 0..MAX_COST_USD), ``tokens`` (int,
    0..MAX_TOKENS). ``approval`` must be a boolean; any other value asks a person to approve
    (the safe reading of an unclear answer). Unknown keys are dropped.
    """
    if not isinstance(data, dict) or "action" not in data:
        return None
    action = data["action"]
    if action == _EXAMPLE_ACTION:
        return None
    warnings: list[str] = []
    out: dict[str, Any] = {"action": action, "summary": "", "evidence_files": [], "reason": "",
                           "approval": False, "warnings": warnings}
    for key in ("summary", "reason"):
        value = data.get(key, "")
        if isinstance(value, str):
            out[key] = _cut(value, key, warnings)
        else:
            warnings.append(f"outcome {key} {_show(value)} is not a string; dropped")
    files = data.get("evidence_files", [])
    if isinstance(files, list) and all(isinstance(f, str) and len(f) <= MAX_PATH for f in files):
        if len(files) > MAX_FILES:
            warnings.append(f"outcome evidence_files cut to {MAX_FILES} (it had {len(files)})")
        out["evidence_files"] = list(files[:MAX_FILES])
    else:
        warnings.append(f"outcome evidence_files {_show(files)} is not a list of paths; dropped")
    approval = data.get("approval", False)
    if isinstance(approval, bool):
        out["approval"] = approval
    else:
        out["approval"] = True
        warnings.append(f"outcome approval {_show(approval)} is not true or false; a person is "
                        "asked to approve")
    if "cost_usd" in data:
        cost = data["cost_usd"]
        if (isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost)
                and 0 <= cost <= MAX_COST_USD):
            out["cost_usd"] = float(cost)
        else:
            warnings.append(f"outcome cost_usd {_show(cost)} is not a number from 0 to "
                            f"{MAX_COST_USD:g}; dropped")
    if "tokens" in data:
        tokens = data["tokens"]
        if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 <= tokens <= MAX_TOKENS:
            out["tokens"] = tokens
        else:
            warnings.append(f"outcome tokens {_show(tokens)} is not a whole number from 0 to "
                            f"{MAX_TOKENS:g}; dropped")
    if not isinstance(action, str) or action not in ACTIONS:
        out["action"] = INVALID
        out["reason"] = (f"the agent's outcome has an unknown action {_show(action)} (known: "
                         f"{', '.join(ACTIONS)}); a person must decide how the step went")
    return out


def _invalid(reason: str) -> dict[str, Any]:
    return {"action": INVALID, "summary": "", "evidence_files": [], "reason": reason,
            "approval": False, "warnings": []}


def find_outcome(text: str) -> dict[str, Any] | None:
    """The outcome of the **last** fenced ```json (or plain ```) block of ``text`` that holds a
    JSON object with an ``action`` key, or None when no block does.

    Blocks that are not JSON or not such an object are skipped. A block larger than
    MAX_BLOCK_BYTES or nested deeper than MAX_DEPTH is never parsed: if it mentions
    ``"action"`` it is an INVALID outcome, else it is skipped. See :func:`validate_outcome` for
    what a malformed action or field gives.
    """
    if not text or "```" not in text:
        return None
    for info, body in reversed(_fenced_blocks(text)):
        if info not in ("", "json"):
            continue
        if len(body) > MAX_BLOCK_BYTES or _too_deep(body):
            if '"action"' in body:
                what = (f"larger than {MAX_BLOCK_BYTES} bytes" if len(body) > MAX_BLOCK_BYTES
                        else f"nested deeper than {MAX_DEPTH} levels")
                return _invalid(f"the agent's outcome block is {what}; it was not read")
            continue
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            continue
        outcome = validate_outcome(data)
        if outcome is not None:
            return outcome
    return None
