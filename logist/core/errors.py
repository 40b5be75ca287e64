"""The one exception tree of logist.

Every error a user can see is a ``LogistError``. Each class carries the exit code the
CLI returns for it; messages say what went wrong and what to run next. Only ``logist.cli``
prints them and chooses the exit code.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILED = 1  # refused or failed
    USAGE = 2  # bad command line
    INTERNAL = 3  # a bug in logist: the traceback goes to a log file
    BUSY = 4  # contention: a lock is held, a compare-and-swap lost
    APPROVAL = 5  # job run/step/rerun/restep: a job rests in APPROVAL_REQUIRED (a gate it asked for)
    INTERVENTION = 6  # job run/step/rerun/restep: a job needs a person (a step failed; suspended, canceled)
    INTERRUPTED = 130


class LogistError(Exception):
    """Base of every error logist reports to a user."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(LogistError):
    """Bad arguments: an id, a step number, an option value."""

    exit_code = ExitCode.USAGE


class InvalidIdError(UsageError):
    """A job id or ref component that is not allowed."""


class NotARepositoryError(LogistError):
    """Not inside a git work tree (or inside a bare repository)."""


class NotInitializedError(LogistError):
    """`logist init` was not run in this repository."""


class JobNotFoundError(LogistError):
    """No branch logist/<id>."""


class JobExistsError(LogistError):
    """A job with that id exists already (refused: exit 1)."""


class JobFileError(LogistError):
    """A job file (TOML) that is missing, malformed or invalid."""


class ConfigError(LogistError):
    """.logist/config.toml is malformed or invalid."""


class ManifestError(LogistError):
    """A record at a branch tip that fails validation."""


class JobStateError(LogistError):
    """A transition the state table refuses, or a record that cannot be read."""


class BusyError(LogistError):
    """Someone else holds the job, or a compare-and-swap lost a race."""

    exit_code = ExitCode.BUSY


class GitLockError(BusyError):
    """A git lock file (``index.lock``...) that a live git process may hold."""


class LockHeldError(BusyError):
    """The job's lease is held by a live process."""


class ConcurrentUpdateError(BusyError):
    """The job branch moved (or the lease was lost) between read and write."""


class GitError(LogistError):
    """A git command failed in a way logist did not expect."""

    def __init__(self, message: str, *, argv: list[str] | None = None, returncode: int | None = None,
                 stdout: str = "", stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv or []
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class AgentError(LogistError):
    """An agent that cannot be built or started (unknown name, missing binary)."""


class TrustError(LogistError):
    """A fetched job names commands that the user has not trusted yet."""


class RemoteError(LogistError):
    """A push or fetch that failed."""
