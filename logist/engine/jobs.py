"""Use-cases on job records that run no agent: create, read, and human transitions.

Layer 5: returns results and raises LogistError; never prints or exits.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logist.core.errors import JobFileError, JobStateError, UsageError
from logist.core.states import TERMINAL, TRANSIENT, State, record_in_flight
from logist.git import refs
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, acquire, read_lock

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    from logist.core.jobfile import JobFile
    from logist.core.model import Manifest

_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
SLUG_MAX = 24  # ids stay short enough to type and to fit a column: <slug>-<4 chars>


def make_job_id(title: str, *, rand: str | None = None) -> str:
    """A slug of the title plus a short unique suffix, e.g. ``fix-login-7k2q``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if len(slug) > SLUG_MAX:  # cut at a word boundary when there is one
        cut = slug[:SLUG_MAX + 1]
        slug = cut[:cut.rfind("-")] if cut.rfind("-") >= SLUG_MAX * 2 // 3 else slug[:SLUG_MAX]
    slug = slug.strip("-") or "job"
    suffix = rand or "".join(secrets.choice(_ALPHABET) for _ in range(4))
    return refs.validate_job_id(f"{slug}-{suffix}")


def build_manifest(spec: JobFile, *, job_id: str, base: str, now: str, origin: str = "local") -> Manifest:
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


def spec_from_options(*, title: str | None, prompt: str | None, agent: str | None,
                      step_prompts: list[str], default_agent: str) -> JobFile:
    from logist.core.jobfile import JobFile, StepFile

    if not title:
        raise UsageError("a job needs a title: pass --title or --file",
                         hint='logist job create --title "Add greeting" --step "Create hello.txt"')
    steps = [StepFile(name=f"step-{i}", prompt=p) for i, p in enumerate(step_prompts, 1) if p.strip()]
    if not steps:
        if not prompt:
            raise UsageError("a job needs at least one step: pass --step PROMPT (repeatable), "
                             "--prompt, or --file")
        steps = [StepFile(name="step-1", prompt=prompt)]
    from pydantic import ValidationError

    from logist.core.jobfile import describe

    try:
        return JobFile(title=title, prompt=prompt or "", agent=agent or default_agent, steps=steps)
    except ValidationError as exc:
        raise JobFileError(f"invalid job: {describe(exc)}", hint="nothing was created") from None


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


@dataclass
class ConfigProblem:
    """One invalid setting of the project's config (what `logist doctor` reports)."""

    path: str  # the file that sets it (.logist/config.toml or .logist/config.local.toml)
    key: str  # dotted, e.g. observer.patterns.deploy or sentinel.silence_seconds
    message: str  # "<file>: <key> (line n): why"
    hint: str


