"""The state machine of docs/states.md as data, and the manifest API.

The transition table is pure: no I/O, no clock. ``load_job_manifest`` reads a record from a
file or bytes; ``update_job_manifest`` computes the next record and hands it to a store that
commits it atomically (one commit, or none when nothing changed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from logist.core.errors import JobStateError
from logist.core.jobid import JobId
from logist.core.states import RESTING, TERMINAL, State
from logist.store.record_view import EntryView, RecordView

if TYPE_CHECKING:  # the models are imported where a record is validated or built from them: a
    # known-valid record changes without them (logist.store.record_view)
    from logist.core.model import HistoryEntry, HistoryEvent, Manifest

S = State

# (from, event) -> to. "*" as from means: any non-terminal state; "~": any resting state.
TRANSITIONS: tuple[tuple[State | str, str, State], ...] = (
    (S.DRAFT, "activate", S.PENDING),
    (S.PENDING, "start", S.PROVISIONING),
    (S.PROVISIONING, "provisioned", S.EXECUTING),
    (S.PROVISIONING, "provision_failed", S.INTERVENTION_REQUIRED),
    (S.EXECUTING, "agent_exited", S.HARVESTING),
    (S.EXECUTING, "hung", S.RECOVERING),
    (S.RECOVERING, "restarted", S.EXECUTING),
    (S.RECOVERING, "gave_up", S.INTERVENTION_REQUIRED),
    (S.HARVESTING, "completed", S.PENDING),
    (S.HARVESTING, "completed_last", S.SUCCESS),
    (S.HARVESTING, "completed_approval", S.APPROVAL_REQUIRED),
    (S.HARVESTING, "retry", S.PENDING),
    (S.HARVESTING, "intervention", S.INTERVENTION_REQUIRED),
    (S.APPROVAL_REQUIRED, "approve", S.SUCCESS),
    (S.APPROVAL_REQUIRED, "reject", S.PENDING),
    (S.INTERVENTION_REQUIRED, "resubmit", S.PENDING),
    # `job restep --advance`: the restepped step succeeded, the job moves on as if it completed
    (S.INTERVENTION_REQUIRED, "advance", S.PENDING),
    (S.INTERVENTION_REQUIRED, "advance_last", S.SUCCESS),
    (S.INTERVENTION_REQUIRED, "advance_approval", S.APPROVAL_REQUIRED),
    # `job rerun`: run n+1 starts (docs/rerun.md), from any state a job rests in
    ("~", "rerun", S.PENDING),
    ("*", "suspend", S.SUSPENDED),
    ("*", "cancel", S.CANCELED),
    (S.SUSPENDED, "resume", S.PENDING),
)

EVENTS = tuple(dict.fromkeys(event for _, event, _ in TRANSITIONS))

# Which outcome of a harvest maps to which event.
OUTCOME_EVENTS = {"COMPLETED": "completed", "RETRY": "retry", "STUCK": "intervention"}


def _table() -> dict[tuple[State, str], State]:
    table: dict[tuple[State, str], State] = {}
    for src, event, dst in TRANSITIONS:
        if src == "*":
            # suspending a suspended job is not a transition
            sources = [s for s in State if s not in TERMINAL and s != dst]
        elif src == "~":
            sources = sorted(RESTING, key=list(State).index)
        else:
            sources = [State(src)]
        for s in sources:
            table[(s, event)] = dst
    return table


TABLE = _table()


def transition_state(current: State | str, event: str) -> State:
    """The state that ``event`` leads to from ``current``; JobStateError if the table refuses."""
    try:
        state = State(current)
    except ValueError:
        raise JobStateError(f"unknown state {current!r}") from None
    if event not in EVENTS:
        raise JobStateError(f"unknown event {event!r}; events are: {', '.join(EVENTS)}")
    try:
        return TABLE[(state, event)]
    except KeyError:
        allowed = [COMMANDS[e] for e in sorted(e for (s, e) in TABLE if s == state) if e in COMMANDS]
        if state == S.PENDING:
            allowed.insert(0, "`logist job run`")
        raise JobStateError(
            f"cannot {event} a job in state {state.value}",
            hint=("what you can do now: " + ", ".join(allowed)) if allowed
            else f"{state.value} is terminal; start a new run with `logist job rerun`") from None


# The command a person runs for each event they may fire (the others are the runner's).
COMMANDS = {e: f"`logist job {e}`" for e in ("activate", "approve", "reject", "resubmit", "suspend",
                                             "resume", "cancel")}


def allowed_events(current: State) -> list[str]:
    return sorted(e for (s, e) in TABLE if s == current)


def load_job_manifest(source: str | Path | bytes) -> Manifest:
    """Load and validate a record from a manifest file, a job record directory, or raw bytes."""
    if isinstance(source, bytes):
        raw, where = source, "record"
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "manifest.json"
        where = str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise JobStateError(f"no job record at {where}",
                                hint="run `logist job list` to see existing jobs") from None
        except OSError as exc:
            raise JobStateError(f"cannot read job record {where}: {exc.strerror}") from None
    from logist.core.model import parse_manifest

    try:
        return parse_manifest(raw)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise JobStateError(f"malformed job record {where}: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top)"
        return f"{loc}: {err.get('msg')}"
    return str(exc).splitlines()[0]


def get_current_state_and_role(manifest: Manifest | dict[str, Any]) -> tuple[State, str | None]:
    """(state, agent of the active step); the agent is None when the job is terminal."""
    if isinstance(manifest, dict):
        for key in ("state", "step", "steps"):
            if key not in manifest:
                raise JobStateError(f"job record has no {key!r} field")
        try:
            state = State(manifest["state"])
            steps = manifest["steps"]
            step = int(manifest["step"])
            if not isinstance(steps, list) or not 1 <= step <= len(steps):
                raise IndexError(f"step {step} is not one of the record's steps (1-based)")
            agent = steps[step - 1].get("agent") or manifest.get("agent")
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
            raise JobStateError(f"job record is inconsistent: {exc}") from None
    else:
        state, agent = manifest.state, manifest.current.agent
    if not agent:
        raise JobStateError("job record names no agent for its current step")
    return state, (None if state in TERMINAL else agent)


@dataclass
class Update:
    """What a transition changes besides the state."""

    event: str | None = None
    step: int | None = None
    cost_delta: float = 0.0
    tokens_delta: int = 0
    seconds_delta: float = 0.0
    reason: str | None = None
    outcome: str | None = None
    history_event: HistoryEvent = "transition"
    data: dict[str, Any] | None = None
    # Changes the record (a Manifest, or a RecordView of a known-valid one: the same attributes).
    mutate: Callable[[Any], None] | None = None
    # What the history entry names, when not the record's step before the change (rerun and
    # restep entries name the step they are about, and the commit it ran on).
    entry_step: int | None = None
    entry_commit: str | None = None


def apply_update(manifest: Manifest | RecordView, update: Update, *, now: str, transition_id: str
                 ) -> tuple[Manifest, HistoryEntry] | tuple[RecordView, EntryView] | None:
    """Pure: the next record and its history entry, or None when nothing would change."""
    if isinstance(manifest, RecordView):
        return _apply_to_view(manifest, update, now=now, transition_id=transition_id)
    from logist.core.model import HistoryEntry

    new = manifest.model_copy(deep=True)
    from_state = manifest.state
    if update.event is not None:
        new.state = transition_state(manifest.state, update.event)
    if update.step is not None:
        if not 1 <= update.step <= len(new.steps):
            raise JobStateError(f"step {update.step} does not exist; job {new.id} has "
                                f"{len(new.steps)} steps")
        new.step = update.step
    new.cost_usd = round(new.cost_usd + update.cost_delta, 6)
    new.tokens += update.tokens_delta
    new.seconds = round(new.seconds + update.seconds_delta, 3)
    if update.reason is not None:
        new.reason = update.reason
    if update.mutate is not None:
        update.mutate(new)
    if new == manifest and update.event is None and not update.data:
        return None
    new.transition_seq += 1
    new.updated_at = now
    entry = HistoryEntry(
        t=now, event=update.history_event, run=new.run, step=manifest.step,
        transition_id=transition_id, reason=update.reason or "", outcome=update.outcome,
        cost_usd=update.cost_delta or None, tokens=update.tokens_delta or None,
        data=update.data or {},
        **{"from": from_state, "to": new.state})
    if update.entry_step is not None:
        entry.step = update.entry_step
    if update.entry_commit is not None:
        entry.commit = update.entry_commit
    return new, entry


def _apply_to_view(record: RecordView, update: Update, *, now: str, transition_id: str
                   ) -> tuple[RecordView, EntryView] | None:
    """:func:`apply_update` on a known-valid record without the models: the same changes, in
    the same order, to the JSON data (each value checked by the view as it is set)."""
    new = record.copy()
    d, old = new.data, record.data
    from_state = record.state
    if update.event is not None:
        new.state = transition_state(from_state, update.event)
    if update.step is not None:
        if not 1 <= update.step <= new.step_count:
            raise JobStateError(f"step {update.step} does not exist; job {d['id']} has "
                                f"{new.step_count} steps")
        d["step"] = update.step
    if update.cost_delta or update.tokens_delta or update.seconds_delta:
        raise ValueError("a record view takes no cost, tokens or seconds: use the models")
    d["cost_usd"] = round(d["cost_usd"], 6)
    d["seconds"] = round(d["seconds"], 3)
    if update.reason is not None:
        new.reason = update.reason
    if update.mutate is not None:
        update.mutate(new)
    if d == old and update.event is None and not update.data:
        return None
    new.transition_seq = d["transition_seq"] + 1
    new.updated_at = now
    entry = {"t": now, "event": update.history_event, "run": d["run"], "step": old["step"],
             "from": from_state.value, "to": d["state"], "transition_id": transition_id,
             "reason": update.reason or "", "outcome": update.outcome, "cost_usd": None, "tokens": None,
             "commit": None, "data": update.data or {}}
    if update.entry_step is not None:
        entry["step"] = update.entry_step
    if update.entry_commit is not None:
        entry["commit"] = update.entry_commit
    return new, EntryView(entry)


class ManifestStore(Protocol):
    """What ``update_job_manifest`` needs from a store (logist.store.jobstore.JobStore implements it)."""

    def read(self, job_id: JobId, *, at: str | None = None) -> tuple[str, Manifest]: ...

    # commit_transition(job_id, old_tip, manifest, entries, **options) -> the new commit
    @property
    def commit_transition(self) -> Callable[..., str]: ...


def update_job_manifest(store: ManifestStore, job_id: JobId, update: Update, *, now: str,
                        transition_id: str, tip: str | None = None,
                        current: Manifest | RecordView | None = None,
                        **commit_kwargs: Any) -> tuple[str, Any] | None:
    """The one way a job changes: read its record, apply ``update`` (the state through the
    transition table), make one commit and publish it by one compare-and-swap
    (``JobStore.commit_transition``). None, and no commit, when nothing would change.

    ``tip``: the commit the branch must still be at (default: read it now); ``current``: the
    record the update applies to, when the caller already read it (default: the record at
    ``history_from`` or ``tip``): a Manifest, or a RecordView of a known-valid record (then the
    result is a RecordView too, and no model is imported). ``commit_kwargs`` go to ``commit_transition``: ``lease`` (the
    fencing value), ``parent``, ``history_from``, ``include_worktree``, ``body``,
    ``extra_trailers``, ``extra_refs``, ``before_publish``. ``now`` and ``transition_id`` are
    the caller's (``logist.store.jobstore.utcnow`` / ``new_transition_id``): this module reads
    no clock.
    """
    if current is None:
        if tip is None:
            tip, current = store.read(job_id)
        else:
            _, current = store.read(job_id, at=commit_kwargs.get("history_from") or tip)
    elif tip is None:
        raise ValueError("update_job_manifest: give the tip the record was read at")
    result = apply_update(current, update, now=now, transition_id=transition_id)
    if result is None:
        return None
    new, entry = result
    oid = store.commit_transition(job_id, tip, new, [entry], **commit_kwargs)
    return oid, new
