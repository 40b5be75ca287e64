"""The observer: named regexes that turn lines of agent output into signals (docs/observer.md).

Built-in patterns (``BUILTIN_PATTERNS``) cover what real agent CLIs (Claude Code, Codex, Aider,
Gemini CLI, plain commands) print. They are matched case-insensitively and are written in the
subset of regex syntax that POSIX ERE (``grep -E``) and Python's ``re`` read the same way.

Which signal a line gets
    Built-in patterns are tried in the order of ``BUILTIN_PATTERNS``, most specific first, and a
    line gets only the FIRST built-in that matches: ``Error: 429 rate limit`` is ``rate_limit``,
    not also ``error``. Patterns a user adds under new names are independent: each one that
    matches adds its signal. A user pattern under a built-in's name replaces that built-in (and
    keeps its place in the order); an empty string disables it.

Throughput
    Python's ``re`` runs an alternation like the built-ins at ~1-2 MB/s (measured: the union of the
    built-ins on lowercased text), two orders of magnitude below ``grep``. Small chunks (the normal
    case while tailing a running agent) are scanned in Python. A big chunk (catching up on a long
    log) first goes through ``grep -E -i -n`` with the built-in patterns as a prefilter (LC_ALL=C,
    byte semantics); only the lines it reports are classified in Python, so the result is the same,
    at grep's speed. Without a usable ``grep`` everything runs in Python. User patterns are always
    scanned in Python (one pass each over a big chunk; a pattern that starts with a literal is
    fast).

Rate limiting
    The same signal is emitted at most once per ``repeat_seconds`` (default 5 s). Matches in
    between are counted and reported as ``"repeats": n`` on the next line emitted for that
    signal, or by :meth:`Observer.finish`; so for every signal, lines + sum(repeats) = matches.

Note lines: ``{"t": "<ISO 8601 UTC>", "signal": name, "line": N, "text": "...", "repeats": n}``
(``repeats`` only when > 0; ``line`` is 1-based; ``text`` is redacted, stripped of terminal
escapes and cut to ``max_text`` characters).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logist.core.errors import ConfigError
from logist.core.redact import redact

# logist.git.notes (and the subprocess + shutil of the grep prefilter) are imported where used:
# the side process imports this module at its start, and a step's output often has no signal.

__all__ = ["BUILTIN_PATTERNS", "Observer", "Patterns", "Signal", "compile_patterns",
           "validate_patterns"]

# A number like 401 counts only on its own: not inside an id (aider-401-8vhj), a path or a word.
_ALONE_L = "(^|[^a-z0-9_./-])"
_ALONE_R = "([^a-z0-9_/-]|$)"

BUILTIN_PATTERNS: dict[str, str] = {
    "rate_limit": (
        _ALONE_L + "429" + _ALONE_R + r"|\brate[ _-]?limit|too many requests|overloaded|usage limit"
        r"|quota (exceeded|exhausted)|resource_exhausted|exceeded your current quota"),
    "auth_error": (
        _ALONE_L + "401" + _ALONE_R
        + r"|invalid[ _-]?(api[ _-]?key|x-api-key|bearer|token|credentials|authentication)"
        r"|incorrect api key|api key not valid|authentication[ _]?(error|failed|required)"
        r"|unauthori[sz]ed|not logged in|please run /login|missing api key|no api key"
        r"|please set an auth method|not able to authenticate you|\b403 forbidden"),
    "context_full": (
        r"context[ _]window (is )?(full|exceeded)|(exceeds?|larger than) the (model's )?context window"
        r"|context_length_exceeded|prompt is too long|maximum context length|input is too long"
        r"|too many tokens|maximum number of tokens|token limit (exceeded|reached)"
        r"|exceeds the [0-9,]+ token limit"),
    "api_error": (
        r"\bapi[ _]?error([^_a-z]|$)|internal server error|service unavailable|bad gateway|gateway time-?out"
        r"|\b(status|code|http)[: =]*5[0-9][0-9]\b"
        r"|\b5[0-9][0-9] (internal|bad gateway|service unavailable|gateway)"
        r"|apiconnectionerror|connection error|stream error|request timed out"),
    "waiting_input": (
        r"\(y/n\)|\[y/n\]|\(yes/no\)|\[yes/no\]|\(y\)es/\(n\)o"
        r"|do you want to (proceed|continue|make this edit|create|run|allow|apply)"
        r"|press enter|press any key|waiting for (your )?input"
        r"|(continue|proceed|apply this change|allow execution)\? *$"),
    "approval_requested": (
        r"(approval|sign[ -]?off) (is )?(required|requested|needed)|requests? (your )?(approval|sign[ -]?off)"
        r"|(awaiting|waiting for) (your )?(review|approval|sign[ -]?off)|please review"
        r"|ready for (your )?review|needs? (your )?(review|approval|sign[ -]?off)"),
    "completed": (
        r"\"outcome\" *: *\"completed\"|\"status\" *: *\"completed\" *, *\"summary\"|\boutcome: *completed\b"
        r"|task completed|task complete\b|all tasks (are )?(done|complete)"),
    "error": (
        r"traceback \(most recent call last\)|error *:|\berror\[|\bfatal:|exception:"
        r"|unhandled (exception|error|rejection)|panicked at|segmentation fault|\bnpm err!"),
}

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_PATTERN_CHARS = 2000
MAX_CLASSIFY_CHARS = 64 * 1024  # a line is matched on its first 64 KiB
BULK_MIN_BYTES = 16 * 1024  # chunks at least this big use the grep prefilter
_ANSI_RE = re.compile(r"\x1b(?:\[[0-9;?<=>!]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_ANSI_BYTES_RE = re.compile(_ANSI_RE.pattern.encode())
_CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Signal:
    t: float  # epoch seconds
    signal: str
    line: int  # 1-based line number in the step log
    text: str
    repeats: int = 0  # matches of this signal suppressed since its previous note line

    def to_dict(self) -> dict:
        from logist.git.notes import iso_utc

        out: dict = {"t": iso_utc(self.t), "signal": self.signal, "line": self.line,
                     "text": self.text}
        if self.repeats:
            out["repeats"] = self.repeats
        return out

    def to_json(self) -> str:
        from logist.git.notes import json_line

        return json_line(self.to_dict())


def _compile_one(name: str, pattern: object, *, builtin: bool) -> re.Pattern | None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"invalid observer pattern name {str(name)[:80]!r}: use letters, digits, "
                          "'_', '.', '-' (starting with a letter, at most 64)",
                          hint="fix [observer.patterns] in .logist/config.toml or the job file")
    if not isinstance(pattern, str):
        raise ConfigError(f"observer pattern {name!r} must be a string (a regex), "
                          f"not {type(pattern).__name__}",
                          hint="write it as name = \"regex\" under [observer.patterns]")
    if pattern == "":
        return None  # disabled
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConfigError(f"observer pattern {name!r} is longer than {MAX_PATTERN_CHARS} characters")
    try:
        rx = re.compile(f"(?i:{pattern})" if builtin else pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        pos = getattr(exc, "pos", None)
        where = f" at position {pos}" if pos is not None else ""
        msg = getattr(exc, "msg", str(exc))
        raise ConfigError(f"invalid regex for observer pattern {name!r}: {msg}{where} in {pattern!r}",
                          hint="fix the regex (Python `re` syntax) under [observer.patterns]") from None
    if rx.search("") is not None:
        raise ConfigError(f"observer pattern {name!r} matches an empty line ({pattern!r}), so it "
                          "would match every line", hint="make the regex require some text")
    return rx


def validate_patterns(patterns: object) -> dict[str, str]:
    """Check user patterns (``[observer.patterns]``: name = "regex") at job creation.

    Returns them as a plain dict; raises ConfigError naming the pattern and the regex error.
    """
    if patterns is None:
        return {}
    if not isinstance(patterns, Mapping):
        raise ConfigError("[observer.patterns] must be a table of name = \"regex\"")
    for name, pattern in patterns.items():
        _compile_one(name, pattern, builtin=False)
    return dict(patterns)


class Patterns:
    """A compiled, ordered set of observer patterns. Build with :func:`compile_patterns`."""

    def __init__(self, exclusive: list[tuple[str, re.Pattern, str]],
                 additive: list[tuple[str, re.Pattern, str]]) -> None:
        self.exclusive = exclusive  # (name, regex, source): first match wins
        self.additive = additive  # every match counts
        # Shipped patterns are plain lowercase ERE: grep -E -i reads them as Python does, and
        # Python can prefilter them case-sensitively on lowercased text (2x faster than (?i)).
        shipped = [src for name, _rx, src in exclusive if BUILTIN_PATTERNS.get(name) == src]
        self._grep = shipped
        self._lower_union = re.compile("|".join(f"(?:{s})" for s in shipped), re.M) if shipped else None
        self._icase_union = re.compile("|".join(f"(?i:{s})" for s in shipped), re.M) if shipped else None
        # Everything else (overridden built-ins, user patterns) is scanned one regex at a time.
        self._python_extra = [rx for name, rx, src in exclusive if BUILTIN_PATTERNS.get(name) != src]
        self._python_extra += [rx for _n, rx, _s in additive]

    @property
    def names(self) -> list[str]:
        return [n for n, _r, _s in self.exclusive] + [n for n, _r, _s in self.additive]

    def classify(self, line: str) -> list[str]:
        """The signals of one line (without its newline): at most one built-in, plus user ones."""
        line = _clean(line)
        out: list[str] = []
        for name, rx, _src in self.exclusive:
            if rx.search(line):
                out.append(name)
                break
        for name, rx, _src in self.additive:
            if rx.search(line):
                out.append(name)
        return out

    def scan(self, data: bytes, *, bulk: bool | None = None) -> list[tuple[int, str, list[str]]]:
        """(0-based line index, line text, signals) for every line of ``data`` with a signal.

        ``data`` holds whole lines (a missing final newline ends the last line).
        ``bulk`` forces (True) or forbids (False) the grep prefilter; default: by size.
        """
        if not data:
            return []
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        if b"\x1b" in data:
            data = _ANSI_BYTES_RE.sub(b"", data)
        if bulk is None:
            bulk = len(data) >= BULK_MIN_BYTES
        candidates: dict[int, str] | None = None
        text = data.decode("utf-8", "replace") if (self._python_extra or not bulk) else ""
        if bulk and self._grep:
            found = _grep_lines(self._grep, data)
            if found is not None:
                candidates = {i: line.decode("utf-8", "replace") for i, line in found.items()}
        if candidates is None:
            candidates = {}
            text = text or data.decode("utf-8", "replace")
            if self._lower_union is not None and self._icase_union is not None:
                low = text.lower()
                if len(low) == len(text):
                    for idx, _line in _regex_lines(self._lower_union, low):
                        candidates[idx] = ""
                else:  # some character lowercases to two: positions would drift
                    candidates.update(_regex_lines(self._icase_union, text))
        for rx in self._python_extra:
            for idx, line in _regex_lines(rx, text):
                candidates.setdefault(idx, line)
        if any(v == "" for v in candidates.values()):
            lines = text.split("\n")
            for idx, line in candidates.items():
                if line == "" and idx < len(lines):
                    candidates[idx] = lines[idx][:MAX_CLASSIFY_CHARS]
        out = []
        for idx in sorted(candidates):
            line = candidates[idx]
            names = self.classify(line)
            if names:
                out.append((idx, line, names))
        return out


def _regex_lines(rx: re.Pattern, text: str) -> Iterable[tuple[int, str]]:
    """(line index, line) of each line of ``text`` where ``rx`` finds a match.

    Matching runs over the whole text (C speed); a match that would span lines is re-checked
    on its line by the caller's classify()."""
    pos = 0
    line_idx = 0
    counted_to = 0
    n = len(text)
    search = rx.search
    while pos <= n:
        m = search(text, pos)
        if m is None:
            return
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.start())
        if end < 0:
            end = n
        line_idx += text.count("\n", counted_to, start)
        counted_to = start
        yield line_idx, text[start:end][:MAX_CLASSIFY_CHARS]
        pos = end + 1


