"""`logist worker`: run jobs from a shared remote; the remote arbitrates who runs what."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, err, say


def worker(*, remote: str | None = None, until_idle: bool = False, max_jobs: int | None = None,
           poll: float = 1.0, quiet: Annotated[bool, Parameter(name=["--quiet", "-q"])] = False,
           json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Fetch, claim a PENDING job by pushing its lock ref (compare-and-swap), run it, push every
    transition and the notes, release; repeat.

    Several workers in several clones (on several machines) can share one remote: a claim is
    an atomic `git push --force-with-lease` of refs/logist/locks/<id>, so exactly one wins. A
    worker that dies leaves a lease that expires (config locks.lease_seconds, or
    $LOGIST_LEASE_SECONDS); another worker then takes the job over and resumes it. Only jobs
    this clone may run are taken: mock and AI-agent jobs, and command jobs trusted here
    (`logist job trust ID --remote R`). SIGTERM/Ctrl-C stop after the current job.

    Parameters
    ----------
    remote
        The shared remote (default: the upstream remote, else origin).
    until_idle
        Exit when no job is left to run (none PENDING, none held by another worker).
    max_jobs
        Exit after running this many jobs.
    poll
        Seconds between fetches while waiting for work (grows up to 10 s when idle).
    quiet
        Do not print progress on stderr.
    json_
        Print a JSON report at the end (ran, claim_conflicts, pushes, fetches, seconds, gave_up).
    """
    from logist.core.errors import UsageError
    from logist.share.worker import Worker

    if max_jobs is not None and max_jobs < 1:
        raise UsageError("--max-jobs must be at least 1")
    from logist.core.limits import check_number

    check_number(poll, "--poll", positive=True)
    store = cli.store()
    store.require_initialized()

    def progress(msg: str) -> None:
        if not quiet:
            err(f"worker: {msg}")

    w = Worker(store, remote, until_idle=until_idle, max_jobs=max_jobs, poll=poll, progress=progress)
    with _stop_on_signals(w, progress):
        report = w.run()
    _report(report, json_)
    return 1 if any(r.error for r in report.runs) else 0


@contextmanager
def _stop_on_signals(w, progress) -> Iterator[None]:
    """SIGTERM/SIGINT once: the worker stops after the current job; twice: at once."""
    interrupts = {"n": 0}

    def on_signal(signum, frame) -> None:
        interrupts["n"] += 1
        if interrupts["n"] > 1:
            raise KeyboardInterrupt
        w.stop_requested = True
        progress("stopping after the current job (signal again to stop at once)")

    old_term = signal.signal(signal.SIGTERM, on_signal)
    old_int = signal.signal(signal.SIGINT, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def _report(report, json_: bool) -> None:
    """The worker's report: JSON, or a summary line and one line per job."""
    from logist.share.worker import MAX_JOB_TRIES

    if json_:
        emit_json(report.to_dict())
        return
    d = report.to_dict()
    say(f"worker on {report.remote}: ran {len(d['ran'])} job(s) in {report.seconds:.1f}s "
        f"({report.pushes} pushes, {report.fetches} fetches, {report.claim_conflicts} lost claims)"
        + (f"; stopped: {report.stopped}" if report.stopped else ""))
    for r in report.runs:
        say(f"  {r.job_id}: {r.state or '?'}" + (f" ({r.error})" if r.error else ""))
    if report.untrusted:
        say(f"  not trusted here (skipped): {', '.join(report.untrusted)}")
    if report.gave_up:
        say(f"  given up after {MAX_JOB_TRIES} failed tries: {', '.join(report.gave_up)}")
