"""`logist job create|list`; the other job commands are in `job_info` (status, show, history,
select, path) and `job_transitions` (the human transitions and stop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from logist import cli
from logist.cli.commands.job_info import one_line
from logist.cli.commands.job_warnings import warn_interrupted, warn_merged_record
from logist.cli.output import emit_json, say, table, warn


def create(*, title: str | None = None, prompt: str | None = None, agent: str | None = None,
           step: list[str] | None = None,
           file: Path | None = None, base: str | None = None, activate: bool = False,
           id: str | None = None, json_: bool = False) -> int:
    """Create a job: branch logist/<id> from --base (default HEAD) and a first commit.

    The job's worktree is made when its first step starts (`logist job path` makes it sooner;
    [worktrees] at_first_step = false makes it here: docs/architecture.md#worktrees).

    Parameters
    ----------
    title
        What the job is (the id is a slug of it plus a short suffix).
    prompt
        What the whole job is for; given to the agent of every step.
    agent
        Default agent of every step (mock, command, claude, codex, aider, cline, gemini).
    step
        A step's prompt; repeat for several steps.
    file
        A TOML job file (`logist help jobfile`); --title/--prompt/--agent override its fields.
    base
        Branch, tag or commit the job starts from (default: HEAD).
    activate
        Make the job PENDING at once (otherwise it is a DRAFT until `logist job activate`).
    id
        Use this id instead of a generated one.
    json_
        Print the new job as `job status --json` does.
    """
    from logist.core.errors import UsageError
    from logist.engine.jobs import create_job, plain_spec, spec_from_options

    for option, value in (("--title", title), ("--agent", agent), ("--base", base)):
        if value is not None and not value.strip():
            raise UsageError(f"{option} is empty", hint=f"give {option} a value, or leave the option out")
    store = cli.store()
    store.require_initialized()
    spec: Any
    if file is not None:
        from logist.core.jobfile import parse_job_file

        spec = parse_job_file(file)
        updates = {k: v for k, v in (("title", title), ("prompt", prompt), ("agent", agent)) if v}
        if updates:
            spec = spec.model_copy(update=updates)
    else:  # plain options need no job-file models; anything else is judged by them
        options: dict[str, Any] = dict(title=title, prompt=prompt, agent=agent, step_prompts=step or [],
                                       default_agent=store.config.default_agent)
        spec = plain_spec(**options) or spec_from_options(**options)
    m = create_job(store, spec, base=base, activate=activate, job_id=id)
    _warn_uncommitted(store, m.base)
    if json_:
        from logist.engine.job_status import job_status

        emit_json(job_status(store, m.id).to_dict())
    else:
        say(m.id)
    return 0


def _warn_uncommitted(store, base: str) -> None:
    """The user's tree has changes to tracked files: the job starts from a commit and will not
    see them (one git process)."""
    from logist.git.gitcmd import git

    proc = git(["status", "--porcelain", "--untracked-files=no"], cwd=store.root, check=False)
    changed = [line[3:] for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []
    if not changed:
        return
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    warn(f"your working tree has uncommitted changes ({shown}); the job starts from commit "
         f"{base[:12]} and will not see them: commit them first, or pass --base")


NEEDS_ME = ("INTERVENTION_REQUIRED", "APPROVAL_REQUIRED")


def _parse_states(values: list[str] | None) -> set[str] | None:
    from logist.core.errors import UsageError
    from logist.core.states import State

    if not values:
        return None
    known = {s.value for s in State} | {"INVALID"}
    out = {v.strip().upper().replace("-", "_") for raw in values for v in raw.split(",") if v.strip()}
    bad = sorted(out - known)
    if bad:
        raise UsageError(f"unknown state {', '.join(bad)}",
                         hint="states: " + ", ".join(s.value for s in State))
    return out


def _parse_since(text: str | None):
    """A cutoff datetime (UTC) from "90s", "30m", "2h", "3d", "1w" ago, or an ISO date/time."""
    import re
    from datetime import datetime, timedelta, timezone

    from logist.core.errors import UsageError

    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return datetime.now(timezone.utc) - timedelta(seconds=secs)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: give an age (30m, 2h, 3d, 1w) or a date (2026-12-01, "
                         "2026-12-01T09:00)") from None
    return t.astimezone(timezone.utc) if t.tzinfo else t.astimezone().astimezone(timezone.utc)


def list_cmd(*, all: bool = False, state: list[str] | None = None, since: str | None = None,
             needs_me: bool = False, json_: bool = False,
             remote: str | None = None) -> int:
    """List jobs, most recently active first (finished ones only with --all or --state).

    Examples: logist job list --needs-me
              logist job list --state executing,pending --since 2h

    Parameters
    ----------
    all
        Also show SUCCESS and CANCELED jobs.
    state
        Only jobs in these states (repeat, or separate with commas; any case).
    since
        Only jobs active since then: an age (30m, 2h, 3d, 1w) or a date/time (2026-12-01T09:00).
    needs_me
        Only jobs waiting for a person: INTERVENTION_REQUIRED, APPROVAL_REQUIRED, or interrupted.
    json_
        Print a JSON list of job objects: the keys of `job status --json` but last_signal
        (worktree null when the job has none now).
    remote
        List jobs fetched from this remote (`logist fetch REMOTE` first).
    """
    states = _parse_states(state)
    cutoff = _parse_since(since)
    keep = _row_filter(states=states, all=all, needs_me=needs_me, cutoff=cutoff)
    rows = sorted((r for r in _status_rows(cli.store(), remote) if keep(r)),
                  key=lambda r: r.get("updated_at") or "", reverse=True)
    if json_:
        emit_json(rows)
        return 0
    if not rows:
        filtered = states is not None or needs_me or cutoff is not None
        say("no jobs" + (" match" if filtered else "")
            + ("" if all or states is not None else " (use --all to include finished ones)"))
        return 0
    import time

    from logist.cli.output import ago

    now = time.time()
    table(["id", "state", "step", "active", "cost", "title / reason"],
          [[r["id"], r["state"] + (" (interrupted)" if r.get("interrupted") else ""),
            f"{r.get('step', '?')}/{r.get('step_count', '?')}", ago(r.get("updated_at"), now),
            f"${r.get('cost_usd', 0):.2f}",
            one_line(r.get("reason") if r["state"] in NEEDS_ME else (r.get("title") or r.get("error", "")))]
           for r in rows])
    return 0


def _status_rows(store, remote: str | None) -> list[dict]:
    """Every job's status row (here: after the interrupted-jobs and merged-record warnings, with
    its review branch; from ``remote``: its remote-tracking branch, no worktree)."""
    from logist.engine.job_status import status_rows
    from logist.git import refs

    lock_refs: dict[str, str] = {}
    reviewed: dict[str, str] = {}  # logist-review/<id> of the jobs that have one
    if remote is not None:
        refs.validate_remote(remote)
        records = store.list_records(prefix=f"refs/remotes/{remote}/logist/")
    else:
        records = store.list_records(lock_refs=lock_refs, review_refs=reviewed)
        from logist.core.states import record_in_flight

        warn_interrupted(store, running=[r.id for r in records if record_in_flight(r.data)],
                         lock_refs=lock_refs)
        warn_merged_record(store)
    rows = status_rows(store, records, lock_refs)
    if remote:
        for r in rows:
            r["branch"] = f"{remote}/logist/{r['id']}"
            r["worktree"] = None
        return rows
    for r in rows:
        if r["state"] != "INVALID":
            r["review_branch"] = refs.review_name(r["id"]) if r["id"] in reviewed else None
    return rows


def _row_filter(*, states: set[str] | None, all: bool, needs_me: bool, cutoff) -> Callable[[dict], bool]:
    """Which rows `job list` shows: in ``states`` (else not finished unless ``all``), needing a
    person (``needs_me``), active since ``cutoff``."""
    from datetime import datetime

    def keep(r: dict) -> bool:
        if states is not None:
            if r["state"] not in states:
                return False
        elif r["state"] in ("SUCCESS", "CANCELED") and not all:
            return False
        if needs_me and not (r["state"] in NEEDS_ME or r.get("interrupted")):
            return False
        if cutoff is not None:
            try:
                if datetime.fromisoformat(r.get("updated_at", "").replace("Z", "+00:00")) < cutoff:
                    return False
            except ValueError:
                return False
        return True

    return keep
