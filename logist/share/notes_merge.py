"""Merging a remote's logist notes into the local ones (``cat_sort_uniq``, published by
compare-and-swap), refusing a fetched notes ref that holds a note over the size cap or raw
control characters (docs/refs.md). Layer 5; never prints."""

from __future__ import annotations

import os
import random
import secrets
import time

from logist.core.errors import ConcurrentUpdateError, GitError
from logist.git import refs
from logist.git.gitcmd import git
from logist.share.remotes import error_line, is_ancestor, rev
from logist.store.jobstore import JobStore

NOTES_MERGE_ATTEMPTS = 30


def merge_notes_ref(store: JobStore, local_ref: str, theirs_ref: str) -> bool:
    """Merge notes ``theirs_ref`` into ``local_ref`` with ``cat_sort_uniq``.

    ``git notes merge`` moves its ref without an old-value check, so the merge runs on a
    short-lived ref and the result is published on ``local_ref`` by compare-and-swap (retried
    when a local note writer moved it meanwhile). Returns True when ``local_ref`` changed.
    """
    theirs = rev(store, theirs_ref)
    if theirs is None:
        return False
    for attempt in range(NOTES_MERGE_ATTEMPTS):
        ours = rev(store, local_ref)
        if ours is None:
            proc = store.ref_transaction(f"create {local_ref} {theirs}\n")
            if proc.returncode == 0:
                return True
            continue
        if is_ancestor(store, theirs, ours):
            return False
        if is_ancestor(store, ours, theirs):
            merged = theirs
        else:
            merged = _notes_merge_commit(store, ours, theirs_ref)
        proc = store.ref_transaction(f"update {local_ref} {merged} {ours}\n")
        if proc.returncode == 0:
            return True
        time.sleep(min(0.2, 0.005 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.5))
    raise ConcurrentUpdateError(f"could not merge {theirs_ref} into {local_ref}: it kept moving",
                                hint="run `logist fetch` again")


def _notes_merge_commit(store: JobStore, ours: str, theirs_ref: str) -> str:
    tmp = f"{refs.NOTES_MERGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    store.update_refs(f"create {tmp} {ours}\n")
    try:
        proc = git(["notes", "--ref", tmp, "merge", "-q", "-s", "cat_sort_uniq", "--end-of-options",
                    theirs_ref], cwd=store.root, check=False)
        if proc.returncode != 0:
            raise GitError(f"merging notes from {theirs_ref} failed: {error_line(proc.stderr)}",
                           stderr=proc.stderr, hint="run `logist doctor`")
        merged = rev(store, tmp)
        assert merged
        return merged
    finally:
        git(["update-ref", "-d", tmp], cwd=store.root, check=False)


def oversized_note(store: JobStore, notes_ref: str, limit: int | None = None) -> str | None:
    """``<commit>: <size>`` of the first note of ``notes_ref`` larger than ``limit`` bytes
    (default: logist.core.limits.MAX_NOTE_BYTES), or None. One ``git ls-tree -r -l``."""
    from logist.core.limits import MAX_NOTE_BYTES

    limit = MAX_NOTE_BYTES if limit is None else limit
    proc = git(["ls-tree", "-r", "-l", "--end-of-options", notes_ref], cwd=store.root, check=False)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        if len(parts) == 4 and parts[1] == "blob" and parts[3].isdigit() and int(parts[3]) > limit:
            return f"{path.replace('/', '')[:12]}: {int(parts[3])} bytes"
    return None


def note_with_controls(store: JobStore, theirs: str, ours: str | None) -> str | None:
    """``<commit>`` of the first note of ``theirs`` (new since ``ours``) that holds a raw
    control or escape character, or None. Notes are printed by plain ``git log``
    (notes.displayRef): logist writes them escaped (docs/refs.md), so a raw one was written by
    something else and is not merged."""
    from logist.core.termsafe import has_controls
    from logist.git.gitcmd import CatFileBatch

    args = (["diff-tree", "-r", "--no-commit-id", "--end-of-options", ours, theirs] if ours
            else ["ls-tree", "-r", "--end-of-options", theirs])
    proc = git(args, cwd=store.root, check=False)
    if proc.returncode != 0:
        return None
    blobs: list[tuple[str, str]] = []
    for line in proc.stdout.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        oid = parts[3] if ours and len(parts) >= 5 else (parts[2] if len(parts) == 3 else "")
        if len(oid) == 40 and oid.strip("0"):
            blobs.append((path.replace("/", ""), oid))
    if not blobs:
        return None
    with CatFileBatch(store.root) as batch:
        datas = batch.read_many([oid for _p, oid in blobs])
    for (commit, _oid), data in zip(blobs, datas, strict=True):
        if data and has_controls(data.decode("utf-8", "replace")):
            return commit[:12]
    return None


def merge_remote_notes(store: JobStore, remote: str, *, refused: list[str] | None = None) -> list[str]:
    """Merge every fetched logist notes ref of ``remote`` into the local one. A fetched notes
    ref holding a note larger than logist.core.limits.MAX_NOTE_BYTES is data nobody should
    print or merge: it is not merged (``"<ref>: why"`` is added to ``refused``)."""
    from logist.core.limits import MAX_NOTE_BYTES, human_bytes

    changed = []
    for local in refs.NOTES_REFS:
        theirs = refs.remote_notes_ref(remote, local)
        ours = rev(store, local)
        tip = rev(store, theirs)
        if tip is not None and not (ours and is_ancestor(store, tip, ours)):
            big = oversized_note(store, theirs)
            if big:
                if refused is not None:
                    refused.append(f"{theirs}: note on {big} (more than {human_bytes(MAX_NOTE_BYTES)}); not merged")
                continue
            raw = note_with_controls(store, theirs, ours)
            if raw:
                if refused is not None:
                    refused.append(f"{theirs}: the note on {raw} holds raw control or escape "
                                   "characters (a terminal would obey them); not merged")
                continue
        if merge_notes_ref(store, local, theirs):
            changed.append(local)
    return changed
