"""The job store: the only module that reads and writes job branches.

A job is ``refs/heads/logist/<id>`` plus a worktree. Every transition is one commit built
in process with dulwich (blob, trees, commit) and published with one
``git update-ref --stdin`` transaction that verifies the holder's lock (fencing) and moves the
branch by compare-and-swap. The job worktree's index is brought along afterwards, so
``git status`` in the worktree stays clean (docs/architecture.md#known-hazards-of-git).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logist.core.errors import ConcurrentUpdateError, LogistError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.redact import redact_json
from logist.core.termsafe import json_safe
from logist.git import packing, refs
from logist.git.gitcmd import Started, git, git_out
from logist.store.job_reads import RECORD_FILES, JobRecord, JobSummary
from logist.store.job_worktrees import WorktreeKeeper
from logist.store.objects import commit_message
from logist.store.repo import RepoPaths, default_worktrees_dir, find_repo, new_transition_id, utcnow

if TYPE_CHECKING:  # the model (pydantic) is imported where a record is built or validated
    from logist.core.model import HistoryEntry, Manifest
    from logist.store.hygiene import LeftOut
    from logist.store.record_view import EntryView, RecordView

# The names other modules import from here (their homes are the modules above).
__all__ = ["RECORD_FILES", "JobRecord", "JobStore", "JobSummary", "RepoPaths", "default_worktrees_dir",
           "dumps", "exclude_pathspecs", "find_repo", "new_transition_id", "utcnow"]


def _safe_json_bytes(raw: bytes, *, indent: bool) -> bytes:
    """JSON bytes of the record with secrets masked and no raw control character (the same
    JSON values otherwise; canonical form kept)."""
    text = raw.decode("utf-8", "surrogateescape")
    if indent:
        text = redact_json(text, dumps=lambda d: json.dumps(d, sort_keys=True, indent=2,
                                                            ensure_ascii=False) + "\n")
    else:
        text = redact_json(text, dumps=lambda d: json.dumps(d, sort_keys=True, ensure_ascii=False,
                                                            separators=(",", ":")) + "\n")
    return json_safe(text).encode("utf-8", "surrogateescape")


def exclude_pathspecs(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """git pathspecs that leave out ``patterns`` (file or directory names, globs allowed) at
    any depth, with everything under a matching directory."""
    out: list[str] = []
    for pat in patterns:
        pat = pat.strip().strip("/")
        if pat:
            out += [f":(exclude,glob)**/{pat}", f":(exclude,glob)**/{pat}/**"]
    return out


class JobStore(WorktreeKeeper):
    """Read and write jobs in one repository: the places and ref transactions
    (:class:`logist.store.repo.RepoBase`), the reads (:class:`logist.store.job_reads.JobReader`),
    the worktrees (:class:`logist.store.job_worktrees.WorktreeKeeper`) and, here, the writes."""

    @classmethod
    def discover(cls, cwd: str | Path | None = None) -> JobStore:
        return cls(find_repo(cwd))

    # ---- writes ----------------------------------------------------------------------
    def record_files(self, job_id: JobId, manifest: Manifest | RecordView, history_raw: bytes,
                     entries: Sequence[HistoryEntry | EntryView]) -> dict[str, bytes]:
        """The files of the record to commit. The manifest bytes are validated as a reader
        will validate them (logist never writes a record it would refuse to read) and
        remembered as valid (logist.store.record_cache). A RecordView (a known-valid record
        changed by a human transition, logist.store.record_view) was validated field by field
        as it changed: no model is imported for it."""
        from logist.store.record_cache import blob_oid
        from logist.store.record_view import EntryView, RecordView

        # Secrets are masked (the redactor of logs and notes) and no raw control character is
        # written: a record is pushed and shown (docs/refs.md, "Secrets and control characters").
        if isinstance(manifest, RecordView):
            lines = [e.line() for e in entries if isinstance(e, EntryView)]
            if len(lines) != len(entries):
                raise TypeError("a record view is committed with entry views")
            hist = history_raw + b"".join(_safe_json_bytes(line, indent=False) for line in lines)
            data = _safe_json_bytes(manifest.canonical(), indent=True)
        else:
            from logist.core.model import HistoryEntry, canonical_json, history_line, parse_manifest

            models = [e for e in entries if isinstance(e, HistoryEntry)]
            if len(models) != len(entries):
                raise TypeError("a Manifest is committed with HistoryEntry models")
            hist = history_raw + b"".join(_safe_json_bytes(history_line(e), indent=False) for e in models)
            data = _safe_json_bytes(canonical_json(manifest), indent=True)
            try:
                parse_manifest(data)
            except ValueError as exc:  # a bug in logist, not in the user's input
                raise RuntimeError(f"logist built an invalid record for job {job_id}: {exc}") from None
        self.record_cache.add([blob_oid(data)])
        return {"manifest.json": data, "history.jsonl": hist}

    def _remember_record(self, job_id: JobId, oid: str, files: dict[str, bytes]) -> None:
        """The record this process just committed at ``oid``: read back without a git process."""
        self.remember_blob(oid, refs.manifest_path(job_id), files["manifest.json"])
        self.remember_blob(oid, refs.history_path(job_id), files["history.jsonl"])

    def _history_raw(self, oid: str, job_id: JobId) -> bytes:
        return self.blob_at(oid, refs.history_path(job_id)) or b""

    def create_job(self, manifest: Manifest | RecordView, entry: HistoryEntry | EntryView, *,
                   make_worktree: bool = False) -> str:
        """Create branch logist/<id> at base + a record commit (create-only); with
        ``make_worktree`` its worktree too (else the first step makes it: docs/architecture.md#worktrees)."""
        job_id = manifest.id
        self._check_worktree_path(job_id)  # before anything is created, even when made later
        files = self.record_files(job_id, manifest, b"", [entry])
        base_tree = self.writer.commit_tree_of(manifest.base)
        tree = self.writer.tree_with_record(base_tree, job_id, files)
        oid = self.writer.commit(tree, [manifest.base], commit_message(job_id, entry, manifest))
        crash_point("create-before-ref")
        proc = self.ref_transaction(f"create {refs.branch_ref(job_id)} {oid}\n"
                                    f"update {refs.tip_ref(job_id)} {oid}\n")
        if proc.returncode != 0:
            from logist.core.errors import JobExistsError

            raise JobExistsError(f"job {job_id} already exists",
                                 hint="choose another title or id (see `logist job list --all`)")
        crash_point("create-after-ref")
        self._remember_record(job_id, oid, files)
        if make_worktree:
            try:
                self.ensure_worktree(job_id)
            except Exception:
                # A failed create leaves nothing behind: take the branch back (compare-and-delete).
                self.ref_transaction(f"delete {refs.branch_ref(job_id)} {oid}\n"
                                     f"delete {refs.tip_ref(job_id)} {oid}\n")
                raise
        packing.pack_if_needed(self.paths.common_dir)
        return oid

    def commit_transition(self, job_id: JobId, old_tip: str, manifest: Manifest | RecordView,
                          entries: Sequence[HistoryEntry | EntryView], *, lease: str | None = None,
                          parent: str | None = None, include_worktree: bool = False,
                          body: str = "", extra_trailers: dict[str, str] | None = None,
                          sync_worktree: bool = True, history_from: str | None = None,
                          exclude: tuple[str, ...] = (), left_out: list[LeftOut] | None = None,
                          extra_refs: Sequence[str] = (),
                          before_publish: Callable[[str], None] | None = None) -> str:
        """Make one transition commit and publish it by compare-and-swap (fenced by ``lease``):
        the commit-and-publish primitive under ``logist.store.job_state.update_job_manifest``.

        ``parent`` (default ``old_tip``) is the commit the new one builds on (its tree is the
        new commit's, plus the record); the branch must still be at ``old_tip``;
        ``history_from`` is the commit whose history is appended to. With ``include_worktree``
        the commit also takes the worktree's changes but ``exclude`` (an agent CLI's own state
        files) and ``left_out`` (:meth:`_worktree_tree`).
        ``extra_refs``: more ``update-ref --stdin`` lines for the same transaction (a rerun
        keeps the old tip at its run ref); ``before_publish(oid)`` runs once the commit exists
        and before it is published (a rerun moves the worktree then). Raises
        ConcurrentUpdateError (exit 4) when the branch moved or the lease was lost; nothing is
        published then.
        """
        parent = parent or old_tip
        wt = self.worktree_path(job_id)
        sync = sync_worktree and (wt / ".git").exists() and self.worktree_problem(wt) is None
        # The two git processes a transition needs start now and are fed when the commit is
        # built, so their start-up overlaps the dulwich work (docs/performance.md).
        ref_proc = Started(["update-ref", "--stdin"], cwd=self.paths.root)
        index_proc = None
        try:
            # The history is appended to logist's own last record (never to what an agent left).
            history_raw = self._history_raw(history_from or old_tip, job_id)
            files = self.record_files(job_id, manifest, history_raw, entries)
            if include_worktree:
                base_tree = self._worktree_tree(wt, exclude, left_out)
            else:
                base_tree = self.writer.commit_tree_of(parent)
            if sync:  # after `git add -A`: update-index holds the index lock from its start
                index_proc = Started(["update-index", "--add", "--stdin"], cwd=wt)
            oid = self.writer.commit(self.writer.tree_with_record(base_tree, job_id, files), [parent],
                                     commit_message(job_id, entries[-1], manifest, body=body, lease=lease,
                                                    extra_trailers=extra_trailers))
            if before_publish is not None:
                before_publish(oid)
            crash_point("before-publish")
            self.publish(job_id, oid, old_tip, lease=lease, started=ref_proc, extra_refs=extra_refs)
            crash_point("after-publish")
            self._remember_record(job_id, oid, files)
            if sync:
                self._sync_published(job_id, wt, files, index_proc)
        finally:
            ref_proc.cancel()
            if index_proc is not None:
                index_proc.cancel()
        if include_worktree:  # the job's work may have changed: bring its review branch along
            from logist.store.review import refresh

            refresh(self, job_id)
        packing.pack_if_needed(self.paths.common_dir)  # one directory listing, see git/packing
        return oid

    def _worktree_tree(self, wt: Path, exclude: tuple[str, ...], left_out: list[LeftOut] | None) -> bytes:
        """The tree of the worktree's changes (``git add -A``, respecting .gitignore, leaving out
        the patterns ``exclude`` and the paths ``left_out``: ``hygiene.plan``)."""
        if left_out:
            from logist.store.hygiene import add_pathspecs

            specs = add_pathspecs(left_out) + "".join(p + "\0" for p in exclude_pathspecs(exclude))
            git(["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=wt, input=specs)
        else:
            git(["add", "-A", "--", ".", *exclude_pathspecs(exclude)], cwd=wt)
        crash_point("after-worktree-add")
        return git_out(["write-tree"], cwd=wt).encode()

    def _sync_published(self, job_id: JobId, wt: Path, files: dict[str, bytes], index_proc: Started | None) -> None:
        """The worktree's copy of a published record brought along. The commit is published:
        the transition happened. A worktree that cannot take the record's copy (broken by an
        agent) is a warning, not a failure."""
        try:
            self.sync_worktree_record(job_id, files, started=index_proc)
        except LogistError as exc:
            from logist.core.notices import notice

            notice(f"job {job_id}: the worktree's copy of the record was not updated "
                   f"({exc.message}); `logist doctor` finds what is wrong with {wt}")

    def publish(self, job_id: JobId, new: str, old: str, *, lease: str | None = None,
                started: Started | None = None, extra_refs: Sequence[str] = ()) -> None:
        """One ref transaction: verify the lock value (fencing), then CAS the branch (and the
        ``extra_refs`` lines, all or nothing).

        ``started``: an ``update-ref --stdin`` already running, used for the first attempt.
        """
        lines = []
        if lease:
            lines.append(f"verify {refs.lock_ref(job_id)} {lease}\n")
        lines.extend(line if line.endswith("\n") else line + "\n" for line in extra_refs)
        lines.append(f"update {refs.branch_ref(job_id)} {new} {old}\n")
        lines.append(f"update {refs.tip_ref(job_id)} {new}\n")  # logist's own copy, same transaction
        proc = self.ref_transaction("".join(lines), started=started)
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if ".lock" in err and "File exists" in err:
                path = err.split("Unable to create '", 1)[-1].split("'", 1)[0]
                raise ConcurrentUpdateError(
                    f"job {job_id}: a git lock file is in the way: {path}",
                    hint="another git command may be running; if none is, a killed git left it: "
                         "`logist recover` removes it once it is a minute old")
            if lease and refs.lock_ref(job_id) in err:
                raise ConcurrentUpdateError(
                    f"job {job_id}: this process lost its lease; another process holds the job now",
                    hint=f"run `logist job status {job_id}` to see who holds it")
            raise ConcurrentUpdateError(
                f"job {job_id} changed while this command ran (branch is no longer at {old[:12]})",
                hint=f"run `logist job status {job_id}` and try again")


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2)