def config_problems(store: JobStore) -> list[ConfigProblem]:
    """Every invalid setting of the project's config (``.logist/config.toml`` +
    ``config.local.toml``), judged the way a step will use it: the model (types, unknown keys:
    the first such error), every ``[observer.patterns]`` regex, and every ``[sentinel]`` setting
    (known key, right type, in range; the raw TOML value, so ``"300"`` is not a number)."""
    from logist.core.config import MODEL_HINT, config_files, model_error, read_layers, source_of, where
    from logist.core.errors import ConfigError
    from logist.engine.observer import validate_patterns
    from logist.engine.sentinel import SentinelConfig

    root = store.config_root()
    out: list[ConfigProblem] = []
    fix = "fix it in the file named above and run the command again"
    try:
        layers = read_layers(root)
    except ConfigError as exc:  # not TOML at all
        path = next((p for p in config_files(root) if exc.message.startswith(f"{p}:")),
                    config_files(root)[0])
        return [ConfigProblem(str(path), "", exc.message, exc.hint or fix)]
    model_key = None
    bad = model_error(layers)
    if bad is not None:
        parts, why = bad
        model_key = ".".join(parts)
        out.append(ConfigProblem(str(source_of(layers, parts)), model_key,
                                 f"{where(layers, parts)}: {why}", MODEL_HINT))

    def problem(parts: list[str], why: str, hint: str = fix) -> None:
        key = ".".join(parts)
        if key != model_key:
            out.append(ConfigProblem(str(source_of(layers, parts)), key,
                                     f"{where(layers, parts)}: {why}", hint))

    patterns: dict[str, Any] = {}
    sentinel: dict[str, Any] = {}
    for _, data in layers:
        observer = data.get("observer")
        if isinstance(observer, dict) and isinstance(observer.get("patterns"), dict):
            patterns.update(observer["patterns"])
        if isinstance(data.get("sentinel"), dict):
            sentinel.update(data["sentinel"])
    for name, pattern in patterns.items():
        try:
            validate_patterns({name: pattern})
        except ConfigError as exc:
            problem(["observer", "patterns", str(name)], exc.message)
    known = set(SentinelConfig.__dataclass_fields__)
    valid = {}
    for key, value in sentinel.items():
        if key not in known:
            problem(["sentinel", str(key)], "unknown sentinel setting",
                    "known settings: " + ", ".join(sorted(known)))
            continue
        try:
            SentinelConfig.from_dict({key: value})
        except ConfigError as exc:
            problem(["sentinel", str(key)], exc.message.removeprefix(f"sentinel.{key} "))
            continue
        valid[key] = value
    try:
        SentinelConfig.from_dict(valid)
    except ConfigError as exc:
        problem(["sentinel"], exc.message)
    if model_key is None:
        try:
            store.worktrees_dir()
        except ConfigError as exc:
            out.append(ConfigProblem(str(source_of(layers, ["worktrees", "dir"])), "worktrees.dir",
                                     exc.message, exc.hint or fix))
    return out


def check_project_config(store: JobStore) -> None:
    """ConfigError for the first of :func:`config_problems` (naming the file, key and why)."""
    from logist.core.errors import ConfigError

    problems = config_problems(store)
    if problems:
        raise ConfigError(problems[0].message, hint=problems[0].hint)


def create_job(store: JobStore, spec: JobFile, *, base: str | None = None, activate: bool = False,
               job_id: str | None = None) -> Manifest:
    """Create a job (one commit on a new branch). Everything is checked first (the project's
    config included: :func:`check_project_config`), so a refusal creates nothing."""
    store.require_initialized()
    check_project_config(store)
    base_oid = resolve_base(store, base)
    now = utcnow()
    jid = refs.validate_job_id(job_id) if job_id is not None else make_job_id(spec.title)
    from logist.core.model import HistoryEntry

    manifest = build_manifest(spec, job_id=jid, base=base_oid, now=now)
    if activate:  # born activated: the table's `activate`, in the create commit
        from logist.store.job_state import transition_state

        manifest.state = transition_state(manifest.state, "activate")
    states: dict[str, Any] = {"from": None, "to": manifest.state}  # the fields' names are keywords
    entry = HistoryEntry(t=now, event="create", run=1, step=1, transition_id=new_transition_id(),
                         reason=f"created from {spec.title!r}", **states)
    store.create_job(manifest, entry, make_worktree=not store.config.worktrees.at_first_step)
    return manifest


# Human transitions (docs/states.md): activate, suspend, resume, cancel, approve, reject, resubmit.
HUMAN_EVENTS = ("activate", "suspend", "resume", "cancel", "approve", "reject", "resubmit")


def _mutate_for(event: str, message: str | None):
    from logist.core.model import Step

    def mutate(m: Manifest) -> None:
        if event == "reject":
            # Rejection sends the last step back: it runs again with the reviewer's message.
            m.attempt = 0
            m.current.status = Step.model_fields["status"].default
            m.current.reason = message or "rejected"
        elif event == "resubmit":
            m.attempt = 0
            m.current.status = Step.model_fields["status"].default
        elif event == "approve":
            m.current.reason = message or ""
        if event in ("cancel", "suspend", "resume", "resubmit", "approve", "reject"):
            m.execution = None
    return mutate


