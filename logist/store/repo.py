"""The repository a job store works in: where it is (``find_repo``), its configuration, where
job worktrees go (``worktrees.dir`` or the default outside the repository) and its ref
transactions. The base of :class:`logist.store.jobstore.JobStore`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from logist.core.clock import utcnow as utcnow  # the store's callers import it from here
from logist.core.errors import ConcurrentUpdateError, NotARepositoryError, NotInitializedError
from logist.core.jobid import JobId, is_job_id
from logist.git import refs, reftx
from logist.git.gitcmd import Started, git
from logist.store.objects import ObjectWriter

if TYPE_CHECKING:
    import subprocess

    from logist.core.config_model import Config
    from logist.git.gitread import RepoReader
    from logist.store.record_cache import ValidRecordCache


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
    """Discover the repository around ``cwd`` (linked worktrees and subdirectories too): read
    from the ``.git`` entries on the way up when the layout is the plain one
    (:func:`_plain_repo`), else asked of ``git rev-parse``."""
    cwd = Path(cwd or os.getcwd())
    if not cwd.is_dir():
        raise NotARepositoryError(f"{cwd} is not a directory")
    plain = _plain_repo(cwd)
    if plain is not None:
        return plain
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


_CONFIG_NEEDS_GIT = re.compile(rb"^\s*(?:bare\s*=\s*(?:true|yes|on|1)\b|worktree\s*=|\[include)", re.M | re.I)


def _plain_repo(cwd: Path) -> RepoPaths | None:
    """What ``git rev-parse --show-toplevel --absolute-git-dir --git-common-dir`` says, read
    from the files, for the plain layout only: the nearest ``.git`` above ``cwd`` (on the same
    file system) is a directory, or a file ``gitdir: <dir>`` (a linked worktree); both that
    work tree and its git dir are owned by this user (git's safe.directory check passes
    untested), and the repository's config sets no ``core.bare``, ``core.worktree`` or include.
    Anything else returns None and git itself is asked (its answer and its errors)."""
    start = os.path.realpath(cwd)
    try:
        dev = os.stat(start).st_dev
    except OSError:
        return None
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    d = start
    while True:
        dotgit = os.path.join(d, ".git")
        try:
            st = os.lstat(dotgit)
        except FileNotFoundError:
            st = None
        except OSError:
            return None
        if st is not None:
            return _plain_at(d, dotgit, st, uid)
        if os.path.basename(d) == ".git" or os.path.exists(os.path.join(d, "HEAD")):
            return None  # inside a git dir (or a bare repository): git says what that means
        parent = os.path.dirname(d)
        if parent == d:
            return None
        try:
            if os.stat(parent).st_dev != dev:
                return None
        except OSError:
            return None
        d = parent


def _plain_at(top: str, dotgit: str, st: os.stat_result, uid: int | None) -> RepoPaths | None:
    import stat as stat_mod

    if stat_mod.S_ISDIR(st.st_mode):
        git_dir = dotgit
    elif stat_mod.S_ISREG(st.st_mode):
        try:
            with open(dotgit, "rb") as f:
                line = f.read(4096).decode("utf-8", "strict").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not line.startswith("gitdir: ") or "\n" in line:
            return None
        git_dir = os.path.realpath(os.path.join(top, line[len("gitdir: "):]))
    else:
        return None
    try:
        common = git_dir
        if os.path.exists(os.path.join(git_dir, "commondir")):
            with open(os.path.join(git_dir, "commondir"), "rb") as f:
                common = os.path.realpath(os.path.join(git_dir, f.read(4096).decode("utf-8", "strict").strip()))
        if uid is not None and (os.stat(top).st_uid != uid or os.stat(git_dir).st_uid != uid
                                or os.stat(common).st_uid != uid):
            return None
        if not (os.path.isfile(os.path.join(git_dir, "HEAD")) and os.path.isdir(os.path.join(common, "objects"))):
            return None
        with open(os.path.join(common, "config"), "rb") as f:
            config = f.read(1 << 20)
        if _CONFIG_NEEDS_GIT.search(config) or os.path.exists(os.path.join(git_dir, "config.worktree")):
            return None
    except (OSError, UnicodeDecodeError):
        return None
    return RepoPaths(root=Path(top), git_dir=Path(os.path.realpath(git_dir)), common_dir=Path(common))



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



class RepoBase:
    """A repository's places, configuration and ref transactions (no job records)."""

    def __init__(self, paths: RepoPaths) -> None:
        self.paths = paths
        self._writer: ObjectWriter | None = None
        self._reader: RepoReader | None = None
        self._record_cache: ValidRecordCache | None = None
        self._config: Config | None = None
        # Files read at commits, by (commit id, path): a commit never changes (job_reads.blob_at).
        self._blobs: dict[tuple[str, str], bytes | None] = {}
        self._worktrees_dir: Path | None = None

    # ---- configuration and locations -------------------------------------------------
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

            # validated configs are remembered (where logist is set up: nothing is written in a
            # repository without it): a short command reads this one without the models
            cache = self.paths.logist_dir / "cache" if self.paths.logist_dir.is_dir() else None
            self._config = load_config(self.config_root(), cache_dir=cache)
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

    def new_worktree_path(self, job_id: JobId) -> Path:
        """Where a new worktree of the job goes: the configured worktrees dir."""
        return self.worktrees_dir() / refs.validate_job_id(job_id)

    def worktree_path(self, job_id: JobId) -> Path:
        """The job's worktree: where git says it is (a job made before the worktrees dir moved
        keeps its worktree), else where a new one goes."""
        found = self._git_worktree(job_id)
        return found if found is not None else self.new_worktree_path(job_id)

    def existing_worktree(self, job_id: JobId) -> Path:
        """Where the job's worktree is, as git records it (what `job status` shows); the
        configured place when git has no worktree of the job's branch (most jobs at rest:
        docs/architecture.md#worktrees), found without loading the config models when no
        config file sets ``worktrees.dir``."""
        found = self._git_worktree(job_id)
        if found is not None:
            return found
        if self._config is None and self._worktrees_dir is None and not self._may_set_worktrees_dir():
            return default_worktrees_dir(self.paths.common_dir) / refs.validate_job_id(job_id)
        return self.new_worktree_path(job_id)

    def _may_set_worktrees_dir(self) -> bool:
        """False only when no config file can set ``worktrees.dir``: every line that names
        ``dir`` is a comment or ``dir = ""``. Text only (no TOML parser): anything else is
        left to the full config."""
        import re

        empty = re.compile(r"\s*dir\s*=\s*(\"\"|'')\s*(#.*)?")
        for path in (self.config_root() / ".logist" / n for n in ("config.toml", "config.local.toml")):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            except OSError:
                return True
            for line in text.splitlines():
                if "dir" in line and not line.lstrip().startswith("#") and not empty.fullmatch(line):
                    return True
        return False

    def _git_worktree(self, job_id: JobId) -> Path | None:
        """The worktree git has for the job's branch (its admin dir is named by the job id)."""
        refs.validate_job_id(job_id)
        found = _admin_worktree(os.path.join(self.paths.common_dir, "worktrees"), job_id)
        return None if found is None else Path(found)

    def git_worktrees(self) -> dict[JobId, str]:
        """{job id: worktree path} of every job that has one, as :meth:`_git_worktree` finds
        it for one job: one listing of git's admin dir, plain reads (``job list``)."""
        admin = os.path.join(self.paths.common_dir, "worktrees")
        try:
            names = os.listdir(admin)
        except OSError:
            return {}
        found = {}
        for name in names:
            if is_job_id(name):
                path = _admin_worktree(admin, name)
                if path is not None:
                    found[JobId(name)] = path
        return found

    def run_dir(self, job_id: JobId) -> Path:
        """Per-job scratch (step logs, runner info) under the git dir; never committed."""
        return self.paths.logist_dir / "run" / refs.validate_job_id(job_id)

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


def _admin_worktree(admin: str, job_id: str) -> str | None:
    """The worktree whose git admin dir is ``admin/<job_id>`` when its HEAD is the job's branch
    and its ``.git`` file is there; else None. Plain ``os`` reads: ``job list`` does this for
    every job."""
    try:
        if _read_small(os.path.join(admin, job_id, "HEAD")).strip() != f"ref: {refs.branch_ref(job_id)}".encode():
            return None
        gitfile = os.fsdecode(_read_small(os.path.join(admin, job_id, "gitdir")).strip())
    except OSError:
        return None
    if os.path.basename(gitfile) == ".git" and os.path.isfile(gitfile):
        return os.path.dirname(gitfile)
    return None


def _read_small(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)
