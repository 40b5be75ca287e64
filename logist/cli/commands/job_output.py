"""`logist job attach|metrics|log`: a job's output (live or noted) and what its steps cost."""

from __future__ import annotations

import sys

from logist import cli
from logist.cli.output import emit_json, say, stream, table


def attach(id: str | None = None, /, *, timeout: float | None = None) -> int:
    """Follow a running step's output live; returns when the job stops running.

    Parameters
    ----------
    id
        The job.
    timeout
        Give up after this many seconds (exit 1).
    """
    from logist.core.errors import JobStateError
    from logist.core.limits import check_number
    from logist.engine.job_select import selected_job
    from logist.engine.runner import follow, is_running

    check_number(timeout, "--timeout", positive=True)
    store = cli.store()
    job_id = selected_job(store, id)
    if not is_running(store, job_id):
        _, m = store.read(job_id)
        hint = (f"`logist job log {job_id}` shows its last step's output"
                + (f"; `logist job run {job_id}` runs it" if m.state.value == "PENDING" else "")
                + (f"; `logist job activate {job_id}` first" if m.state.value == "DRAFT" else ""))
        raise JobStateError(f"job {job_id} is not running (it is {m.state.value}, step "
                            f"{m.step}/{m.step_count}); there is nothing to attach to", hint=hint)
    for chunk in follow(store, job_id, timeout=timeout):
        stream(chunk)
        sys.stdout.flush()
    _, m = store.read(job_id)
    say(f"\n{job_id}: {m.state.value} (step {m.step}/{m.step_count})")
    return 0


def metrics(id: str | None = None, /, *, csv: bool = False,
            json_: bool = False) -> int:
    """Per step and total: cost, tokens, time, attempts.

    Parameters
    ----------
    id
        The job.
    csv
        Print CSV (step,name,agent,status,attempts,cost_usd,tokens,seconds).
    json_
        Print JSON.
    """
    from logist.engine.job_select import selected_job

    store = cli.store()
    # the record as validated data (no models when logist validated it before); the defaults
    # are the model's, for a record written by hand that leaves a field out
    _, d = store.read_record(selected_job(store, id))
    rows = [[i, s["name"], s.get("agent", "mock"), s.get("status", "PENDING"), s.get("attempt", 0),
             round(float(s.get("cost_usd", 0.0)), 6), s.get("tokens", 0), round(float(s.get("seconds", 0.0)), 3)]
            for i, s in enumerate(d["steps"], 1)]
    total = ["total", "", "", d["state"], sum(r[4] for r in rows), round(float(d.get("cost_usd", 0.0)), 6),
             d.get("tokens", 0), round(float(d.get("seconds", 0.0)), 3)]
    headers = ["step", "name", "agent", "status", "attempts", "cost_usd", "tokens", "seconds"]
    if json_:
        emit_json({"steps": [dict(zip(headers, r, strict=True)) for r in rows],
                   "total": dict(zip(headers, total, strict=True))})
    elif csv:
        import csv as _csv

        w = _csv.writer(sys.stdout)
        w.writerow(headers)
        w.writerows(rows + [total])
    else:
        table(headers, rows + [total])
    return 0


def log(id: str | None = None, /, *, step: int | None = None, follow: bool = False,
        json_: bool = False) -> int:
    """Print a step's output: live from the running log, or from refs/notes/logist/logs.

    Parameters
    ----------
    id
        The job.
    step
        Which step (default: the current or last run one).
    follow
        Keep printing while the step runs (a header line before each step and attempt).
    json_
        Print {"id", "step", "output"} (not with --follow).
    """
    from logist.core.errors import UsageError
    from logist.engine.job_select import selected_job
    from logist.engine.runner import follow as follow_log
    from logist.store.job_history import step_output

    store = cli.store()
    job_id = selected_job(store, id)
    if follow:
        if json_:
            raise UsageError("--json and --follow do not go together",
                             hint=f"`logist job log {job_id} --json` prints the output so far")
        for chunk in follow_log(store, job_id):
            stream(chunk)
            sys.stdout.flush()
        return 0
    output = step_output(store, job_id, step)
    if json_:
        _, m = store.read(job_id)
        emit_json({"id": job_id, "step": step or m.step, "output": output})
        return 0
    stream(output)
    return 0
