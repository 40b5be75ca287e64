"""What rerun and restep share (docs/rerun.md): the refusals before they touch a job, small
git reads, and one fenced transition commit whose history entry names a step."""

from __future__ import annotations

import re
from typing import Any

from logist.core.errors import JobStateError, LockHeldError, UsageError
from logist.core.jobid import JobId
from logist.core.model import RESTING, TRANSIENT, Manifest
from logist.git import refs
from logist.git.gitcmd import CatFileBatch, git
from logist.store.job_state import Update, update_job_manifest
from logist.store.jobstore import RECORD_FILES, JobStore, new_transition_id, utcnow
from logist.store.locks import Lease, read_lock

OID_RE = re.compile(r"^[0-9a-f]{40}$")


def parse_step(value: int | str | None, *, what: str = "step") -> int:
    """A step number as typed (1-based); UsageError for anything that is not an integer >= 1."""
    if value is None:
        raise UsageError(f"missing {what} number", hint="steps are numbered from 1")
    if isinstance(value, bool):
        raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,9}", text):
            raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)",
                             hint="`logist job show ID` lists the job's steps")
        value = int(text)
    if not isinstance(value, int):
        raise UsageError(f"invalid {what} {value!r}: give a step number (1, 2, ...)")
    if value < 1:
        raise UsageError(f"invalid {what} {value}: steps are numbered from 1",
                         hint="`logist job show ID` lists the job's steps")
    return value


def check_range(m: Manifest, n: int) -> None:
    if n > m.step_count:
        raise UsageError(f"step {n} does not exist: job {m.id} has {m.step_count} "
                         f"step{'s' if m.step_count != 1 else ''}",
                         hint=f"`logist job show {m.id}` lists them")


def busy_or_interrupted(store: JobStore, m: Manifest, doing: str) -> None:
    """Refuse a job that is in the middle of a step or restep (before taking its lease).

    A live holder: LockHeldError (exit 4, nothing touched). No live holder: the job was
    interrupted; it has to be finished first (JobStateError, nothing touched).
    """
    running = m.state in TRANSIENT or m.execution is not None
    if not running:
        return
    what = (f"a restep of step {m.current.name!r}" if m.execution and m.execution.restep
            else f"step {m.step} ({m.state.value})")
    current = read_lock(store, m.id)
    if current is not None:
        _, holder = current
        if holder is not None and holder.stale_reason() is None:
            raise LockHeldError(f"job {m.id} is running {what}: held by {holder.describe()}; "
                                f"cannot {doing} now",
                                hint=f"wait for it (`logist job attach {m.id}`), or stop it first")
    raise JobStateError(f"job {m.id} was interrupted during {what}; cannot {doing} before it is "
                        "finished", hint=f"run `logist job run {m.id}` (or `logist recover {m.id}`) "
                                         "to finish it, then try again")


def check_resting(m: Manifest, doing: str) -> None:
    """Under the lease: a transient state or a restep in flight means an interrupted job."""
    if m.state in TRANSIENT or m.state not in RESTING or m.execution is not None:
        raise JobStateError(f"job {m.id} was interrupted in {m.state.value}; cannot {doing} before "
                            "it is finished",
                            hint=f"run `logist job run {m.id}` (or `logist recover {m.id}`) first")


def steps_text(steps: list[int]) -> str:
    if len(steps) == 1:
        return f"step {steps[0]} is"
    return f"steps {steps[0]}-{steps[-1]} are"


# ---- small git helpers

def commit_exists(store: JobStore, oid: str | None) -> bool:
    if not oid or not OID_RE.match(oid):
        return False
    return git(["cat-file", "-e", oid + "^{commit}"], cwd=store.root, check=False).returncode == 0


def ref_value(store: JobStore, ref: str) -> str | None:
    proc = git(["rev-parse", "--verify", "-q", ref], cwd=store.root, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def record_files_at(store: JobStore, job_id: JobId, oid: str) -> dict[str, bytes]:
    with CatFileBatch(store.root) as batch:
        files = {}
        for name in RECORD_FILES:
            data = batch.read(f"{oid}:{refs.record_dir(job_id)}/{name}")
            if data is not None:
                files[name] = data
    return files


def history_raw_at(store: JobStore, job_id: JobId, oid: str) -> bytes:
    with CatFileBatch(store.root) as batch:
        return batch.read(f"{oid}:{refs.history_path(job_id)}") or b""


def commit_update(store: JobStore, lease: Lease, tip: str, m: Manifest, update: Update, *, step: int,
            commit: str | None, tid: str | None = None, body: str = "",
            trailers: dict[str, str] | None = None, **kwargs: Any) -> tuple[str, Manifest]:
    """``update_job_manifest`` under ``lease`` (``m`` read at ``tip``, or at ``history_from``),
    its history entry naming ``step`` and the commit it ran on."""
    update.entry_step, update.entry_commit = step, commit
    done = update_job_manifest(store, m.id, update, tip=tip, current=m, now=utcnow(),
                               transition_id=tid or new_transition_id(),
                               lease=lease.oid, body=body, extra_trailers=trailers, **kwargs)
    assert done is not None  # every update here carries data
    return done
