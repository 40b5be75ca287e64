"""A known-valid record changed without the models (logist/store/record_view.py,
docs/performance.md#fresh-processes): the same bytes as the models write, for every human
event from every state; what the view accepts and refuses; and the CLI taking the models for a
record it has not seen before, with git checking what was committed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from _core import create_job, git_input
from conftest import git

from logist.core.model import Budget, Execution, HistoryEntry, Manifest, RunInfo, Step, canonical_json, history_line
from logist.core.states import TRANSIENT, State, StepStatus
from logist.engine.human_transitions import HUMAN_EVENTS, _mutate_for
from logist.store import record_view
from logist.store.job_state import TABLE, Update, apply_update
from logist.store.objects import commit_message
from logist.store.record_view import EntryView, RecordView


def _fields(model) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_the_field_lists_are_the_models():
    assert record_view.MANIFEST_FIELDS == _fields(Manifest)
    assert record_view.STEP_FIELDS == _fields(Step)
    assert record_view.BUDGET_FIELDS == _fields(Budget)
    assert record_view.RUN_FIELDS == _fields(RunInfo)
    assert record_view.EXECUTION_FIELDS == _fields(Execution)
    assert Step.model_fields["status"].default == StepStatus.PENDING  # what reject/resubmit set


def _manifest(state: State, **kw) -> Manifest:
    return Manifest(id="view-job-1a2b", title="View", base="b" * 40, state=state, step=2, attempt=2,
                    created_at="2026-01-01T00:00:00.000Z", updated_at="2026-01-01T00:00:00.000Z",
                    cost_usd=0.1234567, seconds=1.23456, reason="before",
                    steps=[Step(name="one", status=StepStatus.SUCCESS, cost_usd=0.5),
                           Step(name="two", status=StepStatus.FAILURE, reason="it broke", attempt=2)],
                    runs=[RunInfo(run=1, from_step=1, started_at="2026-01-01T00:00:00.000Z")],
                    execution=Execution(transition_id="t1", host="h", started_at="2026-01-01T00:00:00.000Z")
                    if state in TRANSIENT else None, **kw)


CASES = [(s, e, msg) for (s, e) in sorted(TABLE, key=lambda k: (k[0].value, k[1]))
         if e in HUMAN_EVENTS and s not in TRANSIENT for msg in (None, "because: ghp_" + "x" * 36)]


@pytest.mark.parametrize("state,event,message", CASES)
def test_a_view_writes_what_the_models_write(state, event, message):
    m = _manifest(state)
    raw = canonical_json(m)
    view = RecordView.load(raw, m.id)
    assert view is not None
    kw = dict(now="2026-02-02T02:02:02.222Z", transition_id="abcdef0123456789")
    upd = lambda: Update(event=event, reason=message or f"{event} by user",  # noqa: E731
                         mutate=_mutate_for(event, message), data={"message": message} if message else None)
    new_m, entry_m = apply_update(m, upd(), **kw)
    new_v, entry_v = apply_update(view, upd(), **kw)
    assert isinstance(new_v, RecordView) and isinstance(entry_v, EntryView)
    assert new_v.canonical() == canonical_json(new_m)
    assert entry_v.line() == history_line(entry_m)
    for body in ("", message or ""):
        assert commit_message(m.id, entry_v, new_v, body=body, lease="l" * 40) == \
            commit_message(m.id, entry_m, new_m, body=body, lease="l" * 40)
    assert view.canonical() == raw  # the record read is left as it was


def test_only_a_complete_canonical_record_gets_a_view():
    m = _manifest(State.PENDING)
    raw = canonical_json(m)
    data = json.loads(raw)
    assert RecordView.load(raw, m.id) is not None
    assert RecordView.load(raw, "other-job-1a2b") is None
    assert RecordView.load(json.dumps(data, indent=4, sort_keys=True).encode() + b"\n", m.id) is None
    assert RecordView.load(b"not json", m.id) is None
    for change in (lambda d: d.pop("reason"), lambda d: d.update(extra=1), lambda d: d.update(cost_usd=1),
                   lambda d: d["steps"][0].pop("summary"), lambda d: d["budget"].update(max_seconds=5),
                   lambda d: d.update(step=3), lambda d: d.update(state="NOPE")):
        d = json.loads(raw)
        change(d)
        assert RecordView.load(record_view.canonical(d), m.id) is None, d


def test_a_view_sets_only_what_a_transition_changes_and_checks_it():
    view = RecordView.load(canonical_json(_manifest(State.PENDING)), "view-job-1a2b")
    assert view is not None
    view.state = State.SUSPENDED
    view.current.status = StepStatus.PENDING
    view.attempt = 0
    view.execution = None
    assert view.data["state"] == "SUSPENDED" and view.data["steps"][1]["status"] == "PENDING"
    for name, value in (("state", "NOPE"), ("attempt", -1), ("attempt", True), ("reason", 3),
                        ("execution", {"host": "x"}), ("title", "renamed"), ("no_such", 1)):
        with pytest.raises((ValueError, AttributeError)):
            setattr(view, name, value)
    with pytest.raises(ValueError):
        view.current.status = "DONE"


def test_a_record_not_seen_before_takes_the_models(cli, tmp_path):
    """A record edited by hand (valid, not canonical, not in the cache) is validated by the
    models and the transition writes it back canonical; git checks the commit."""
    job = create_job(cli, "--title", "hand", "--step", "one", "--activate")
    path = f".logist/jobs/{job}/manifest.json"
    data = json.loads(git(cli.repo, "show", f"logist/{job}:{path}"))
    del data["reason"]  # a default: still valid, no longer complete
    blob = git_input(cli.repo, "hash-object", "-w", "--stdin", input=json.dumps(data))
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "hand-index")}
    for args in (["read-tree", f"logist/{job}"], ["update-index", "--cacheinfo", f"100644,{blob},{path}"]):
        subprocess.run(["git", "-C", str(cli.repo), *args], env=env, check=True)
    tree = subprocess.run(["git", "-C", str(cli.repo), "write-tree"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
    commit = git(cli.repo, "commit-tree", tree, "-p", f"logist/{job}", "-m", "by hand")
    git(cli.repo, "update-ref", f"refs/heads/logist/{job}", commit)
    cli.ok("job", "suspend", job)
    written = git(cli.repo, "show", f"logist/{job}:{path}")
    assert json.loads(written)["state"] == "SUSPENDED" and json.loads(written)["reason"] == "suspend by user"
    assert written + "\n" == canonical_json(Manifest.model_validate_json(written)).decode()
    assert git(cli.repo, "rev-parse", f"logist/{job}~1") == commit
    git(cli.repo, "fsck", "--strict", "--no-dangling")
    hist = git(cli.repo, "show", f"logist/{job}:.logist/jobs/{job}/history.jsonl").splitlines()
    assert HistoryEntry.model_validate_json(hist[-1]).to_state == State.SUSPENDED


@pytest.mark.parametrize("opts", [
    dict(title="Add greeting", prompt=None, agent=None, step_prompts=["Write hello.txt"]),
    dict(title="Two steps", prompt="the whole job", agent="codex", step_prompts=["a", "  ", "b"]),
    dict(title="Prompt only", prompt="do it", agent="claude", step_prompts=[]),
    dict(title="Ünïcode ✓ and 'quotes' \"too\"", prompt="multi\nline\tprompt", agent=None,
         step_prompts=["token ghp_" + "y" * 36]),
    dict(title="x" * 300, prompt=None, agent="mock", step_prompts=["p"]),
])
@pytest.mark.parametrize("activate", [False, True])
def test_a_plain_create_writes_what_the_models_write(opts, activate, monkeypatch):
    from logist.engine import jobs

    monkeypatch.setattr(jobs, "new_transition_id", lambda: "0123456789abcdef")
    plain = jobs.plain_spec(**opts, default_agent="mock")
    assert plain is not None
    model = jobs.spec_from_options(**opts, default_agent="mock")
    kw = dict(job_id="plain-job-1a2b", base="c" * 40, now="2026-03-03T03:03:03.333Z", activate=activate)
    record, entry = jobs._plain_record(plain, **kw)
    manifest, first = jobs._model_record(model, **kw)
    assert record.canonical() == canonical_json(manifest)
    assert entry.line() == history_line(first)
    assert commit_message("plain-job-1a2b", entry, record) == commit_message("plain-job-1a2b", first, manifest)


@pytest.mark.parametrize("title,steps", [("tab\there", ["p"]), ("x" * 301, ["p"]), ("   ", ["p"]),
                                         ("nul", ["a\x00b"]), ("line\nbreak", ["p"])])
def test_options_the_models_must_judge_are_left_to_them(title, steps):
    from logist.engine import jobs

    assert jobs.plain_spec(title=title, prompt=None, agent=None, step_prompts=steps, default_agent="mock") is None
    if title != "nul":  # (a NUL in a step's prompt is the models' to judge too)
        with pytest.raises(Exception, match="title"):
            jobs.spec_from_options(title=title, prompt=None, agent=None, step_prompts=steps, default_agent="mock")


def test_an_agent_that_refuses_plain_options_refuses_both_ways():
    from logist.core.errors import AgentError
    from logist.engine import jobs

    opts = dict(title="cmd", prompt=None, agent="command", step_prompts=["p"], default_agent="mock")
    kw = dict(job_id="cmd-job-1a2b", base="c" * 40, now="2026-03-03T03:03:03.333Z", activate=False)
    with pytest.raises(AgentError) as plain:
        jobs._plain_record(jobs.plain_spec(**opts), **kw)
    with pytest.raises(AgentError) as model:
        jobs._model_record(jobs.spec_from_options(**opts), **kw)
    assert plain.value.message == model.value.message
