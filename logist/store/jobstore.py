"""The job store: the only module that reads and writes job branches.

A job is ``refs/heads/logist/<id>`` plus a worktree. Every transition is one commit built
in process with dulwich (blob, trees, commit) and published with one
``git update-ref --stdin`` transaction that verifies the holder's lock (fencing) and moves the
branch by compare-and-swap. The job worktree's index is brought along afterwards, so
``git status`` in the worktree stays clean (docs/architecture.md#known-hazards-of-git).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logist.core.errors import (
    ConcurrentUpdateError,
    GitError,
    JobNotFoundError,
    LogistError,
    ManifestError,
    NotARepositoryError,
    NotInitializedError,
    UsageError,
)
from logist.core.faults import crash_point
from logist.core.redact import redact_json
from logist.core.safepath import read_file, write_file
from logist.core.states import State
from logist.core.termsafe import json_safe
from logist.git import packing, refs, reftx, worktree_lock
from logist.git.gitcmd import CatFileBatch, Started, git, git_out
from logist.store.objects import ObjectWriter, commit_message

if TYPE_CHECKING:  # the model (pydantic) is imported where a record is built or validated
    import subprocess

    from logist.core.config import Config
    from logist.core.model import HistoryEntry, Manifest
    from logist.git.gitread import RepoReader
    from logist.store.hygiene import LeftOut
    from logist.store.record_cache import ValidRecordCache

RECORD_FILES = ("manifest.json", "history.jsonl")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_transition_id() -> str:
    import uuid

    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class RepoPaths:
    root: Path  # top of the work tree logist was called from
    git_dir: Path
    common_dir: Path

    @property
    def logist_dir(self) -> Path:
        """Private, per-repository state under the common git dir."""
        return self.common_dir / "logist"


def find_repo(cwd: str | Path | None = None) -> RepoPaths:
    """Discover the repository around ``cwd`` (linked worktrees and subdirectories too)."""
    cwd = Path(cwd or os.getcwd())
    if not cwd.is_dir():
        raise NotARepositoryError(f"{cwd} is not a directory")
    proc = git(["rev-parse", "--is-bare-repository", "--show-toplevel", "--absolute-git-dir",
                "--git-common-dir"], cwd=cwd, check=False)
    if proc.returncode != 0:
        raise NotARepositoryError(f"not a git repository: {cwd}",
                                  hint="run logist inside a git repository (or `git init` first)")
    lines = proc.stdout.splitlines()
    if lines and lines[0] == "true":
        raise NotARepositoryError(f"{cwd} is a bare repository; logist needs a work tree",
                                  hint="clone it (`git clone`) and run logist in the clone")
    if len(lines) < 4:
        raise NotARepositoryError(f"not inside a git work tree: {cwd}",
                                  hint="cd into the work tree of the repository")
    root, git_dir, common = Path(lines[1]), Path(lines[2]), Path(lines[3])
    if not common.is_absolute():
        common = (cwd / common).resolve()
    return RepoPaths(root=root, git_dir=git_dir, common_dir=common.resolve())


@dataclass
class JobSummary:
    id: str
    tip: str
    manifest: Manifest | None
    error: str | None = None


@dataclass
class JobRecord:
    """A job's tip record as validated JSON data (``JobStore.list_records``)."""

    id: str
    tip: str
    data: dict[str, Any] | None
    error: str | None = None


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


def default_worktrees_dir(common_dir: Path) -> Path:
    """Where job worktrees go by default: outside the repository and its git dir (agent CLIs
    treat anything under ``.git`` as off limits), in the user's data directory:
    ``$XDG_DATA_HOME/logist/worktrees/<repo name>-<8 hex of the git dir's path>``
    (``~/.local/share`` without XDG_DATA_HOME), one folder per clone."""
    import hashlib

    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    common = common_dir.resolve()
    base = common.parent.name if common.name == ".git" else common.name.removesuffix(".git")
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:40] or "repo"
    tag = hashlib.sha256(str(common).encode()).hexdigest()[:8]
    return Path(data) / "logist" / "worktrees" / f"{name}-{tag}"


