"""The one way logist runs git: a subprocess helper that never uses a shell.

Every call goes through :func:`git`, which raises :class:`~logist.core.errors.GitError` with the
command, exit code, stdout and stderr. :func:`no_git_env` strips inherited ``GIT_*``
variables (a hook runs with ``GIT_DIR`` and friends set) so that ``-C`` decides the repository.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from logist.core.errors import GitError

# Variables that are about the user, not the repository: keep them.
_KEEP = {"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
         "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL",
         "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "GIT_TERMINAL_PROMPT", "GIT_EDITOR",
         "GIT_CONFIG_COUNT", "GIT_TRACE", "GIT_TRACE2", "GIT_TRACE2_EVENT"}


def no_git_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: os.environ) without repository-selecting ``GIT_*`` vars."""
    source = os.environ if env is None else env
    out = {}
    for key, value in source.items():
        if key.startswith("GIT_") and key not in _KEEP and not key.startswith("GIT_CONFIG_KEY_") \
                and not key.startswith("GIT_CONFIG_VALUE_"):
            continue
        out[key] = value
    # logist's commits must never open an editor or ask for a password.
    out.setdefault("GIT_TERMINAL_PROMPT", "0")
    return out


_BASE_ENV: dict[str, str] | None = None

# Every git that logist starts writes no reflog: the job record is the log, and the refs that
# must survive are kept as refs (refs/logist/runs, archive, tips). At 1,000 jobs the branch
# reflogs alone made `git gc` take 30 s instead of 1.3 s. A reflog that already exists (an
# agent's own `git commit` in a worktree creates one) is still appended to by git.
GIT = ("git", "-c", "core.logAllRefUpdates=false")


def base_env() -> dict[str, str]:
    global _BASE_ENV
    if _BASE_ENV is None:
        _BASE_ENV = no_git_env()
    return _BASE_ENV


def git(args: Sequence[str], *, cwd: str | Path, input: str | bytes | None = None,
        env: Mapping[str, str] | None = None, check: bool = True, text: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``git -C cwd *args``; raise GitError on a non-zero exit when ``check``, and always
    when ``timeout`` seconds pass (git is killed then)."""
    argv = [*GIT, "-C", str(cwd), *args]
    full_env = base_env() if env is None else {**base_env(), **env}
    if isinstance(input, str) and not text:
        input = input.encode()
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, env=full_env, text=text,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:  # pragma: no cover - git missing
        raise GitError("git is not installed or not on PATH", argv=argv,
                       hint="install git (>= 2.30) and try again") from exc
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0] if args else ''} did not finish within {timeout:g}s", argv=argv) from None
    if proc.returncode != 0:
        proc = _after_lock_file(proc, argv, cwd, input, full_env, text, timeout, check)
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        out = proc.stdout if isinstance(proc.stdout, str) else proc.stdout.decode(errors="replace")
        first = (err.strip().splitlines() or ["(no output)"])[-1]
        raise GitError(f"git {args[0] if args else ''} failed: {first}", argv=argv,
                       returncode=proc.returncode, stdout=out, stderr=err)
    return proc


def _after_lock_file(proc: subprocess.CompletedProcess, argv: list[str], cwd: str | Path, input,
                     env: Mapping[str, str], text: bool, timeout: float | None,
                     check: bool) -> subprocess.CompletedProcess:
    """git refused because a lock file exists: clear it and run once more when no live git can
    hold it (a killed git left it); else, with ``check``, GitLockError (exit 4) naming it."""
    from logist.git.lockfiles import clear_if_stale, describe_holders, lock_in_error, possible_holders

    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
    lock = lock_in_error(err)
    if lock is None:
        return proc
    if clear_if_stale(lock, [cwd], exclude=waiting_pids()):
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, env=env, text=text,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise GitError(f"{' '.join(argv[3:5])} did not finish within {timeout:g}s", argv=argv) from None
        if proc.returncode == 0:
            return proc
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        lock = lock_in_error(err)
        if lock is None:
            return proc
    if check:
        from logist.core.errors import GitLockError

        holders = possible_holders(lock, [cwd], exclude=waiting_pids())
        raise GitLockError(f"a git lock file is in the way: {lock} ({describe_holders(holders)})",
                           hint="wait for that git command to finish and run this again; if no git is "
                                f"running, `logist recover` (or removing {lock}) clears it")
    return proc


def git_to_terminal(args: Sequence[str], *, cwd: str | Path) -> int:
    """Run ``git -C cwd *args`` on the user's terminal (stdout/stderr not captured), so git
    picks colours and its pager itself, as for `git diff`; its exit code."""
    env = no_git_env()
    if "GIT_PAGER" in os.environ:  # the user's choice of pager, like git's own
        env["GIT_PAGER"] = os.environ["GIT_PAGER"]
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], env=env, check=False).returncode
    except FileNotFoundError as exc:  # pragma: no cover - git missing
        raise GitError("git is not installed or not on PATH", argv=["git", *args],
                       hint="install git (>= 2.30) and try again") from exc


def git_out(args: Sequence[str], *, cwd: str | Path, **kwargs) -> str:
    """stdout of a git command, stripped of the trailing newline."""
    return git(args, cwd=cwd, **kwargs).stdout.rstrip("\n")


_WAITING: set[int] = set()


def waiting_pids() -> set[int]:
    """Pids of this process's :class:`Started` gits that are not finished yet."""
    return set(_WAITING)


class Started:
    """A git process started now and fed later, so its start-up overlaps the caller's work.

    ``finish(input)`` writes stdin, waits and returns what :func:`git` would (never raising);
    ``cancel()`` closes stdin unwritten (git then sees an empty request). One of the two must
    be called; both are idempotent, and a process ended by either is not started again.
    """

    def __init__(self, args: Sequence[str], *, cwd: str | Path) -> None:
        self.argv = [*GIT, "-C", str(cwd), *args]
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=base_env(), text=True)
        self._result: subprocess.CompletedProcess | None = None
        _WAITING.add(self._proc.pid)

    def finish(self, input: str = "") -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                out, err = self._proc.communicate(input)
            finally:
                _WAITING.discard(self._proc.pid)
            self._result = subprocess.CompletedProcess(self.argv, self._proc.returncode, out, err)
        return self._result

    def cancel(self) -> None:
        self.finish("")

    @property
    def done(self) -> bool:
        return self._result is not None


