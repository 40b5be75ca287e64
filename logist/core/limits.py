"""Size limits on what logist reads: job files, configs, records, notes, agent output.

Everything logist reads from disk, from a branch or from a remote could be huge (``/dev/zero``,
a 100 MB note, 1 GB of agent output). Reads stop one byte past the limit and the caller reports
a clear error naming the file and the limit (docs/cli.md#limits). Nothing here reads more than
``limit + 1`` bytes, whatever the file is (a device, a FIFO that never ends is the caller's
business: it reads regular files only where it matters).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

MAX_JOB_FILE_BYTES = 1 * MIB  # a job file (TOML)
MAX_CONFIG_BYTES = 1 * MIB  # .logist/config.toml, .logist/config.local.toml
MAX_RECORD_BYTES = 16 * MIB  # manifest.json, one history.jsonl, an outcome file, agent.json
MAX_NOTE_BYTES = 4 * MIB  # one note blob fetched from a remote (merged only below this)
DEFAULT_MAX_LOG_BYTES = 32 * MIB  # a step's live log ([limits] max_log_bytes)

# Records: finite, non-negative, and bounded (a cost of 1e300 or 10**400 tokens is not a record).
MAX_COST_USD = 1e9
MAX_TOKENS = 10**15
MAX_SECONDS = 1e10


class TooLarge(Exception):
    """A file past its size limit (the caller turns it into its own LogistError)."""

    def __init__(self, path: Path | str, limit: int) -> None:
        super().__init__(f"{path} is larger than {human_bytes(limit)}")
        self.path = path
        self.limit = limit


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            value = n / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of ``path``; TooLarge past ``limit`` (reads at most ``limit + 1`` bytes).

    OSError (missing, unreadable, a directory) propagates for the caller to word."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 * MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise TooLarge(path, limit)
    return b"".join(chunks)


def has_control(text: str, *, allow: str = "") -> bool:
    """True if ``text`` holds a C0/C1 control character (or DEL) not in ``allow``."""
    return any((ord(c) < 32 or 127 <= ord(c) < 160) and c not in allow for c in text)


def valid_amount(value: float, *, upper: float) -> bool:
    """A cost, token count or duration a record may hold: finite, 0 or more, at most ``upper``."""
    try:
        return math.isfinite(value) and 0 <= value <= upper
    except TypeError:
        return False


def check_number(value: float | None, option: str, *, positive: bool = False) -> None:
    """UsageError unless ``value`` (a command-line number of days or seconds) is finite and 0 or
    more (more than 0 with ``positive``); None (not given) passes."""
    if value is None:
        return
    from logist.core.errors import UsageError

    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        more = "more than 0" if positive else "0 or more"
        raise UsageError(f"{option} must be a number {more}, not {value:g}",
                         hint=f"e.g. {option} 14" if "days" in option else f"e.g. {option} 30")