def human_transition(store: JobStore, job_id: str, event: str, *, message: str | None = None) -> Manifest:
    """Apply one human event under the job's lock; one commit, or a JobStateError and no change."""
    if event not in HUMAN_EVENTS:
        raise UsageError(f"unknown action {event!r}")
    refs.validate_job_id(job_id)
    tip, manifest = store.read(job_id)
    if manifest.state in TRANSIENT and event in ("suspend", "cancel"):
        pass  # allowed by the table; the lock below refuses while a runner is alive
    with acquire(store, job_id) as lease:
        return _human_locked(store, lease, job_id, event, message)


def _human_locked(store: JobStore, lease: Lease, job_id: str, event: str, message: str | None) -> Manifest:
    from logist.core.faults import crash_point
    from logist.store.job_state import Update, update_job_manifest

    crash_point("human-after-lock")
    tip, manifest = store.read(job_id)
    update = Update(event=event, reason=message or f"{event} by user", mutate=_mutate_for(event, message),
                    data={"message": message} if message else None)
    extra: dict[str, Any] = {}
    if manifest.state in TRANSIENT:
        # An interrupted step (its runner is gone: we hold the lease now). Judge logist's own
        # record, stop an agent that still runs, and keep whatever it did to the branch.
        from logist.engine.agent_proc import agent_status, stop_agent
        from logist.engine.settle import own_tip, settle_branch

        own, manifest = own_tip(store, job_id)
        if manifest.state == State.EXECUTING:
            stop_agent(agent_status(store, manifest))
        tip, warnings = settle_branch(store, job_id, own)
        extra = {"parent": tip, "history_from": own}
        if warnings:
            update.data = {**(update.data or {}), "warnings": warnings}
    if event == "resubmit" and not extra and manifest.state == State.INTERVENTION_REQUIRED:
        person = commit_persons_changes(store, lease, job_id, tip, message)
        if person is not None:  # the transition builds on the person's commit
            extra = {"parent": person, "history_from": tip}
            tip = person
            update.data = {**(update.data or {}), "person_commit": person}
    done = update_job_manifest(store, job_id, update, now=utcnow(), transition_id=new_transition_id(),
                               tip=tip, current=manifest, lease=lease.oid,
                               body=message or "", **extra)
    if done is None:  # pragma: no cover - an event always changes the state
        return manifest
    _, new = done
    crash_point("human-after-commit")
    from logist.engine.stop import clear_request

    clear_request(store, job_id)  # answered, or stale: it must not stop a later run
    if manifest.state in TRANSIENT:
        store.unlock_worktree(job_id)
    if new.state in TERMINAL:
        store.release_worktree(job_id)  # a worktree with changes stays (`logist doctor` shows it)
    return new


