"""The agent interface: what a step asks of an agent, and what comes back.

An agent is a provider selected by name (see :mod:`logist.agents`). It never runs anything itself:
:meth:`Agent.build` turns a :class:`StepContext` into an :class:`Invocation` (argv, environment
additions, stdin text) that a runtime starts in the job's worktree, and :meth:`Agent.parse` turns
the process's combined output and exit code into an :class:`AgentResult`.

Two families share the code here:

* :class:`PlainAgent` (``mock``, ``command``): exit 0 is COMPLETED unless the output holds a
  fenced outcome, which then wins; a non-zero exit is FAILED.
* :class:`CliAgent` (``claude``, ``codex``, ``aider``, ``cline``, ``gemini``): an AI coding CLI in
  its documented non-interactive mode. Its native output gives the final text, cost, tokens and
  session id; the outcome is read from the final text. A successful process without a valid
  outcome is NO_OUTCOME (the engine sends the job to a person); a non-zero exit or an error the
  tool reports is FAILED.

Nothing here prints, exits, touches git, or imports the store, the engine or the CLI.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from logist.agents.outcome import INVALID, find_outcome
from logist.core.errors import AgentError

Action = Literal["COMPLETED", "STUCK", "RETRY", "FAILED", "NO_OUTCOME"]

#: Longest prompt (in bytes) passed as one argv element. Linux refuses any single argument or
#: environment string over 128 KiB (MAX_ARG_STRLEN); longer prompts go through stdin where the
#: tool supports it.
ARGV_PROMPT_LIMIT = 100_000

_REASON_MAX = 300


@dataclass
class StepContext:
    """Everything an agent needs to build one step's invocation."""

    job_id: str
    step_number: int  # 1-based
    step_count: int
    step_name: str
    prompt: str  # the fully assembled prompt, recorded verbatim by the engine
    workdir: Path  # the job's worktree; the agent runs there
    options: dict[str, Any]  # the step's options from the job file
    attempt: int = 1
    session_id: str | None = None  # a previous session to resume, where the agent supports it
    prior_tokens: int = 0  # tokens already recorded for this step (CLIs that count per session)
    prior_cost_usd: float = 0.0  # cost already recorded for this step


@dataclass
class Invocation:
    """How to start an agent: argv (never a shell), environment additions, stdin text."""

    argv: list[str]
    env: dict[str, str]
    stdin: str | None = None


@dataclass
class AgentResult:
    """What a step's agent reported, read from its output and exit code."""

    action: Action
    summary: str = ""
    evidence_files: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    tokens: int = 0
    session_id: str | None = None
    reason: str = ""  # for FAILED / NO_OUTCOME / STUCK: why, one line
    exit_code: int | None = None
    requests_approval: bool = False
    warnings: list[str] = field(default_factory=list)  # fields of the outcome that were dropped
    denials: list[str] = field(default_factory=list)  # tool calls or writes the CLI refused
    fatal: bool = False  # a failure a retry cannot fix (auth, no key, usage, untrusted folder)


