"""`logist job create|list|status|show|history|select|path` and the human transitions."""

from __future__ import annotations

from pathlib import Path

from logist import cli
from logist.cli.output import emit_json, err, kv, local_time, say, table, warn


def _warn_interrupted(store, exclude: str | None = None, summaries: list | None = None,
                      running: list[str] | None = None, lock_refs: dict[str, str] | None = None
                      ) -> None:
    """One line when some job was interrupted (a step in flight and no live holder, or a lock
    left by a process that is gone); see `logist recover`.

    Cheap when nothing is wrong: one scan of the locks. A job interrupted here leaves its lock
    behind (the runner holds it through every transient state); ``running`` names the jobs
    whose record says a step is in flight, which may have no lock at all (adopted from a
    remote). ``summaries`` reuses a listing the command already made; ``lock_refs`` the lock
    refs it already found ({job id: oid}).
    """
    try:
        if summaries is None and lock_refs is not None and not lock_refs and not running:
            return  # no lock and nothing in flight: nothing can be interrupted
        from logist.store.locks import read_locks

        if summaries is None:
            locks = read_locks(store, lock_refs)
            stale = any(h is None or h.stale_reason() for _, h in locks.values())
            if not stale and all(j in locks for j in running or ()):
                return
        from logist.engine.recovery import interrupted_jobs

        jobs = [j for j in interrupted_jobs(store, with_actions=False, summaries=summaries)
                if j.id != exclude]
    except Exception:
        return
    if len(jobs) == 1:
        warn(jobs[0].warning())
    elif jobs:
        names = ", ".join(j.id for j in jobs[:5]) + (", ..." if len(jobs) > 5 else "")
        warn(f"{len(jobs)} jobs were interrupted ({names}); run `logist recover --list` to see them")


def _warn_merged_record(store) -> None:
    """Once, what the post-merge hook found: a job branch (its record) merged by hand."""
    if not (store.paths.logist_dir / "merge-warning").exists():
        return  # one stat when there is nothing to say
    from logist.share.review import take_merge_warning

    text = take_merge_warning(store)
    if text:
        import sys

        print(text, file=sys.stderr)