def commit_persons_changes(store: JobStore, lease: Lease, job_id: str, tip: str,
                           message: str | None) -> str | None:
    """`job resubmit`: what a person changed in the job's worktree (outside .logist/) since the
    step failed becomes their own commit on the job branch, before the step runs again (author
    and committer: their git identity; trailers ``Logist-Job`` and ``Logist-Event: resubmit``),
    so the next harvest holds only the agent's work. None when nothing changed. The caller holds
    the job's lease; the branch moves by compare-and-swap from ``tip``."""
    from logist.core.errors import GitError
    from logist.git.gitcmd import git

    wt = store.worktree_path(job_id)
    if not (wt / ".git").exists():
        return None
    outside = ["--", ":(top)", ":(top,exclude).logist"]
    status = git(["status", "--porcelain", "--untracked-files=all", *outside], cwd=wt, check=False)
    if status.returncode != 0 or not status.stdout.strip():
        return None
    head = git(["rev-parse", "HEAD"], cwd=wt).stdout.strip()
    if head != tip:
        raise JobStateError(f"the worktree of job {job_id} is not at the job's tip ({head[:12]} vs {tip[:12]})",
                            hint=f"commit or reset in {wt} first, or run `logist doctor`")
    index = store.paths.logist_dir / "run" / job_id / "resubmit.index"
    index.parent.mkdir(parents=True, exist_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(["read-tree", tip], cwd=wt, env=env)
        git(["add", "-A", *outside], cwd=wt, env=env)
        tree = git(["write-tree"], cwd=wt, env=env).stdout.strip()
    finally:
        index.unlink(missing_ok=True)
    subject = f"logist({job_id}): changes made by hand before resubmit"
    body = (message.strip() + "\n\n") if message and message.strip() else ""
    msg = f"{subject}\n\n{body}Logist-Job: {job_id}\nLogist-Event: resubmit\n"
    proc = git(["commit-tree", tree, "-p", tip], cwd=wt, input=msg, check=False)
    if proc.returncode != 0:
        raise GitError(f"cannot commit your changes in {wt}: {proc.stderr.strip()}",
                       hint="set your identity (`git config user.name` / `user.email`) and run resubmit again")
    oid = proc.stdout.strip()
    store.publish(job_id, oid, tip, lease=lease.oid)
    git(["reset", "-q", "--", "."], cwd=wt, check=False)  # the worktree's index to the new commit
    return oid


@dataclass
class JobStatus:
    """What `job status` shows: the tip's record as validated JSON data (no models needed)."""

    record: dict[str, Any]
    tip: str
    worktree: str
    holder: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = self.record
        steps = d["steps"]
        n = d.get("step", 1)
        current = steps[min(n, len(steps)) - 1]
        return {
            "id": d["id"], "title": d["title"], "state": d["state"], "step": n,
            "step_count": len(steps), "step_name": current.get("name", ""),
            "agent": current.get("agent", d.get("agent", "mock")),
            "attempt": d.get("attempt", 0), "run": d.get("run", 1), "branch": refs.branch_name(d["id"]),
            "worktree": self.worktree, "worktree_exists": os.path.exists(os.path.join(self.worktree, ".git")),
            "head": self.tip, "base": d["base"],
            "cost_usd": d.get("cost_usd", 0.0), "tokens": d.get("tokens", 0),
            "seconds": d.get("seconds", 0.0), "reason": d.get("reason", ""),
            "updated_at": d["updated_at"], "created_at": d["created_at"], "holder": self.holder,
            "interrupted": record_in_flight(d) and (self.holder is None or bool(self.holder.get("stale"))),
            "left_out": [f"step {i}: {line}" for i, s in enumerate(steps, 1) for line in s.get("left_out") or []],
        }


def holder_info(store: JobStore, job_id: str) -> dict[str, Any] | None:
    current = read_lock(store, job_id)
    if current is None:
        return None
    return holder_dict(*current)


def holder_dict(oid: str, holder) -> dict[str, Any]:
    """The ``holder`` object of `job status --json` for a lock (its oid and parsed record)."""
    if holder is None:
        return {"lock": oid, "valid": False, "stale": True, "stale_reason": "unreadable lock record"}
    reason = holder.stale_reason()
    return {"lock": oid, "pid": holder.pid, "host": holder.host, "command": holder.command,
            "since": _iso(holder.acquired_at), "heartbeat_at": holder.heartbeat_at,
            "lease_seconds": holder.lease_seconds, "stale": reason is not None, "stale_reason": reason}


def _iso(epoch: float) -> str | None:
    """ISO 8601 UTC (what every time in --json is), e.g. ``2026-12-06T09:41:07Z``."""
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


def worktree_if_any(store: JobStore, job_id: str) -> str | None:
    """Where git says the job's worktree is, or None when it has none now (no config read)."""
    admin = store.paths.common_dir / "worktrees" / job_id
    if not admin.is_dir():
        return None
    path = store.existing_worktree(job_id)
    return str(path) if path.exists() else None


def status_rows(store: JobStore, records, lock_refs: dict[str, str] | None = None
                ) -> list[dict[str, Any]]:
    """`job status --json` objects for many jobs at once (what `job list --json` prints):
    the locks are read with one git process, the worktree from git's own files (None when the
    job has none now); invalid records give ``{"id", "state": "INVALID", "error", "head"}``."""
    from logist.store.locks import read_locks

    locks = read_locks(store, lock_refs) if lock_refs is None or lock_refs else {}
    rows: list[dict[str, Any]] = []
    for rec in records:
        if rec.data is None:
            rows.append({"id": rec.id, "state": "INVALID", "error": rec.error, "head": rec.tip})
            continue
        lock = locks.get(rec.id)
        holder = holder_dict(*lock) if lock else None
        rows.append(JobStatus(rec.data, rec.tip, worktree_if_any(store, rec.id) or "", holder).to_dict())
        if not rows[-1]["worktree"]:
            rows[-1]["worktree"] = None
    return rows


def job_status(store: JobStore, job_id: str) -> JobStatus:
    tip, record = store.read_record(job_id)
    return JobStatus(record, tip, str(store.existing_worktree(job_id)), holder_info(store, job_id))


def selected_job(store: JobStore, job_id: str | None) -> str:
    """Which job a command means (docs/cli.md, "The job id"): the id given (or a unique prefix
    of one: :func:`resolve_job`), else $LOGIST_JOB, else the job whose worktree the command runs
    in, else the one chosen with `logist job select`."""
    import os

    if job_id is not None:  # given, even empty: it must be valid
        return resolve_job(store, job_id)
    env = os.environ.get("LOGIST_JOB")
    if env:
        return refs.validate_job_id(env)
    here = job_of_worktree(store)
    if here is not None:
        return here
    path = store.paths.logist_dir / "selected"
    try:
        chosen = path.read_text().strip()
    except OSError:
        chosen = ""
    if not chosen:
        raise UsageError("no job given and none selected",
                         hint=_candidates_hint(store, "pass one of: ", "there are no jobs yet: "
                                               "`logist job create --title ...` makes one")
                         + "; or set one with `logist job select ID` (or $LOGIST_JOB)")
    return refs.validate_job_id(chosen)


def job_of_worktree(store: JobStore) -> str | None:
    """The job whose worktree the store was opened in (its HEAD is ``logist/<id>``), or None.
    Reads one file; no git process."""
    if store.paths.git_dir == store.paths.common_dir:
        return None
    try:
        head = (store.paths.git_dir / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    prefix = "ref: " + refs.BRANCH_PREFIX
    if not head.startswith(prefix):
        return None
    try:
        return refs.validate_job_id(head[len(prefix):])
    except UsageError:
        return None


def _job_ids(store: JobStore) -> list[str]:
    return [jid for jid, _ in store._refs_under(refs.BRANCH_PREFIX)[refs.BRANCH_PREFIX]]


def _candidates_hint(store: JobStore, lead: str, none: str, ids: list[str] | None = None) -> str:
    ids = _job_ids(store) if ids is None else ids
    if not ids:
        return none
    shown = ", ".join(sorted(ids)[:8]) + (f" (and {len(ids) - 8} more: `logist job list`)" if len(ids) > 8 else "")
    return lead + shown


def resolve_job(store: JobStore, given: str) -> str:
    """The job ``given`` names: its id, or a prefix of exactly one job's id. An ambiguous prefix
    is a UsageError listing the candidates; an unknown one a JobNotFoundError. The one place ids
    typed by a person are resolved (every command with a job argument goes through it)."""
    from logist.core.errors import JobNotFoundError

    if isinstance(given, str) and given.endswith("-") and refs.JOB_ID_RE.match(given):
        ids = _job_ids(store)  # "fix-the-": a prefix ending where a word does
        matches = [j for j in ids if j.startswith(given)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(f"{given!r} is the start of {len(matches)} job ids",
                             hint=_candidates_hint(store, "say which: ", "", matches))
    refs.validate_job_id(given)  # a prefix follows the rules of ids too
    if (store.paths.common_dir / refs.branch_ref(given)).is_file():
        return given  # an existing job (a loose branch ref): no git process
    ids = _job_ids(store)
    if given in ids:
        return given
    matches = [j for j in ids if j.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{given!r} is the start of {len(matches)} job ids",
                         hint=_candidates_hint(store, "say which: ", "", matches))
    if store.restore_branch(given):  # a deleted branch whose tip logist kept (docs/refs.md)
        return given
    raise JobNotFoundError(f"no job {given!r}",
                           hint=_candidates_hint(store, "jobs here: ", "there are no jobs yet")
                           + "; `logist job list --all` lists them")


def select_job(store: JobStore, job_id: str) -> str:
    job_id = resolve_job(store, job_id)
    store.tip(job_id)  # must exist
    path = store.paths.logist_dir / "selected"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(job_id + "\n")
    return job_id
