"""The `logist` command line: the only place that prints and chooses exit codes.

Commands live in ``logist/commands/`` (one module per group) and are loaded lazily, so
``logist --help`` and ``logist job status`` only pay for what they use. Exit codes: 0 ok,
1 refused or failed, 2 usage, 3 internal error (a bug: a log file is written), 4 busy or
contention, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cyclopts import App

from logist import __version__
from logist.core.errors import ExitCode, LogistError

app = App(name="logist", version=__version__, help_on_error=False, help_format="plaintext",
          help="Run and track agent jobs in your git repository: every job is a branch plus a "
               "worktree, every state transition a commit.\n\nGlobal option: -C PATH runs as if "
               "logist was started in PATH.")
job = App(name="job", help="Create, inspect, run and steer jobs.", help_format="plaintext")
app.command(job)

_C = "logist.cli.commands."


def _register(group: App, name: str, target: str, help: str, **kw) -> None:
    """Register a command lazily: its module is imported only when it runs (or its --help)."""
    group.command(_C + target, name=name, help=help, **kw)


_register(app, "init", "init:init", "Set up logist in this git repository (idempotent).")
for _name, _target, _help in (
    ("create", "job:create", "Create a job: branch logist/<id>, a worktree, a first commit."),
    ("list", "job:list_cmd", "List jobs (--all for finished ones, --remote R for fetched ones)."),
    ("status", "job:status", "Where a job stands: state, step, run, holder, last signal, cost."),
    ("show", "job:show", "The whole job record (the manifest at the branch tip)."),
    ("history", "job:history", "The job's transitions, runs and resteps (--notes adds notes)."),
    ("select", "job:select", "Make a job the default for commands that omit the id."),
    ("path", "job:path", "Print the path of a job's worktree."),
    ("activate", "job:activate", "DRAFT -> PENDING."),
    ("suspend", "job:suspend", "Any non-terminal state -> SUSPENDED."),
    ("resume", "job:resume", "SUSPENDED -> PENDING."),
    ("cancel", "job:cancel", "Any non-terminal state -> CANCELED."),
    ("stop", "job:stop", "Stop a running job: its agent is stopped and the job SUSPENDED (or --cancel)."),
    ("approve", "job:approve", "APPROVAL_REQUIRED -> SUCCESS."),
    ("reject", "job:reject", "APPROVAL_REQUIRED -> PENDING: the last step runs again."),
    ("resubmit", "job:resubmit", "INTERVENTION_REQUIRED -> PENDING: the failed step runs again."),
    ("step", "run:step", "Run exactly one step of a job."),
    ("run", "run:run", "Run steps until the job rests (no id: every PENDING job)."),
    ("attach", "run:attach", "Follow a running job's output live."),
    ("metrics", "run:metrics", "Cost, tokens, time and attempts per step and in total."),
    ("log", "run:log", "A step's output (live, or from refs/notes/logist/logs)."),
):
    _register(job, _name, _target, _help)
_register(app, "watch", "watch:watch", "Observer + sentinel in the foreground for a running job.")
_register(app, "dashboard", "dashboard:dashboard", "A live terminal view of all jobs (--once: one frame).")
_register(job, "rerun", "rerun:rerun", "A new run from step 1 or --step N; the old run stays reachable.")
_register(job, "restep", "rerun:restep", "Re-execute one step (in place, or --isolated); state and run stay.")
_register(app, "recover", "recover:recover",
          "Find interrupted jobs and carry them on from the tip (--check, --list, --abandon, --cleanup).")
_register(app, "push", "share:push", "Push job branches, logist refs and notes to a remote (one atomic push).")
_register(app, "fetch", "share:fetch", "Fetch a remote's jobs, logist refs and notes (notes merged).")
_register(app, "hide-jobs", "share:hide_jobs",
          "Keep a remote's job branches out of plain `git fetch` (--undo: back in).")
_register(job, "adopt", "share:adopt", "Take a job fetched from a remote to work on here.")
_register(job, "trust", "share:trust", "Show the commands a fetched job runs, then trust them here.")
_register(job, "pr", "share:pr", "Push a job and open a pull request (gh, else the compare URL).")
_register(job, "clean", "gc:clean", "Give a job up: archive its tip, remove its worktree and branch (--yes).")
_register(app, "gc", "gc:gc", "Clean up jobs merged into the base (dry run unless --yes).")
_register(app, "worker", "worker:worker", "Run PENDING jobs from a shared remote; the remote arbitrates claims.")
_register(app, "doctor", "doctor:doctor", "Find and fix inconsistent worktrees, locks, lock files and notes.")
_register(app, "hook", "hook:hook", "Run logist's part of a git hook (used by the installed shims).", show=False)

# Set by main() from a leading `-C PATH` (like git); read by commands through repo().
CWD: Path | None = None


def store():
    """The JobStore of the repository the command runs in."""
    from logist.store.jobstore import JobStore

    return JobStore.discover(CWD)


def _split_global(argv: list[str]) -> list[str]:
    global CWD
    out = list(argv)
    while len(out) >= 2 and out[0] == "-C":
        path = Path(out[1])
        CWD = path if CWD is None or path.is_absolute() else CWD / path
        out = out[2:]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command, map errors to exit codes."""
    global CWD
    CWD = None
    tokens = _split_global(sys.argv[1:] if argv is None else list(argv))
    from cyclopts import CycloptsError

    from logist.core import notices

    notices.set_sink(lambda message: print(f"logist: warning: {message}", file=sys.stderr))
    try:
        result = app(tokens, result_action="return_value", exit_on_error=False, print_error=False)
    except CycloptsError as exc:
        _print_usage_error(exc, tokens)
        return _exit(ExitCode.USAGE, argv)
    except LogistError as exc:
        _print_error(exc)
        return _exit(exc.exit_code, argv)
    except KeyboardInterrupt:
        print("logist: interrupted", file=sys.stderr)
        return _exit(ExitCode.INTERRUPTED, argv)
    except BrokenPipeError:
        return _exit(0, argv)
    except Exception as exc:
        _internal_error(exc)
        return _exit(ExitCode.INTERNAL, argv)
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    return _exit(code, argv)


