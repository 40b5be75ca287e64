"""Workers on many machines sharing one git remote (docs/sharing.md, workers).

A worker loops: fetch; pick a PENDING job (or one whose runner died: a transient state under an
expired remote lease) that this clone may run; **claim** it by pushing its lock ref with
compare-and-swap, so the remote arbitrates and two workers never run one job::

    git push --atomic --force-with-lease=refs/logist/locks/<id>:<seen lock or nothing> \\
             --force-with-lease=refs/heads/logist/<id>:<seen tip> \\
             <holder blob>:refs/logist/locks/<id>  <seen tip>:refs/heads/logist/<id>

then adopts the job into its clone, runs it with the step engine, and pushes every transition
together with a refreshed lock (the lock's new value is compare-and-swapped in the same atomic
push, so a worker whose lease was taken over cannot publish anything: remote fencing). The last
push moves the branch and deletes the lock in one transaction; the notes follow.

A worker that dies stops refreshing its lock; once ``heartbeat_at + lease_seconds`` is past,
another worker takes the lock over (compare-and-swap from the stale value) and resumes the job
from the remote tip through the engine's normal recovery. Remote leases are judged by their
heartbeat alone (never by pid: the holder may be another machine or container).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logist.core.errors import LogistError
from logist.core.jobid import JobId
from logist.core.procs import pid_alive
from logist.share.adopt import import_job
from logist.share.fetch import fetch
from logist.share.push import push
from logist.share.remote_lock import Counters, LeaseLost, RemoteLock, claim, lease_seconds
from logist.share.remotes import resolve_remote, rev
from logist.share.survey import Candidate, Survey, survey
from logist.store.jobstore import JobStore

Progress = Callable[[str], None]

MAX_JOB_TRIES = 3  # failed runs (or lost claims) in a row before a worker gives a job up


@dataclass
class JobRun:
    job_id: JobId
    state: str | None
    error: str | None = None
    lost: bool = False
    seconds: float = 0.0


@dataclass
class WorkerReport:
    remote: str
    runs: list[JobRun] = field(default_factory=list)
    claim_conflicts: int = 0
    untrusted: list[str] = field(default_factory=list)
    pushes: int = 0
    fetches: int = 0
    push_seconds: float = 0.0
    fetch_seconds: float = 0.0
    seconds: float = 0.0
    stopped: str = ""
    gave_up: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"remote": self.remote, "ran": [r.job_id for r in self.runs if not r.error and not r.lost],
                "runs": [r.__dict__ for r in self.runs], "claim_conflicts": self.claim_conflicts,
                "untrusted": self.untrusted, "pushes": self.pushes, "fetches": self.fetches,
                "push_seconds": round(self.push_seconds, 3),
                "fetch_seconds": round(self.fetch_seconds, 3), "seconds": round(self.seconds, 3),
                "stopped": self.stopped, "gave_up": self.gave_up}


class Worker:
    def __init__(self, store: JobStore, remote: str | None = None, *, until_idle: bool = False,
                 max_jobs: int | None = None, poll: float = 1.0, progress: Progress | None = None,
                 max_idle_poll: float = 10.0) -> None:
        self.store = store
        self.remote = resolve_remote(store, remote)
        self.until_idle = until_idle
        self.max_jobs = max_jobs
        self.poll = max(0.05, poll)
        self.max_idle_poll = max(self.poll, max_idle_poll)
        self.progress = progress or (lambda msg: None)
        self.lease = lease_seconds(store)
        self.counters = Counters()
        self.stop_requested = False

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> WorkerReport:
        report = WorkerReport(self.remote)
        started = time.monotonic()
        self._idle_wait = self.poll
        self._rng = random.Random()
        self._untrusted_seen: set[str] = set()
        self._tries: dict[str, int] = {}
        self._gave_up: set[str] = set()
        try:
            while not self.stop_requested and self._round(report):
                pass
            if self.stop_requested and not report.stopped:
                report.stopped = "stop requested"
        finally:
            self._push_notes(final=True)
            report.pushes, report.fetches = self.counters.pushes, self.counters.fetches
            report.push_seconds, report.fetch_seconds = self.counters.push_seconds, self.counters.fetch_seconds
            report.seconds = time.monotonic() - started
        return report

    def _round(self, report: WorkerReport) -> bool:
        """One look at the remote: run a job this worker could claim, or wait for one. False
        when the worker is done (--max-jobs ran, or --until-idle and nothing is left)."""
        if self.max_jobs is not None and len(report.runs) >= self.max_jobs:
            report.stopped = f"ran --max-jobs {self.max_jobs}"
            return False
        self._fetch()
        sv = survey(self.store, self.remote)
        self._say_untrusted(sv, report)
        # A job this worker failed MAX_JOB_TRIES times in a row (its run raised, or every
        # claim of it lost) is given up: never waited on forever, and --until-idle ends.
        cands = [c for c in sv.claimable if c.job_id not in self._gave_up]
        self._rng.shuffle(cands)
        claimed = self._claim_first(cands, report)
        if claimed is not None:
            self._run_and_count(claimed, report)
            self._idle_wait = self.poll
            return True
        report.gave_up = sorted(self._gave_up)
        if cands:
            self._sleep(self._rng.uniform(0.01, 0.1))  # every claim lost a race: look again soon
            return True
        if self.until_idle and not sv.busy:
            report.stopped = "idle: no runnable job left"
            return False
        self._sleep(self._next_wait(sv))
        return True

    def _say_untrusted(self, sv: Survey, report: WorkerReport) -> None:
        """Say once per job that it is skipped because it is not trusted here."""
        for j in sv.untrusted:
            if j not in self._untrusted_seen:
                self._untrusted_seen.add(j)
                self.progress(f"skipping {j}: it runs commands not trusted in this clone "
                              f"(`logist job trust {j} --remote {self.remote}`)")
        report.untrusted = sorted(self._untrusted_seen)

    def _claim_first(self, cands: list[Candidate], report: WorkerReport) -> RemoteLock | None:
        """Claim the first candidate no other worker takes first."""
        for c in cands:
            claimed = claim(self.store, self.remote, c.job_id, c.tip, c.lock, self.lease,
                            self.counters)
            if claimed:
                self.progress(f"claimed {c.job_id} ({c.state.value}"
                              + (", lease taken over" if c.lock else "") + ")")
                return claimed
            report.claim_conflicts += 1
            self._failed(c.job_id, "its claim kept losing")
        return None

    def _run_and_count(self, claimed: RemoteLock, report: WorkerReport) -> None:
        run = self._run_claimed(claimed)
        report.runs.append(run)
        if run.error and not run.lost:
            self._failed(run.job_id, run.error)
        else:
            self._tries.pop(run.job_id, None)
        report.gave_up = sorted(self._gave_up)

    def _next_wait(self, sv: Survey) -> float:
        """Until the first lease of a busy job runs out; with none, a wait that doubles each idle
        round up to max_idle_poll."""
        wait = self._idle_wait
        if sv.busy:
            return min(wait, max(0.05, min(sv.busy.values()) + 0.05))
        self._idle_wait = min(self.max_idle_poll, self._idle_wait * 2)
        return wait

    def _failed(self, job_id: JobId, why: str) -> None:
        self._tries[job_id] = self._tries.get(job_id, 0) + 1
        if self._tries[job_id] >= MAX_JOB_TRIES and job_id not in self._gave_up:
            self._gave_up.add(job_id)
            self.progress(f"giving up on {job_id} after {self._tries[job_id]} tries: {why}")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _fetch(self) -> None:
        t0 = time.monotonic()
        try:
            fetch(self.store, self.remote)
        finally:
            self.counters.fetched(time.monotonic() - t0)

    def _push_notes(self, final: bool = False) -> None:
        t0 = time.monotonic()
        try:
            push(self.store, self.remote, [], include_notes=True, attempts=8 if final else 4)
        except LogistError as exc:
            self.progress(f"warning: notes not pushed yet: {exc.message}")
        finally:
            self.counters.pushed(time.monotonic() - t0)

    # ---- one job --------------------------------------------------------------------
    def _run_claimed(self, rl: RemoteLock) -> JobRun:
        from logist.engine.repair import make_engine
        from logist.store.locks import acquire

        job_id = rl.job_id
        t0 = time.monotonic()
        run = JobRun(job_id, None)
        wake = threading.Event()
        stop = threading.Event()
        pusher = threading.Thread(target=self._pusher, args=(rl, wake, stop), daemon=True,
                                  name=f"pusher-{job_id}")
        try:
            with acquire(self.store, job_id, command=f"logist worker: adopting {job_id}") as lease:
                res = import_job(self.store, self.remote, job_id, lease, replace_diverged=True)
                self.store.ensure_worktree(job_id)
                self.store.sync_worktree_record(job_id)
            # the engine keeps per-job scratch (step logs, agent records) in this clone's git dir
            self.store.run_dir(job_id).mkdir(parents=True, exist_ok=True)
            if res.displaced:
                self.progress(f"{job_id}: local commits the remote never got are kept at {res.displaced}")
            pusher.start()
            engine = make_engine(JobStore(self.store.paths), progress=lambda msg: self._on_progress(msg, wake))
            result = engine.run(job_id)
            run.state = result.state.value
        except LogistError as exc:
            run.error = exc.message
            self.progress(f"{job_id}: {exc.message}")
        except Exception as exc:  # one job's bug must not stop the worker: reported, given up
            run.error = f"logist failed on this job ({type(exc).__name__}: {str(exc)[:200]})"
            self.progress(f"{job_id}: {run.error}")
        finally:
            stop.set()
            wake.set()
            if pusher.is_alive():
                pusher.join()
            try:
                rl.release()
                rl.drop_stop()
            except LeaseLost as exc:
                run.lost = True
                run.error = exc.message
                self.progress(f"{job_id}: {exc.message}; its result here is discarded")
            except LogistError as exc:
                run.error = run.error or exc.message
                self.progress(f"{job_id}: final push failed: {exc.message}")
            run.lost = run.lost or rl.lost
            self._push_notes()
            run.seconds = round(time.monotonic() - t0, 3)
        if run.state is None:
            try:
                run.state = self.store.read(job_id)[1].state.value
            except LogistError:
                pass
        self.progress(f"{job_id}: {run.state or 'ERROR'} ({run.seconds:.1f}s)")
        return run

    def _on_progress(self, msg: str, wake: threading.Event) -> None:
        self.progress(msg)
        wake.set()  # a transition was committed: push it (with a fresh heartbeat)

    def _pusher(self, rl: RemoteLock, wake: threading.Event, stop: threading.Event) -> None:
        interval = max(0.2, rl.holder.lease_seconds / 3.0)
        last = time.monotonic()
        while not stop.is_set():
            woken = wake.wait(timeout=max(0.0, interval - (time.monotonic() - last)))
            if stop.is_set():
                return
            wake.clear()
            if woken and rev(self.store, rl.branch_ref) == rl.remote_tip \
                    and time.monotonic() - last < interval / 2:
                continue  # progress without a new commit, and the heartbeat is not due
            try:
                rl.refresh()
                last = time.monotonic()
                rl.fetch_stop()
            except LeaseLost as exc:
                self.progress(f"{rl.job_id}: {exc.message}; stopping its agent")
                _stop_agent(self.store, rl.job_id)
                return
            except LogistError as exc:  # a network hiccup: try again at the next beat
                self.progress(f"{rl.job_id}: warning: push failed ({exc.message}); retrying")
                time.sleep(min(1.0, interval / 2))


def _stop_agent(store: JobStore, job_id: JobId) -> None:
    """SIGTERM the agent's process group, if the agent recorded in agent.json is still the
    process that was started (pid and start time): a recorded pid is never believed alone."""
    from logist.engine.agent_proc import read_agent_file

    info = read_agent_file(store, job_id) or {}
    try:
        pid, pgid = int(info.get("pid") or 0), int(info.get("pgid") or 0)
        start_time = int(info["start_time"])
    except (ValueError, TypeError, KeyError):
        return
    if pgid > 1 and pid > 1 and pid_alive(pid, start_time):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
