"""The job record: strict pydantic models with a schema version and canonical JSON.

The manifest at the tip of ``logist/<id>`` is the truth (docs/architecture.md#invariants, 1). Identical state
serializes to an identical blob: sorted keys, two-space indent, trailing newline.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The states are plain data, importable without pydantic; re-exported here.
from logist.core.jobid import JobId
from logist.core.limits import MAX_COST_USD, MAX_SECONDS, MAX_TOKENS
from logist.core.states import RESTING as RESTING
from logist.core.states import SCHEMA_VERSION
from logist.core.states import TERMINAL as TERMINAL
from logist.core.states import TRANSIENT as TRANSIENT
from logist.core.states import State as State
from logist.core.states import StepStatus as StepStatus

# The job id syntax (docs/refs.md). Layer 1 cannot import logist.git.refs (layer 3), which
# validates ids with the same pattern; tests/test_model.py checks that the two agree.


# Amounts in a record: finite, 0 or more, bounded (NaN, -1, 1e300 or 10**400 make a record invalid).
Cost = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, use_enum_values=False)


class Budget(Strict):
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)


class Step(Strict):
    name: str = Field(min_length=1, max_length=200)
    prompt: str = ""
    agent: str = "mock"
    options: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = False
    status: StepStatus = StepStatus.PENDING
    attempt: int = Field(default=0, ge=0)
    started_commit: str | None = None  # commit at which this step started in the current run
    first_started_commit: str | None = None  # commit at which this step first started in any run
    assembled_prompt: str | None = None  # verbatim what the agent was asked last
    summary: str = ""
    reason: str = ""
    cost_usd: Cost = 0.0
    tokens: Tokens = 0
    seconds: Seconds = 0.0
    session_id: str | None = None
    agent_version: str | None = None  # the agent CLI's `--version` at the step's last harvest
    left_out: list[str] = Field(default_factory=list)  # new files its last harvest did not commit


class RunInfo(Strict):
    run: int = Field(ge=1)
    from_step: int = Field(ge=1)
    started_at: str
    start_commit: str | None = None
    previous_tip: str | None = None


class Execution(Strict):
    """What is running right now (set on PROVISIONING/EXECUTING, cleared at rest)."""

    transition_id: str
    host: str
    boot_id: str = ""
    started_at: str
    log: str = ""
    restep: bool = False


class Manifest(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    id: JobId  # checked like any id (logist.core.jobid)
    title: str = Field(min_length=1, max_length=300)
    prompt: str = ""
    state: State = State.DRAFT
    step: int = Field(default=1, ge=1)  # current step, 1-based
    run: int = Field(default=1, ge=1)
    base: str = Field(pattern=r"^[0-9a-f]{40}$")
    agent: str = "mock"
    requires_approval: bool = False
    steps: list[Step] = Field(min_length=1)
    budget: Budget = Field(default_factory=Budget)
    sentinel: dict[str, float | int | bool] = Field(default_factory=dict)
    observer_patterns: dict[str, str] = Field(default_factory=dict)
    cost_usd: Cost = 0.0
    tokens: Tokens = 0
    seconds: Seconds = 0.0
    attempt: int = Field(default=0, ge=0)  # attempts of the current step in this run
    reason: str = ""
    origin: str = "local"  # "local" or "remote:<name>" when adopted from a remote
    trusted: bool = True
    runs: list[RunInfo] = Field(default_factory=list)
    resteps: int = 0
    execution: Execution | None = None
    transition_seq: int = 0
    created_at: str
    updated_at: str

    @model_validator(mode="after")
    def _step_exists(self) -> Manifest:
        if self.step > len(self.steps):
            raise ValueError(f"step {self.step} is past the last step ({len(self.steps)})")
        return self

    @property
    def current(self) -> Step:
        return self.steps[min(self.step, len(self.steps)) - 1]

    @property
    def step_count(self) -> int:
        return len(self.steps)


HistoryEvent = Literal["create", "transition", "run", "restep", "note"]


class HistoryEntry(Strict):
    t: str
    event: HistoryEvent
    run: int
    step: int | None = None
    from_state: State | None = Field(default=None, alias="from")
    to_state: State | None = Field(default=None, alias="to")
    transition_id: str | None = None
    reason: str = ""
    outcome: str | None = None
    cost_usd: Cost | None = None
    tokens: Tokens | None = None
    commit: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def canonical_json(model: BaseModel) -> bytes:
    """Canonical bytes of a model: sorted keys, 2-space indent, trailing newline."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=False)
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def history_line(entry: HistoryEntry) -> bytes:
    data = entry.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=False)
    if not data.get("data"):
        data.pop("data", None)
    return (json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def parse_manifest(raw: bytes | str) -> Manifest:
    """Validate untrusted bytes into a Manifest (raises pydantic ValidationError / ValueError)."""
    return Manifest.model_validate_json(raw)


def parse_history(raw: bytes | str) -> list[HistoryEntry]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [HistoryEntry.model_validate_json(line) for line in text.splitlines() if line.strip()]