def exclude_pathspecs(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """git pathspecs that leave out ``patterns`` (file or directory names, globs allowed) at
    any depth, with everything under a matching directory."""
    out: list[str] = []
    for pat in patterns:
        pat = pat.strip().strip("/")
        if pat:
            out += [f":(exclude,glob)**/{pat}", f":(exclude,glob)**/{pat}/**"]
    return out


class JobStore:
    """Read and write jobs in one repository."""

    def __init__(self, paths: RepoPaths) -> None:
        self.paths = paths
        self._writer: ObjectWriter | None = None
        self._reader: RepoReader | None = None
        self._record_cache: ValidRecordCache | None = None
        self._config: Config | None = None
        self._worktrees_dir: Path | None = None

    @classmethod
    def discover(cls, cwd: str | Path | None = None) -> JobStore:
        return cls(find_repo(cwd))

    # ---- configuration and locations -------------------------------------------------
    def lock_worktree(self, job_id: str, reason: str) -> bool:
        """`git worktree lock --reason` without git loading every worktree (git/worktree_lock)."""
        return worktree_lock.lock(self.paths.common_dir, self.worktree_path(job_id), reason)

    def unlock_worktree(self, job_id: str) -> bool:
        return worktree_lock.unlock(self.paths.common_dir, self.worktree_path(job_id))

    @property
    def root(self) -> Path:
        return self.paths.root

    def config_root(self) -> Path:
        """Where .logist/config.toml is read from: this work tree, else the main work tree.

        A job's own worktree (or any linked worktree without the file) uses the main one's.
        """
        if (self.paths.root / ".logist" / "config.toml").is_file():
            return self.paths.root
        main = self.paths.common_dir.parent
        if self.paths.common_dir.name == ".git" and (main / ".logist" / "config.toml").is_file():
            return main
        return self.paths.root

    @property
    def config(self) -> Config:
        if self._config is None:
            from logist.core.config import load_config

            self._config = load_config(self.config_root())
        return self._config

    @property
    def writer(self) -> ObjectWriter:
        if self._writer is None:
            self._writer = ObjectWriter(self.paths.common_dir)
        return self._writer

    def is_initialized(self) -> bool:
        # There, even if unreadable or not a file: reading the config then says what is wrong
        # with it (not "logist is not set up").
        try:
            (self.config_root() / ".logist" / "config.toml").lstat()
        except PermissionError:
            return True
        except OSError:
            return False
        return True

    def require_initialized(self) -> None:
        if not self.is_initialized():
            raise NotInitializedError(f"logist is not set up in {self.paths.root}",
                                      hint="run `logist init` first")

    def worktrees_dir(self) -> Path:
        """Where job worktrees live: ``worktrees.dir``, checked (never a system path, the
        git directory or a non-directory: ConfigError naming the setting), else the default
        outside the repository (:func:`default_worktrees_dir`)."""
        if self._worktrees_dir is not None:
            return self._worktrees_dir
        configured = self.config.worktrees.dir
        if configured:
            from logist.core.config import read_layers, where, worktrees_dir_problem
            from logist.core.errors import ConfigError

            try:
                p = Path(os.path.expanduser(configured))
                # relative to the project the config belongs to, wherever logist runs from
                p = p if p.is_absolute() else Path(os.path.abspath(self.config_root() / p))
                bad = worktrees_dir_problem(p, common_dir=self.paths.common_dir,
                                            logist_dir=self.paths.logist_dir)
            except (ValueError, OSError) as exc:
                bad = str(exc)
            if bad:
                raise ConfigError(f"{where(read_layers(self.config_root()), ['worktrees', 'dir'])}: "
                                  f"{configured!r} cannot hold job worktrees: {bad}",
                                  hint="set worktrees.dir to a new directory of your own (logist creates "
                                       "it), or remove the setting; `logist help cli` lists the keys "
                                       "under Configuration")
            self._worktrees_dir = p
        else:
            self._worktrees_dir = default_worktrees_dir(self.paths.common_dir)
        return self._worktrees_dir

    def own_worktrees_dir(self) -> Path:
        """The worktrees dir, made logist's before a worktree is added to it: created (and
        marked with ``.logist-worktrees``) when missing; an existing one is taken only when it
        is marked, empty, under logist's own directory, or holds only this repository's
        worktrees. Anything else is someone's directory: ConfigError, nothing created."""
        from logist.core.config import WORKTREES_MARKER
        from logist.core.errors import ConfigError

        d = self.worktrees_dir()
        marker = d / WORKTREES_MARKER
        if marker.is_file():
            return d
        if d.is_dir():
            mine = self.paths.logist_dir in d.parents or d == default_worktrees_dir(self.paths.common_dir)
            entries = [Path(e.path) for e in os.scandir(d) if e.name != WORKTREES_MARKER]
            foreign = [e for e in entries if not self._is_our_worktree(e)]
            if foreign and not mine:
                raise ConfigError(f"worktrees.dir {d} is a directory logist did not create: it holds "
                                  f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that are not "
                                  f"worktrees of this repository (e.g. {foreign[0].name!r})",
                                  hint="set worktrees.dir to a new directory (logist creates it and marks it "
                                       f"with {WORKTREES_MARKER}), or empty this one")
        else:
            d.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            return d
        with os.fdopen(fd, "w") as fh:
            fh.write(f"This directory holds the worktrees of logist jobs of {self.paths.root}.\n"
                     "logist created it (or found it empty); `logist doctor --fix` only touches what is here.\n")
        return d

    def _is_our_worktree(self, path: Path) -> bool:
        """True if ``path`` is a linked worktree of this repository (its ``.git`` file points
        into ``<git common dir>/worktrees/``)."""
        try:
            text = (path / ".git").read_text(errors="replace")[:4096].strip()
        except OSError:
            return False
        if not text.startswith("gitdir:"):
            return False
        target = os.path.realpath(text[len("gitdir:"):].strip())
        admin = os.path.realpath(self.paths.common_dir / "worktrees")
        return target.startswith(admin + os.sep)

    def new_worktree_path(self, job_id: str) -> Path:
        """Where a new worktree of the job goes: the configured worktrees dir."""
        return self.worktrees_dir() / refs.validate_job_id(job_id)

    def worktree_path(self, job_id: str) -> Path:
        """The job's worktree: where git says it is (a job made before the worktrees dir moved
        keeps its worktree), else where a new one goes."""
        found = self._git_worktree(job_id)
        return found if found is not None else self.new_worktree_path(job_id)

    def existing_worktree(self, job_id: str) -> Path:
        """Where the job's worktree is, as git records it (what `job status` shows); the
        configured place when git has no worktree of the job's branch."""
        return self.worktree_path(job_id)

    def _git_worktree(self, job_id: str) -> Path | None:
        """The worktree git has for the job's branch (its admin dir is named by the job id)."""
        refs.validate_job_id(job_id)
        admin = self.paths.common_dir / "worktrees" / job_id
        try:
            head = (admin / "HEAD").read_text().strip()
            gitfile = Path((admin / "gitdir").read_text().strip())
        except OSError:
            return None
        if head == f"ref: {refs.branch_ref(job_id)}" and gitfile.name == ".git" and gitfile.is_file():
            return gitfile.parent
        return None

    def run_dir(self, job_id: str) -> Path:
        """Per-job scratch (step logs, runner info) under the git dir; never committed."""
        return self.paths.logist_dir / "run" / refs.validate_job_id(job_id)

    # ---- reads -----------------------------------------------------------------------
    @property
    def reader(self) -> RepoReader:
        """In-process reads of refs and objects (logist.git.gitread); git is asked when it can't."""
        if self._reader is None:
            from logist.git.gitread import RepoReader

            self._reader = RepoReader(self.paths.common_dir, lambda oid: self.writer.get(oid))
        return self._reader

    def _objects_in_process(self) -> bool:
        """Read objects with dulwich only in a process that writes commits (dulwich is loaded
        and its object cache warm); a read-only command is cheaper with one `git cat-file`
        than with importing dulwich (`job status`, `job show`)."""
        return self._writer is not None

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
        from logist.git.gitread import Unsupported

        if self._objects_in_process():
            try:
                return self.reader.blob_at(commit, path)
            except Unsupported:
                pass
        with CatFileBatch(self.paths.root) as batch:
            return batch.read(f"{commit}:{path}", kind="blob")

    def tip(self, job_id: str) -> str:
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

    def restore_branch(self, job_id: str) -> str | None:
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

    def read(self, job_id: str, *, at: str | None = None) -> tuple[str, Manifest]:
        """(commit, manifest) at the branch tip (or at commit ``at``)."""
        refs.validate_job_id(job_id)
        oid = at or self.tip(job_id)
        return oid, self._validate(job_id, oid, self.blob_at(oid, refs.manifest_path(job_id)))

    def _validate(self, job_id: str, oid: str, raw: bytes | None) -> Manifest:
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

    def read_record(self, job_id: str, *, at: str | None = None) -> tuple[str, dict[str, Any]]:
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

    def read_history(self, job_id: str, *, at: str | None = None) -> list[HistoryEntry]:
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

    def list_records(self, prefix: str = refs.BRANCH_PREFIX, *,
                     lock_refs: dict[str, str] | None = None) -> list[JobRecord]:
        """Every job's tip record as plain JSON data, for listings: no pydantic when every
        record is one logist validated before (logist.store.record_cache); any other record is
        validated with the model first (and remembered when it passes).

        ``lock_refs``: filled with {job id: lock oid} of every lock ref, found by the same
        ``for-each-ref`` (the interrupted-jobs check of ``job list`` needs them).
        """
        found = self._refs_under(prefix, *([refs.LOCKS_PREFIX] if lock_refs is not None else []))
        if lock_refs is not None:
            lock_refs.update(found[refs.LOCKS_PREFIX])
        pairs = found[prefix]
        if not pairs:
            return []
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
                    result.append(JobRecord(jid, tip, None, exc.message))
                    continue
            result.append(JobRecord(jid, tip, data))
        cache.add(learned)
        cache.compact((o[0] for o in objs if o), known | set(learned))
        return result

    def _tips(self, prefix: str) -> list[tuple[str, str]]:
        """[(id, tip)] of the job branches under ``prefix`` (one for-each-ref)."""
        return self._refs_under(prefix)[prefix]

    def _refs_under(self, *prefixes: str) -> dict[str, list[tuple[str, str]]]:
        """{prefix: [(job id, oid)]} of the refs named ``<prefix><valid job id>``, for every
        prefix, with one ``for-each-ref``."""
        out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", *prefixes],
                      cwd=self.paths.root)
        found: dict[str, list[tuple[str, str]]] = {p: [] for p in prefixes}
        for line in out.splitlines():
            oid, _, ref = line.partition(" ")
            for p in prefixes:
                if ref.startswith(p):
                    rest = ref[len(p):]
                    if refs.JOB_ID_RE.match(rest) and not rest.endswith("-"):
                        found[p].append((rest, oid))
                    break
        return found

    @property
    def record_cache(self) -> ValidRecordCache:
        if self._record_cache is None:
            from logist.store.record_cache import ValidRecordCache

            self._record_cache = ValidRecordCache(self.paths.logist_dir)
        return self._record_cache

    # ---- writes ----------------------------------------------------------------------
    def record_files(self, job_id: str, manifest: Manifest, history_raw: bytes,
                     entries: list[HistoryEntry]) -> dict[str, bytes]:
        """The files of the record to commit. The manifest bytes are validated as a reader
        will validate them (logist never writes a record it would refuse to read) and
        remembered as valid (logist.store.record_cache)."""
        from logist.core.model import canonical_json, history_line, parse_manifest
        from logist.store.record_cache import blob_oid

        # Secrets are masked (the redactor of logs and notes) and no raw control character is
        # written: a record is pushed and shown (docs/refs.md, "Secrets and control characters").
        hist = history_raw + b"".join(_safe_json_bytes(history_line(e), indent=False) for e in entries)
        data = _safe_json_bytes(canonical_json(manifest), indent=True)
        try:
            parse_manifest(data)
        except ValueError as exc:  # a bug in logist, not in the user's input
            raise RuntimeError(f"logist built an invalid record for job {job_id}: {exc}") from None
        self.record_cache.add([blob_oid(data)])
        return {"manifest.json": data, "history.jsonl": hist}

    def _history_raw(self, oid: str, job_id: str) -> bytes:
        return self.blob_at(oid, refs.history_path(job_id)) or b""

    def create_job(self, manifest: Manifest, entry: HistoryEntry, *, make_worktree: bool = False) -> str:
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

    def _check_worktree_path(self, job_id: str) -> None:
        self.own_worktrees_dir()  # someone else's directory: refused before anything is created
        wt = self.worktree_path(job_id)
        if wt.exists() and not (wt / ".git").exists() and (not wt.is_dir() or any(wt.iterdir())):
            raise UsageError(f"{wt} exists and is not the worktree of job {job_id}",
                             hint="move it away, or choose another id; nothing was created")

    def commit_transition(self, job_id: str, old_tip: str, manifest: Manifest,
                          entries: list[HistoryEntry], *, lease: str | None = None,
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
        the commit also takes the worktree's changes (``git add -A``, respecting .gitignore,
        leaving out the gitignore-style patterns ``exclude``: an agent CLI's own state files, and
        the paths in ``left_out``: ``hygiene.plan``).
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
                if left_out:
                    from logist.store.hygiene import add_pathspecs

                    specs = add_pathspecs(left_out) + "".join(p + "\0" for p in exclude_pathspecs(exclude))
                    git(["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=wt, input=specs)
                else:
                    git(["add", "-A", "--", ".", *exclude_pathspecs(exclude)], cwd=wt)
                crash_point("after-worktree-add")
                base_tree = git_out(["write-tree"], cwd=wt).encode()
            else:
                base_tree = self.writer.commit_tree_of(parent)
            if sync:  # after `git add -A`: update-index holds the index lock from its start
                index_proc = Started(["update-index", "--add", "--stdin"], cwd=wt)
            tree = self.writer.tree_with_record(base_tree, job_id, files)
            msg = commit_message(job_id, entries[-1], manifest, body=body, lease=lease,
                                 extra_trailers=extra_trailers)
            oid = self.writer.commit(tree, [parent], msg)
            if before_publish is not None:
                before_publish(oid)
            crash_point("before-publish")
            self.publish(job_id, oid, old_tip, lease=lease, started=ref_proc, extra_refs=extra_refs)
            crash_point("after-publish")
            if sync:
                try:
                    self.sync_worktree_record(job_id, files, started=index_proc)
                except LogistError as exc:
                    # The commit is published: the transition happened. A worktree that cannot
                    # take the record's copy (broken by an agent) is a warning, not a failure.
                    from logist.core.notices import notice

                    notice(f"job {job_id}: the worktree's copy of the record was not updated "
                           f"({exc.message}); `logist doctor` finds what is wrong with {wt}")
        finally:
            ref_proc.cancel()
            if index_proc is not None:
                index_proc.cancel()
        if include_worktree:  # the job's work may have changed: bring its review branch along
            from logist.store.review import refresh

            refresh(self, job_id)
        packing.pack_if_needed(self.paths.common_dir)  # one directory listing, see git/packing
        return oid

    def publish(self, job_id: str, new: str, old: str, *, lease: str | None = None,
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

    def ref_transaction(self, stdin: str, *, attempts: int = 5, started: Started | None = None
                        ) -> subprocess.CompletedProcess[str]:
        """One ``git update-ref --stdin`` transaction in this repository (fenced, retried, a
        stale ``.lock`` cleared: ``logist.git.reftx.update_ref``); the finished process."""
        proc: subprocess.CompletedProcess[str] = reftx.update_ref(
            self.paths.root, self.paths.common_dir, stdin, attempts=attempts, started=started)
        return proc

    def git_places(self) -> list[Path]:
        """Where a live git of this repository may work: its git directory, its root and (when
        the configuration names it) its worktrees directory. For the stale ``.lock`` sweep."""
        places = [self.paths.common_dir, self.paths.root]
        try:
            places.append(self.worktrees_dir())
        except Exception:
            pass
        return places

    def update_refs(self, stdin: str) -> None:
        proc = self.ref_transaction(stdin)
        if proc.returncode != 0:
            raise ConcurrentUpdateError(f"ref update refused: {proc.stderr.strip()}")

    # ---- worktrees -------------------------------------------------------------------
    def worktree_problem(self, wt: Path) -> str | None:
        """What is wrong with the linked worktree at ``wt`` (its ``.git`` file missing, not a
        file, not pointing at this repository's admin dir, or that admin dir not pointing back),
        or None when git can use it. File reads only, no git process."""
        dotgit = wt / ".git"
        try:
            st = os.lstat(dotgit)
        except FileNotFoundError:
            return "its .git file is missing"
        except OSError as exc:
            return f"its .git cannot be read ({exc.strerror})"
        import stat

        if not stat.S_ISREG(st.st_mode):
            return "its .git is not a file (a directory or a symlink was put there)"
        try:
            text = dotgit.read_bytes()[:4096].decode("utf-8", errors="replace").strip()
        except OSError as exc:
            return f"its .git cannot be read ({exc.strerror})"
        if not text.startswith("gitdir:"):
            return "its .git file was overwritten (no gitdir: line)"
        admin = os.path.realpath(text[len("gitdir:"):].strip())
        if os.path.dirname(admin) != os.path.realpath(self.paths.common_dir / "worktrees"):
            return "its .git file points outside this repository's worktrees"
        try:
            back = (Path(admin) / "gitdir").read_text(errors="replace").strip()
        except OSError:
            return "its administrative directory under .git/worktrees is gone"
        if os.path.realpath(back) != os.path.realpath(dotgit):
            return "its administrative directory belongs to another worktree"
        return None

    def ensure_worktree(self, job_id: str) -> Path:
        """The job's worktree, created if missing, repaired if broken (a `.git` file an agent
        overwrote: `git worktree repair`; failing that, the broken directory is moved aside,
        never deleted, and the worktree created again from the branch). Idempotent."""
        wt = self.worktree_path(job_id)
        if os.path.lexists(wt / ".git"):
            problem = self.worktree_problem(wt)
            if problem is None:
                return wt
            self._repair_worktree(job_id, wt, problem)
            if (wt / ".git").exists():
                return wt
        elif wt.is_dir() and not wt.is_symlink() and any(wt.iterdir()) and self._registered(wt):
            # the worktree git knows, with its .git file deleted (by its agent): repair it
            self._repair_worktree(job_id, wt, "its .git file is missing")
            if (wt / ".git").exists():
                return wt
        git(["worktree", "prune"], cwd=self.paths.root, check=False)
        self.own_worktrees_dir()
        if wt.exists() and not any(wt.iterdir()):
            wt.rmdir()
        if wt.exists():
            raise UsageError(f"{wt} exists and is not the worktree of job {job_id}",
                             hint="move it away, then run the command again")
        try:
            sparse = [d.strip().strip("/") for d in self.config.worktrees.sparse if d.strip().strip("/")]
            if sparse:  # only these directories (and the files at the top, .logist/ included)
                git(["worktree", "add", "-q", "--no-checkout", "--", str(wt), refs.branch_name(job_id)],
                    cwd=self.paths.root)
                git(["sparse-checkout", "set", "--cone", "--", *sparse, ".logist"], cwd=wt)
                git(["checkout", "-q"], cwd=wt)
            else:
                git(["worktree", "add", "-q", "--", str(wt), refs.branch_name(job_id)], cwd=self.paths.root)
        except GitError as exc:
            raise GitError(f"cannot create the worktree of job {job_id}: {exc.message}",
                           hint="run `git worktree list` and `git worktree prune`") from None
        return wt

    def restore_worktree_head(self, job_id: str) -> str | None:
        """Put the job's worktree back on ``logist/<id>`` when its agent switched it to another
        branch or detached its HEAD (``git checkout -b other``): HEAD is pointed back without
        touching the files or the index, so the harvest takes the agent's work as usual. The
        warning for the step's record, or None when HEAD was on the job branch."""
        wt = self.worktree_path(job_id)
        if not (wt / ".git").is_file():
            return None
        proc = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False)
        where = proc.stdout.strip()
        want = refs.branch_ref(job_id)
        if where == want:
            return None
        if where:
            gone_to = f"branch {where.removeprefix('refs/heads/')!r} (its commits stay on that branch)"
        else:
            head = git(["rev-parse", "-q", "--verify", "HEAD"], cwd=wt, check=False).stdout.strip()
            gone_to = f"a detached HEAD at {head[:12] or 'an unknown commit'}"
            if head and git(["merge-base", "--is-ancestor", head, want], cwd=self.paths.root,
                            check=False).returncode != 0:
                n = len([r for r in git_out(["for-each-ref", "--format=%(refname)",
                                             refs.displaced_ref(job_id, 0)[:-1]], cwd=self.paths.root,
                                            check=False).splitlines() if r])
                ref = refs.displaced_ref(job_id, n + 1)
                git(["update-ref", ref, head, ""], cwd=self.paths.root, check=False)
                gone_to += f" (its commits are kept at {ref})"
        git(["symbolic-ref", "-m", "logist: back to the job branch", "HEAD", want], cwd=wt)
        return (f"the agent moved the worktree to {gone_to}; it is back on "
                f"{refs.branch_name(job_id)} (files and index as the agent left them)")

    def _registered(self, wt: Path) -> bool:
        """True if git has a linked worktree at ``wt`` (an admin dir whose gitdir names it)."""
        admin_root = self.paths.common_dir / "worktrees"
        want = os.path.realpath(wt / ".git")
        try:
            entries = list(os.scandir(admin_root))
        except OSError:
            return False
        for e in entries:
            try:
                if os.path.realpath(Path(e.path, "gitdir").read_text().strip()) == want:
                    return True
            except OSError:
                continue
        return False

    def _repair_worktree(self, job_id: str, wt: Path, problem: str) -> None:
        """Make the broken worktree at ``wt`` usable again, or move it aside (kept) so that
        :meth:`ensure_worktree` creates it again."""
        from logist.core.notices import notice

        dotgit = wt / ".git"
        if not os.path.lexists(dotgit) or (os.path.isfile(dotgit) and not os.path.islink(dotgit)):
            git(["worktree", "repair", "--", str(wt)], cwd=self.paths.root, check=False)
            if self.worktree_problem(wt) is None:
                notice(f"job {job_id}: worktree {wt} was broken ({problem}); repaired with "
                       "`git worktree repair`")
                return
        aside = wt.with_name(f"{wt.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.rename(wt, aside)
        # a step locks its worktree (`git worktree lock`): a locked entry is never pruned
        worktree_lock.unlock(self.paths.common_dir, wt)
        git(["worktree", "prune"], cwd=self.paths.root, check=False)
        notice(f"job {job_id}: worktree {wt} was broken ({problem}); it is kept at {aside} and the "
               "worktree is created again from the branch (uncommitted work there is not in the job)")

    def release_worktree(self, job_id: str) -> str | None:
        """Remove the worktree of a job that has finished (SUCCESS, CANCELED) unless ``[worktrees]
        keep_finished``: everything it holds is on the branch; ``ensure_worktree`` brings it back
        (``job path``, rerun, restep). Only a clean, unlocked worktree goes (``git worktree remove``
        without --force: untracked or changed files keep it, like files a harvest left out).
        None when there is no worktree any more, else why it stays."""
        wt = self.worktree_path(job_id)
        if not (wt / ".git").exists():
            return None
        if self.config.worktrees.keep_finished:
            return "[worktrees] keep_finished"
        proc = git(["worktree", "remove", "--", str(wt)], cwd=self.paths.root, check=False)
        if proc.returncode != 0:
            return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git worktree remove failed"
        return None

    def sync_worktree_record(self, job_id: str, files: dict[str, bytes] | None = None, *,
                             started: Started | None = None) -> bool:
        """Bring the worktree's copy of the record (files and index) to the branch tip.

        Returns True when the working copy differed from the tip (it is overwritten, never
        believed: docs/architecture.md#invariants, 1). ``started``: an ``update-index --add --stdin`` already
        running in the worktree.
        """
        wt = self.worktree_path(job_id)
        if not (wt / ".git").exists():
            if started is not None:
                started.cancel()
            return False
        if files is None:
            tip = self.tip(job_id)
            files = {}
            for name in RECORD_FILES:
                data = self.blob_at(tip, f"{refs.record_dir(job_id)}/{name}")
                if data is not None:
                    files[name] = data
        # Never through a symlink: a link the agent (or a fetched branch) put at .logist, the
        # record directory or a record file is replaced, not followed (logist.core.safepath).
        differed = False
        for name, data in files.items():
            rel = f"{refs.record_dir(job_id)}/{name}"
            if read_file(wt, rel) == data:
                continue
            differed = True
            write_file(wt, rel, data, replace_links=True)
        paths = [f"{refs.record_dir(job_id)}/{n}" for n in files]
        if started is None:
            git(["update-index", "--add", "--", *paths], cwd=wt)
        else:
            proc = started.finish("".join(p + "\n" for p in paths))
            if proc.returncode != 0:
                raise GitError(f"git update-index failed in {wt}: "
                               f"{(proc.stderr.strip().splitlines() or ['(no output)'])[-1]}",
                               argv=started.argv, returncode=proc.returncode, stdout=proc.stdout,
                               stderr=proc.stderr)
        return differed


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


def _listable(data: Any, job_id: str) -> bool:
    """The shape ``job list`` relies on (the full check is the model's)."""
    return (isinstance(data, dict) and data.get("id") == job_id and isinstance(data.get("title"), str)
            and data.get("state") in _STATES and isinstance(data.get("steps"), list)
            and bool(data["steps"]) and isinstance(data.get("updated_at"), str))


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2)
