"""Reading a job's past: history entries, notes written during its steps, step output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore


def job_range(store: JobStore, job_id: JobId, base: str | None = None) -> list[str]:
    """The revisions of the job's own commits, for ``git log``: its branch's first-parent line
    from the tip back to the base recorded at create (``base..tip``), never the project's
    history behind it (docs/architecture.md#reads). ``base`` as read from the record (the
    record is read when it is not given); a base that is not in this repository (a fetched job
    whose base was never fetched) leaves only the first-parent line, which the ``Logist-Job``
    check then bounds."""
    if base is None:
        _, m = store.read(job_id)
        base = m.base
    tip = refs.branch_ref(job_id)
    if base and len(base) == 40 and all(c in "0123456789abcdef" for c in base) and \
            git(["cat-file", "-e", base + "^{commit}"], cwd=store.root, check=False).returncode == 0:
        return ["--first-parent", tip, "^" + base]
    return ["--first-parent", tip]


def _job_log(store: JobStore, job_id: JobId, keys: tuple[str, ...], base: str | None = None,
             ) -> list[tuple[str, ...]]:
    """(commit, trailer values...) of the job's own commits, newest first: only commits whose
    ``Logist-Job`` trailer names this job (a commit merged in from another job never counts)."""
    fmt = "%H" + "".join(f"%x00%(trailers:key={k},valueonly,separator=%x2C)" for k in ("Logist-Job", *keys))
    out = git(["log", f"--format={fmt}", *job_range(store, job_id, base), "--"], cwd=store.root).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\x00")
        if len(parts) == len(keys) + 2 and parts[1].strip() == job_id:
            rows.append((parts[0], *(p.strip() for p in parts[2:])))
    return rows


def _job_commits(store: JobStore, job_id: JobId, base: str | None = None) -> list[tuple[str, str, str]]:
    """[(commit, Logist-To, Logist-Transition-Id)] of the job's own commits, oldest first."""
    rows = _job_log(store, job_id, ("Logist-To", "Logist-Transition-Id"), base)
    return [(c, to, tid) for c, to, tid in reversed(rows)]


def _notes_for(store: JobStore, notes_ref: str, commit: str) -> list[dict[str, Any]]:
    from logist.git.gitread import Unsupported

    try:
        if store.reader.ref(notes_ref) is None:
            return []  # no such notes ref at all (read from git's files): nothing to ask git
    except Unsupported:
        pass
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


def history_with_notes(store: JobStore, job_id: JobId) -> list[dict[str, Any]]:
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


def last_signal(store: JobStore, job_id: JobId, base: str | None = None, *,
                record: dict[str, Any] | None = None) -> str | None:
    """The newest observer/sentinel signal of the current attempt: the notes of the job's latest
    EXECUTING commit only (an earlier attempt's error is history, not the job's last signal).
    ``record`` (the tip's record data): a job none of whose steps ever started has no EXECUTING
    commit, so its branch is not walked."""
    if record is not None and not any(isinstance(s, dict) and s.get("first_started_commit")
                                      for s in record.get("steps") or ()):
        return None
    commits = [c for c, to, _ in _job_commits(store, job_id, base) if to == "EXECUTING"]
    if not commits:
        return None
    for commit in commits[-1:]:
        notes = _commit_notes(store, commit)
        if notes:
            _ref, n = notes[-1]
            action = f" -> {n['action']}" if n.get("action") else ""
            return f"{n.get('signal')}{action}: {str(n.get('text') or n.get('detail') or '')[:80]}"
    return None


def step_output(store: JobStore, job_id: JobId, step: int | None = None) -> str:
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
    ran = False
    for oid, s, frm in _job_log(store, job_id, ("Logist-Step", "Logist-From"), m.base):
        # harvested (HARVESTING -> ...), or stopped as hung (EXECUTING -> RECOVERING)
        if frm in ("HARVESTING", "EXECUTING") and s.split("/")[0] == str(n):
            ran = True
            proc = git(["notes", f"--ref={refs.NOTES_LOGS}", "show", oid], cwd=store.root, check=False)
            if proc.returncode == 0:
                return str(proc.stdout)
    if ran:  # it ran and printed nothing (an empty output is not noted)
        return ""
    from logist.core.errors import LogistError

    if not any(st.attempt for st in m.steps):
        raise LogistError(f"job {job_id} has not run yet: no output to show",
                          hint=f"run it with `logist job run {job_id}`")
    raise LogistError(f"job {job_id} has no recorded output for step {n}: the step has not run yet",
                      hint=f"see `logist job history {job_id}`")
