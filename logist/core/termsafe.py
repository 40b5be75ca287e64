"""Text that is safe to show on a terminal: control and escape sequences shown, not obeyed.

Titles, summaries, reasons, agent output, notes and anything fetched from a remote can hold
bytes a terminal acts on: ``ESC ] 0; title BEL`` renames the window, ``ESC [ 2 J`` clears the
screen, ``ESC [ 6 n`` makes the terminal *type* a reply into its input, a DCS string reaches the
terminal's own parser, bidi overrides reorder what is read. :func:`sanitize` replaces every such
character by a visible escape (``\\x1b``, ``\\x07``, ``\\u202e``), keeping newlines and tabs, so
the text still reads the same and nothing in it reaches the terminal as a command. The CLI
passes everything it prints through it (``logist.cli.output``); logist also writes notes and
commit messages through it, so plain ``git log`` is safe for what logist wrote.
"""

from __future__ import annotations

import re

__all__ = ["has_controls", "json_safe", "sanitize"]

# C0 controls except TAB and LF, DEL, C1 controls (U+0080-U+009F: 8-bit CSI, OSC, DCS...),
# bidi embeddings/overrides/isolates, and the line/paragraph separators.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_NO_NL_RE = re.compile(f"[{_UNSAFE}\n\t]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def sanitize(text: object, *, newlines: bool = True) -> str:
    """``text`` (any object: str() of it) with every control character shown escaped.

    ``newlines=False`` escapes newlines and tabs too (for one-line fields: a table cell, a
    title). Text without control characters is returned as it is (one regex search)."""
    s = text if isinstance(text, str) else str(text)
    pattern = _UNSAFE_RE if newlines else _UNSAFE_NO_NL_RE
    if pattern.search(s) is None:
        return s
    return pattern.sub(_escape, s)


def json_safe(text: str) -> str:
    """JSON text with every character :func:`sanitize` would escape written as a ``\\uXXXX``
    escape: still the same JSON value, and safe to print (``json.dumps(ensure_ascii=False)``
    leaves DEL, C1 controls and bidi overrides raw)."""
    if _UNSAFE_RE.search(text) is None:
        return text
    return _UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def has_controls(text: str, *, newlines: bool = True) -> bool:
    """True when ``text`` holds a character :func:`sanitize` would escape."""
    return (_UNSAFE_RE if newlines else _UNSAFE_NO_NL_RE).search(text) is not None
