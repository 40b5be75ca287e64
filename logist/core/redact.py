"""Mask secrets before anything is committed or written to a note, and cap text sizes.

``redact(text)`` replaces the value of anything that looks like a credential with
``[REDACTED]`` (keeping the key of ``password=...`` style assignments, and the scheme of
``Bearer ...``), so a note still says *what* was printed without saying the secret.

Shapes covered: Anthropic/OpenAI keys (``sk-ant-...``, ``sk-proj-...``, ``sk-...``), GitHub
tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``, ``github_pat_``), AWS access key ids
(``AKIA``/``ASIA``), Slack tokens (``xox?-``), Google API keys (``AIza...``), GitLab
(``glpat-``), Hugging Face (``hf_``), Stripe live keys (``sk_live_``/``rk_live_``) and npm
(``npm_``) tokens, Bearer
tokens, JWTs, PEM private key blocks, credentials in URLs (``https://user:secret@host``) and
assignments such as ``password=...``, ``token: ...``, ``OPENAI_API_KEY=...``,
``"client_secret": "..."``.

Everything is one precompiled alternation whose branches all start with a literal, plus a
cheap substring pre-check, so text without any hint costs a few ``in`` tests. This is a
best-effort filter for accidental leaks in agent output, not a guarantee.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["MASK", "cap", "key_shaped", "redact", "redact_data", "redact_json"]

MASK = "[REDACTED]"

# Every branch starts with a literal (case-insensitive where it has to be), so the regex engine
# rejects most positions on the first character. Order matters: longer prefixes first.
_SECRET_RE = re.compile(
    r"(?P<pem>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z))"
    r"|(?P<anthropic>sk-ant-[A-Za-z0-9_\-]{8,})"
    r"|(?P<openai>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,})"
    r"|(?P<github>gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
    r"|(?P<aws>(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<slack>xox[a-z]-[A-Za-z0-9\-]{10,})"
    r"|(?P<gitlab>glpat-[A-Za-z0-9_\-]{20,})"
    r"|(?P<huggingface>\bhf_[A-Za-z0-9]{30,})"
    r"|(?P<stripe>\b[rs]k_live_[A-Za-z0-9]{16,})"
    r"|(?P<npm>\bnpm_[A-Za-z0-9]{36,})"
    r"|(?P<google>AIza[0-9A-Za-z_\-]{30,})"
    r"|(?P<jwt>eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"
    r"|(?P<bearer>[Bb](?i:earer)[ \t]+)(?P<bearer_val>[A-Za-z0-9._~+/\-]{8,}=*)"
    r"|(?P<url>://)(?P<url_user>[^/\s:@'\"]{1,200}):(?P<url_pass>[^/\s@'\"]{1,400})@"
    r"|(?P<assign>(?:[Pp](?i:assword|asswd|assphrase|rivate[_\-]?key)|[Ss](?i:ecret)|[Tt](?i:oken)"
    r"|[Aa](?i:pi[_\-]?key|pikey|ccess[_\-]?key|uth)|[Cc](?i:redentials?))[\"']?[ \t]*[:=][ \t]*)"
    r"(?P<assign_val>\"[^\"\n]*\"|'[^'\n]*'|(?!\[REDACTED\])[^\s,;&\"'}\])]+)",
    re.DOTALL,
)

# Cheap pre-check: a line none of these occurs in (case-insensitively) cannot hold a match, so
# only the other lines go through the regex. Every branch of _SECRET_RE starts with one of the
# literals. Where the literal alone is common in ordinary text, the second element is what must
# follow at that very place for the branch to match (the keyword of an assignment and its ``:``
# or ``=``; ``gh`` and its token letter; what follows ``sk-``): ``"tokens": 12``, ``high``,
# ``keyboard`` or ``task-1`` then cost a ``str.find`` and one anchored match, not a regex pass
# over the line (a JSON listing is one line). ``low`` may only match more than ``text`` does.
_ASSIGN_TAIL = r"[\"']?[ \t]*[:=]"
_HINTS: tuple[tuple[str, re.Pattern[str] | None], ...] = tuple(
    (literal, re.compile(follow) if follow else None) for literal, follow in (
        ("-----begin", None), ("sk-", r"sk-[a-z0-9_\-]{8}"), ("gh", r"gh[pousr]_"), ("github_pat_", None),
        ("akia", r"akia[0-9a-z]{16}"), ("asia", r"asia[0-9a-z]{16}"), ("xox", None), ("aiza", None), ("eyj", None),
        ("bearer", None), ("://", None), ("glpat-", None), ("hf_", None), ("k_live_", None),
        ("npm_", None),
        ("pass", r"pass(?:word|wd|phrase)" + _ASSIGN_TAIL), ("secret", r"secret" + _ASSIGN_TAIL),
        ("token", r"token" + _ASSIGN_TAIL), ("key", r"key" + _ASSIGN_TAIL),
        ("credential", r"credentials?" + _ASSIGN_TAIL), ("auth", r"auth" + _ASSIGN_TAIL),
    ))

_VALUE_WORDS = {"null", "none", "true", "false", "undefined", "required", "optional", "str",
                "string", "int", "bool", "dict", "list"}


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "pem":
        return "-----BEGIN PRIVATE KEY----- " + MASK + " -----END PRIVATE KEY-----"
    if kind == "bearer_val":
        return str(m.group("bearer")) + MASK
    if kind == "url_pass":
        return "://" + str(m.group("url_user")) + ":" + MASK + "@"
    if kind == "assign_val":
        value = str(m.group("assign_val"))
        bare = value.strip("\"'")
        # Keep type names and placeholders readable: `token: str`, `password=None`.
        if len(bare) < 3 or bare.lower() in _VALUE_WORDS or bare.startswith(("$", "{", "<", "%")):
            return m.group(0)
        quote = value[0] if value[:1] in ("'", '"') else ""
        return str(m.group("assign")) + quote + MASK + quote
    return MASK


_KEY_KINDS = {"pem", "anthropic", "openai", "github", "aws", "slack", "google", "gitlab",
              "huggingface", "stripe", "npm", "jwt", "bearer_val", "url_pass"}


def key_shaped(text: str) -> bool:
    """True when ``text`` holds a token of a known provider shape (``sk-...``, ``ghp_...``,
    ``glpat-...``, a JWT, a PEM key, ``Bearer ...``, a password in a URL): what must never be
    written into a job file. Unlike :func:`redact`, ``name=value`` assignments do not count
    (a script that sets ``token = f(x)`` is not a secret)."""
    return any(m.lastgroup in _KEY_KINDS for m in _SECRET_RE.finditer(text))


def redact(text: str) -> str:
    """``text`` with credential-looking values replaced by ``[REDACTED]``."""
    if not text:
        return text
    low = text.lower()
    if len(low) != len(text):  # a character that lowercases to two: positions would drift
        return _SECRET_RE.sub(_replace, text)
    # Only the lines that contain a hint go through the regex: on ordinary output that is a
    # small fraction of the text, and `str.find` runs at memory speed.
    spans: list[tuple[int, int]] = []
    n = len(text)
    for hint, follow in _HINTS:
        i = low.find(hint)
        while i >= 0:
            if follow is not None and follow.match(low, i) is None:
                i = low.find(hint, i + 1)
                continue
            start = text.rfind("\n", 0, i) + 1
            if hint == "-----begin":  # a PEM block runs to its END line (or to the end)
                end_at = low.find("-----end", i)
                i = end_at if end_at >= 0 else n
            end = text.find("\n", i)
            if end < 0:
                end = n
            spans.append((start, end))
            i = low.find(hint, end)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    pos = 0
    cur_s, cur_e = spans[0]
    for s, e in spans[1:]:
        if s <= cur_e + 1:
            cur_e = max(cur_e, e)
            continue
        out.append(text[pos:cur_s])
        out.append(_SECRET_RE.sub(_replace, text[cur_s:cur_e]))
        pos = cur_e
        cur_s, cur_e = s, e
    out.append(text[pos:cur_s])
    out.append(_SECRET_RE.sub(_replace, text[cur_s:cur_e]))
    out.append(text[cur_e:])
    return "".join(out)


def cap(text: str, max_bytes: int, *, head_fraction: float = 0.5) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, keeping its head and its tail.

    The cut part is replaced by one marker line saying how many bytes were dropped. Cuts land
    on character boundaries (never half a UTF-8 sequence).
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= max_bytes:
        return text
    marker_len = len(_marker(len(data)).encode())
    budget = max_bytes - marker_len
    if budget <= 0:
        return data[:max_bytes].decode("utf-8", "ignore")
    head_n = int(budget * head_fraction)
    tail_n = budget - head_n
    head = data[:head_n].decode("utf-8", "ignore")
    tail = data[len(data) - tail_n:].decode("utf-8", "ignore") if tail_n else ""
    dropped = len(data) - len(head.encode()) - len(tail.encode())
    return head + _marker(dropped) + tail


def _marker(dropped: int) -> str:
    return f"\n[... {dropped} bytes cut by logist ...]\n"


def redact_data(data: object) -> object:
    """JSON-like ``data`` with every string in it (keys included) redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data


def redact_json(text: str, *, dumps: Callable[[object], str] | None = None) -> str:
    """JSON text with secrets in its strings masked, still valid JSON.

    The text is redacted as a whole (one pass, only the lines that hold a hint); when a mask
    swallowed JSON syntax (a PEM block that runs past its string), it is parsed and redacted
    value by value instead, and written back with ``dumps`` (default: compact, sorted keys)."""
    import json

    masked = redact(text)
    if masked == text:
        return text
    try:
        json.loads(masked)
        return masked
    except ValueError:
        pass
    data = redact_data(json.loads(text))
    if dumps is None:
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
    return str(dumps(data))
