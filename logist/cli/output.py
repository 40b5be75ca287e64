"""Terminal output for the CLI layer: JSON for scripts, rich tables for people.

Everything the CLI prints goes through here, and everything here is **redacted** (secrets
masked by :func:`logist.core.redact.redact`, the same redactor as logs and notes) and
**terminal-safe** (control and escape sequences shown escaped by
:func:`logist.core.termsafe.sanitize`): titles, summaries, reasons, agent output, notes and
anything fetched from a remote are data, never terminal commands. JSON needs no sanitising
(the encoder escapes every control character); it is redacted as text, and checked to still be
JSON (else redacted value by value).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from logist.core.redact import redact, redact_json
from logist.core.termsafe import sanitize


def clean(text: Any, *, newlines: bool = True) -> str:
    """``text`` as it may reach a terminal: secrets masked, control characters escaped."""
    return sanitize(redact(text if isinstance(text, str) else str(text)), newlines=newlines)


def json_text(data: Any, *, indent: bool = False) -> str:
    """Sorted-key JSON of ``data``, redacted."""
    kw: dict[str, Any] = {"indent": 2} if indent else {"separators": (",", ":")}
    text = json.dumps(data, sort_keys=True, default=str, **kw)
    return redact_json(text, dumps=lambda d: json.dumps(d, sort_keys=True, **kw))


def emit_json(data: Any) -> None:
    """JSON with sorted keys: indented on a terminal, one line otherwise (json's C encoder;
    indenting 1,000 rows in pure Python costs more than reading them from git). Redacted."""
    sys.stdout.write(json_text(data, indent=sys.stdout.isatty()) + "\n")


def say(msg: Any = "") -> None:
    print(clean(msg))


def err(msg: Any) -> None:
    """A line on stderr (progress, errors), redacted and terminal-safe, flushed."""
    print(clean(msg), file=sys.stderr, flush=True)


def warn(msg: Any) -> None:
    err(f"logist: warning: {msg}")


def stream(chunk: str) -> None:
    """Agent output (a log, a follow): redacted and terminal-safe, newlines kept."""
    sys.stdout.write(clean(chunk))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """A readable table (rich when stdout is a terminal, plain aligned columns otherwise)."""
    rows = [[("" if c is None else sanitize(c, newlines=False)) for c in r] for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # Text objects, not strings: rich would read "[link=...]" in a title as markup.
        t = Table(title=Text(clean(title)) if title else None, show_lines=False, header_style="bold")
        for h in headers:
            t.add_column(h, overflow="fold")
        for r in rows:
            t.add_row(*(Text(redact(c)) for c in r))
        Console().print(t)
        return
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = [clean(title)] if title else []
    lines.append("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(redact("\n".join(lines)))  # one pass over the whole table (cells are already safe)


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        print(f"{k.ljust(width)}  {'' if v is None else clean(v)}")


def local_time(iso: str | None) -> str:
    """A record's ISO 8601 UTC time as people read it: local time with its offset
    (``2026-12-06 09:41:07 +01:00``). JSON output keeps the ISO 8601 UTC value."""
    from datetime import datetime

    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    if t.tzinfo is None:
        return str(iso)
    local = t.astimezone()
    off = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (off[:3] + ":" + off[3:] if off else "")


def ago(iso: str | None, now: float | None = None) -> str:
    """How long ago an ISO 8601 time was: ``45s``, ``12m``, ``3h05m``, ``4d`` (``now``: the
    time to count from, as ``time.time()``, for a table of many rows)."""
    import time
    from datetime import datetime

    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
        if t.tzinfo is None:
            return ""  # no zone: not a time logist wrote
        s = int((time.time() if now is None else now) - t.timestamp())
    except (ValueError, TypeError):
        return ""
    return duration(max(0, s)) + " ago"


def duration(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def exit_for_states(states, *, step: bool = False) -> int:
    """The exit code of a command that ran jobs (docs/exit-codes.md): 0 when every job rests in
    SUCCESS (after `job step`: or PENDING, its next step), 5 (APPROVAL) when the worst is a job
    waiting in APPROVAL_REQUIRED, 6 (INTERVENTION) when any job rests anywhere else
    (INTERVENTION_REQUIRED, SUSPENDED, CANCELED, or PENDING after `job run`)."""
    from logist.core.errors import ExitCode
    from logist.core.states import State

    code = ExitCode.OK
    for st in states:
        if st == State.SUCCESS or (step and st == State.PENDING):
            continue
        if st == State.APPROVAL_REQUIRED:
            code = max(code, ExitCode.APPROVAL)
        else:
            code = max(code, ExitCode.INTERVENTION)
    return code
