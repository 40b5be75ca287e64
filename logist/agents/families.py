"""The two families of agents (see :mod:`logist.agents.base` for the interface they implement).

* :class:`PlainAgent` (``mock``, ``command``): exit 0 is COMPLETED unless the output holds a
  fenced outcome, which then wins; a non-zero exit is FAILED.
* :class:`CliAgent` (``claude``, ``codex``, ``aider``, ``cline``, ``gemini``): an AI coding CLI in
  its documented non-interactive mode. Its native output gives the final text, cost, tokens and
  session id; the outcome is read from the final text. A successful process without a valid
  outcome is NO_OUTCOME (the engine sends the job to a person); a non-zero exit or an error the
  tool reports is FAILED.

Also the small argv helpers the CLIs' command lines share, and the CLI's version.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from logist.agents.base import ARGV_PROMPT_LIMIT, AgentResult, Invocation, StepContext
from logist.agents.options import resolve_env, validate_common
from logist.agents.results import NativeOutput, ai_result, clip, denial_reason, plain_result, problem_line, strip_ansi
from logist.core.errors import AgentError

_USAGE = re.compile(r"^(error: (unexpected|unrecognized|invalid|unknown) (argument|option|value)"
                    r"|unknown arguments?:|unknown option)", re.I | re.M)


_VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+.][0-9A-Za-z.]+)?")
_VERSIONS: dict[tuple[str, float], str | None] = {}


def cli_version(exe: str, *, timeout: float = 30.0, cache: Path | None = None) -> str | None:
    """The version number ``exe --version`` prints (``2.1.332`` of ``2.1.332 (Claude Code)``),
    or None when it prints none in ``timeout`` seconds. Cached per path and mtime, in this
    process and in the JSON file ``cache`` (some CLIs take seconds to say their version)."""
    import os

    from logist.runtimes.programs import run_program

    try:
        st = os.stat(exe)
        key = (os.path.realpath(exe), st.st_mtime)
    except OSError:
        return None
    if key in _VERSIONS:
        return _VERSIONS[key]
    disk_key = f"{key[0]}|{st.st_mtime_ns}|{st.st_size}"
    stored: dict[str, Any] = {}
    if cache is not None:
        try:
            loaded = json.loads(cache.read_text())
            stored = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            stored = {}
        if isinstance(stored.get(disk_key), str):
            _VERSIONS[key] = stored[disk_key]
            return _VERSIONS[key]
    try:
        proc = run_program([exe, "--version"], timeout=timeout)
        text = strip_ansi(proc.stdout.decode("utf-8", "replace"))
    except (OSError, TimeoutError):
        text = ""
    m = _VERSION_RE.search(text)
    _VERSIONS[key] = m.group(0) if m else None
    if cache is not None and _VERSIONS[key]:
        stored = {k: v for k, v in stored.items() if not k.startswith(key[0] + "|")}
        stored[disk_key] = _VERSIONS[key]
        try:
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
            os.replace(tmp, cache)
        except OSError:
            pass
    return _VERSIONS[key]


def positional(prompt: str) -> list[str]:
    """The prompt as a positional argument (after ``--`` when it looks like an option)."""
    return ["--", prompt] if prompt.startswith("-") else [prompt]


def option_value(flag: str, value: str) -> list[str]:
    """``[flag, value]``, or ``[flag=value]`` when the value would look like an option."""
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]


def model_args(options: dict[str, Any], flag: str = "--model") -> list[str]:
    """The model flag for ``options["model"]``, if set."""
    model = options.get("model")
    return option_value(flag, model) if model else []


def user_args(options: dict[str, Any]) -> list[str]:
    """The step's extra argv (``args = [...]`` in the job file)."""
    return list(options.get("args") or [])


class BaseAgent:
    """Shared defaults: class-level identity, common option checks, the step environment."""

    name: str = ""
    ai: bool = False
    runs_commands: bool = False

    def executable(self) -> str | None:
        """The binary this agent needs, or None when it needs none in particular."""
        return None

    def validate_options(self, options: dict[str, Any]) -> None:
        """Raise AgentError for options this agent cannot use (run at job creation)."""
        validate_common(self.name, options)

    def step_env(self, ctx: StepContext) -> dict[str, str]:
        """Variables every agent process gets: which job, step and attempt it serves, plus the
        step's ``env`` with its ``${NAME}`` references read from logist's environment."""
        return {**resolve_env(ctx.options),
                "LOGIST_JOB_ID": ctx.job_id, "LOGIST_STEP": str(ctx.step_number),
                "LOGIST_STEP_COUNT": str(ctx.step_count), "LOGIST_STEP_NAME": ctx.step_name,
                "LOGIST_ATTEMPT": str(ctx.attempt)}

    def __repr__(self) -> str:
        return f"<agent {self.name}>"


class PlainAgent(BaseAgent):
    """mock and command: plain exit 0 = COMPLETED; a fenced outcome in the output wins."""

    label: str = ""  # how reasons name the process: "command", "mock agent"

    def parse(self, output: str, exit_code: int | None, ctx: StepContext) -> AgentResult:
        """Read the result with the plain rules (see :func:`plain_result`)."""
        return plain_result(self.label or self.name, output, exit_code)