def _exit(code: int, argv) -> int:
    if argv is None:
        sys.exit(code)
    return code


def _print_error(exc: LogistError) -> None:
    print(f"logist: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {exc.hint}", file=sys.stderr)


def _print_usage_error(exc: Exception, tokens: list[str]) -> None:
    """A command-line mistake, in the same shape as every other error (one line + a hint)."""
    import re

    message = str(exc).strip() or type(exc).__name__
    token = getattr(getattr(exc, "token", None), "keyword", None) or getattr(getattr(exc, "token", None), "value", None)
    hint = None
    if "--" in tokens and token and token in tokens[tokens.index("--") + 1:]:
        # After `--` every word is a value: `job trust -- --upload-pack=x --yes` gives trust two ids.
        message = f"unexpected argument {token!r} after `--` (every word after `--` is a value, not an option)"
        hint = "put options before `--`, e.g. `logist job trust --yes -- ID`"
    else:
        m = re.match(r"(.*?)\s*Did you mean (\S+?)\?$", message, re.S)
        if m and token and m.group(2).strip("'\"") == token:
            message = m.group(1)  # never "did you mean" the very word that was refused
    message = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in message)
    words = [t for t in tokens[:2] if not t.startswith("-")]
    command = " ".join(words[:2] if words[:1] == ["job"] else words[:1])
    if type(exc).__name__ == "UnknownCommandError":
        command = "job" if words[:1] == ["job"] and len(words) > 1 else ""
    print(f"logist: error: {message}", file=sys.stderr)
    print(f"  hint: {hint or 'see `logist ' + (command + ' ' if command else '') + '--help`'}", file=sys.stderr)


def _internal_error(exc: Exception) -> None:
    import tempfile
    import traceback

    log = Path(tempfile.gettempdir()) / f"logist-crash-{os.getpid()}.log"
    try:
        log.write_text("".join(traceback.format_exception(exc)))
        where = f"; details in {log}"
    except OSError:
        where = ""
    print(f"logist: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
    print("  hint: this is a bug in logist; please report it with the log file", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