class Agent(Protocol):
    """A provider that builds a step's invocation and reads its result."""

    name: str
    ai: bool  # True: a missing or invalid outcome is NO_OUTCOME. False: plain exit 0 = COMPLETED
    runs_commands: bool  # True only for `command` (a fetched job needs explicit trust)

    def build(self, ctx: StepContext) -> Invocation: ...

    def parse(self, output: str, exit_code: int | None, ctx: StepContext) -> AgentResult: ...

    def executable(self) -> str | None: ...

    def validate_options(self, options: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- option checks

def check_str_list(value: Any, what: str, *, non_empty: bool = False) -> list[str]:
    """``value`` when it is a list of strings, else an AgentError naming ``what``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AgentError(f"{what} must be a list of strings, got {value!r}")
    if non_empty and (not value or not value[0]):
        raise AgentError(f"{what} must be a non-empty list of strings whose first item names a "
                         f"program, got {value!r}")
    return value


def validate_common(agent: str, options: Any) -> None:
    """Type checks of the options every agent understands: model, args, and the flags."""
    if not isinstance(options, dict):
        raise AgentError(f"agent {agent!r}: step options must be a table, got {options!r}")
    model = options.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise AgentError(f"agent {agent!r}: model must be a non-empty string, got {model!r}")
    if "args" in options:
        check_str_list(options["args"], f"agent {agent!r}: args")
        for arg in options["args"]:
            refuse_literal_secret(agent, "args", arg)
    if "env" in options:
        check_env(agent, options["env"])
    for flag in ("skip_permissions", "requires_approval"):
        if flag in options and not isinstance(options[flag], bool):
            raise AgentError(f"agent {agent!r}: {flag} must be true or false, "
                             f"got {options[flag]!r}")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]{0,127})\}")
_REF_HINT = ('pass it by reference: env = { NAME = "${NAME}" } in the job file (or the step), '
             "with NAME set in the environment of `logist job run`")


def refuse_literal_secret(agent: str, where: str, value: str) -> None:
    """AgentError when ``value`` holds a key or token of a known shape (it would be committed
    verbatim in the job's record)."""
    from logist.core.redact import key_shaped, redact

    if key_shaped(value):
        raise AgentError(f"agent {agent!r}: {where} holds what looks like a secret "
                         f"({redact(value)[:80]!r}); it would be committed in the job's record",
                         hint=_REF_HINT)


def check_env(agent: str, env: Any) -> None:
    """``env`` is a table of NAME = value; values that look like secrets must be references."""
    if not isinstance(env, dict):
        raise AgentError(f"agent {agent!r}: env must be a table of NAME = \"value\", got {env!r}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise AgentError(f"agent {agent!r}: env: {name!r} is not a variable name",
                             hint="use letters, digits and _ (not starting with a digit)")
        if not isinstance(value, str):
            raise AgentError(f"agent {agent!r}: env.{name} must be a string, got {value!r}")
        if "\x00" in value:
            raise AgentError(f"agent {agent!r}: env.{name} holds a NUL byte")
        if not _ENV_REF.search(value):
            refuse_literal_secret(agent, f"env.{name}", value)


def resolve_env(options: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The step's ``env`` with each ``${NAME}`` read from ``environ`` (default: this process's
    environment, i.e. that of `logist job run`). The values never go into the record: only the
    references are stored. AgentError naming the variable when one is not set."""
    import os

    table = options.get("env") or {}
    src = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name, value in table.items():
        def one(m: re.Match[str], name: str = name) -> str:
            var = m.group(1)
            if var not in src:
                raise AgentError(f"env.{name} refers to ${{{var}}}, which is not set in the "
                                 "environment of `logist job run`",
                                 hint=f"export {var}=... before running the job")
            return src[var]
        out[name] = _ENV_REF.sub(one, value)
    return out


def secret_values(options: dict[str, Any]) -> list[str]:
    """The values the step's ``env`` references resolve to now (to mask them in notes)."""
    try:
        resolved = resolve_env(options)
    except AgentError:
        return []
    refs = options.get("env") or {}
    return [v for k, v in resolved.items() if v and len(v) >= 4 and v != refs.get(k)]


def mask_values(text: str, values: list[str]) -> str:
    """``text`` with every occurrence of each of ``values`` replaced by ``[REDACTED]``."""
    for v in sorted(set(values), key=len, reverse=True):
        text = text.replace(v, "[REDACTED]")
    return text


# --------------------------------------------------------------------------- result helpers

def clip(text: str, limit: int = _REASON_MAX) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def clip_tail(text: str, limit: int = 500) -> str:
    """The end of ``text`` on one line, at most ``limit`` characters (an agent's last words)."""
    one = " ".join(text.split())
    return one if len(one) <= limit else "…" + one[-(limit - 1):]


_ANSI = re.compile(r"\x1b(?:\[[0-9;?<=>!]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
#: Lines that only point elsewhere (clap's and yargs' footers, stack frames): never a reason.
_FOOTER = re.compile(r"^(for more information, try|usage:|run with --help|see --help|at )", re.I)
_ERROR_LINE = re.compile(r"^(error|fatal|unknown argument|unknown arguments|invalid)\b|\berror:", re.I)


_USAGE = re.compile(r"^(error: (unexpected|unrecognized|invalid|unknown) (argument|option|value)"
                    r"|unknown arguments?:|unknown option)", re.I | re.M)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def problem_line(output: str) -> str:
    """The line of a failed run that says what is wrong: the first error line (``error: ...``,
    ``Unknown arguments ...``), not a footer like "For more information, try '--help'"; else
    the last text line."""
    for line in strip_ansi(output).splitlines():
        s = line.strip()
        if s and not s.startswith(("{", "[")) and _ERROR_LINE.search(s) and not _FOOTER.match(s):
            return clip(s)
    for line in reversed(strip_ansi(output).splitlines()):
        s = line.strip()
        if s and not s.startswith(("{", "}", "[", "]", "```")) and not _FOOTER.match(s):
            return clip(s)
    return ""


def last_text_line(output: str) -> str:
    """The last non-empty line of ``output`` that is not JSON or a code fence."""
    for line in reversed(output.splitlines()):
        s = line.strip()
        if s and not s.startswith(("{", "}", "[", "]", "```")):
            return clip(s)
    return ""


def exit_reason(label: str, exit_code: int, detail: str = "") -> str:
    """``"<label> exited with code N"`` (or killed by a signal), plus ``": detail"``."""
    if exit_code < 0:
        try:
            sig = signal.Signals(-exit_code).name
        except ValueError:
            sig = str(-exit_code)
        text = f"{label} was killed by signal {sig}"
    else:
        text = f"{label} exited with code {exit_code}"
    return f"{text}: {clip(detail)}" if detail else text


def from_outcome(outcome: dict[str, Any], *, exit_code: int | None, cost_usd: float = 0.0,
                 tokens: int = 0, session_id: str | None = None) -> AgentResult:
    """An AgentResult from a validated outcome; measured cost/tokens win over reported ones.
    An INVALID outcome (unknown or malformed action, a block too large or deep to read) is
    NO_OUTCOME with the reason: a person decides, it is never COMPLETED."""
    if outcome["action"] == INVALID:
        return AgentResult("NO_OUTCOME", summary=outcome["summary"], reason=outcome["reason"],
                           cost_usd=cost_usd, tokens=tokens, session_id=session_id,
                           exit_code=exit_code, warnings=list(outcome.get("warnings") or []))
    reason = outcome["reason"]
    if outcome["action"] == "STUCK" and not reason:
        reason = clip(outcome["summary"]) or "the agent reported STUCK without a reason"
    return AgentResult(
        action=outcome["action"], summary=outcome["summary"],
        evidence_files=list(outcome["evidence_files"]),
        cost_usd=cost_usd or outcome.get("cost_usd", 0.0),
        tokens=tokens or outcome.get("tokens", 0),
        session_id=session_id, reason=reason, exit_code=exit_code,
        requests_approval=outcome["approval"], warnings=list(outcome.get("warnings") or []))


_UNKNOWN_EXIT = "exit status unknown (the process was not our child) and no outcome in its output"


def plain_result(label: str, output: str, exit_code: int | None) -> AgentResult:
    """Result rules of mock/command: exit 0 = COMPLETED unless a fenced outcome says otherwise."""
    outcome = find_outcome(output)
    if exit_code is not None and exit_code != 0:
        return AgentResult("FAILED", summary=outcome["summary"] if outcome else "",
                           reason=exit_reason(label, exit_code, last_text_line(output)),
                           exit_code=exit_code)
    if outcome is not None:
        return from_outcome(outcome, exit_code=exit_code)
    if exit_code is None:
        return AgentResult("NO_OUTCOME", reason=_UNKNOWN_EXIT)
    return AgentResult("COMPLETED", summary=f"{label} exited with code 0", exit_code=0)


@dataclass
class NativeOutput:
    """What an AI CLI's own output format says, before the outcome protocol is applied."""

    text: str = ""  # the agent's final answer (where the outcome block is looked for)
    cost_usd: float = 0.0
    tokens: int = 0
    session_id: str | None = None
    error: str | None = None  # an error the tool itself reported
    denials: list[str] = field(default_factory=list)  # tool calls the CLI refused


def ai_result(label: str, native: NativeOutput, output: str, exit_code: int | None,
              problem: str | None = None) -> AgentResult:
    """Result rules of AI agents: FAILED on error, the outcome if valid, else NO_OUTCOME.

    ``problem`` is what the CLI said about a failure no retry can fix (auth, no key, usage,
    untrusted folder: see :meth:`CliAgent.line_problem`); it makes the result FAILED and fatal
    even when the CLI exited 0, with those words as the reason."""

    def result(action: Action, reason: str, fatal: bool = False) -> AgentResult:
        return AgentResult(action, summary=clip_tail(native.text), cost_usd=native.cost_usd,
                           tokens=native.tokens, session_id=native.session_id, reason=reason,
                           exit_code=exit_code, denials=list(native.denials), fatal=fatal)

    if problem:
        detail = clip(strip_ansi(problem))
        if exit_code is not None and exit_code != 0:
            return result("FAILED", exit_reason(label, exit_code, detail), fatal=True)
        return result("FAILED", f"{label}: {detail}", fatal=True)
    if exit_code is not None and exit_code != 0:
        return result("FAILED", exit_reason(label, exit_code,
                                            native.error or problem_line(output)))
    if native.error:
        return result("FAILED", f"{label} reported an error: {clip(strip_ansi(native.error))}")
    outcome = find_outcome(native.text) or find_outcome(output)
    if outcome is not None:
        res = from_outcome(outcome, exit_code=exit_code, cost_usd=native.cost_usd,
                           tokens=native.tokens, session_id=native.session_id)
        res.denials = list(native.denials)
        return res
    if exit_code is None:
        return result("NO_OUTCOME", _UNKNOWN_EXIT)
    return result("NO_OUTCOME", f"{label} finished without a valid outcome: its reply must end "
                                "with a fenced ```json block holding "
                                '{"action": "COMPLETED"|"STUCK"|"RETRY", "summary": ...}')


def denial_reason(label: str, denials: list[str], grant: str) -> str:
    """The reason of a step whose agent was refused tool calls or writes."""
    listed = "; ".join(clip(d, 120) for d in denials[:5]) + ("; …" if len(denials) > 5 else "")
    return clip(f"{label} was denied {len(denials)} action{'s' if len(denials) != 1 else ''}: "
                f"{listed}. To grant them: {grant}", 600)


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


# --------------------------------------------------------------------------- parsing helpers

_OBJECT_LINE = re.compile(r"^[ \t\r]*\{", re.M)


def iter_json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``text`` that starts a line: JSON Lines, pretty-printed objects, or
    either mixed with plain log lines (stdout and stderr share one log)."""
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        m = _OBJECT_LINE.search(text, pos)
        if m is None:
            return
        try:
            obj, end = decoder.raw_decode(text, m.end() - 1)
        except ValueError:
            pos = m.end()
            continue
        if isinstance(obj, dict):
            yield obj
            pos = end
        else:
            pos = m.end()


def number(value: Any) -> float:
    """``value`` as a non-negative number, or 0 for anything else (bool, str, None, <0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0.0
    return max(float(value), 0.0)


def token_sum(usage: Any, *keys: str) -> int:
    """The sum of the numeric ``keys`` of a usage mapping (missing or odd values count 0)."""
    if not isinstance(usage, dict):
        return 0
    return int(sum(number(usage.get(k)) for k in keys))


def error_text(value: Any) -> str | None:
    """A readable message from an error field that may be a string or ``{"message": ...}``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        msg = value.get("message") or value.get("error") or value.get("type")
        return str(msg) if msg else json.dumps(value)[:_REASON_MAX]
    return None


# --------------------------------------------------------------------------- argv helpers

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


# --------------------------------------------------------------------------- base classes

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
