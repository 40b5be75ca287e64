"""Git notes that survive concurrent writers (docs/architecture.md#known-hazards-of-git, docs/observer.md#notes-in-git).

``git notes add`` moves the notes ref without an old-value check, so several processes writing
notes at once lose some silently (4 writers kept 74 of 200 notes). Here every write is

1. read the notes tip and, for each annotated commit, its current note (one ``git cat-file
   --batch``; note paths may use any fanout, ``ab/cdef...`` or ``ab/cd/ef...``, as ``git notes``
   writes them once a notes tree grows);
2. one ``git fast-import`` run that writes the new blobs and ONE notes commit whose parent is
   that tip (``from <tip>``; ``D`` of every old path of a changed note, then ``N``, so fast-import
   lays out the fanout itself) and publishes it on the notes ref.

fast-import (without ``--force``) updates the ref in a ref transaction whose old value is the
value it checked, and only if that old value is an ancestor of the new commit. Our commit's only
parent is the tip we read, so the update succeeds exactly when the ref is still at that tip (or
was rewound to one of its ancestors, which only a manual ``update-ref`` does; then the notes it
dropped come back, nothing is lost). When another writer won, fast-import refuses, and we retry
from the fresh tip with jittered exponential backoff (``retries`` times, and past that for up to
``RACE_PATIENCE`` seconds as long as the losses are to writers that moved the ref: under heavy
contention every loss is someone else's progress). No temporary ref is ever created, so a
process killed at any point leaves nothing behind but unreachable objects for ``git gc``.

Notes are JSON lines (one object per line, ``"t"`` first so lines sort by time), which is what
``git notes merge -s cat_sort_uniq`` needs to merge notes fetched from another clone.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from logist.core.clock import iso_utc
from logist.core.errors import BusyError, GitError, UsageError
from logist.core.termsafe import json_safe, sanitize
from logist.git.gitcmd import GIT, CatFileBatch, base_env, git

__all__ = [
    "NoteLines", "NotesError", "append_notes", "iso_utc", "json_line", "list_notes",
    "parse_note_lines", "read_note", "read_note_lines", "read_notes", "set_note",
]

_OID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_MAX_FANOUT = 4  # 256**4 notes; git itself never goes deeper in practice
STALE_LOCK_SECONDS = 60.0  # a notes ref lock is held for milliseconds; older ones are debris
MAX_NOTE_LINE = 64 * 1024  # longer lines in a note are counted invalid, never parsed
RACE_PATIENCE = 10.0  # seconds a writer outrun by other writers keeps retrying past `retries`


class NotesError(GitError):
    """A note could not be read or written."""


def json_line(obj: Mapping[str, object]) -> str:
    """One compact JSON line (no newline) in the key order given: put ``"t"`` first. No raw
    control character (DEL, C1, bidi overrides included) is left in it: ``git log`` shows notes."""
    return json_safe(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str))


def _check_ref(notes_ref: str) -> str:
    if not isinstance(notes_ref, str) or not notes_ref.startswith("refs/notes/") \
            or ".." in notes_ref or notes_ref.endswith(("/", ".lock")) or any(
                c in notes_ref for c in " ~^:?*[\\\n\t"):
        raise UsageError(f"invalid notes ref {notes_ref!r}: expected refs/notes/<name>")
    return notes_ref


def _check_oid(commit: str) -> str:
    if not isinstance(commit, str) or not _OID_RE.match(commit):
        raise UsageError(f"invalid commit id {str(commit)[:80]!r}: a full hexadecimal object id is "
                         "required", hint="resolve it first with `git rev-parse <rev>`")
    return commit


def _fanout_paths(oid: str) -> list[str]:
    paths = []
    for level in range(_MAX_FANOUT + 1):
        parts = [oid[2 * i:2 * i + 2] for i in range(level)]
        paths.append("/".join([*parts, oid[2 * level:]]))
    return paths


def _ask(batch: CatFileBatch, specs: Sequence[str]) -> list[tuple[str, str, bytes] | None]:
    """(oid, type, content) or None (missing) for each spec, in order; NotesError when git
    stopped answering (a note state is never built from a partial read)."""
    got = batch.read_objects(specs)
    if batch.ended:
        raise NotesError("git cat-file --batch ended unexpectedly")
    return got


def _read_state(batch: CatFileBatch, notes_ref: str, commits: Sequence[str]
                ) -> tuple[str | None, dict[str, list[tuple[str, bytes]]]]:
    """The notes tip and, per commit, the (path, content) of its note in that tip's tree."""
    (tip_answer,) = _ask(batch, [notes_ref + "^{commit}"])
    if tip_answer is None:
        # absent ref (or not a commit: fast-import will then refuse, reported below)
        return None, {c: [] for c in commits}
    tip = tip_answer[0]
    specs: list[str] = []
    keys: list[tuple[str, str]] = []
    for commit in commits:
        for path in _fanout_paths(commit):
            specs.append(f"{tip}:{path}")
            keys.append((commit, path))
    found: dict[str, list[tuple[str, bytes]]] = {c: [] for c in commits}
    for (commit, path), answer in zip(keys, _ask(batch, specs), strict=True):
        if answer is not None and answer[1] == "blob":
            found[commit].append((path, answer[2]))
    return tip, found


