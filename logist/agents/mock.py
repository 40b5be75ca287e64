"""The ``mock`` agent: a deterministic, offline stand-in for an AI agent.

It runs :mod:`logist.agents.mock_agent` as a real child process (``python -m``), configured by the
step's ``[steps.mock]`` table, and is read with the plain rules (exit 0 = COMPLETED unless its
fenced outcome says otherwise).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from logist.agents.base import Invocation, StepContext
from logist.agents.families import PlainAgent
from logist.agents.options import check_str_list
from logist.core.errors import AgentError

# The directory that holds the `logist` package, so `python -m` finds it from any worktree.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

_SPEC_KEYS = {"scenario", "writes", "cost_usd", "tokens", "delay_s", "succeed_on_attempt",
              "summary", "output", "ignore_signals"}
_SIGNALS = ("INT", "TERM", "HUP")


def _number(spec: dict[str, Any], key: str, *, integer: bool = False, minimum: float = 0) -> None:
    if key not in spec:
        return
    value = spec[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise AgentError(f"mock.{key} must be {kind} >= {minimum:g}, got {value!r}")


def validate_spec(spec: Any) -> None:
    """Raise AgentError for a ``[steps.mock]`` table the mock agent cannot play."""
    # Imported here, not at the top: `python -m logist.agents.mock_agent` imports this package
    # first, and runpy warns when the module it is about to run was already imported.
    from logist.agents.mock_agent import SCENARIOS, unsafe_path

    if not isinstance(spec, dict):
        raise AgentError(f"mock options must be a table, got {spec!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise AgentError(f"unknown mock option(s): {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(_SPEC_KEYS))}")
    scenario = spec.get("scenario", "success")
    if scenario not in SCENARIOS:
        raise AgentError(f"unknown mock scenario {scenario!r}; known scenarios: "
                         f"{', '.join(SCENARIOS)}")
    writes = spec.get("writes", {})
    if not isinstance(writes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in writes.items()):
        raise AgentError(f"mock.writes must map file paths to text contents, got {writes!r}")
    for rel in writes:
        why = unsafe_path(rel)
        if why:
            raise AgentError(f"mock.writes: {why} (a relative path inside the worktree: no "
                             "absolute paths, no '..', nothing in .git)")
    _number(spec, "cost_usd")
    _number(spec, "tokens", integer=True)
    _number(spec, "delay_s")
    _number(spec, "succeed_on_attempt", integer=True, minimum=1)
    if "summary" in spec and not isinstance(spec["summary"], str):
        raise AgentError(f"mock.summary must be a string, got {spec['summary']!r}")
    if "output" in spec:
        check_str_list(spec["output"], "mock.output")
    for name in check_str_list(spec.get("ignore_signals", []), "mock.ignore_signals"):
        if name not in _SIGNALS:
            raise AgentError(f"mock.ignore_signals: {name!r} is not one of {', '.join(_SIGNALS)}")


class MockAgent(PlainAgent):
    """Runs the mock agent process; the spec travels as JSON in ``LOGIST_MOCK_SPEC``."""

    name: str = "mock"
    label: str = "mock agent"

    def executable(self) -> str | None:
        """The Python interpreter that runs the mock process."""
        return sys.executable

    def validate_options(self, options: dict[str, Any]) -> None:
        """Common checks plus the ``[steps.mock]`` table."""
        super().validate_options(options)
        validate_spec(options.get("mock") or {})

    def build(self, ctx: StepContext) -> Invocation:
        """``python -m logist.agents.mock_agent`` with the spec and attempt in the environment."""
        spec = ctx.options.get("mock") or {}
        validate_spec(spec)
        pythonpath = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH"))
                                     if p)
        env = {**self.step_env(ctx), "LOGIST_MOCK_SPEC": json.dumps(spec),
               "LOGIST_MOCK_ATTEMPT": str(ctx.attempt), "PYTHONPATH": pythonpath}
        return Invocation([sys.executable, "-m", "logist.agents.mock_agent"], env)
