"""A step's live log, kept within ``[limits] max_log_bytes`` (docs/cli.md#limits).

The agent appends to its log file itself (``O_APPEND``, so its output survives a runner that
dies). The runner looks at the file's size while it waits (:func:`enforce`, a ``stat`` every
few tenths of a second) and, past the cap, cuts the middle out: it keeps the first half of the
cap, a marker line, and the last quarter of the cap (where agents print their final result),
then the agent's next writes land after that. Disk use is the cap plus what the agent writes
between two looks; the runner's memory holds at most a quarter of the cap at a time.

:func:`read_log` reads any log, however large (a runner that was not there to cut it), as at
most the cap: head, marker, tail.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKER = "\n[logist: {n} bytes of output cut here (limits.max_log_bytes = {cap})]\n"


def _marker(n: int, cap: int) -> bytes:
    return MARKER.format(n=n, cap=cap).encode()


def enforce(path: Path, cap: int, state: dict[str, int]) -> bool:
    """Cut ``path`` back under ``cap`` bytes if it grew past it; True if it did.

    ``state`` carries what was cut so far between calls ({"cut": bytes, "head": size of the
    kept head + marker}); the marker of a later cut replaces the earlier one."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    if size <= cap:
        return False
    head = state.get("head", cap // 2)
    tail_len = cap // 4
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        tail = os.pread(fd, tail_len, max(size - tail_len, 0))
        keep = state.get("keep", head)
        cut = state.get("cut", 0) + (size - keep - len(tail))
        # Everything between the kept head and the tail goes; the agent's O_APPEND writes after
        # this land at the new end.
        os.truncate(fd, keep)
        marker = _marker(cut, cap)
        os.pwrite(fd, marker + tail, keep)
    finally:
        os.close(fd)
    state["keep"] = keep
    state["head"] = head
    state["cut"] = cut
    return True


def read_log(path: Path | None, cap: int) -> str:
    """The text of a step log, at most about ``cap`` bytes (head, marker, tail when larger)."""
    if path is None:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        if size <= cap:
            data = os.pread(fd, size, 0)
        else:
            head = os.pread(fd, cap // 2, 0)
            tail_len = cap // 4
            tail = os.pread(fd, tail_len, size - tail_len)
            data = head + _marker(size - len(head) - len(tail), cap) + tail
    except OSError:
        return ""
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def cut_warning(state: dict[str, int], cap: int) -> str | None:
    """The warning of a step whose log was cut (None if it was not)."""
    if not state.get("cut"):
        return None
    return (f"the step's output was cut to limits.max_log_bytes ({cap} bytes): "
            f"{state['cut']} bytes from the middle are not kept")
