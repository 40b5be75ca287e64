"""The states of a job and of a step, and the record's schema version: plain data,
importable without pydantic.

The transition table between them is data in :mod:`logist.store.job_state`; :mod:`logist.core.model`
re-exports these names. ``job list`` uses this module alone, so that listing jobs does not
pay for building the pydantic models.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

SCHEMA_VERSION: Final = 1  # of the record (manifest.json); logist.core.model validates it


class State(str, Enum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    EXECUTING = "EXECUTING"
    RECOVERING = "RECOVERING"
    HARVESTING = "HARVESTING"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    INTERVENTION_REQUIRED = "INTERVENTION_REQUIRED"
    SUSPENDED = "SUSPENDED"
    SUCCESS = "SUCCESS"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({State.SUCCESS, State.CANCELED})
TRANSIENT = frozenset({State.PROVISIONING, State.EXECUTING, State.RECOVERING, State.HARVESTING})
RESTING = frozenset(set(State) - TRANSIENT)


class StepStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"

    def __str__(self) -> str:
        return self.value


_TRANSIENT_NAMES = frozenset(s.value for s in TRANSIENT)


def record_in_flight(d: dict[str, Any] | None) -> bool:
    """The record (its JSON data) says a step or a restep is running."""
    if not d:
        return False
    return d["state"] in _TRANSIENT_NAMES or bool((d.get("execution") or {}).get("restep"))
