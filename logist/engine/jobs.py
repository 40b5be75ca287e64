"""Creating a job: its id, its record built from a job file (or options), its base, and the
create commit (the project's config checked first: logist.engine.config_check).

Returns results and raises LogistError; never prints or exits.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from logist.core.errors import JobFileError, UsageError
from logist.core.jobid import JobId
from logist.git import refs
from logist.store.jobstore import JobStore, new_transition_id, utcnow

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    from logist.core.jobfile import JobFile
    from logist.core.model import HistoryEntry, Manifest
    from logist.store.record_view import EntryView, RecordView

from logist.engine.config_check import check_project_config

_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
SLUG_MAX = 24  # ids stay short enough to type and to fit a column: <slug>-<4 chars>


def make_job_id(title: str, *, rand: str | None = None) -> JobId:
    """A slug of the title plus a short unique suffix, e.g. ``fix-login-7k2q``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if len(slug) > SLUG_MAX:  # cut at a word boundary when there is one
        cut = slug[:SLUG_MAX + 1]
        slug = cut[:cut.rfind("-")] if cut.rfind("-") >= SLUG_MAX * 2 // 3 else slug[:SLUG_MAX]
    slug = slug.strip("-") or "job"
    # 32 symbols: a random byte modulo 32 is uniform (no `secrets`: it loads OpenSSL)
    suffix = rand or "".join(_ALPHABET[b % len(_ALPHABET)] for b in os.urandom(4))
    return refs.validate_job_id(f"{slug}-{suffix}")


def build_manifest(spec: JobFile, *, job_id: JobId, base: str, now: str, origin: str = "local") -> Manifest:
    from logist.agents import get_agent
    from logist.core.model import Budget, Manifest, Step

    steps = []
    for i, s in enumerate(spec.steps, 1):
        agent_name = s.agent or (("command" if s.command else None) or spec.agent)
        agent = get_agent(agent_name)
        opts = s.options()
        if spec.env:  # the job's env references, under the step's own
            opts["env"] = {**spec.env, **opts.get("env", {})}
        agent.validate_options(opts)
        steps.append(Step(name=s.name or f"step-{i}", prompt=s.prompt, agent=agent_name, options=opts,
                          requires_approval=s.requires_approval))
    patterns = dict(spec.observer.patterns)
    if patterns:
        from logist.engine.observer import validate_patterns

        validate_patterns(patterns)
    if spec.sentinel:
        from logist.engine.sentinel import SentinelConfig

        SentinelConfig.from_dict(dict(spec.sentinel))
    return Manifest(id=job_id, title=spec.title, prompt=spec.prompt, base=base, agent=spec.agent,
                    requires_approval=spec.requires_approval, steps=steps,
                    budget=Budget(**spec.budget.model_dump()), sentinel=dict(spec.sentinel),
                    observer_patterns=patterns, created_at=now, updated_at=now, origin=origin,
                    trusted=origin == "local")


def _option_steps(title: str | None, prompt: str | None, step_prompts: list[str]) -> list[tuple[str, str]]:
    """(name, prompt) of each step the options give; UsageError when there is no title or step."""
    if not title:
        raise UsageError("a job needs a title: pass --title or --file",
                         hint='logist job create --title "Add greeting" --step "Create hello.txt"')
    steps = [(f"step-{i}", p) for i, p in enumerate(step_prompts, 1) if p.strip()]
    if not steps:
        if not prompt:
            raise UsageError("a job needs at least one step: pass --step PROMPT (repeatable), "
                             "--prompt, or --file")
        steps = [("step-1", prompt)]
    return steps


class PlainSpec(NamedTuple):
    """`job create` options checked without the job-file models (see :func:`plain_spec`)."""

    title: str
    prompt: str
    agent: str
    steps: list[tuple[str, str]]


def plain_spec(*, title: str | None, prompt: str | None, agent: str | None, step_prompts: list[str],
               default_agent: str) -> PlainSpec | None:
    """The options of ``job create --title ... --step ...`` when they are plainly what the job
    file's models accept (a title of one line of text within their length, no NUL anywhere);
    None otherwise: then :func:`spec_from_options` judges them with the models (and their
    messages). The record is then built without the models (docs/performance.md#fresh-processes)."""
    from logist.core.limits import has_control

    steps = _option_steps(title, prompt, step_prompts)
    assert title is not None
    agent = agent or default_agent
    if not 1 <= len(title) <= 300 or not title.strip() or has_control(title):
        return None
    if any("\x00" in text for text in (prompt or "", agent, *(p for _, p in steps))):
        return None
    return PlainSpec(title, prompt or "", agent, steps)


