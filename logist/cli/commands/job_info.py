"""`logist job status|show|history|select|path`: what a job is and where it stands (read only,
but `select`, which only names the default job)."""

from __future__ import annotations

from logist import cli
from logist.cli.commands.job_warnings import warn_interrupted, warn_merged_record
from logist.cli.output import emit_json, kv, local_time, say, table


def one_line(text: str | None, width: int = 60) -> str:
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
    from logist.engine.job_select import selected_job
    from logist.engine.job_status import job_status

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
    warn_interrupted(store)
    warn_merged_record(store)
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

    return refs.review_name(job_id) if store.resolve_commit(refs.review_ref(job_id)) else None


def _last_signal(store, st) -> str | None:
    try:
        from logist.store.job_history import last_signal
    except ImportError:
        return None
    try:
        return last_signal(store, st.record["id"], st.record.get("base"), record=st.record)
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
    from logist.engine.job_select import selected_job

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
    from logist.engine.job_select import selected_job

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
            rows.append([local_time(e.get("t")), "note", "", e.get("ref", ""), "", one_line(e.get("text"), 2000)])
            continue
        move = f"{e.get('from') or ''} -> {e.get('to') or ''}".strip()
        rows.append([local_time(e.get("t")), e.get("event"), f"{e.get('run')}/{e.get('step')}", move,
                     (e.get("harvest_commit") or "")[:12], one_line(e.get("reason"), 2000)])
    table(["time", "event", "run/step", "transition", "commit", "reason"], rows)
    return 0


def select(id: str, /) -> int:
    """Make ID the current job for commands that omit the id ($LOGIST_JOB wins over it).

    Parameters
    ----------
    id
        The job.
    """
    from logist.engine.job_select import select_job

    say(f"selected {select_job(cli.store(), id)}")
    return 0


def path(id: str | None = None, /, *, json_: bool = False) -> int:
    """Print the path of the job's worktree, creating it if the job has none (yet, or any more).

    A job's worktree is made when its first step starts and released when the job ends in
    SUCCESS or CANCELED with nothing uncommitted in it ([worktrees] at_first_step and
    keep_finished: docs/architecture.md#worktrees). `job path` brings it back on the job's
    branch; a finished job keeps it until a rerun ends or `logist job clean --keep-branch`.

    Parameters
    ----------
    id
        The job (default: the selected one).
    json_
        Print {"id", "worktree", "exists"}.
    """
    from logist.engine.job_select import selected_job

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
