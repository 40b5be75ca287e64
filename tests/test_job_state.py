"""logist.store.job_state: the transition table of docs/states.md and the manifest API
(docs/architecture.md#how-a-transition-is-written).

The table is checked against an expectation written out by hand from docs/states.md, not against
itself; ``update_job_manifest`` runs against a real repository through the real JobStore.
"""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import pytest
from _core import create_job, history_at, record_at, refs_snapshot, tip, worktree_status
from _oracle import Oracle
from conftest import git

from logist.core.errors import ConcurrentUpdateError, JobStateError, LogistError
from logist.core.model import RESTING, TERMINAL, Manifest, State, Step, canonical_json
from logist.store import job_state
from logist.store.job_state import (
    OUTCOME_EVENTS,
    TABLE,
    TRANSITIONS,
    Update,
    get_current_state_and_role,
    load_job_manifest,
    transition_state,
    update_job_manifest,
)

S = State
NON_TERMINAL = [s for s in State if s not in TERMINAL]

# docs/states.md, written out by hand.
EXPECTED = {
    (S.DRAFT, "activate"): S.PENDING,
    (S.PENDING, "start"): S.PROVISIONING,
    (S.PROVISIONING, "provisioned"): S.EXECUTING,
    (S.PROVISIONING, "provision_failed"): S.INTERVENTION_REQUIRED,
    (S.EXECUTING, "agent_exited"): S.HARVESTING,
    (S.EXECUTING, "hung"): S.RECOVERING,
    (S.RECOVERING, "restarted"): S.EXECUTING,
    (S.RECOVERING, "gave_up"): S.INTERVENTION_REQUIRED,
    (S.HARVESTING, "completed"): S.PENDING,
    (S.HARVESTING, "completed_last"): S.SUCCESS,
    (S.HARVESTING, "completed_approval"): S.APPROVAL_REQUIRED,
    (S.HARVESTING, "retry"): S.PENDING,
    (S.HARVESTING, "intervention"): S.INTERVENTION_REQUIRED,
    (S.APPROVAL_REQUIRED, "approve"): S.SUCCESS,
    (S.APPROVAL_REQUIRED, "reject"): S.PENDING,
    (S.INTERVENTION_REQUIRED, "resubmit"): S.PENDING,
    (S.SUSPENDED, "resume"): S.PENDING,
    (S.INTERVENTION_REQUIRED, "advance"): S.PENDING,
    (S.INTERVENTION_REQUIRED, "advance_last"): S.SUCCESS,
    (S.INTERVENTION_REQUIRED, "advance_approval"): S.APPROVAL_REQUIRED,
}
for _s in NON_TERMINAL:
    if _s != S.SUSPENDED:
        EXPECTED[(_s, "suspend")] = S.SUSPENDED
    EXPECTED[(_s, "cancel")] = S.CANCELED
for _s in RESTING:  # a rerun starts run n+1 from any state a job rests in, terminal ones too
    EXPECTED[(_s, "rerun")] = S.PENDING

EVENTS = sorted({e for _, e in EXPECTED})
INVALID = [(s, e) for s, e in itertools.product(State, EVENTS) if (s, e) not in EXPECTED]


# ----------------------------------------------------------------------------- the table

def test_table_is_exactly_design_section_3():
    assert TABLE == EXPECTED
    assert {e for _, e, _ in TRANSITIONS} == set(EVENTS)


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED, key=str), ids=lambda x: str(x))
def test_every_valid_transition(state, event):
    assert transition_state(state, event) == EXPECTED[(state, event)]
    assert transition_state(state.value, event) == EXPECTED[(state, event)]  # strings too


@pytest.mark.parametrize(("state", "event"), INVALID, ids=lambda x: str(x))
def test_every_invalid_transition_is_refused(state, event):
    with pytest.raises(JobStateError) as info:
        transition_state(state, event)
    assert state.value in info.value.message
    assert event in info.value.message
    assert info.value.exit_code == 1


def test_terminal_states_allow_only_a_rerun():
    for state in TERMINAL:
        for event in EVENTS:
            if event == "rerun":
                assert transition_state(state, event) == S.PENDING
                continue
            with pytest.raises(JobStateError):
                transition_state(state, event)


def test_unknown_state_and_event_are_refused():
    with pytest.raises(JobStateError, match="unknown state"):
        transition_state("RUNNING", "start")
    with pytest.raises(JobStateError, match="unknown event"):
        transition_state(S.PENDING, "launch")


def test_refusal_hint_names_what_is_allowed():
    with pytest.raises(JobStateError) as info:
        transition_state(S.APPROVAL_REQUIRED, "resubmit")
    assert "approve" in info.value.hint and "reject" in info.value.hint


@pytest.mark.parametrize(("outcome", "landing"), [("STUCK", S.INTERVENTION_REQUIRED),
                                                  ("RETRY", S.PENDING),
                                                  ("COMPLETED", S.PENDING)])
def test_outcomes_land_where_the_table_says(outcome, landing):
    assert transition_state(S.HARVESTING, OUTCOME_EVENTS[outcome]) == landing


