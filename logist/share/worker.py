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
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logist.core.errors import LogistError, RemoteError
from logist.core.model import TRANSIENT, State
from logist.core.procs import boot_id, pid_alive, process_start_time
from logist.git import refs
from logist.share.adopt import import_job, remote_holder, remote_lease_expired
from logist.share.fetch import fetch
from logist.share.push import push, run_push
from logist.share.remotes import for_each_ref, resolve_remote, rev
from logist.share.trust import job_link_problems, needs_trust, trusted_here
from logist.store.jobstore import JobStore
from logist.store.locks import Holder

Progress = Callable[[str], None]


class LeaseLost(LogistError):
    """The remote lock of a job was taken over by another worker (or the job was changed on the
    remote behind the lock's back): nothing more may be published."""


MAX_JOB_TRIES = 3  # failed runs (or lost claims) in a row before a worker gives a job up


def lease_seconds(store: JobStore) -> float:
    """The lease of this worker's remote claims: as for local locks (``LOGIST_LEASE_SECONDS``,
    else ``[locks] lease_seconds``; a bad value is a UsageError)."""
    from logist.store.locks import lease_seconds_default

    return lease_seconds_default(store)


def _holder(store: JobStore, lease: float, acquired_at: float | None = None) -> Holder:
    now = time.time()
    pid = os.getpid()
    return Holder(pid=pid, host=socket.gethostname(), boot_id=boot_id(),
                  start_time=process_start_time(pid), command=f"logist worker in {store.root}",
                  acquired_at=acquired_at or now, heartbeat_at=now, lease_seconds=lease)


@dataclass
class Counters:
    pushes: int = 0
    fetches: int = 0
    push_seconds: float = 0.0
    fetch_seconds: float = 0.0
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pushed(self, seconds: float) -> None:
        with self._mutex:
            self.pushes += 1
            self.push_seconds += seconds

    def fetched(self, seconds: float) -> None:
        with self._mutex:
            self.fetches += 1
            self.fetch_seconds += seconds


class RemoteLock:
    """A job's lock held on the remote. ``oid`` is the lock value there (the fencing token),
    ``remote_tip`` the branch value there; both move only by compare-and-swap pushes."""

    def __init__(self, store: JobStore, remote: str, job_id: str, oid: str, holder: Holder,
                 remote_tip: str, counters: Counters) -> None:
        self.store = store
        self.remote = remote
        self.job_id = job_id
        self.oid = oid
        self.holder = holder
        self.remote_tip = remote_tip
        self.counters = counters
        self.lost = False
        self.stop_oid: str | None = None  # a stop request fetched from the remote
        self._mutex = threading.Lock()

    @property
    def lock_ref(self) -> str:
        return refs.lock_ref(self.job_id)

    @property
    def branch_ref(self) -> str:
        return refs.branch_ref(self.job_id)

    def _push(self, specs: list[str], leases: list[str]) -> bool:
        t0 = time.monotonic()
        try:
            ok, lines, _ = run_push(self.store, self.remote, specs, leases=leases, verify=False)
        finally:
            self.counters.pushed(time.monotonic() - t0)
        if ok:
            return True
        if any(ln.dst == self.lock_ref and ln.reason == "stale info" for ln in lines):
            self.lost = True
            raise LeaseLost(f"job {self.job_id}: another worker took over its lease on {self.remote}")
        if any(ln.dst == self.branch_ref and ln.reason in ("stale info", "non-fast-forward", "fetch first")
               for ln in lines):
            self.lost = True
            self._drop_lock()
            raise LeaseLost(f"job {self.job_id} was changed on {self.remote} by someone else while it "
                            "ran here")
        bad = "; ".join(f"{ln.dst}: {ln.reason}" for ln in lines if ln.rejected)
        raise RemoteError(f"push of job {self.job_id} to {self.remote} refused: {bad}")

    def _drop_lock(self) -> None:
        """Delete our lock on the remote (compare-and-delete) without touching the branch."""
        try:
            ok, _, _ = run_push(self.store, self.remote, [f":{self.lock_ref}"],
                                leases=[f"{self.lock_ref}:{self.oid}"], verify=False)
        except LogistError:
            return
        if ok:
            self.store.ref_transaction(f"delete {refs.remote_lock_ref(self.remote, self.job_id)}\n")

    def refresh(self) -> None:
        """Push the local branch tip (if it moved) with a new heartbeat, in one atomic push."""
        with self._mutex:
            if self.lost:
                raise LeaseLost(f"job {self.job_id}: lease lost")
            holder = Holder(**{**self.holder.__dict__, "heartbeat_at": time.time()})
            blob = self.store.writer.blob(holder.to_bytes()).decode()
            specs = [f"{blob}:{self.lock_ref}"]
            leases = [f"{self.lock_ref}:{self.oid}"]
            tip = rev(self.store, self.branch_ref)
            if tip and tip != self.remote_tip:
                specs.append(f"{tip}:{self.branch_ref}")
                leases.append(f"{self.branch_ref}:{self.remote_tip}")
            self._push(specs, leases)
            self.oid, self.holder = blob, holder
            if tip:
                self.remote_tip = tip
            self._track()

    def fetch_stop(self) -> None:
        """A stop request for this job on the remote (`logist job stop --remote`, or a pushed
        ``refs/logist/stop/<id>``) is fetched into the local stop ref, which the engine reads
        about once a second (docs/stopping.md). Nothing there: nothing changes."""
        from logist.git.gitcmd import git
        from logist.share.remotes import NETWORK_TIMEOUT

        ref = refs.stop_ref(self.job_id)
        try:
            proc = git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                        self.remote, f"+{ref}:{ref}"], cwd=self.store.root, check=False,
                       timeout=NETWORK_TIMEOUT)
        except LogistError:
            return
        if proc.returncode == 0:
            self.stop_oid = rev(self.store, ref)

    def drop_stop(self) -> None:
        """Best effort, after the final push: delete the stop request it answered on the remote
        (compare-and-delete: a newer request stays)."""
        if not self.stop_oid:
            return
        ref = refs.stop_ref(self.job_id)
        try:
            run_push(self.store, self.remote, [f":{ref}"], leases=[f"{ref}:{self.stop_oid}"], verify=False)
        except LogistError:
            pass
        self.stop_oid = None

    def release(self) -> None:
        """Final push: the branch tip and the deletion of the lock, in one transaction."""
        with self._mutex:
            if self.lost:
                raise LeaseLost(f"job {self.job_id}: lease lost")
            specs = [f":{self.lock_ref}"]
            leases = [f"{self.lock_ref}:{self.oid}"]
            tip = rev(self.store, self.branch_ref)
            if tip and tip != self.remote_tip:
                specs.append(f"{tip}:{self.branch_ref}")
                leases.append(f"{self.branch_ref}:{self.remote_tip}")
            self._push(specs, leases)
            if tip:
                self.remote_tip = tip
            self.oid = ""
            self._track(deleted=True)

    def _track(self, deleted: bool = False) -> None:
        lines = [f"update {refs.remote_branch_ref(self.remote, self.job_id)} {self.remote_tip}\n"]
        track_lock = refs.remote_lock_ref(self.remote, self.job_id)
        lines.append(f"delete {track_lock}\n" if deleted else f"update {track_lock} {self.oid}\n")
        self.store.ref_transaction("".join(lines))