_GREP: list[str] | None | bool = False  # False: not looked up yet; None: unusable


def _grep_lines(patterns: list[str], data: bytes) -> dict[int, bytes] | None:
    """{0-based line index: line} of lines where grep -E -i finds any of ``patterns``;
    None if grep is missing or fails (the caller falls back to Python)."""
    import shutil

    from logist.runtimes.programs import run_program

    global _GREP
    if _GREP is False:
        found = shutil.which("grep")
        _GREP = [found] if found else None
    if not isinstance(_GREP, list):
        return None
    argv = [_GREP[0], "-E", "-i", "-n", "-a"]
    for p in patterns:
        argv += ["-e", p]
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = run_program(argv, input=data, env=env)
    except OSError:
        _GREP = None
        return None
    if proc.returncode not in (0, 1):
        _GREP = None  # not a grep we can use (no -E?): stay in Python from now on
        return None
    out: dict[int, bytes] = {}
    for raw in proc.stdout.split(b"\n"):
        num, sep, line = raw.partition(b":")
        if sep and num.isdigit():
            out[int(num) - 1] = line[:MAX_CLASSIFY_CHARS]
    return out


def compile_patterns(builtin: Mapping[str, str] | None = None,
                     *overrides: Mapping[str, str] | None) -> Patterns:
    """Merge ``builtin`` (default BUILTIN_PATTERNS) with user pattern tables, later ones winning.

    A user name equal to a built-in replaces it in place (an empty string disables it); new
    names are added after, in the order given. Raises ConfigError for a bad name or regex.
    """
    base = dict(BUILTIN_PATTERNS if builtin is None else builtin)
    merged_builtin: dict[str, tuple[str, bool]] = {k: (v, True) for k, v in base.items()}
    added: dict[str, str] = {}
    for table in overrides:
        if not table:
            continue
        if not isinstance(table, Mapping):
            raise ConfigError("observer patterns must be a table of name = \"regex\"")
        for name, pattern in table.items():
            if name in merged_builtin:
                merged_builtin[name] = (pattern, False)
            else:
                added[name] = pattern
    exclusive = []
    for name, (pattern, is_builtin) in merged_builtin.items():
        rx = _compile_one(name, pattern, builtin=is_builtin)
        if rx is not None:
            exclusive.append((name, rx, pattern))
    additive = []
    for name, pattern in added.items():
        rx = _compile_one(name, pattern, builtin=False)
        if rx is not None:
            additive.append((name, rx, pattern))
    return Patterns(exclusive, additive)