def test_table_module_has_no_clock_and_no_git():
    tree = ast.parse(Path(job_state.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    forbidden = {"time", "datetime", "subprocess", "logist.git.gitcmd", "logist.store.jobstore", "dulwich", "git"}
    assert not names & forbidden, names & forbidden


# ----------------------------------------------------------------------------- records

def _manifest(**kw) -> Manifest:
    data = dict(id="fix-login-7k2q", title="Fix login", base="a" * 40, created_at="2024-01-01T00:00:00Z",
                updated_at="2024-01-01T00:00:00Z",
                steps=[Step(name="write", agent="mock"), Step(name="review", agent="claude")])
    data.update(kw)
    return Manifest(**data)


def test_load_valid_record_from_file_dir_and_bytes(tmp_path):
    m = _manifest(state=S.PENDING)
    d = tmp_path / ".logist" / "jobs" / m.id
    d.mkdir(parents=True)
    (d / "manifest.json").write_bytes(canonical_json(m))
    assert load_job_manifest(d / "manifest.json") == m
    assert load_job_manifest(str(d)) == m
    assert load_job_manifest(canonical_json(m)) == m


def test_load_missing_record_raises(tmp_path):
    with pytest.raises(JobStateError, match="no job record"):
        load_job_manifest(tmp_path / "nope" / "manifest.json")
    with pytest.raises(JobStateError, match="no job record"):
        load_job_manifest(tmp_path)  # a directory without manifest.json


@pytest.mark.parametrize("raw", [
    b"", b"{", b"[]", b"null", b'{"id": "x"}',
    "not json at all \u2603".encode(),
])
def test_load_malformed_record_raises(tmp_path, raw):
    p = tmp_path / "manifest.json"
    p.write_bytes(raw)
    with pytest.raises(JobStateError, match="malformed job record"):
        load_job_manifest(p)


@pytest.mark.parametrize("change", [
    {"schema_version": 2}, {"state": "RUNNING"}, {"id": "../x"}, {"steps": []},
    {"surprise": 1}, {"step": 0}, {"base": "HEAD"}, {"cost_usd": "cheap"},
])
def test_load_invalid_record_raises_naming_the_field(change):
    data = json.loads(canonical_json(_manifest()))
    data.update(change)
    with pytest.raises(JobStateError) as info:
        load_job_manifest(json.dumps(data).encode())
    assert next(iter(change)) in info.value.message


@pytest.mark.parametrize(("record", "expected"), [
    ({"state": "PENDING", "step": 1, "steps": [{"agent": "mock"}, {"agent": "claude"}]}, (S.PENDING, "mock")),
    ({"state": "EXECUTING", "step": 2, "steps": [{"agent": "mock"}, {"agent": "claude"}]},
     (S.EXECUTING, "claude")),
    ({"state": "PENDING", "step": 1, "agent": "codex", "steps": [{"name": "x"}]}, (S.PENDING, "codex")),
    ({"state": "APPROVAL_REQUIRED", "step": 1, "steps": [{"agent": "aider"}]},
     (S.APPROVAL_REQUIRED, "aider")),
    ({"state": "SUCCESS", "step": 1, "steps": [{"agent": "mock"}]}, (S.SUCCESS, None)),
    ({"state": "CANCELED", "step": 1, "steps": [{"agent": "mock"}]}, (S.CANCELED, None)),
])
def test_current_state_and_role_of_dict_records(record, expected):
    assert get_current_state_and_role(record) == expected


def test_current_state_and_role_of_models():
    assert get_current_state_and_role(_manifest()) == (S.DRAFT, "mock")
    assert get_current_state_and_role(_manifest(state=S.HARVESTING, step=2)) == (S.HARVESTING, "claude")
    assert get_current_state_and_role(_manifest(state=S.SUCCESS, step=2)) == (S.SUCCESS, None)


@pytest.mark.parametrize("record", [
    {"step": 1, "steps": [{"agent": "mock"}]},                       # no state
    {"state": "PENDING", "steps": [{"agent": "mock"}]},              # no step
    {"state": "PENDING", "step": 1},                                 # no steps
    {"state": "BOGUS", "step": 1, "steps": [{"agent": "mock"}]},     # unknown state
    {"state": "PENDING", "step": 3, "steps": [{"agent": "mock"}]},   # step past the end
    {"state": "PENDING", "step": 0, "steps": [{"agent": "mock"}, {"agent": "claude"}]},  # steps are 1-based
    {"state": "PENDING", "step": -1, "steps": [{"agent": "mock"}, {"agent": "claude"}]},
    {"state": "PENDING", "step": "one", "steps": [{"agent": "mock"}]},
    {"state": "PENDING", "step": 1, "steps": ["mock"]},
    {"state": "PENDING", "step": 1, "steps": [{"name": "no agent anywhere"}]},
    {"state": "PENDING", "step": 1, "steps": {"1": {"agent": "mock"}}},
])
def test_current_state_and_role_missing_or_bad_fields_raise(record):
    with pytest.raises(JobStateError):
        get_current_state_and_role(record)


# ----------------------------------------------------------------------------- update_job_manifest

@pytest.fixture
def store_and_job(cli):
    from logist.store.jobstore import JobStore

    job_id = create_job(cli, "--title", "State API", "--step", "one", "--step", "two")
    store = JobStore.discover(cli.repo)
    store.ensure_worktree(job_id)  # a worktree whose copy of the record transitions keep in step
    return store, job_id


def _update(store, job_id, update, *, now="2030-01-02T03:04:05.000Z", tid="t" * 16):
    return update_job_manifest(store, job_id, update, now=now, transition_id=tid)


def test_update_changes_state_and_makes_one_commit(store_and_job):
    store, job_id = store_and_job
    repo = store.root
    before = tip(repo, job_id)
    oid, m = _update(store, job_id, Update(event="activate", reason="go"))
    assert m.state == S.PENDING
    assert tip(repo, job_id) == oid
    assert git(repo, "rev-list", "--count", f"{before}..{oid}") == "1"
    assert git(repo, "rev-parse", f"{oid}^") == before
    assert record_at(repo, oid, job_id)["state"] == "PENDING"
    assert store.read(job_id) == (oid, m)
    assert worktree_status(store.worktree_path(job_id)) == ""


def test_update_step_cost_and_time_accumulate(store_and_job):
    store, job_id = store_and_job
    _update(store, job_id, Update(cost_delta=0.25, seconds_delta=1.5, tokens_delta=100))
    _, m = _update(store, job_id, Update(step=2, cost_delta=0.5, seconds_delta=2.25, tokens_delta=20))
    assert (m.step, m.cost_usd, m.seconds, m.tokens) == (2, 0.75, 3.75, 120)
    rec = record_at(store.root, tip(store.root, job_id), job_id)
    assert (rec["step"], rec["cost_usd"], rec["seconds"], rec["tokens"]) == (2, 0.75, 3.75, 120)


def test_update_appends_timestamped_history(store_and_job):
    store, job_id = store_and_job
    repo = store.root
    first = history_at(repo, tip(repo, job_id), job_id)
    assert [e["event"] for e in first] == ["create"]
    _update(store, job_id, Update(event="activate"), now="2030-01-01T00:00:00.000Z", tid="a" * 16)
    _update(store, job_id, Update(event="suspend", reason="lunch"), now="2030-01-01T00:01:00.000Z",
            tid="b" * 16)
    hist = history_at(repo, tip(repo, job_id), job_id)
    assert hist[0] == first[0]  # append-only: earlier lines unchanged
    assert [(e["event"], e.get("from"), e["to"], e["t"], e["transition_id"]) for e in hist[1:]] == [
        ("transition", "DRAFT", "PENDING", "2030-01-01T00:00:00.000Z", "a" * 16),
        ("transition", "PENDING", "SUSPENDED", "2030-01-01T00:01:00.000Z", "b" * 16)]
    assert hist[-1]["reason"] == "lunch"
    raw = git(repo, "show", f"{tip(repo, job_id)}:.logist/jobs/{job_id}/history.jsonl")
    assert raw.count("\n") == 2  # three lines, one per entry
    # read without logist: one commit per entry, each carrying the entry's trailers
    oracle = Oracle(repo)
    assert oracle.check_job(job_id, state="SUSPENDED")["reason"] == "lunch"
    assert oracle.trailers(oracle.tip(job_id))["Logist-Transition-Id"] == "b" * 16


def test_update_that_changes_nothing_writes_nothing(store_and_job):
    store, job_id = store_and_job
    before = refs_snapshot(store.root)
    _, m = store.read(job_id)
    assert _update(store, job_id, Update()) is None
    assert _update(store, job_id, Update(reason=m.reason, cost_delta=0.0)) is None
    assert refs_snapshot(store.root) == before


def test_refused_update_writes_nothing(store_and_job):
    store, job_id = store_and_job
    before = refs_snapshot(store.root)
    with pytest.raises(JobStateError):
        _update(store, job_id, Update(event="approve"))
    with pytest.raises(JobStateError):
        _update(store, job_id, Update(step=3))
    assert refs_snapshot(store.root) == before


def test_update_from_a_stale_read_is_one_commit_or_none(store_and_job):
    """The branch moved between read and write: compare-and-swap fails, nothing changes."""
    store, job_id = store_and_job
    stale = store.read(job_id)

    class StaleStore:
        def read(self, jid):
            return stale

        def commit_transition(self, *a, **kw):
            return store.commit_transition(*a, **kw)

    _update(store, job_id, Update(event="activate"))
    after = refs_snapshot(store.root)
    with pytest.raises(ConcurrentUpdateError) as info:
        _update(StaleStore(), job_id, Update(event="cancel"))
    assert info.value.exit_code == 4
    assert refs_snapshot(store.root) == after
    assert store.read(job_id)[1].state == S.PENDING
    assert worktree_status(store.worktree_path(job_id)) == ""


def test_update_on_unknown_job_raises_a_logist_error(store_and_job):
    store, _ = store_and_job
    with pytest.raises(LogistError):
        _update(store, "no-such-job", Update(event="activate"))