def claim(store: JobStore, remote: str, job_id: str, seen_tip: str, seen_lock: str | None,
          lease: float, counters: Counters) -> RemoteLock | None:
    """Take the job on the remote by compare-and-swap; None when another worker was faster."""
    holder = _holder(store, lease)
    blob = store.writer.blob(holder.to_bytes()).decode()
    lock, branch = refs.lock_ref(job_id), refs.branch_ref(job_id)
    t0 = time.monotonic()
    try:
        ok, _, _ = run_push(store, remote, [f"{blob}:{lock}", f"{seen_tip}:{branch}"],
                                leases=[f"{lock}:{seen_lock or ''}", f"{branch}:{seen_tip}"],
                                verify=False)
    finally:
        counters.pushed(time.monotonic() - t0)
    if not ok:
        return None
    rl = RemoteLock(store, remote, job_id, blob, holder, seen_tip, counters)
    rl._track()
    return rl


@dataclass
class Candidate:
    job_id: str
    tip: str
    state: State
    lock: str | None  # the stale lock value to take over, or None when free
    created_at: str


@dataclass
class Survey:
    claimable: list[Candidate] = field(default_factory=list)
    busy: dict[str, float] = field(default_factory=dict)  # job -> seconds until its lease expires
    untrusted: list[str] = field(default_factory=list)
    unleased_running: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def survey(store: JobStore, remote: str) -> Survey:
    """Which fetched jobs this worker could run now, and which may become runnable."""
    s = Survey()
    locks = for_each_ref(store, refs.remote_logist_prefix(remote, "locks"))
    now = time.time()
    for js in store.list_jobs(prefix=refs.remote_branch_prefix(remote)):
        m = js.manifest
        if m is None:
            s.invalid.append(js.id)
            continue
        if m.state != State.PENDING and m.state not in TRANSIENT:
            continue
        links = job_link_problems(store, js.tip)
        if needs_trust(m, links):
            previous = None
            if rev(store, refs.branch_ref(js.id)):
                try:
                    _, previous = store.read(js.id)
                except LogistError:
                    previous = None
            if not trusted_here(store, m, previous=previous, links=links):
                s.untrusted.append(js.id)
                continue
        lock_oid = locks.get(refs.remote_lock_ref(remote, js.id))
        if lock_oid is not None:
            held = remote_holder(store, remote, js.id)
            holder = held[1] if held else None
            if holder is not None and not remote_lease_expired(holder, now):
                s.busy[js.id] = max(0.0, holder.heartbeat_at + holder.lease_seconds - now)
                continue
            bad = holder.clock_problem(now) if holder is not None else None
            if bad:
                from logist.core.notices import notice

                notice(f"{refs.lock_ref(js.id)} on {remote}: invalid lock: {bad}; treated as expired")
        elif m.state in TRANSIENT:
            # Running somewhere without a remote lease (a person's `job run`, pushed mid-step):
            # never taken over by a worker.
            s.unleased_running.append(js.id)
            continue
        s.claimable.append(Candidate(js.id, js.tip, m.state, lock_oid, m.created_at))
    return s


