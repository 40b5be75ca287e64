"""Reads of job records: a job's tip (a deleted branch restored from logist's copy), its record
and history at a commit, validated as the model validates them, and listings of every job with
one ``for-each-ref`` and one ``cat-file --batch`` (logist.store.record_cache skips the models
for records validated before; logist.store.listing_cache skips git for records whose tip has not
moved since the last listing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logist.core.errors import JobNotFoundError, ManifestError
from logist.core.jobid import JobId, is_job_id
from logist.core.states import State
from logist.git import refs
from logist.git.gitcmd import CatFileBatch, git, git_out
from logist.store.repo import RepoBase, utcnow

if TYPE_CHECKING:
    from logist.core.model import HistoryEntry, Manifest
    from logist.git.gitread import RepoReader
    from logist.store.listing_cache import ListingCache
    from logist.store.record_cache import ValidRecordCache
    from logist.store.record_view import RecordView

RECORD_FILES = ("manifest.json", "history.jsonl")
_OID_RE = re.compile(r"[0-9a-f]{40}")


@dataclass
class JobSummary:
    id: JobId
    tip: str
    manifest: Manifest | None
    error: str | None = None


@dataclass
class JobRecord:
    """A job's tip record as validated JSON data (``JobStore.list_records``)."""

    id: JobId
    tip: str
    data: dict[str, Any] | None
    error: str | None = None