#: Free-text lines that say a retry cannot help, whatever the CLI: checked by
#: :meth:`CliAgent.line_problem` after the agent's own structured events.
FATAL_TEXT = re.compile(
    r"incorrect api key|invalid[ _-]?(api[ _-]?key|x-api-key)|api key not valid"
    r"|authentication_?(error|failed)|\bunauthenticated\b|(?<![\w-])401 unauthorized"
    r"|not logged in|please run /login|please set an auth method|must specify the \w+ environment"
    r"|missing environment variable|not running in a trusted directory"
    r"|no llm model was specified and no api keys|please open this url in your browser"
    r"|context_length_exceeded|prompt is too long|maximum context length", re.I)
#: Free-text lines of a CLI retrying a request it could not make.
RETRY_TEXT = re.compile(
    r"^\s*(reconnecting\.\.\.|retrying in [\d.]+ ?s|attempt \d+ failed\. retrying)", re.I)


class CliAgent(BaseAgent):
    """An AI coding CLI run non-interactively. Subclasses give the binary, the command line and
    the reader of the tool's native output; building and the result rules are shared."""

    ai: bool = True
    binary: str = ""
    install_hint: str = ""
    #: Files the CLI writes in the worktree for itself (caches, histories, sessions): excluded
    #: from every harvest (gitignore patterns, relative to the worktree root).
    state_files: tuple[str, ...] = ()
    #: True when a resumed session reports the usage of the whole session, not of this run:
    #: what the step already recorded is subtracted (``StepContext.prior_tokens``/``_cost_usd``).
    session_totals: bool = False
    #: The job-file option that grants what a permission denial refused (shown in the reason).
    grant_hint: str = "skip_permissions = true (everything) in the step"

    def executable(self) -> str | None:
        """The tool's path on PATH, or None when it is not installed."""
        return shutil.which(self.binary)

    def require_executable(self) -> str:
        """The tool's path, or an AgentError saying how to install it."""
        exe = self.executable()
        if exe is None:
            raise AgentError(f"agent {self.name!r} needs the `{self.binary}` program, which is "
                             "not on PATH",
                             hint=f"{self.install_hint}, or use agent = \"mock\" to try logist "
                                  "without it")
        return exe

    def build(self, ctx: StepContext) -> Invocation:
        """argv from :meth:`command_line`; a prompt too long for argv goes through stdin."""
        exe = self.require_executable()
        if len(ctx.prompt.encode("utf-8")) <= ARGV_PROMPT_LIMIT:
            return Invocation([exe, *self.command_line(ctx, ctx.prompt)], self.step_env(ctx))
        return Invocation([exe, *self.command_line(ctx, None)], self.step_env(ctx),
                          stdin=ctx.prompt)

    def command_line(self, ctx: StepContext, prompt: str | None) -> list[str]:
        """The arguments after the binary; ``prompt`` None means it is read from stdin."""
        raise NotImplementedError

    def too_long(self, ctx: StepContext) -> AgentError:
        """The error for a prompt too long for argv when the tool cannot read it from stdin."""
        return AgentError(f"the prompt of step {ctx.step_number} is "
                          f"{len(ctx.prompt.encode('utf-8'))} bytes: too long for the command "
                          f"line of {self.binary}, which cannot read it from stdin",
                          hint="shorten the job or step prompt")

    def read_output(self, output: str) -> NativeOutput:
        """The final text, cost, tokens, session id and error in the tool's native output."""
        raise NotImplementedError

    def parse(self, output: str, exit_code: int | None, ctx: StepContext) -> AgentResult:
        """Apply the AI result rules (see :func:`ai_result`) to the native output."""
        problem = text_problem = None
        for line in output.splitlines():
            found = self.line_problem(line)
            if found is not None and found[0] == "fatal":
                if line.lstrip().startswith("{"):  # the CLI's own structured error first
                    problem = found[1]
                    break
                text_problem = text_problem or found[1]
        problem = problem or text_problem
        if problem is None and exit_code not in (None, 0) and _USAGE.search(output):
            problem = problem_line(output)  # a usage error: the same command fails again
        res = ai_result(self.name, self.read_output(output), output, exit_code, problem)
        if self.session_totals and ctx.session_id:
            res.tokens = max(0, res.tokens - ctx.prior_tokens)
            res.cost_usd = max(0.0, round(res.cost_usd - ctx.prior_cost_usd, 9))
        if res.denials and res.action == "COMPLETED":
            res.reason = denial_reason(self.name, res.denials, self.grant_hint)
        return res

    def line_problem(self, line: str) -> tuple[str, str] | None:
        """What one line of the CLI's output says about a doomed run: ``("fatal", words)`` for
        a failure no retry can fix (auth, missing key or model, an interactive login offer, an
        untrusted folder, context full), ``("retrying", words)`` for a request the CLI is
        retrying, None otherwise. The CLI's structured events are read first
        (:meth:`event_problem`); the free-text patterns only for lines that are not JSON."""
        s = strip_ansi(line).strip()
        if not s:
            return None
        if s.startswith("{"):
            try:
                obj = json.loads(s)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                return self.event_problem(obj)
        if RETRY_TEXT.search(s):
            return "retrying", clip(s)
        if FATAL_TEXT.search(s):
            return "fatal", clip(s)
        return None

    def event_problem(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """:meth:`line_problem` for one JSON event of the CLI (default: nothing)."""
        return None

    def version(self, cache: Path | None = None) -> str | None:
        """The CLI's version (``BINARY --version``, cached by path and mtime), or None."""
        exe = self.executable()
        return cli_version(exe, cache=cache) if exe else None
