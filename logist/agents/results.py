"""From an agent's output and exit code to an :class:`~logist.agents.base.AgentResult`: the result
rules of the plain agents (exit 0 = COMPLETED unless a fenced outcome says otherwise) and of the
AI CLIs (FAILED on error, the outcome if valid, else NO_OUTCOME), and the helpers that read what
a CLI printed (reasons on one line, error lines, JSON objects, token counts)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from logist.agents.base import Action, AgentResult
from logist.agents.outcome import INVALID, find_outcome

_REASON_MAX = 300


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