@dataclass
class JobRun:
    job_id: str
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
        idle_wait = self.poll
        rng = random.Random()
        untrusted_seen: set[str] = set()
        tries: dict[str, int] = {}
        gave_up: set[str] = set()
        try:
            while not self.stop_requested:
                if self.max_jobs is not None and len(report.runs) >= self.max_jobs:
                    report.stopped = f"ran --max-jobs {self.max_jobs}"
                    break
                self._fetch()
                sv = survey(self.store, self.remote)
                for j in sv.untrusted:
                    if j not in untrusted_seen:
                        untrusted_seen.add(j)
                        self.progress(f"skipping {j}: it runs commands not trusted in this clone "
                                      f"(`logist job trust {j} --remote {self.remote}`)")
                report.untrusted = sorted(untrusted_seen)
                # A job this worker failed MAX_JOB_TRIES times in a row (its run raised, or every
                # claim of it lost) is given up: never waited on forever, and --until-idle ends.
                cands = [c for c in sv.claimable if c.job_id not in gave_up]
                rng.shuffle(cands)
                claimed = None
                for c in cands:
                    claimed = claim(self.store, self.remote, c.job_id, c.tip, c.lock, self.lease,
                                    self.counters)
                    if claimed:
                        self.progress(f"claimed {c.job_id} ({c.state.value}"
                                      + (", lease taken over" if c.lock else "") + ")")
                        break
                    report.claim_conflicts += 1
                    self._failed(c.job_id, tries, gave_up, "its claim kept losing")
                if claimed is not None:
                    run = self._run_claimed(claimed)
                    report.runs.append(run)
                    if run.error and not run.lost:
                        self._failed(run.job_id, tries, gave_up, run.error)
                    else:
                        tries.pop(run.job_id, None)
                    report.gave_up = sorted(gave_up)
                    idle_wait = self.poll
                    continue
                report.gave_up = sorted(gave_up)
                if cands:
                    self._sleep(rng.uniform(0.01, 0.1))  # every claim lost a race: look again soon
                    continue
                if self.until_idle and not sv.busy:
                    report.stopped = "idle: no runnable job left"
                    break
                wait = idle_wait
                if sv.busy:
                    wait = min(wait, max(0.05, min(sv.busy.values()) + 0.05))
                else:
                    idle_wait = min(self.max_idle_poll, idle_wait * 2)
                self._sleep(wait)
            if self.stop_requested and not report.stopped:
                report.stopped = "stop requested"
        finally:
            self._push_notes(final=True)
            report.pushes, report.fetches = self.counters.pushes, self.counters.fetches
            report.push_seconds, report.fetch_seconds = self.counters.push_seconds, self.counters.fetch_seconds
            report.seconds = time.monotonic() - started
        return report

    def _failed(self, job_id: str, tries: dict[str, int], gave_up: set[str], why: str) -> None:
        tries[job_id] = tries.get(job_id, 0) + 1
        if tries[job_id] >= MAX_JOB_TRIES and job_id not in gave_up:
            gave_up.add(job_id)
            self.progress(f"giving up on {job_id} after {tries[job_id]} tries: {why}")

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


def _stop_agent(store: JobStore, job_id: str) -> None:
    """SIGTERM the agent's process group, if the agent recorded in agent.json is still the
    process that was started (pid and start time): a recorded pid is never believed alone."""
    import json

    try:
        info = json.loads((store.run_dir(job_id) / "agent.json").read_text())
        pid, pgid = int(info.get("pid") or 0), int(info.get("pgid") or 0)
        start_time = int(info["start_time"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return
    if pgid > 1 and pid > 1 and pid_alive(pid, start_time):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
