"""logist.core.model: strict records, schema version, canonical JSON and round trips (docs/refs.md#the-job-record)."""

from __future__ import annotations

import json

import pytest
from _core import create_job, tip
from conftest import git
from pydantic import ValidationError

from logist.core.model import (
    SCHEMA_VERSION,
    Budget,
    HistoryEntry,
    Manifest,
    State,
    Step,
    canonical_json,
    history_line,
    parse_history,
    parse_manifest,
)
from logist.git import refs

BASE = "0123456789abcdef0123456789abcdef01234567"


def make(**kw) -> Manifest:
    data = dict(id="add-greeting-x2k9", title="Add greeting", prompt="Say hello", base=BASE,
                created_at="2024-05-01T10:00:00.000Z", updated_at="2024-05-01T10:00:00.000Z",
                steps=[Step(name="write", prompt="Create hello.txt", options={"mock": {"b": 1, "a": 2}}),
                       Step(name="check", prompt="Check it", agent="command",
                            options={"command": ["python3", "-c", "print(1)"]})],
                budget=Budget(max_cost_usd=2.0))
    data.update(kw)
    return Manifest(**data)


def test_record_has_the_documented_fields():
    fields = set(Manifest.model_fields)
    assert {"id", "title", "prompt", "state", "step", "run", "base", "steps", "budget", "cost_usd",
            "seconds", "created_at", "updated_at", "schema_version"} <= fields
    assert {"name", "prompt", "agent", "options", "status"} <= set(Step.model_fields)
    assert {"max_cost_usd", "max_seconds", "max_attempts"} <= set(Budget.model_fields)
    m = make()
    assert m.schema_version == SCHEMA_VERSION == 1
    assert (m.state, m.step, m.run) == (State.DRAFT, 1, 1)


def test_canonical_json_format():
    raw = canonical_json(make())
    text = raw.decode()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert list(data) == sorted(data)
    assert '\n  "base": ' in text  # two-space indent


def test_identical_state_gives_identical_blob():
    a = make()
    # the same state built another way: fields in another order, through JSON and a dict
    b = Manifest.model_validate(dict(reversed(list(json.loads(canonical_json(a)).items()))))
    c = make(steps=[Step(options={"mock": {"a": 2, "b": 1}}, prompt="Create hello.txt", name="write"),
                    Step(agent="command", name="check", prompt="Check it",
                         options={"command": ["python3", "-c", "print(1)"]})])
    assert canonical_json(a) == canonical_json(b) == canonical_json(c)
    assert canonical_json(a) != canonical_json(make(cost_usd=0.01))


def test_model_round_trip():
    m = make(state=State.APPROVAL_REQUIRED, step=2, cost_usd=0.125, tokens=42, seconds=3.5, reason="é ✓")
    raw = canonical_json(m)
    back = parse_manifest(raw)
    assert back == m
    assert canonical_json(back) == raw
    assert parse_manifest(raw.decode()) == m


def test_unicode_is_kept_verbatim():
    raw = canonical_json(make(title="Grüße ✓"))
    assert "Grüße ✓".encode() in raw


@pytest.mark.parametrize("change", [
    {"unknown_key": 1},
    {"schema_version": 2},
    {"id": "Has-Caps"}, {"id": "../x"}, {"id": "--upload-pack=x"}, {"id": "trailing-"}, {"id": "abc\n"},
    {"id": "x" * 64},
    {"state": "RUNNING"},
    {"steps": []},
    {"step": 0}, {"step": 3},
    {"run": 0},
    {"base": "main"},
    {"title": ""},
])
def test_invalid_records_are_refused(change):
    data = json.loads(canonical_json(make()))
    data.update(change)
    with pytest.raises(ValidationError):
        parse_manifest(json.dumps(data))


def test_nested_unknown_keys_are_refused():
    data = json.loads(canonical_json(make()))
    data["steps"][0]["extra"] = True
    with pytest.raises(ValidationError):
        parse_manifest(json.dumps(data))
    data = json.loads(canonical_json(make()))
    data["budget"]["max_tokens"] = 5
    with pytest.raises(ValidationError):
        parse_manifest(json.dumps(data))


def test_history_line_round_trip():
    e = HistoryEntry(t="2024-05-01T10:00:00.000Z", event="transition", run=1, step=2,
                     transition_id="abc", reason="go", cost_usd=0.5,
                     **{"from": State.HARVESTING, "to": State.PENDING})
    line = history_line(e)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = json.loads(line)
    assert data["from"] == "HARVESTING" and data["to"] == "PENDING"
    assert "data" not in data  # empty data is left out
    assert parse_history(line + history_line(e)) == [e, e]


def test_history_with_unknown_event_is_refused():
    with pytest.raises(ValidationError):
        parse_history(b'{"t": "x", "event": "explode", "run": 1}\n')


def test_current_step_and_count():
    m = make(step=2)
    assert m.current.name == "check" and m.step_count == 2


@pytest.mark.parametrize("text", ["a", "fix-login-7k2q", "9", "x" * 63, "", "-a", "a-", "A", "a_b",
                                  "x" * 64, "a\n", "a/b", "..", "a b"])
def test_model_and_refs_agree_on_job_ids(text):
    """A record's id and a ref's job id follow one rule (logist.core.jobid)."""
    from logist.core.errors import InvalidIdError
    from logist.core.jobid import JobId

    try:
        refs.validate_job_id(text)
        ref_ok = True
    except InvalidIdError:
        ref_ok = False
    try:
        m = make(id=text)
        model_ok = True
    except ValueError:
        model_ok = False
    assert ref_ok == model_ok
    if model_ok:  # a record read from git carries a checked id
        assert type(m.id) is JobId and m.id == text
        assert type(parse_manifest(canonical_json(m)).id) is JobId


def test_blob_on_the_branch_is_canonical(cli):
    """What the store commits is exactly canonical_json of what it reads back."""
    job_id = create_job(cli, "--title", "Canonical", "--step", "one")
    repo = cli.repo
    raw = git(repo, "cat-file", "blob", f"{tip(repo, job_id)}:.logist/jobs/{job_id}/manifest.json") + "\n"
    m = parse_manifest(raw)
    assert canonical_json(m).decode() == raw
    assert json.loads(raw)["schema_version"] == 1