def _clean(line: str) -> str:
    if "\x1b" in line:
        line = _ANSI_RE.sub("", line)
    line = line.rstrip("\r\n")
    if len(line) > MAX_CLASSIFY_CHARS:
        line = line[:MAX_CLASSIFY_CHARS]
    return line


class Observer:
    """Turns lines into rate-limited, redacted :class:`Signal` s. Not thread-safe."""

    def __init__(self, patterns: Patterns | None = None, *, repeat_seconds: float = 5.0,
                 max_text: int = 300) -> None:
        self.patterns = patterns if patterns is not None else compile_patterns()
        self.repeat_seconds = float(repeat_seconds)
        self.max_text = int(max_text)
        self._last_emit: dict[str, float] = {}
        self._suppressed: dict[str, list] = {}  # name -> [count, line_no, line]
        self.matches = 0  # every match, emitted or not
        self.last_seen: dict[str, tuple[float, int]] = {}  # name -> (t, line) of its last match

    def feed(self, line_no: int, line: str, t: float) -> list[Signal]:
        """Signals for one line (``line_no`` 1-based; ``t`` epoch seconds when it was seen)."""
        out = []
        for name in self.patterns.classify(line):
            sig = self._emit(name, line_no, line, t)
            if sig is not None:
                out.append(sig)
        return out

    def feed_chunk(self, data: bytes, first_line_no: int, t: float, *,
                   bulk: bool | None = None) -> list[Signal]:
        """Signals for the whole lines in ``data``; its first line is ``first_line_no``."""
        out = []
        for idx, line, names in self.patterns.scan(data, bulk=bulk):
            for name in names:
                sig = self._emit(name, first_line_no + idx, line, t)
                if sig is not None:
                    out.append(sig)
        return out

    def finish(self, t: float) -> list[Signal]:
        """One last line per signal that still has suppressed matches (the last of them,
        with ``repeats`` = the others). Call at the end of a step."""
        out = []
        for name, (count, line_no, line) in sorted(self._suppressed.items(),
                                                    key=lambda kv: kv[1][1]):
            out.append(Signal(t, name, line_no, self.text(line), count - 1))
            self._last_emit[name] = t
        self._suppressed.clear()
        return out

    def text(self, line: str) -> str:
        """``line`` as it goes into a note: no terminal escapes or control characters,
        redacted, at most ``max_text`` characters."""
        # redact more than is kept, so a token that crosses the cut is still seen whole
        line = _clean(line[: max(4096, self.max_text * 16)])
        line = _CTRL_RE.sub("", line.replace("\t", " ")).strip()
        line = redact(line)
        if len(line) > self.max_text:
            line = line[: self.max_text - 1] + "…"
        return line

    def _emit(self, name: str, line_no: int, line: str, t: float) -> Signal | None:
        self.matches += 1
        self.last_seen[name] = (t, line_no)
        last = self._last_emit.get(name)
        if last is not None and 0 <= t - last < self.repeat_seconds:
            entry = self._suppressed.get(name)
            if entry is None:
                self._suppressed[name] = [1, line_no, line]
            else:
                entry[0] += 1
                entry[1] = line_no
                entry[2] = line
            return None
        entry = self._suppressed.pop(name, None)
        self._last_emit[name] = t
        return Signal(t, name, line_no, self.text(line), entry[0] if entry else 0)