class CatFileBatch:
    """One ``git cat-file --batch`` process for reading many objects cheaply. The one reader of
    its answers in logist: a missing, ambiguous or absent answer is None, never a crash; when git
    stopped answering, :attr:`ended` says so (a caller that must not go on with a partial read
    checks it)."""

    PIPE_SAFE = 16384  # requests up to this size are written at once; more, from a thread

    def __init__(self, cwd: str | Path) -> None:
        self._proc = subprocess.Popen(["git", "-C", str(cwd), "cat-file", "--batch"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=base_env())
        self.ended = False  # git stopped answering (it exited, or its stdin broke)

    def read(self, spec: str, *, kind: str | None = None) -> bytes | None:
        """Content of the object named by ``spec``, or None if it does not exist (or is not
        of type ``kind``, e.g. "blob", when given)."""
        (got,) = self.read_objects([spec])
        if got is None or (kind is not None and got[1] != kind):
            return None
        return got[2]

    def read_many(self, specs: Sequence[str]) -> list[bytes | None]:
        """Pipeline many requests at once (no round trip per object)."""
        return [o[2] if o else None for o in self.read_objects(specs)]

    def read_many_objects(self, specs: Sequence[str]) -> list[tuple[str, bytes] | None]:
        """Like :meth:`read_many`, with each object's id: [(oid, content) or None]."""
        return [(o[0], o[2]) if o else None for o in self.read_objects(specs)]

    def read_objects(self, specs: Sequence[str]) -> list[tuple[str, str, bytes] | None]:
        """(oid, type, content) for each spec, in order, or None ("<name> missing",
        "<name> ambiguous", or no answer at all because git ended: then :attr:`ended`)."""
        assert self._proc.stdin and self._proc.stdout
        if not specs:
            return []
        payload = b"".join(s.encode() + b"\n" for s in specs)
        writer = None
        if len(payload) > self.PIPE_SAFE:
            # more than a pipe buffer: write from a thread while we read, or both sides block
            import threading

            writer = threading.Thread(target=self._write_all, args=(payload,), daemon=True)
            writer.start()
        else:
            self._write_all(payload)
        out: list[tuple[str, str, bytes] | None] = []
        for _ in specs:
            header = self._proc.stdout.readline()
            if not header:
                self.ended = True
            fields = header.split()
            if len(fields) != 3 or not fields[2].isdigit():
                out.append(None)
                continue
            out.append((fields[0].decode(), fields[1].decode(), self._proc.stdout.read(int(fields[2]))))
            self._proc.stdout.read(1)
        if writer is not None:
            writer.join()
        return out

    def _write_all(self, payload: bytes) -> None:
        assert self._proc.stdin
        try:
            self._proc.stdin.write(payload)
            self._proc.stdin.flush()
        except OSError:  # git exited: the answers it did not give are None
            self.ended = True

    def close(self) -> None:
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except Exception:  # pragma: no cover - defensive
            self._proc.kill()
            self._proc.wait()
        finally:
            if self._proc.stdout:
                self._proc.stdout.close()

    def __enter__(self) -> CatFileBatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