def _ident() -> str:
    env = os.environ
    name = env.get("GIT_COMMITTER_NAME") or "logist"
    email = env.get("GIT_COMMITTER_EMAIL") or "logist@localhost"
    clean = re.compile(r"[<>\n]")
    return f"{clean.sub('', name)} <{clean.sub('', email)}>"


def _data(payload: bytes) -> bytes:
    return b"data " + str(len(payload)).encode() + b"\n" + payload + b"\n"


def _fast_import(repo: Path, notes_ref: str, tip: str | None, message: str,
                 changes: Mapping[str, tuple[list[str], bytes | None]]) -> subprocess.CompletedProcess:
    """One notes commit on top of ``tip``: per commit, delete ``paths`` and write ``content``."""
    parts: list[bytes] = []
    marks: dict[str, int] = {}
    for i, (commit, (_paths, content)) in enumerate(changes.items(), start=1):
        if content is not None:
            parts.append(b"blob\nmark :" + str(i).encode() + b"\n" + _data(content))
            marks[commit] = i
    commit_mark = len(changes) + 1
    parts.append(f"commit {notes_ref}\nmark :{commit_mark}\ncommitter {_ident()} now\n".encode())
    parts.append(_data(message.encode()))
    if tip is not None:
        parts.append(f"from {tip}\n".encode())
    for commit, (paths, content) in changes.items():
        for path in paths:
            parts.append(f"D {path}\n".encode())
        if content is not None:
            parts.append(f"N :{marks[commit]} {commit}\n".encode())
    parts.append(f"\nget-mark :{commit_mark}\ndone\n".encode())
    return subprocess.run([*GIT, "-C", str(repo), "fast-import", "--quiet", "--done",
                           "--date-format=now"], input=b"".join(parts), capture_output=True,
                          env=base_env(), check=False)


_LOST_RACE = ("not updating", "cannot lock ref", "unable to create", "file exists",
              "but expected", "is at ")


def _lost_race(stderr: str) -> bool:
    low = stderr.lower()
    return any(s in low for s in _LOST_RACE)


def _clear_stale_lock(repo: Path, notes_ref: str) -> bool:
    """Remove ``<notes_ref>.lock`` if it is older than STALE_LOCK_SECONDS (left by a killed
    process: docs/architecture.md#known-hazards-of-git). Returns True if one was removed."""
    try:
        common = git(["rev-parse", "--git-common-dir"], cwd=repo).stdout.strip()
    except GitError:
        return False
    lock = (Path(repo) / common / notes_ref).with_name(Path(notes_ref).name + ".lock")
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return False
    if age < STALE_LOCK_SECONDS:
        return False
    try:
        lock.unlink()
    except OSError:
        return False
    return True