def spec_from_options(*, title: str | None, prompt: str | None, agent: str | None,
                      step_prompts: list[str], default_agent: str) -> JobFile:
    from logist.core.jobfile import JobFile, StepFile

    steps = [StepFile(name=name, prompt=p) for name, p in _option_steps(title, prompt, step_prompts)]
    assert title is not None  # (_option_steps refuses a job without one)
    from pydantic import ValidationError

    from logist.core.jobfile import describe

    try:
        return JobFile(title=title, prompt=prompt or "", agent=agent or default_agent, steps=steps)
    except ValidationError as exc:
        raise JobFileError(f"invalid job: {describe(exc)}", hint="nothing was created") from None


def _plain_record(spec: PlainSpec, *, job_id: str, base: str, now: str, activate: bool
                  ) -> tuple[RecordView, EntryView]:
    """What :func:`_model_record` makes of the same options, without the models
    (tests/test_record_view.py compares the bytes)."""
    from logist.agents import get_agent
    from logist.core.states import State
    from logist.store.job_state import transition_state
    from logist.store.record_view import EntryView, new_record

    agent = get_agent(spec.agent)
    for _ in spec.steps:
        agent.validate_options({})
    state = transition_state(State.DRAFT, "activate") if activate else State.DRAFT
    record = new_record(job_id=job_id, title=spec.title, prompt=spec.prompt, agent=spec.agent, base=base,
                        steps=spec.steps, state=state, now=now)
    entry = EntryView({"t": now, "event": "create", "run": 1, "step": 1, "from": None, "to": state.value,
                       "transition_id": new_transition_id(), "reason": f"created from {spec.title!r}",
                       "outcome": None, "cost_usd": None, "tokens": None, "commit": None, "data": {}})
    return record, entry


def resolve_base(store: JobStore, base: str | None) -> str:
    from logist.git.gitcmd import git

    rev = base or "HEAD"
    if rev.startswith("-"):
        raise UsageError(f"invalid base {rev!r}")
    proc = git(["rev-parse", "--verify", "-q", "--end-of-options", rev + "^{commit}"],
               cwd=store.root, check=False)
    if proc.returncode != 0:
        raise UsageError(f"base {rev!r} is not a commit in this repository",
                         hint="pass --base with a branch, tag or commit (default: HEAD)")
    return proc.stdout.strip()


def create_job(store: JobStore, spec: JobFile | PlainSpec, *, base: str | None = None, activate: bool = False,
               job_id: str | None = None) -> Manifest | RecordView:
    """Create a job (one commit on a new branch). Everything is checked first (the project's
    config included: :func:`check_project_config`), so a refusal creates nothing. A
    :class:`PlainSpec` is built into a record without the models (a RecordView)."""
    store.require_initialized()
    check_project_config(store)
    base_oid = resolve_base(store, base)
    now = utcnow()
    jid = refs.validate_job_id(job_id) if job_id is not None else make_job_id(spec.title)
    record: Manifest | RecordView
    first: HistoryEntry | EntryView
    if isinstance(spec, PlainSpec):
        record, first = _plain_record(spec, job_id=jid, base=base_oid, now=now, activate=activate)
    else:
        record, first = _model_record(spec, job_id=jid, base=base_oid, now=now, activate=activate)
    store.create_job(record, first, make_worktree=not store.config.worktrees.at_first_step)
    return record


def _model_record(spec: JobFile, *, job_id: JobId, base: str, now: str, activate: bool
                  ) -> tuple[Manifest, HistoryEntry]:
    """The record of a new job and its first history entry, with the models."""
    from logist.core.model import HistoryEntry

    manifest = build_manifest(spec, job_id=job_id, base=base, now=now)
    if activate:  # born activated: the table's `activate`, in the create commit
        from logist.store.job_state import transition_state

        manifest.state = transition_state(manifest.state, "activate")
    states: dict[str, Any] = {"from": None, "to": manifest.state}  # the fields' names are keywords
    entry = HistoryEntry(t=now, event="create", run=1, step=1, transition_id=new_transition_id(),
                         reason=f"created from {spec.title!r}", **states)
    return manifest, entry
