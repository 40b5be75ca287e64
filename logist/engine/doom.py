"""A doomed step (docs/observer.md): a line of the agent's output that no retry can fix (bad or
missing key, login offer, untrusted folder, usage error), or a reconnect loop, ends the step at
once. Read by the side process with the agent's own :meth:`line_problem`."""

from __future__ import annotations

import re

RETRY_LOOP_LINES = 4  # this many retry lines in a row, nothing else between: a doomed step
_NOISE = re.compile(r"^\s*(at |$)|error|warn|exception|traceback|overloaded|unavailable|connection"
                    r"|^\s*\}|^\s*\]", re.I)


class Doom:
    """Reads a step's output lines with its agent's :meth:`line_problem`: a fatal line (bad or
    missing key, login offer, untrusted folder, usage error) or ``RETRY_LOOP_LINES`` retry
    lines in a row (a reconnect loop: identical retries are no progress) end the step at once,
    as no retry of the step can fix it."""

    def __init__(self, agent: str | None) -> None:
        self.agent = None
        if agent:
            try:
                from logist.agents import get_agent

                found = get_agent(agent)
            except Exception:
                found = None
            self.agent = found if hasattr(found, "line_problem") else None
        self.retries = 0

    def scan(self, data: bytes) -> str | None:
        """The reason to stop the step, from whole lines ``data``, or None."""
        if self.agent is None:
            return None
        for raw in data.decode("utf-8", "replace").splitlines():
            found = self.agent.line_problem(raw)
            if found is None:
                if raw.strip() and not _NOISE.search(raw):
                    self.retries = 0  # other output: the agent moved on
                continue
            kind, words = found
            if kind == "fatal":
                return words
            self.retries += 1
            if self.retries >= RETRY_LOOP_LINES:
                return (f"it kept retrying ({self.retries} retries in a row, no other output): "
                        f"{words}")
        return None
