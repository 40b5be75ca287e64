"""A known-valid record changed without the models (docs/performance.md#fresh-processes).

A human transition (`job suspend`, `resume`, `activate`, `cancel`, `approve`, `reject`) changes
a few fields of the record at the tip: the state (from the transition table), a reason, the
attempt, the current step's status and reason, the execution, ``transition_seq`` and
``updated_at``. When that record is one logist validated before (its blob id is in the
validated-record cache, ``logist.store.record_cache``) and complete in the form logist writes
(every field of every model present, canonical JSON: :meth:`RecordView.load`), the
transition needs no pydantic: :class:`RecordView` gives the same attribute access the
transition code uses on a ``Manifest``, and checks each value it is given (only the fields
above can be set, each to a value of its type: the validation of what changes). Anything
else, a record not seen before or not complete, takes the models.

``tests/test_record_view.py`` checks that for every human event from every state the bytes
written (record, history line, commit message) are the ones the models write, and that the
field lists below are the models' (``tests/test_model.py``).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from logist.core.jobid import JobId
from logist.core.states import State, StepStatus

# Every field of the models, as logist writes them (by alias); tests/test_model.py compares.
MANIFEST_FIELDS = frozenset({
    "schema_version", "id", "title", "prompt", "state", "step", "run", "base", "agent",
    "requires_approval", "steps", "budget", "sentinel", "observer_patterns", "cost_usd", "tokens",
    "seconds", "attempt", "reason", "origin", "trusted", "runs", "resteps", "execution",
    "transition_seq", "created_at", "updated_at"})
STEP_FIELDS = frozenset({
    "name", "prompt", "agent", "options", "requires_approval", "status", "attempt", "started_commit",
    "first_started_commit", "assembled_prompt", "summary", "reason", "cost_usd", "tokens", "seconds",
    "session_id", "agent_version", "left_out"})
BUDGET_FIELDS = frozenset({"max_cost_usd", "max_seconds", "max_attempts"})
RUN_FIELDS = frozenset({"run", "from_step", "started_at", "start_commit", "previous_tip"})
EXECUTION_FIELDS = frozenset({"transition_id", "host", "boot_id", "started_at", "log", "restep"})

_STATES = frozenset(s.value for s in State)
_STEP_STATUSES = frozenset(s.value for s in StepStatus)


def _is_float(value: Any, *, optional: bool = False) -> bool:
    return isinstance(value, float) or (optional and value is None)


def _complete(data: Any) -> bool:
    """Every field of every model there, floats as floats (as the models write them)."""
    if not isinstance(data, dict) or data.keys() != MANIFEST_FIELDS:
        return False
    budget, steps, runs, execution = data["budget"], data["steps"], data["runs"], data["execution"]
    if not (isinstance(budget, dict) and budget.keys() == BUDGET_FIELDS
            and _is_float(budget["max_cost_usd"], optional=True) and _is_float(budget["max_seconds"], optional=True)):
        return False
    if not (isinstance(steps, list) and steps and isinstance(runs, list)):
        return False
    if not all(isinstance(s, dict) and s.keys() == STEP_FIELDS and _is_float(s["cost_usd"]) and _is_float(s["seconds"])
               for s in steps):
        return False
    if not all(isinstance(r, dict) and r.keys() == RUN_FIELDS for r in runs):
        return False
    if execution is not None and not (isinstance(execution, dict) and execution.keys() == EXECUTION_FIELDS):
        return False
    return (_is_float(data["cost_usd"]) and _is_float(data["seconds"]) and data["state"] in _STATES
            and isinstance(data["step"], int) and 1 <= data["step"] <= len(steps))


def canonical(data: dict[str, Any]) -> bytes:
    """The canonical bytes of a record (``logist.core.model.canonical_json``'s form)."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _check(name: str, value: Any) -> Any:
    """The JSON value of ``value`` for field ``name``, or ValueError: only the fields a human
    transition changes can be set, each to a value of its type."""
    if isinstance(value, Enum):
        value = value.value
    ok = {
        "state": lambda v: v in _STATES,
        "status": lambda v: v in _STEP_STATUSES,
        "reason": lambda v: isinstance(v, str),
        "attempt": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "execution": lambda v: v is None,
        "transition_seq": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "updated_at": lambda v: isinstance(v, str),
    }.get(name)
    if ok is None or not ok(value):
        raise ValueError(f"a record view cannot set {name} to {value!r}")
    return value


class RecordView:
    """Attribute access to a record's JSON data, for the code a ``Manifest`` goes through
    in a human transition (see the module docstring)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    @classmethod
    def load(cls, raw: bytes, job_id: JobId) -> RecordView | None:
        """The view of ``raw`` (a record logist validated before), or None when it is not
        complete and canonical as logist writes it (then the models read it)."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not _complete(data) or data["id"] != job_id or canonical(data) != raw:
            return None
        return cls(data)

    @property
    def data(self) -> dict[str, Any]:
        return self._data  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._data:
            raise AttributeError(name)
        self._data[name] = _check(name, value)

    @property
    def state(self) -> State:
        return State(self._data["state"])

    @state.setter
    def state(self, value: State) -> None:  # (what __setattr__ does; declared for type checkers)
        self._data["state"] = _check("state", value)

    @property
    def current(self) -> RecordView:
        steps = self._data["steps"]
        return RecordView(steps[min(self._data["step"], len(steps)) - 1])

    @property
    def step_count(self) -> int:
        return len(self._data["steps"])

    def copy(self) -> RecordView:
        return RecordView(json.loads(json.dumps(self._data)))

    def canonical(self) -> bytes:
        return canonical(self._data)


class EntryView:
    """A history entry as data, with the attributes of ``HistoryEntry`` that a commit message
    reads, and its line as ``logist.core.model.history_line`` writes it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def from_state(self) -> State | None:
        return State(self.data["from"]) if self.data.get("from") else None

    @property
    def to_state(self) -> State | None:
        return State(self.data["to"]) if self.data.get("to") else None

    def line(self) -> bytes:
        out = {k: v for k, v in self.data.items() if v is not None}
        if not out.get("data"):
            out.pop("data", None)
        return (json.dumps(out, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def new_record(*, job_id: str, title: str, prompt: str, agent: str, base: str, steps: list[tuple[str, str]],
               state: State, now: str) -> RecordView:
    """The record of a new job made from plain options (``job create --title --step``: every
    step with the job's agent and no options), as ``Manifest`` builds it with its defaults;
    tests/test_record_view.py compares the bytes with the models'. The caller checked the
    values (see ``logist.engine.jobs.plain_spec``)."""
    return RecordView({
        "schema_version": 1, "id": job_id, "title": title, "prompt": prompt, "state": state.value, "step": 1,
        "run": 1, "base": base, "agent": agent, "requires_approval": False,
        "steps": [{"name": name, "prompt": text, "agent": agent, "options": {}, "requires_approval": False,
                   "status": StepStatus.PENDING.value, "attempt": 0, "started_commit": None,
                   "first_started_commit": None, "assembled_prompt": None, "summary": "", "reason": "",
                   "cost_usd": 0.0, "tokens": 0, "seconds": 0.0, "session_id": None, "agent_version": None,
                   "left_out": []} for name, text in steps],
        "budget": {"max_cost_usd": None, "max_seconds": None, "max_attempts": 3}, "sentinel": {},
        "observer_patterns": {}, "cost_usd": 0.0, "tokens": 0, "seconds": 0.0, "attempt": 0, "reason": "",
        "origin": "local", "trusted": True, "runs": [], "resteps": 0, "execution": None, "transition_seq": 0,
        "created_at": now, "updated_at": now})