def _write(repo: Path, notes_ref: str, commits: Sequence[str], make, message: str,
           retries: int) -> str:
    """Compare-and-swap loop: ``make(commit, old_content_bytes | None) -> new bytes | None``."""
    repo = Path(repo)
    _check_ref(notes_ref)
    for commit in commits:
        _check_oid(commit)
    if retries < 0:
        raise UsageError("retries must be >= 0")
    last_err = ""
    batch = CatFileBatch(repo)
    try:
        # fast-import dies (and leaves a crash report) on an unknown commit: check first.
        for commit, kind in zip(commits, _ask(batch, list(commits)), strict=True):
            if kind is None or kind[1] != "commit":
                what = "no such object" if kind is None else f"a {kind[1]}, not a commit"
                raise NotesError(f"cannot note {commit}: {what} in {repo}",
                                 hint="notes attach to commits of this repository")
        # Losing the compare-and-swap to another writer means that writer made progress, so
        # under heavy contention (many watchers, a loaded machine) keep trying for up to
        # RACE_PATIENCE seconds even past ``retries``; a held lock is retried ``retries`` times.
        deadline = time.monotonic() + RACE_PATIENCE
        attempt = -1
        while True:
            attempt += 1
            tip, found = _read_state(batch, notes_ref, commits)
            changes: dict[str, tuple[list[str], bytes | None]] = {}
            for commit in commits:
                entries = found[commit]
                old = b"".join(_ensure_nl(c) for _p, c in entries) if entries else None
                new = make(commit, old)
                if new == old and len(entries) <= 1:
                    continue
                changes[commit] = ([p for p, _c in entries], new)
            if not changes:
                return tip or ""
            proc = _fast_import(repo, notes_ref, tip, message, changes)
            if proc.returncode == 0:
                new_tip = proc.stdout.decode().strip().split()[-1] if proc.stdout.strip() else ""
                return new_tip if _OID_RE.match(new_tip) else _resolve(batch, notes_ref)
            stderr = proc.stderr.decode(errors="replace")
            last_err = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"
            if not _lost_race(stderr):
                raise NotesError(f"writing notes to {notes_ref} failed: {last_err}",
                                 argv=["git", "fast-import"], returncode=proc.returncode,
                                 stderr=stderr)
            if ".lock" in stderr and "exists" in stderr.lower():
                _clear_stale_lock(repo, notes_ref)
            outrun = "not updating" in stderr.lower()  # another writer moved the ref meanwhile
            if attempt >= retries and not (outrun and time.monotonic() < deadline):
                break
            time.sleep(min(0.25, 0.004 * (2 ** min(attempt, 8))) * random.uniform(0.5, 1.5))
    finally:
        batch.close()
    raise BusyError(f"could not update {notes_ref}: {attempt + 1} attempts lost the race to "
                    f"other writers (last: {last_err})",
                    hint="retry; if it persists, look for a stale "
                         f"{notes_ref}.lock in the git directory")


def _resolve(batch: CatFileBatch, ref: str) -> str:
    (answer,) = _ask(batch, [ref + "^{commit}"])
    return answer[0] if answer else ""


def _ensure_nl(content: bytes) -> bytes:
    return content if not content or content.endswith(b"\n") else content + b"\n"


def _lines_payload(lines: Sequence[str]) -> bytes:
    out = []
    for line in lines:
        if not isinstance(line, str):
            raise UsageError(f"note lines must be strings, got {type(line).__name__}")
        line = line.rstrip("\n")
        if "\n" in line:
            raise UsageError("a note line must not contain a newline (notes are JSON lines)")
        if line:
            out.append(json_safe(line) + "\n")  # a JSON line stays the same JSON value
    return "".join(out).encode("utf-8", "surrogateescape")


