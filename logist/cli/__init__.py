"""The `logist` command line: the only place that prints and chooses exit codes.

Commands live in ``logist/cli/commands/`` (one module per group) and are loaded lazily, so
``logist --help`` and ``logist job status`` only pay for what they use; a command line the
fast binder (``logist/cli/fastargs.py``) reads in full runs without importing cyclopts. Exit codes: 0 ok,
1 refused or failed, 2 usage, 3 internal error (a bug: a log file is written), 4 busy or
contention, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from logist import __version__
from logist.core.errors import ExitCode, LogistError

if TYPE_CHECKING:
    from cyclopts import App

_C = "logist.cli.commands."


# One example per command, shown by its --help under the one-line summary (the summary alone
# is what `logist --help` lists). A command without one fails tests/test_cli_polish.py.
EXAMPLES = {
    "init": "logist init",
    "dashboard": "logist dashboard --once --json",
    "watch": "logist watch fix-login",
    "recover": "logist recover --list && logist recover",
    "push": "logist push origin",
    "fetch": "logist fetch origin",
    "gc": "logist gc --yes",
    "worker": "logist worker --remote origin --until-idle",
    "doctor": "logist doctor --fix",
    "hook": "logist hook post-merge",
    "hide-jobs": "logist hide-jobs origin",
    "completion": "logist completion bash >> ~/.bashrc",
    "help": "logist help states",
    "job create": 'logist job create --title "Add greeting" --step "Write hello.txt" --activate',
    "job list": "logist job list --state executing,pending --since 2h",
    "job status": "logist job status fix-lo   (any unique prefix of an id)",
    "job show": "logist job show fix-login --json",
    "job history": "logist job history fix-login --notes",
    "job select": "logist job select fix-login",
    "job path": "cd $(logist job path fix-login)",
    "job activate": "logist job activate fix-login",
    "job suspend": 'logist job suspend fix-login --message "waiting for the API change"',
    "job resume": "logist job resume fix-login && logist job run fix-login",
    "job cancel": 'logist job cancel fix-login --message "not needed any more"',
    "job stop": 'logist job stop fix-login --message "wrong approach"',
    "job approve": 'logist job approve fix-login --message "looks good"',
    "job reject": 'logist job reject fix-login --message "also handle the empty case"',
    "job resubmit": 'logist job resubmit fix-login --message "installed the missing tool"',
    "job step": "logist job step fix-login",
    "job run": "logist job run fix-login   (no id: every PENDING job)",
    "job attach": "logist job attach fix-login",
    "job metrics": "logist job metrics fix-login --csv",
    "job log": "logist job log fix-login --step 2",
    "job rerun": "logist job rerun fix-login --step 2",
    "job restep": "logist job restep fix-login 2 --isolated",
    "job adopt": "logist job adopt fix-login --remote origin",
    "job trust": "logist job trust fix-login",
    "job pr": "logist job pr fix-login --draft",
    "job diff": "logist job diff fix-login --step 2 --stat",
    "job clean": "logist job clean fix-login --yes",
}

# The command surface, as data: (group, name, "module:function" under logist/cli/commands/,
# one-line summary). The cyclopts app is built from it when a command needs cyclopts (help,
# completion, a usage error, an option the fast binder leaves to it: logist/cli/fastargs.py);
# the fast binder reads the same functions' signatures, so both see one command surface.
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("", "init", "init:init", "Set up logist in this git repository (idempotent)."),
    ("job", "create", "job:create",
     "Create a job: branch logist/<id> and a first commit (its worktree comes with its first step)."),
    ("job", "list", "job:list_cmd", "List jobs, most recently active first (--all, --state, --since, --needs-me)."),
    ("job", "status", "job_info:status", "Where a job stands: state, step, run, holder, last signal, cost."),
    ("job", "show", "job_info:show", "The whole job record (the manifest at the branch tip)."),
    ("job", "history", "job_info:history", "The job's transitions, runs and resteps (--notes adds notes)."),
    ("job", "select", "job_info:select", "Make a job the default for commands that omit the id."),
    ("job", "path", "job_info:path",
     "Print the path of a job's worktree, making it if the job has none (not yet, or given back)."),
    ("job", "activate", "job_transitions:activate", "DRAFT -> PENDING."),
    ("job", "suspend", "job_transitions:suspend", "Any non-terminal state -> SUSPENDED."),
    ("job", "resume", "job_transitions:resume", "SUSPENDED -> PENDING."),
    ("job", "cancel", "job_transitions:cancel", "Any non-terminal state -> CANCELED."),
    ("job", "stop", "job_transitions:stop",
     "Stop a running job: its agent is stopped and the job SUSPENDED (or --cancel)."),
    ("job", "approve", "job_transitions:approve", "APPROVAL_REQUIRED -> SUCCESS."),
    ("job", "reject", "job_transitions:reject", "APPROVAL_REQUIRED -> PENDING: the last step runs again."),
    ("job", "resubmit", "job_transitions:resubmit", "INTERVENTION_REQUIRED -> PENDING: the failed step runs again."),
    ("job", "step", "run:step", "Run exactly one step of a job."),
    ("job", "run", "run:run", "Run steps until the job rests (no id: every PENDING job)."),
    ("job", "attach", "job_output:attach", "Follow a running job's output live."),
    ("job", "metrics", "job_output:metrics", "Cost, tokens, time and attempts per step and in total."),
    ("job", "log", "job_output:log", "A step's output (live, or from refs/notes/logist/logs)."),
    ("", "watch", "watch:watch", "Observer + sentinel in the foreground for a running job."),
    ("", "dashboard", "dashboard:dashboard",
     "A live terminal view of all jobs: what needs you first; keys act on the selected job."),
    ("job", "rerun", "rerun:rerun", "A new run from step 1 or --step N; the old run stays reachable."),
    ("job", "restep", "rerun:restep", "Re-execute one step (in place, or --isolated); state and run stay."),
    ("", "recover", "recover:recover",
     "Find interrupted jobs and carry them on from the tip (--check, --list, --abandon, --cleanup)."),
    ("", "push", "share:push", "Push job branches, logist refs and notes to a remote (one atomic push)."),
    ("", "fetch", "share:fetch", "Fetch a remote's jobs, logist refs and notes (notes merged)."),
    ("", "hide-jobs", "share:hide_jobs", "Keep a remote's job branches out of plain `git fetch` (--undo: back in)."),
    ("job", "adopt", "share:adopt", "Take a job fetched from a remote to work on here."),
    ("job", "trust", "share:trust", "Show the commands a fetched job runs, then trust them here."),
    ("job", "diff", "review:diff", "The job's work without its record (.logist/), as git diff shows it."),
    ("job", "pr", "share:pr", "Push a job's review branch (its work only) and open a pull request."),
    ("job", "clean", "gc:clean", "Give a job up: archive its tip, remove its worktree and branch (--yes)."),
    ("", "gc", "gc:gc", "Clean up jobs merged into the base (dry run unless --yes)."),
    ("", "worker", "worker:worker", "Run PENDING jobs from a shared remote; the remote arbitrates claims."),
    ("", "doctor", "doctor:doctor", "Find and fix inconsistent worktrees, locks, lock files and notes."),
    ("", "help", "help:help_cmd", "Show logist's documents (shipped with it): logist help TOPIC."),
    ("", "completion", "help:completion", "Shell completion for bash, zsh or fish (print, or --install)."),
    ("", "hook", "hook:hook", "Run logist's part of a git hook (used by the installed shims)."),
)
HIDDEN = frozenset({"hook"})  # not listed by `logist --help`

_APP: App | None = None


def _shown_default(value: object) -> str | None:
    """What `--help` shows as an option's default: nothing for a flag (it is off unless given)
    or an empty one, else the value."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value)


