"""Time as logist writes it: ISO 8601 UTC with milliseconds (``2025-01-31T12:00:00.123Z``), in
records, history entries, notes and the side process's log. One formatter for all of them; it
imports only ``time`` (the side process loads it at start)."""

from __future__ import annotations

import time


def iso_utc(t: float | None = None) -> str:
    """``t`` (epoch seconds, default now) as ISO 8601 UTC with milliseconds: 2025-01-31T12:00:00.123Z.
    Seconds and milliseconds come from the same truncated value, so the text never rounds up
    into the next second."""
    ms = int((time.time() if t is None else t) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def utcnow() -> str:
    """Now, as :func:`iso_utc` writes it."""
    return iso_utc()
