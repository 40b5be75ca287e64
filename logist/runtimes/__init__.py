"""Runtimes: where agent processes run, selected by name from an explicit registry."""

from __future__ import annotations

from logist.core.errors import AgentError
from logist.runtimes.base import Leftovers, ProcessHandle, Runtime, group_alive, pid_alive, process_start_time
from logist.runtimes.host import AttachedProcess, HostProcess, HostRuntime, attach

RUNTIMES: dict[str, type[Runtime]] = {"host": HostRuntime}


def runtime_names() -> list[str]:
    """The known runtime names."""
    return list(RUNTIMES)


def get_runtime(name: str = "host") -> Runtime:
    """The runtime called ``name``; AgentError naming the known ones otherwise."""
    cls = RUNTIMES.get(name)
    if cls is None:
        raise AgentError(f"unknown runtime {name!r}; known runtimes: {', '.join(RUNTIMES)}")
    return cls()


__all__ = ["RUNTIMES", "AttachedProcess", "HostProcess", "HostRuntime", "Leftovers",
           "ProcessHandle", "Runtime", "attach", "get_runtime", "group_alive", "pid_alive",
           "process_start_time", "runtime_names"]