def append_notes(repo: Path | str, notes_ref: str, entries: Mapping[str, Sequence[str]], *,
                 retries: int = 20, message: str = "Notes appended by logist") -> str:
    """Append ``entries[commit]`` (JSON lines, without newlines) to each commit's note.

    All commits change in ONE notes commit, published by compare-and-swap on ``notes_ref`` and
    retried from the fresh tip when another writer won. Returns the new notes commit (or the
    unchanged tip when there was nothing to write). Raises BusyError when every attempt lost,
    NotesError for anything else git refused.
    """
    payloads = {c: _lines_payload(lines) for c, lines in entries.items()}
    payloads = {c: p for c, p in payloads.items() if p}
    if not payloads:
        tip = git(["rev-parse", "-q", "--verify", notes_ref + "^{commit}"], cwd=repo,
                  check=False).stdout.strip()
        return tip

    def make(commit: str, old: bytes | None) -> bytes:
        return (old or b"") + payloads[commit]

    return _write(Path(repo), notes_ref, list(payloads), make, message, retries)


def set_note(repo: Path | str, notes_ref: str, commit: str, content: str | None, *,
             retries: int = 20) -> str:
    """Replace the note of ``commit`` with ``content`` (None or "" removes it); compare-and-swap
    like :func:`append_notes`. Returns the new notes commit (or the unchanged tip)."""
    payload = None
    if content:
        # A note is shown by plain `git log` (notes.displayRef): no control character reaches
        # the terminal raw (they are written escaped, newlines and tabs kept).
        payload = sanitize(content).encode("utf-8", "surrogateescape")
        payload = _ensure_nl(payload)
    return _write(Path(repo), notes_ref, [commit], lambda _c, _old: payload,
                  "Notes set by logist", retries)


def read_notes(repo: Path | str, notes_ref: str, commits: Sequence[str]) -> dict[str, str]:
    """The notes of many commits in one process: {commit: text} for those that have one."""
    _check_ref(notes_ref)
    for commit in commits:
        _check_oid(commit)
    batch = CatFileBatch(Path(repo))
    try:
        tip, found = _read_state(batch, notes_ref, list(commits))
    finally:
        batch.close()
    if tip is None:
        return {}
    return {c: b"".join(_ensure_nl(x) for _p, x in e).decode("utf-8", "replace")
            for c, e in found.items() if e}


def read_note(repo: Path | str, notes_ref: str, commit: str) -> str | None:
    """The note of ``commit`` in ``notes_ref``, or None if it has none."""
    return read_notes(repo, notes_ref, [commit]).get(commit)


class NoteLines(list):
    """The JSON objects of a note; ``invalid`` counts the lines that were skipped."""

    invalid: int = 0


def parse_note_lines(text: str | None) -> NoteLines:
    """Parse JSON lines as untrusted data: objects only, bounded line length."""
    out = NoteLines()
    if not text:
        return out
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        if len(raw) > MAX_NOTE_LINE:
            out.invalid += 1
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            out.invalid += 1
            continue
        if not isinstance(obj, dict):
            out.invalid += 1
            continue
        out.append(obj)
    return out


def read_note_lines(repo: Path | str, notes_ref: str, commit: str) -> NoteLines:
    """The JSON objects of ``commit``'s note (empty if none); invalid lines are skipped and
    counted in ``.invalid``."""
    return parse_note_lines(read_note(repo, notes_ref, commit))


def list_notes(repo: Path | str, notes_ref: str) -> dict[str, str]:
    """{annotated object: note blob} for every note in ``notes_ref`` (empty if the ref is absent)."""
    _check_ref(notes_ref)
    proc = git(["notes", "--ref", notes_ref, "list"], cwd=repo, check=False)
    if proc.returncode != 0:
        exists = git(["rev-parse", "-q", "--verify", notes_ref], cwd=repo, check=False)
        if exists.returncode != 0:
            return {}
        raise NotesError(f"git notes list failed: {proc.stderr.strip()}", stderr=proc.stderr,
                         returncode=proc.returncode)
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out