class JobReader(RepoBase):
    """Reads of job branches and their records."""

    @property
    def reader(self) -> RepoReader:
        """In-process reads of refs and objects (logist.git.gitread); git is asked when it can't."""
        if self._reader is None:
            from logist.git.gitread import RepoReader

            self._reader = RepoReader(self.paths.common_dir, lambda oid: self.writer.get(oid))
        return self._reader

    def _objects_in_process(self) -> bool:
        """Read objects with dulwich only in a process that asked for it (a runner: dulwich is
        loaded and its object cache warm); a short command is cheaper with one `git cat-file`
        than with importing dulwich (`job status`, `job show`, `job suspend`)."""
        return self._writer is not None and self._writer.objects_loaded

    def resolve_commit(self, ref: str) -> str | None:
        """The commit ``ref`` names (like ``git rev-parse --verify -q REF^{commit}``), or None."""
        from logist.git.gitread import Unsupported

        try:
            if self._objects_in_process():
                return self.reader.commit(ref)
            return self.reader.ref(ref)  # a branch names a commit; cat-file checks the rest
        except Unsupported:
            proc = git(["rev-parse", "--verify", "-q", ref + "^{commit}"],
                       cwd=self.paths.root, check=False)
            return proc.stdout.strip() if proc.returncode == 0 else None

    def blob_at(self, commit: str, path: str) -> bytes | None:
        """Content of ``commit:path`` (None if there is no such file)."""
        return self.blobs_at(commit, [path])[0]

    def blobs_at(self, commit: str, paths: Sequence[str]) -> list[bytes | None]:
        """Content of each ``commit:path`` (None where there is no such file): one ``git
        cat-file --batch`` for them all. Remembered by commit id and path (a commit never
        changes), so a command reading the same record twice, or the record it just wrote,
        starts no second process."""
        from logist.git.gitread import Unsupported

        keyed = _OID_RE.fullmatch(commit) is not None
        out: dict[str, bytes | None] = {p: self._blobs[(commit, p)] for p in paths
                                        if keyed and (commit, p) in self._blobs}
        missing = [p for p in paths if p not in out]
        if missing and self._objects_in_process():
            try:
                out.update((p, self.reader.blob_at(commit, p)) for p in missing)
                missing = []
            except Unsupported:
                pass
        if missing:
            with CatFileBatch(self.paths.root) as batch:
                found = batch.read_objects([f"{commit}:{p}" for p in missing])
            out.update((p, o[2] if o is not None and o[1] == "blob" else None)
                       for p, o in zip(missing, found, strict=True))
        if keyed:
            for p in missing:
                self.remember_blob(commit, p, out[p])
        return [out[p] for p in paths]

    def remember_blob(self, commit: str, path: str, data: bytes | None) -> None:
        """What ``commit:path`` holds (a commit never changes): written here, or read."""
        if len(self._blobs) >= 64:
            self._blobs.pop(next(iter(self._blobs)))
        self._blobs[(commit, path)] = data

    def tip(self, job_id: JobId) -> str:
        oid = self.resolve_commit(refs.branch_ref(job_id))
        if oid is None:
            oid = self.restore_branch(job_id)
        if oid is None:
            raise JobNotFoundError(f"no job {job_id!r} in this repository",
                                   hint="run `logist job list` to see jobs")
        return oid

    # The marker a restored branch leaves in the job's run directory, for the next harvest to
    # note in the record (engine.settle.settle_branch).
    RESTORED_MARKER = "branch-restored.json"

    def restore_branch(self, job_id: JobId) -> str | None:
        """A job branch that is gone (an agent's ``git update-ref -d``, a ``git branch -D``) while
        logist's copy ``refs/logist/tips/<id>`` is there: create the branch again at that commit
        (create-only, verifying the copy) and leave a marker for the record. The commit or None."""
        kept = self.resolve_commit(refs.tip_ref(job_id))
        if kept is None:
            return None
        proc = self.ref_transaction(f"verify {refs.tip_ref(job_id)} {kept}\n"
                                    f"create {refs.branch_ref(job_id)} {kept}\n")
        now = self.resolve_commit(refs.branch_ref(job_id))
        if proc.returncode == 0:
            try:
                d = self.run_dir(job_id)
                d.mkdir(parents=True, exist_ok=True)
                (d / self.RESTORED_MARKER).write_text(json.dumps({"commit": kept, "at": utcnow()}))
            except OSError:
                pass
        return now

    def read(self, job_id: JobId, *, at: str | None = None) -> tuple[str, Manifest]:
        """(commit, manifest) at the branch tip (or at commit ``at``)."""
        refs.validate_job_id(job_id)
        oid = at or self.tip(job_id)
        return oid, self._validate(job_id, oid, self.blob_at(oid, refs.manifest_path(job_id)))

    def _validate(self, job_id: JobId, oid: str, raw: bytes | None) -> Manifest:
        from logist.core.model import parse_manifest
        if raw is None:
            raise ManifestError(f"job {job_id}: commit {oid[:12]} has no record at "
                                f"{refs.manifest_path(job_id)}",
                                hint=f"inspect it with `git show {oid[:12]}`; `logist recover {job_id}` "
                                     "restores the record from logist's last commit")
        from logist.core.limits import MAX_RECORD_BYTES, human_bytes

        if len(raw) > MAX_RECORD_BYTES:
            raise ManifestError(f"job {job_id}: the record at commit {oid[:12]} is larger than "
                                f"{human_bytes(MAX_RECORD_BYTES)}; not read",
                                hint=f"inspect it with `git show {oid[:12]}:{refs.manifest_path(job_id)}`")
        try:
            m = parse_manifest(raw)
        except ValueError as exc:
            detail = _why_invalid(exc)
            raise ManifestError(f"job {job_id}: the record at commit {oid[:12]} is invalid ({detail})",
                                hint=f"inspect it with `git show {oid[:12]}:{refs.manifest_path(job_id)}`"
                                ) from None
        if m.id != job_id:
            raise ManifestError(f"job {job_id}: the record at commit {oid[:12]} names job {m.id!r}")
        return m

    def read_view(self, job_id: JobId, *, at: str | None = None) -> tuple[str, Manifest | RecordView]:
        """(commit, record) for a transition: a RecordView, without the models, when logist
        validated this blob before and it is complete as logist writes it
        (logist.store.record_view); else the validated Manifest, as :meth:`read` gives it."""
        from logist.core.limits import MAX_RECORD_BYTES
        from logist.store.record_cache import blob_oid
        from logist.store.record_view import RecordView

        refs.validate_job_id(job_id)
        oid = at or self.tip(job_id)
        # the history comes along (one process): the transition appends to it
        raw = self.blobs_at(oid, [refs.manifest_path(job_id), refs.history_path(job_id)])[0]
        if raw is not None and len(raw) <= MAX_RECORD_BYTES and self.record_cache.contains(blob_oid(raw)):
            view = RecordView.load(raw, job_id)
            if view is not None:
                return oid, view
        return oid, self._validate(job_id, oid, raw)

    def read_record(self, job_id: JobId, *, at: str | None = None) -> tuple[str, dict[str, Any]]:
        """(commit, record as JSON data) at the tip: validated like :meth:`read`, without the
        models when logist validated this blob before (logist.store.record_cache)."""
        from logist.store.record_cache import blob_oid

        refs.validate_job_id(job_id)
        oid = at or self.tip(job_id)
        raw = self.blob_at(oid, refs.manifest_path(job_id))
        if raw is not None:
            blob = blob_oid(raw)
            if self.record_cache.contains(blob):
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                if _listable(data, job_id):
                    return oid, data
        self._validate(job_id, oid, raw)  # raises with the reason
        self.record_cache.add([blob_oid(raw)])  # type: ignore[arg-type]
        return oid, json.loads(raw)  # type: ignore[arg-type]

    def read_history(self, job_id: JobId, *, at: str | None = None) -> list[HistoryEntry]:
        from logist.core.model import parse_history

        oid = at or self.tip(job_id)
        raw = self.blob_at(oid, refs.history_path(job_id))
        if raw is None:
            return []
        from logist.core.limits import MAX_RECORD_BYTES, human_bytes

        if len(raw) > MAX_RECORD_BYTES:
            raise ManifestError(f"job {job_id}: history at {oid[:12]} is larger than "
                                f"{human_bytes(MAX_RECORD_BYTES)}; not read")
        try:
            return parse_history(raw)
        except ValueError:
            from logist.core.model import HistoryEntry

            bad, why = 0, "invalid"
            for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    HistoryEntry.model_validate_json(line)
                except ValueError as exc:
                    bad, why = n, _why_invalid(exc)
                    break
            path = refs.history_path(job_id)
            raise ManifestError(f"job {job_id}: history at {oid[:12]} is invalid (line {bad}: {why})",
                                hint=f"inspect it with `git show {oid[:12]}:{path}`; undo the commit that "
                                     "changed it (e.g. `git revert`) and run the command again") from None

    def job_ids(self) -> list[tuple[str, str]]:
        """[(id, tip)] of every job branch, sorted by id."""
        out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", refs.BRANCH_PREFIX],
                      cwd=self.paths.root)
        result = []
        for line in out.splitlines():
            oid, _, ref = line.partition(" ")
            job_id = refs.job_id_from_branch_ref(ref)
            if job_id:
                result.append((job_id, oid))
        return result

    def list_jobs(self, prefix: str = refs.BRANCH_PREFIX) -> list[JobSummary]:
        """Every job's tip record: one for-each-ref and one cat-file --batch, whatever the count."""
        pairs = self._tips(prefix)
        if not pairs:
            return []
        with CatFileBatch(self.paths.root) as batch:
            blobs = batch.read_many([f"{oid}:{refs.manifest_path(jid)}" for jid, oid in pairs])
        result = []
        for (jid, oid), raw in zip(pairs, blobs, strict=True):
            try:
                result.append(JobSummary(jid, oid, self._validate(jid, oid, raw)))
            except ManifestError as exc:
                result.append(JobSummary(jid, oid, None, exc.message))
        return result

    def list_records(self, prefix: str = refs.BRANCH_PREFIX, *, lock_refs: dict[str, str] | None = None,
                     review_refs: dict[str, str] | None = None) -> list[JobRecord]:
        """Every job's tip record as plain JSON data, for listings: no pydantic when every
        record is one logist validated before (logist.store.record_cache); any other record is
        validated with the model first (and remembered when it passes).

        ``lock_refs``: filled with {job id: lock oid} of every lock ref, found by the same
        ``for-each-ref`` (the interrupted-jobs check of ``job list`` needs them);
        ``review_refs`` likewise with the review branches ``logist-review/<id>``.
        """
        review_prefix = refs.review_ref("x")[:-1]
        extra = {refs.LOCKS_PREFIX: lock_refs, review_prefix: review_refs}
        found = self._refs_under(prefix, *[p for p, into in extra.items() if into is not None])
        for p, into in extra.items():
            if into is not None:
                into.update(found[p])
        pairs = found[prefix]
        listing = self.listing_cache if prefix == refs.BRANCH_PREFIX else None
        seen = listing.load() if listing is not None else {}
        known: dict[str, Any] = {}
        for jid, tip in pairs:
            hit = seen.get(jid)
            if hit is not None and hit[0] == tip and _listable(hit[1], jid):
                known[jid] = hit[1]
        missing = [(jid, tip) for jid, tip in pairs if jid not in known]
        read = dict(self._read_records(missing, every=len(missing) == len(pairs))) if missing else {}
        result = [JobRecord(jid, tip, known[jid]) if jid in known else read[jid] for jid, tip in pairs]
        if listing is not None and (missing or len(seen) != len(known)):
            listing.save({r.id: (r.tip, r.data) for r in result if r.data is not None})
        return result

    def _read_records(self, pairs: list[tuple[JobId, str]], *, every: bool) -> list[tuple[JobId, JobRecord]]:
        """[(id, record)] of the jobs ``pairs`` names ([(id, tip)]), read from git with one
        ``cat-file --batch``: known valid records with ``json.loads``, others validated.
        ``every``: these are all the jobs, so the valid-records file may drop the rest."""
        with CatFileBatch(self.paths.root) as batch:
            objs = batch.read_many_objects([f"{oid}:{refs.manifest_path(jid)}" for jid, oid in pairs])
        cache = self.record_cache
        known = cache.load()
        learned = []
        result = []
        for (jid, tip), obj in zip(pairs, objs, strict=True):
            data = None
            if obj is not None and obj[0] in known:
                try:
                    data = json.loads(obj[1])
                except ValueError:
                    data = None
                if not _listable(data, jid):  # the cache can only be wrong by a miss
                    data = None
            if data is None:
                try:
                    self._validate(jid, tip, obj[1] if obj else None)
                    data = json.loads(obj[1])  # type: ignore[index]
                    learned.append(obj[0])  # type: ignore[index]
                except ManifestError as exc:
                    result.append((jid, JobRecord(jid, tip, None, exc.message)))
                    continue
            result.append((jid, JobRecord(jid, tip, data)))
        cache.add(learned)
        if every:
            cache.compact((o[0] for o in objs if o), known | set(learned))
        return result

    def _tips(self, prefix: str) -> list[tuple[JobId, str]]:
        """[(id, tip)] of the job branches under ``prefix`` (one for-each-ref)."""
        return self._refs_under(prefix)[prefix]

    def _refs_under(self, *prefixes: str) -> dict[str, list[tuple[JobId, str]]]:
        """{prefix: [(job id, oid)]} of the refs named ``<prefix><valid job id>``, for every
        prefix, with one ``for-each-ref``."""
        out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", *prefixes],
                      cwd=self.paths.root)
        found: dict[str, list[tuple[JobId, str]]] = {p: [] for p in prefixes}
        for line in out.splitlines():
            oid, _, ref = line.partition(" ")
            for p in prefixes:
                if ref.startswith(p):
                    rest = ref[len(p):]
                    if is_job_id(rest):  # checked here: a JobId from now on
                        found[p].append((JobId(rest), oid))
                    break
        return found

    @property
    def listing_cache(self) -> ListingCache:
        from logist.store.listing_cache import ListingCache

        return ListingCache(self.paths.logist_dir)

    @property
    def record_cache(self) -> ValidRecordCache:
        if self._record_cache is None:
            from logist.store.record_cache import ValidRecordCache

            self._record_cache = ValidRecordCache(self.paths.logist_dir)
        return self._record_cache


_STATES = frozenset(s.value for s in State)


def _why_invalid(exc: ValueError) -> str:
    """``field: why`` of a record that fails validation (no pydantic dump, no input echo, no URL)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            err = errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            why = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            return f"{where}: {why}" if where else why
        except Exception:  # pragma: no cover - pydantic's shape changed
            pass
    return str(exc).splitlines()[0][:200]


def _listable(data: Any, job_id: JobId) -> bool:
    """The shape ``job list`` relies on (the full check is the model's)."""
    return (isinstance(data, dict) and data.get("id") == job_id and isinstance(data.get("title"), str)
            and data.get("state") in _STATES and isinstance(data.get("steps"), list)
            and bool(data["steps"]) and isinstance(data.get("updated_at"), str))