def build_app() -> App:
    """The cyclopts app of the whole command surface (built once; commands load lazily: a
    command's module is imported only when it runs, or for its --help)."""
    global _APP
    if _APP is not None:
        return _APP
    from cyclopts import App, Parameter

    # Flags are shown once (`--json`, no `--no-json` twin and no `[default: False]`).
    params = Parameter(negative_bool=(), negative_iterable=(), show_default=_shown_default)
    app = App(name="logist", version=__version__, help_on_error=False, help_format="plaintext",
              default_parameter=params,
              help="Run and track agent jobs in your git repository: every job is a branch plus a "
                   "worktree, every state transition a commit.\n\nGlobal option: -C PATH runs as if "
                   "logist was started in PATH.")
    job = App(name="job", help="Create, inspect, run and steer jobs.", help_format="plaintext",
              default_parameter=params)
    app.command(job)
    for group, name, target, help in COMMANDS:
        example = EXAMPLES.get(f"{group} {name}".strip())
        if example:
            help = f"{help}\n\nExample: {example}"
        (job if group == "job" else app).command(_C + target, name=name, help=help, show=name not in HIDDEN)
    _APP = app
    return app


def __getattr__(name: str) -> App:
    """``logist.cli.app``: the cyclopts app, built on first use (importing logist.cli is cheap)."""
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from logist.cli.output import warn
    from logist.core import notices

    notices.set_sink(warn)
    try:
        from logist.cli.fastargs import bind

        bound = bind(tokens)
        if bound is not None:  # the command's own function, its arguments read without cyclopts
            fn, args, kwargs = bound
            result = fn(*args, **kwargs)
        else:
            result = build_app()(tokens, result_action="return_value", exit_on_error=False,
                                 print_error=False)
    except LogistError as exc:
        _print_error(exc)
        return _exit(exc.exit_code, argv)
    except KeyboardInterrupt:
        print("logist: interrupted", file=sys.stderr)
        return _exit(ExitCode.INTERRUPTED, argv)
    except BrokenPipeError:
        return _exit(0, argv)
    except Exception as exc:
        if _is_usage_error(exc):
            _print_usage_error(exc, tokens)
            return _exit(ExitCode.USAGE, argv)
        _internal_error(exc)
        return _exit(ExitCode.INTERNAL, argv)
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    return _exit(code, argv)


def _is_usage_error(exc: Exception) -> bool:
    """A cyclopts error (a command-line mistake); cyclopts is loaded whenever it can raise one."""
    cyclopts = sys.modules.get("cyclopts")
    return cyclopts is not None and isinstance(exc, cyclopts.CycloptsError)


def _exit(code: int, argv) -> int:
    if argv is None:
        sys.exit(code)
    return code


def _print_error(exc: LogistError) -> None:
    from logist.cli.output import err

    err(f"logist: error: {exc.message}")
    if exc.hint:
        err(f"  hint: {exc.hint}")


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
    from logist.cli.output import clean

    print(clean(f"logist: internal error: {type(exc).__name__}: {exc}{where}"), file=sys.stderr)
    print("  hint: this is a bug in logist; please report it with the log file", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
