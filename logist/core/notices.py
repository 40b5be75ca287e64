"""Warnings from deep inside logist that must reach the user (e.g. an invalid lock was taken
over). Layers below the CLI call :func:`notice`; the CLI installs the sink that prints them
(``logist: warning: ...`` on stderr), so only the CLI prints. Without a sink (a library user),
notices are kept in :data:`pending` (the last 100)."""

from __future__ import annotations

from collections.abc import Callable

_sink: Callable[[str], None] | None = None
pending: list[str] = []


def set_sink(sink: Callable[[str], None] | None) -> None:
    global _sink
    _sink = sink


def notice(message: str) -> None:
    if _sink is not None:
        try:
            _sink(message)
            return
        except Exception:  # a closed stderr must not turn a warning into a failure
            pass
    pending.append(message)
    del pending[:-100]
