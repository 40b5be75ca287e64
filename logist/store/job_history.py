"""Reading a job's past: history entries, notes written during its steps, step output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore


def _job_commits(store: JobStore, job_id: str) -> list[tuple[str, str, str]]:
    """[(commit, Logist-To, Logist-Transition-Id)] of logist's commits on the branch, oldest first."""
    out = git(["log", "--reverse", "--format=%H%x00%(trailers:key=Logist-To,valueonly,separator=%x2C)%x00"
               "%(trailers:key=Logist-Transition-Id,valueonly,separator=%x2C)%x00%(trailers:key=Logist-Job,valueonly,separator=%x2C)",
               refs.branch_ref(job_id), "--"], cwd=store.root).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\x00")
        if len(parts) >= 4 and parts[3].strip() == job_id:
            rows.append((parts[0], parts[1].strip(), parts[2].strip()))
    return rows


def _notes_for(store: JobStore, notes_ref: str, commit: str) -> list[dict[str, Any]]:
    proc = git(["notes", f"--ref={notes_ref}", "show", commit], cwd=store.root, check=False)
    if proc.returncode != 0:
        return []
    items = []
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            items.append(obj)
    return items


def _commit_notes(store: JobStore, commit: str) -> list[tuple[str, dict[str, Any]]]:
    """(notes ref, note line) of the observer and sentinel notes of ``commit``, oldest first
    (by their ``t``, an ISO 8601 UTC time; observer before sentinel at the same time)."""
    notes = [(ref, n) for ref in (refs.NOTES_OBSERVER, refs.NOTES_SENTINEL)
             for n in _notes_for(store, ref, commit)]
    return sorted(notes, key=lambda rn: str(rn[1].get("t", "")))


def history_with_notes(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """History entries with the observer/sentinel notes of each EXECUTING commit after it."""
    entries = [e.model_dump(mode="json", by_alias=True, exclude_none=True)
               for e in store.read_history(job_id)]
    commit_of = {tid: c for c, to, tid in _job_commits(store, job_id) if to == "EXECUTING"}
    out = []
    for e in entries:
        out.append(e)
        commit = commit_of.get(e.get("transition_id", ""))
        if commit:
            for ref, n in _commit_notes(store, commit):
                out.append({"event": "notes", "ref": ref.rsplit("/", 1)[-1], "commit": commit,
                            "t": str(n.get("t", "")), "signal": n.get("signal"),
                            "text": str(n.get("text") or n.get("detail") or n.get("action") or "")[:300],
                            **({"action": n["action"]} if "action" in n else {})})
    return out


def last_signal(store: JobStore, job_id: str) -> str | None:
    """The newest observer/sentinel signal of the job's latest EXECUTING commit."""
    commits = [c for c, to, _ in _job_commits(store, job_id) if to == "EXECUTING"]
    if not commits:
        return None
    for commit in reversed(commits[-3:]):
        notes = _commit_notes(store, commit)
        if notes:
            _ref, n = notes[-1]
            action = f" -> {n['action']}" if n.get("action") else ""
            return f"{n.get('signal')}{action}: {str(n.get('text') or n.get('detail') or '')[:80]}"
    return None


def step_output(store: JobStore, job_id: str, step: int | None = None) -> str:
    """A step's output: the running log while it runs, else the note in refs/notes/logist/logs
    on its newest harvest commit (or EXECUTING -> RECOVERING commit, when the sentinel stopped it)."""
    from logist.core.errors import UsageError

    _, m = store.read(job_id)
    if step is not None and not 1 <= step <= m.step_count:
        raise UsageError(f"step {step} does not exist; job {job_id} has {m.step_count} steps")
    n = step or m.step
    if m.execution and m.execution.log and n == m.step and Path(m.execution.log).exists():
        from logist.core.logcap import read_log

        return read_log(Path(m.execution.log), store.config.limits.max_log_bytes)
    out = git(["log", "--format=%H%x00%(trailers:key=Logist-Step,valueonly,separator=%x2C)%x00"
               "%(trailers:key=Logist-From,valueonly,separator=%x2C)", refs.branch_ref(job_id), "--"],
              cwd=store.root).stdout
    ran = False
    for line in out.splitlines():
        oid, s, frm = (line.split("\x00") + ["", ""])[:3]
        # harvested (HARVESTING -> ...), or stopped as hung (EXECUTING -> RECOVERING)
        if frm.strip() in ("HARVESTING", "EXECUTING") and s.strip().split("/")[0] == str(n):
            ran = True
            proc = git(["notes", f"--ref={refs.NOTES_LOGS}", "show", oid], cwd=store.root, check=False)
            if proc.returncode == 0:
                return str(proc.stdout)
    if ran:  # it ran and printed nothing (an empty output is not noted)
        return ""
    from logist.core.errors import LogistError

    raise LogistError(f"job {job_id} has no recorded output for step {n}",
                      hint=f"the step has not run yet; see `logist job history {job_id}`")
