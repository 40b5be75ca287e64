"""Running many jobs, in the background, and following their output.

``run_all`` cycles over PENDING jobs (``--parallel N`` in N worker threads; each job under its
own lease, so two runners never run one step). ``detach_run`` hands the loop to a background
process in its own session that survives the terminal. ``follow`` tails a job's step log.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from logist.core.errors import BusyError, LogistError
from logist.core.jobid import JobId
from logist.core.model import TRANSIENT, State
from logist.store.jobstore import JobStore

if TYPE_CHECKING:
    import subprocess


@dataclass
class RunOutcome:
    job_id: JobId
    state: State | None
    step: int | None
    reason: str = ""
    error: str | None = None


def run_all(store: JobStore, *, parallel: int = 1, trust: bool = False,
            progress: Callable[[str], None] | None = None) -> list[RunOutcome]:
    """Run every PENDING job until it rests; jobs held by someone else are skipped."""
    from logist.engine.repair import make_engine

    pending = [s.id for s in store.list_jobs() if s.manifest and s.manifest.state == State.PENDING]

    from logist.engine.stop import local_request

    def one(job_id: JobId) -> RunOutcome:
        if local_request() is not None:  # Ctrl-C: no new job starts
            return RunOutcome(job_id, None, None, "not started: interrupted")
        engine = make_engine(JobStore(store.paths), progress=progress, trust=trust)
        try:
            r = engine.run(job_id)
            return RunOutcome(job_id, r.state, r.step, r.reason)
        except BusyError as exc:
            return RunOutcome(job_id, None, None, f"skipped: {exc.message}")
        except LogistError as exc:
            return RunOutcome(job_id, None, None, error=exc.message, reason=exc.message)

    if parallel <= 1 or len(pending) <= 1:
        return [one(j) for j in pending]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, pending))


def detach_run(store: JobStore, job_id: JobId | None, *, trust: bool = False, parallel: int = 1
               ) -> tuple[int, Path]:
    """Start `logist job run` in a new session (survives the terminal); (pid, log path)."""
    d = store.paths.logist_dir / "run"
    d.mkdir(parents=True, exist_ok=True)
    log = d / (f"detached-{job_id}.log" if job_id else f"detached-all-{int(time.time())}.log")
    argv = [sys.executable, "-m", "logist", "-C", str(store.root), "job", "run"]
    if job_id:
        argv.append(job_id)
    if trust:
        argv.append("--trust")
    if parallel > 1:
        argv += ["--parallel", str(parallel)]
    from logist.runtimes.programs import spawn_detached

    with open(log, "ab") as fh:
        proc = spawn_detached(argv, out=fh, cwd=store.root)
    if job_id:
        _wait_until_taken(store, job_id, proc)
    return proc.pid, log


def _wait_until_taken(store: JobStore, job_id: JobId, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Return once the background runner holds the job (or is done with it, or has exited), so
    that a `job attach` right after `job run --detach` finds it running instead of PENDING."""
    from logist.store.locks import read_lock

    start_tip = store.tip(job_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        current = read_lock(store, job_id)
        if current is not None and current[1] is not None and current[1].pid == proc.pid:
            return
        if store.tip(job_id) != start_tip:
            return
        time.sleep(0.02)


def step_header(m) -> str:
    """The line `attach` and `log --follow` print before each step's (or attempt's) output."""
    step = m.steps[m.step - 1]
    return (f"\n── {m.id}: step {m.step}/{m.step_count} {step.name} · agent {step.agent} · "
            f"attempt {m.attempt} · run {m.run} ──\n")


def is_running(store: JobStore, job_id: JobId) -> bool:
    """A step of the job is in flight, or a live runner holds it between steps."""
    from logist.core.states import record_in_flight
    from logist.engine.job_status import holder_info

    _, record = store.read_record(job_id)
    if record_in_flight(record):
        return True
    h = holder_info(store, job_id)
    return h is not None and not h.get("stale") and record["state"] == State.PENDING.value


def follow(store: JobStore, job_id: JobId, *, timeout: float | None = None, poll: float = 0.1
           ) -> Iterator[str]:
    """Yield a running job's output as it is written, across attempts; stop when it rests."""
    import codecs

    deadline = None if timeout is None else time.monotonic() + timeout
    offsets: dict[Path, int] = {}
    decoders: dict[Path, codecs.IncrementalDecoder] = {}  # a character split between two reads
    idle_rest = 0
    last: Path | None = None

    def new_text(path: Path) -> str:
        pos = offsets.get(path, 0)
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < pos:  # the log was cut to its cap (logist.core.logcap): go on from its end
                    pos = max(0, size - 4096)
                fh.seek(pos)
                data = fh.read(4 * 1024 * 1024)  # at most 4 MiB a look: memory stays bounded
        except OSError:
            return ""
        offsets[path] = pos + len(data)
        dec = decoders.setdefault(path, codecs.getincrementaldecoder("utf-8")(errors="replace"))
        return dec.decode(data)

    headed: set[Path] = set()
    while True:
        _, m = store.read(job_id)
        log = Path(m.execution.log) if m.execution and m.execution.log else None
        if last is not None and last != log:
            text = new_text(last)  # what the previous step printed after our last read
            if text:
                yield text
        if log is not None and log.exists():
            text = new_text(log)
            if log not in headed:
                headed.add(log)
                yield step_header(m)
            if text:
                yield text
        last = log
        if m.state not in TRANSIENT:
            # A detached runner may be between steps: PENDING with a live holder.
            from logist.engine.job_status import holder_info

            h = holder_info(store, job_id) if m.state == State.PENDING else None
            if not h or h.get("stale"):
                idle_rest += 1
                if idle_rest > 1:
                    return
        else:
            idle_rest = 0
        if deadline is not None and time.monotonic() > deadline:
            raise LogistError(f"job {job_id} is still running after {timeout:g}s",
                              hint=f"run `logist job attach {job_id}` again to keep following it")
        time.sleep(poll)
