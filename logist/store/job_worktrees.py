"""A job's worktree: created from its branch (sparse when configured), checked and repaired when
an agent broke it, put back on the job branch, given the record's copy after each transition,
and released when the job has finished. Worktrees go in a directory logist owns
(:meth:`WorktreeKeeper.own_worktrees_dir`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from logist.core.errors import GitError, LogistError, UsageError
from logist.core.faults import crash_point
from logist.core.jobid import JobId
from logist.core.safepath import read_file, write_file
from logist.git import refs, worktree_lock
from logist.git.gitcmd import Started, git, git_out
from logist.store.job_reads import RECORD_FILES, JobReader
from logist.store.repo import default_worktrees_dir

RELEASING = ".logist-releasing-"  # a released worktree, renamed aside until it is deleted


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, read-only directories included (an agent's
    module cache); never follows a symlink out of it. What cannot be deleted stays."""
    import shutil
    import stat

    def writable(p: str) -> None:
        try:
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
                os.chmod(p, st.st_mode | 0o700)
        except OSError:
            pass

    writable(str(path))
    for root, dirs, _files in os.walk(path):  # never into a symlinked directory
        for d in dirs:
            writable(os.path.join(root, d))
    shutil.rmtree(path, ignore_errors=True)


class WorktreeKeeper(JobReader):
    """The job worktrees of a repository."""

    def lock_worktree(self, job_id: JobId, reason: str) -> bool:
        """`git worktree lock --reason` without git loading every worktree (git/worktree_lock)."""
        return worktree_lock.lock(self.paths.common_dir, self.worktree_path(job_id), reason)

    def unlock_worktree(self, job_id: JobId) -> bool:
        return worktree_lock.unlock(self.paths.common_dir, self.worktree_path(job_id))

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

    def _check_worktree_path(self, job_id: JobId) -> None:
        self.own_worktrees_dir()  # someone else's directory: refused before anything is created
        wt = self.worktree_path(job_id)
        if wt.exists() and not (wt / ".git").exists() and (not wt.is_dir() or any(wt.iterdir())):
            raise UsageError(f"{wt} exists and is not the worktree of job {job_id}",
                             hint="move it away, or choose another id; nothing was created")

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

    def ensure_worktree(self, job_id: JobId) -> Path:
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
        self.own_worktrees_dir()
        self._clear_empty(wt, job_id)
        for attempt in range(3):
            try:
                self._add_worktree(wt, job_id)
                return wt
            except GitError as exc:
                if wt.exists() or attempt == 2:  # it got as far as the directory: not a stale entry
                    raise GitError(f"cannot create the worktree of job {job_id}: {exc.message}",
                                   hint="run `git worktree list` and `git worktree prune`") from None
            # git still lists a worktree whose directory is gone (removed by hand) for this path
            # or this branch: prune that entry, then add again. Only then, not before every add:
            # a prune reads every worktree's entry (40 ms at 1,000 jobs), and one that runs while
            # another process adds a worktree removes the other's half-made entry (that add then
            # fails, and is tried again).
            git(["worktree", "prune"], cwd=self.paths.root, check=False)
            self._clear_empty(wt, job_id)
        return wt

    @staticmethod
    def _clear_empty(wt: Path, job_id: str) -> None:
        """Remove an empty directory where the worktree goes; refuse anything else there."""
        if wt.exists() and not any(wt.iterdir()):
            wt.rmdir()
        if wt.exists():
            raise UsageError(f"{wt} exists and is not the worktree of job {job_id}",
                             hint="move it away, then run the command again")

    def _add_worktree(self, wt: Path, job_id: str) -> None:
        sparse = [d.strip().strip("/") for d in self.config.worktrees.sparse if d.strip().strip("/")]
        if sparse:  # only these directories (and the files at the top, .logist/ included)
            git(["worktree", "add", "-q", "--no-checkout", "--", str(wt), refs.branch_name(job_id)],
                cwd=self.paths.root)
            git(["sparse-checkout", "set", "--cone", "--", *sparse, ".logist"], cwd=wt)
            git(["checkout", "-q"], cwd=wt)
        else:
            git(["worktree", "add", "-q", "--", str(wt), refs.branch_name(job_id)], cwd=self.paths.root)

    def restore_worktree_head(self, job_id: JobId) -> str | None:
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

    def _repair_worktree(self, job_id: JobId, wt: Path, problem: str) -> None:
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

    def release_worktree(self, job_id: JobId) -> str | None:
        """Release the worktree of a job that has finished (SUCCESS, CANCELED) unless ``[worktrees]
        keep_finished``: everything it holds is on the branch, and ``ensure_worktree`` brings it
        back (``job path``, rerun, restep). Only a worktree with nothing to lose goes
        (:meth:`release_blockers`); files git ignores go with it, as with ``git worktree remove``.
        None when the job has no worktree any more, else why it stays (one line).

        Crash-safe: the directory is first renamed aside (``.logist-releasing-<name>-<pid>``, one
        atomic step: the job has its whole worktree or none), then git forgets it (``git
        worktree prune``), then the renamed copy is deleted; ``logist recover`` finishes an
        interrupted release (:meth:`sweep_released`). docs/architecture.md#worktrees."""
        wt = self.worktree_path(job_id)
        if not os.path.lexists(wt / ".git"):
            return None
        if self.config.worktrees.keep_finished:
            return "[worktrees] keep_finished = true"
        if self.worktree_problem(wt) is None:
            try:  # the record's copy is logist's, always the tip's (a crash may have left it behind)
                self.sync_worktree_record(job_id)
            except LogistError:
                pass  # `git status` below says what is wrong
        blockers = self.release_blockers(job_id, wt)
        if blockers:
            return "; ".join(blockers)
        trash = wt.with_name(f"{RELEASING}{wt.name}-{os.getpid()}")
        try:
            os.rename(wt, trash)
        except OSError as exc:
            return f"it cannot be moved aside ({exc.strerror})"
        crash_point("release-after-rename")
        git(["worktree", "prune"], cwd=self.paths.root, check=False)
        crash_point("release-after-prune")
        remove_tree(trash)
        return None

    def release_blockers(self, job_id: JobId, wt: Path) -> list[str]:
        """Why the job's worktree at ``wt`` must stay (empty: nothing in it would be lost): it
        is broken, locked (a step runs), off the job branch, holds changed or untracked files,
        or a process works in it (a shell someone opened with ``cd $(logist job path ...)``)."""
        from logist.core.procs import processes_in

        problem = self.worktree_problem(wt)
        if problem is not None:
            return [f"it is broken ({problem}); `logist doctor` says what to do"]
        if worktree_lock.is_locked(self.paths.common_dir, wt):
            return [f"it is locked (`git worktree unlock {wt}` if no step runs there)"]
        head = git(["symbolic-ref", "-q", "HEAD"], cwd=wt, check=False).stdout.strip()
        if head != refs.branch_ref(job_id):
            return [f"its HEAD is not on {refs.branch_name(job_id)} (`git -C {wt} status`)"]
        proc = git(["status", "--porcelain", "-z", "--untracked-files=all"], cwd=wt, check=False)
        if proc.returncode != 0:
            return [f"`git status` fails in it ({wt})"]
        changed = [e[3:] for e in proc.stdout.split("\0") if len(e) > 3]
        out = []
        if changed:
            out.append(f"{len(changed)} uncommitted or untracked file(s) in it (e.g. {changed[0]!r}): "
                       f"commit or remove them (`git -C {wt} status`), then "
                       f"`logist job clean {job_id} --keep-branch --yes` releases it")
        pids = [p for p in processes_in(wt) if p != os.getpid()]
        if pids:
            out.append(f"process(es) {', '.join(map(str, pids[:5]))} work in it")
        return out

    def sweep_released(self) -> list[str]:
        """Finish releases a crash interrupted: delete the renamed-aside copies in the worktrees
        dir (none of a live process) and let git forget their worktrees. What was done, in words."""
        from logist.core.procs import pid_alive

        try:
            d = self.worktrees_dir()
            entries = [e for e in os.scandir(d) if e.name.startswith(RELEASING)]
        except (OSError, LogistError):
            return []
        did = []
        for e in entries:
            pid = e.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue  # a release in progress
            git(["worktree", "prune"], cwd=self.paths.root, check=False)
            remove_tree(Path(e.path))
            did.append(f"finished an interrupted release: deleted {e.path}")
        return did

    def sync_worktree_record(self, job_id: JobId, files: dict[str, bytes] | None = None, *,
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