def create(*, title: str | None = None, prompt: str | None = None, agent: str | None = None,
           step: list[str] | None = None,
           file: Path | None = None, base: str | None = None, activate: bool = False,
           id: str | None = None, json_: bool = False) -> int:
    """Create a job: branch logist/<id> from --base (default HEAD), a worktree, a first commit.

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
    from logist.core.jobfile import parse_job_file
    from logist.engine.jobs import create_job, spec_from_options

    for option, value in (("--title", title), ("--agent", agent), ("--base", base)):
        if value is not None and not value.strip():
            raise UsageError(f"{option} is empty", hint=f"give {option} a value, or leave the option out")
    store = cli.store()
    store.require_initialized()
    if file is not None:
        spec = parse_job_file(file)
        updates = {k: v for k, v in (("title", title), ("prompt", prompt), ("agent", agent)) if v}
        if updates:
            spec = spec.model_copy(update=updates)
    else:
        spec = spec_from_options(title=title, prompt=prompt, agent=agent, step_prompts=step or [],
                                 default_agent=store.config.default_agent)
    m = create_job(store, spec, base=base, activate=activate, job_id=id)
    _warn_uncommitted(store, m.base)
    if json_:
        from logist.engine.jobs import job_status

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
    from datetime import datetime

    from logist.engine.jobs import status_rows
    from logist.git import refs

    states = _parse_states(state)
    cutoff = _parse_since(since)
    store = cli.store()
    lock_refs: dict[str, str] | None = None
    if remote is not None:
        refs.validate_remote(remote)
        records = store.list_records(prefix=f"refs/remotes/{remote}/logist/")
        lock_refs = {}
    else:
        lock_refs = {}
        records = store.list_records(lock_refs=lock_refs)
        from logist.core.states import record_in_flight

        _warn_interrupted(store, running=[r.id for r in records if record_in_flight(r.data)],
                          lock_refs=lock_refs)
        _warn_merged_record(store)
    rows = status_rows(store, records, lock_refs)
    if not remote:  # logist-review/<id> of the jobs that have one: one for-each-ref for all
        prefix = refs.review_ref("x")[:-1]
        reviewed = {jid for jid, _ in store._refs_under(prefix)[prefix]}
        for r in rows:
            if r["state"] != "INVALID":
                r["review_branch"] = refs.review_name(r["id"]) if r["id"] in reviewed else None
    if remote:
        for r in rows:
            r["branch"] = f"{remote}/logist/{r['id']}"
            r["worktree"] = None

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

    rows = sorted((r for r in rows if keep(r)), key=lambda r: r.get("updated_at") or "", reverse=True)
    if json_:
        emit_json(rows)
        return 0
    if not rows:
        filtered = states is not None or needs_me or cutoff is not None
        say("no jobs" + (" match" if filtered else "")
            + ("" if all or states is not None else " (use --all to include finished ones)"))
        return 0
    from logist.cli.output import ago

    table(["id", "state", "step", "active", "cost", "title / reason"],
          [[r["id"], r["state"] + (" (interrupted)" if r.get("interrupted") else ""),
            f"{r.get('step', '?')}/{r.get('step_count', '?')}", ago(r.get("updated_at")),
            f"${r.get('cost_usd', 0):.2f}",
            _one_line(r.get("reason") if r["state"] in NEEDS_ME else (r.get("title") or r.get("error", "")))]
           for r in rows])
    return 0


def _one_line(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def status(id: str | None = None, /, *, json_: bool = False,
           remote: str | None = None) -> int:
    """Show where a job stands: state, step, run, holder, branch, worktree, cost.

    Parameters
    ----------
    id
        The job (default: $LOGIST_JOB or the one chosen with `logist job select`).
    json_
        Print a JSON object (id, state, step, step_count, run, branch, review_branch, worktree,
        head, cost_usd, ...).
    remote
        Read the job as fetched from this remote.
    """
    from logist.engine.jobs import job_status, selected_job

    store = cli.store()
    if remote:  # a fetched job need not exist here: its id is not resolved against local jobs
        from logist.git.refs import validate_job_id

        job_id = validate_job_id(id) if id is not None else selected_job(store, None)
        return _remote_status(store, job_id, remote, json_)
    job_id = selected_job(store, id)
    st = job_status(store, job_id)
    data = st.to_dict()
    data["last_signal"] = _last_signal(store, st)
    data["review_branch"] = _review_branch(store, job_id)
    if json_:
        emit_json(data)
        return 0
    _warn_interrupted(store)
    _warn_merged_record(store)
    h = data["holder"]
    holder = "-" if not h else (f"pid {h.get('pid')} on {h.get('host')} since {local_time(h.get('since'))}"
                                + (f" (stale: {h['stale_reason']})" if h.get("stale") else ""))
    wt = data["worktree"] + ("" if data["worktree_exists"] else f"  (none now: `logist job path {job_id}` makes it)")
    kv([("job", f"{data['id']}  {data['title']}"), ("state", data["state"]),
        ("step", f"{data['step']}/{data['step_count']} {data['step_name']} (agent {data['agent']}, "
                 f"attempt {data['attempt']})"),
        ("run", data["run"]), ("reason", data["reason"] or "-"), ("held by", holder),
        ("last signal", data["last_signal"] or "-"),
        ("cost", f"${data['cost_usd']:.4f}  tokens {data['tokens']}  time {data['seconds']:.1f}s"),
        ("active", f"{local_time(data['updated_at'])} (created {local_time(data['created_at'])})"),
        ("branch", data["branch"]), ("review branch", data["review_branch"] or "-"),
        ("head", data["head"]), ("worktree", wt)]
       + [("left out", line) for line in data["left_out"]])
    if data["interrupted"]:
        say(f"\nthis job was interrupted; run `logist recover {job_id}` to resume it")
    return 0


def _review_branch(store, job_id: str) -> str | None:
    """logist-review/<id> when the job has one (its work without the record; `logist job pr`)."""
    from logist.git import refs
    from logist.git.gitcmd import git

    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", refs.review_ref(job_id)],
               cwd=store.root, check=False)
    return refs.review_name(job_id) if proc.returncode == 0 else None


def _last_signal(store, st) -> str | None:
    try:
        from logist.store.job_history import last_signal
    except ImportError:
        return None
    try:
        return last_signal(store, st.record["id"], st.record.get("base"))
    except Exception:
        return None


def _remote_status(store, job_id: str, remote: str, json_: bool) -> int:
    from logist.core.errors import JobNotFoundError
    from logist.git import refs

    refs.validate_remote(remote)
    ref = f"refs/remotes/{remote}/logist/{job_id}"
    from logist.git.gitcmd import git

    proc = git(["rev-parse", "--verify", "-q", ref], cwd=store.root, check=False)
    if proc.returncode != 0:
        raise JobNotFoundError(f"no job {job_id} fetched from {remote}",
                               hint=f"run `logist fetch {remote}` first")
    tip, m = store.read(job_id, at=proc.stdout.strip())
    data = {"id": m.id, "title": m.title, "state": m.state.value, "step": m.step,
            "step_count": m.step_count, "run": m.run, "branch": f"{remote}/logist/{job_id}",
            "worktree": None, "head": tip, "cost_usd": m.cost_usd, "reason": m.reason}
    if json_:
        emit_json(data)
    else:
        kv([(k, v) for k, v in data.items()])
    return 0


def show(id: str | None = None, /, *, json_: bool = False) -> int:
    """Print the whole job record (the manifest at the branch tip).

    Parameters
    ----------
    id
        The job (default: the selected one).
    json_
        Print the manifest as JSON.
    """
    from logist.engine.jobs import selected_job

    store = cli.store()
    tip, m = store.read(selected_job(store, id))
    data = m.model_dump(mode="json")
    if json_:
        emit_json(data)
        return 0
    kv([("job", f"{m.id}  {m.title}"), ("state", m.state.value), ("run", m.run), ("base", m.base),
        ("head", tip), ("cost", f"${m.cost_usd:.4f}  tokens {m.tokens}  time {m.seconds:.1f}s"),
        ("created", local_time(m.created_at)), ("active", local_time(m.updated_at))])
    say("")
    b = m.budget
    table(["budget", "limit", "used"],
          [["max_cost_usd", "-" if b.max_cost_usd is None else f"${b.max_cost_usd:.2f}", f"${m.cost_usd:.4f}"],
           ["max_seconds", "-" if b.max_seconds is None else f"{b.max_seconds:g}s", f"{m.seconds:.1f}s"],
           ["max_attempts", f"{b.max_attempts} per step", f"{m.attempt} (step {m.step})"]])
    if m.prompt:
        say(f"\nprompt:\n  {m.prompt}")
    say("")
    from logist.share.review import harvest_commits

    harvests = harvest_commits(store, m.id, tip)
    table(["#", "name", "agent", "status", "attempt", "cost", "commit", "summary"],
          [[i, s.name, s.agent, s.status.value, s.attempt, f"${s.cost_usd:.2f}",
            harvests.get(i, "-")[:12], (s.summary or s.reason)[:60]]
           for i, s in enumerate(m.steps, 1)])
    say(f"\n`git show COMMIT` shows a step's harvest; `logist job diff {m.id}` the work without the record")
    return 0


def history(id: str | None = None, /, *, json_: bool = False,
            notes: bool = False) -> int:
    """Show the job's history: one entry per transition, run and restep.

    Parameters
    ----------
    id
        The job (default: the selected one).
    json_
        Print a JSON list of entries (a step's harvest has harvest_commit: `git show` it).
    notes
        Interleave the observer/sentinel notes written during each step.
    """
    from logist.engine.jobs import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    store.read(job_id)  # the record at the tip must be valid (the error names the commit)
    if notes:
        from logist.store.job_history import history_with_notes

        items = history_with_notes(store, job_id)
    else:
        items = [e.model_dump(mode="json", by_alias=True, exclude_none=True)
                 for e in store.read_history(job_id)]
    from logist.share.review import transition_commits

    harvests = transition_commits(store, job_id)
    for e in items:  # the commit that carries a step's work: `git show` it
        if e.get("transition_id") in harvests:
            e["harvest_commit"] = harvests[e["transition_id"]]
    if json_:
        emit_json(items)
        return 0
    rows = []
    for e in items:
        if e.get("event") == "notes":
            rows.append([local_time(e.get("t")), "note", "", e.get("ref", ""), "", _one_line(e.get("text"), 2000)])
            continue
        move = f"{e.get('from') or ''} -> {e.get('to') or ''}".strip()
        rows.append([local_time(e.get("t")), e.get("event"), f"{e.get('run')}/{e.get('step')}", move,
                     (e.get("harvest_commit") or "")[:12], _one_line(e.get("reason"), 2000)])
    table(["time", "event", "run/step", "transition", "commit", "reason"], rows)
    return 0


def select(id: str, /) -> int:
    """Make ID the current job for commands that omit the id ($LOGIST_JOB wins over it).

    Parameters
    ----------
    id
        The job.
    """
    from logist.engine.jobs import select_job

    say(f"selected {select_job(cli.store(), id)}")
    return 0


def path(id: str | None = None, /, *, json_: bool = False) -> int:
    """Print the path of the job's worktree, creating it if the job has none (yet, or any more).

    With [worktrees] at_first_step a job's worktree is made when its first step starts; with
    keep_finished = false it is released when the job ends in SUCCESS or CANCELED
    (docs/architecture.md#worktrees). `job path` brings it back on the job's branch.

    Parameters
    ----------
    id
        The job (default: the selected one).
    json_
        Print {"id", "worktree", "exists"}.
    """
    from logist.engine.jobs import selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    store.tip(job_id)
    wt = store.existing_worktree(job_id)
    if not (wt / ".git").exists():  # not made yet, or released when the job finished: make it now
        wt = store.ensure_worktree(job_id)
    if json_:
        emit_json({"id": job_id, "worktree": str(wt), "exists": wt.is_dir()})
        return 0
    say(str(wt))
    return 0


def _human(event: str, id: str | None, message: str | None) -> int:
    from logist.engine.jobs import human_transition, selected_job

    store = cli.store()
    job_id = selected_job(store, id)
    if event in ("suspend", "cancel"):  # a running job: its runner is asked to stop it
        return _stop(store, job_id, event, message, require_running=False, timeout=60.0)
    m = human_transition(store, job_id, event, message=message)
    say(f"{job_id}: {m.state.value} (step {m.step}/{m.step_count})")
    return 0


def _stop(store, job_id: str, event: str, message: str | None, *, require_running: bool,
          timeout: float) -> int:

    from logist.engine.stop_job import stop_job

    out = stop_job(store, job_id, event, message, timeout=timeout, require_running=require_running,
                   progress=err)
    if out.how == "requested":
        say(f"{job_id}: stop requested; its runner ({out.holder}) runs on another machine and "
            f"honours the request once it sees refs/logist/stop/{job_id} (push it to the shared "
            "remote with `logist push`)")
        return 0
    _, m = store.read(job_id)
    say(f"{job_id}: {m.state.value} (step {m.step}/{m.step_count})"
        + (f"; `logist job resume {job_id}` makes it runnable again" if m.state.value == "SUSPENDED" else ""))
    return 0


def stop(id: str | None = None, /, *, cancel: bool = False, message: str | None = None,
         timeout: float = 60.0, remote: str | None = None) -> int:
    """Stop a running job: its runner stops the agent and the job becomes SUSPENDED (or CANCELED).

    The runner (a `job run` in another terminal, a detached runner, a worker) is asked through
    refs/logist/stop/<id>; it stops the agent's process group (SIGINT, SIGTERM, SIGKILL) and
    commits the transition itself. A job whose runner is gone is stopped here.

    Example: logist job stop fix-login-7k2q --message "wrong approach"

    Parameters
    ----------
    id
        The job.
    cancel
        Cancel the job (terminal) instead of suspending it (resumable).
    message
        Why (recorded in the commit).
    timeout
        Seconds to wait for the runner to stop it (exit 4 after that; the request stays).
    remote
        The job runs on a worker of this shared remote: push the request there; the worker
        honours it at its next heartbeat.
    """
    from logist.engine.jobs import selected_job

    store = cli.store()
    if remote:
        import sys

        from logist.core.errors import BusyError
        from logist.git.refs import validate_job_id
        from logist.share.remote_stop import request_remote_stop

        if id is None:
            from logist.core.errors import UsageError

            raise UsageError("--remote needs the job id", hint=f"`logist job list --remote {remote}` lists them")
        job_id = validate_job_id(id)
        state = request_remote_stop(store, remote, job_id, "cancel" if cancel else "suspend",
                                    message or "stopped with `logist job stop`", wait=timeout,
                                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        if state is None:
            raise BusyError(f"job {job_id}: its worker has not stopped it after {timeout:g}s; the request "
                            f"stays on {remote} in refs/logist/stop/{job_id}",
                            hint=f"`logist fetch {remote} && logist job status {job_id} --remote {remote}`")
        say(f"{job_id}: {state} on {remote}")
        return 0
    return _stop(store, selected_job(store, id), "cancel" if cancel else "suspend",
                 message or "stopped with `logist job stop`",
                 require_running=True, timeout=timeout)


def activate(id: str | None = None, /) -> int:
    """DRAFT -> PENDING: the job may run.

    Parameters
    ----------
    id
        The job.
    """
    return _human("activate", id, None)


def suspend(id: str | None = None, /, *, message: str | None = None) -> int:
    """Any non-terminal state -> SUSPENDED.

    Parameters
    ----------
    id
        The job.
    message
        Why (recorded in the commit).
    """
    return _human("suspend", id, message)


def resume(id: str | None = None, /, *, message: str | None = None) -> int:
    """SUSPENDED -> PENDING.

    Parameters
    ----------
    id
        The job.
    message
        Recorded in the commit.
    """
    return _human("resume", id, message)


def cancel(id: str | None = None, /, *, message: str | None = None) -> int:
    """Any non-terminal state -> CANCELED (terminal; `job rerun` starts over).

    Parameters
    ----------
    id
        The job.
    message
        Why (recorded in the commit).
    """
    return _human("cancel", id, message)


def approve(id: str | None = None, /, *, message: str | None = None) -> int:
    """APPROVAL_REQUIRED -> SUCCESS.

    Parameters
    ----------
    id
        The job.
    message
        The reviewer's note (recorded in the commit).
    """
    return _human("approve", id, message)


def reject(id: str | None = None, /, *, message: str | None = None) -> int:
    """APPROVAL_REQUIRED -> PENDING: the last step runs again, with the message in its prompt.

    Parameters
    ----------
    id
        The job.
    message
        What to change (required; recorded in the commit and given to the agent).
    """
    if not (message or "").strip():
        from logist.core.errors import UsageError
        from logist.engine.jobs import selected_job

        store = cli.store()
        job_id = selected_job(store, id)
        _, record = store.read_record(job_id)
        if record["state"] == "APPROVAL_REQUIRED":  # else the state's own refusal says more
            raise UsageError("reject needs --message: what should change (it is given to the agent)",
                             hint=f'logist job reject {job_id} --message "also handle the empty case"')
        id = job_id
    return _human("reject", id, message)


def resubmit(id: str | None = None, /, *, message: str | None = None) -> int:
    """INTERVENTION_REQUIRED -> PENDING: the failed step runs again (attempts start over).

    What you changed in the job's worktree (outside .logist/) is committed first as your own
    commit (your git identity, trailer Logist-Event: resubmit), so the next harvest holds only
    the agent's work. The retry is a new attempt: its own log file, its own notes, and the old
    attempt's error is no longer the job's last signal. Run it with `logist job run`.

    Parameters
    ----------
    id
        The job.
    message
        What was fixed (recorded in the commit and given to the agent).
    """
    return _human("resubmit", id, message)
