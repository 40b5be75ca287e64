"""Bind a plain command line to a command's function without cyclopts (docs/performance.md#fresh-processes).

Importing cyclopts and building the app costs more than most commands' own work in a fresh
process, so ``logist.cli.main`` first asks :func:`bind` here. It reads the command's function
from the same table the cyclopts app is built from (``logist.cli.COMMANDS``) and its arguments
from the function's own signature, with cyclopts' naming rule (``json_`` is ``--json``,
``needs_me`` is ``--needs-me``). It accepts only what it reads in full and the same way
cyclopts does; anything else returns None and goes to cyclopts, which owns every help text,
every usage error and every less plain option:

- the function takes positional-only parameters (an id), perhaps ``*args: str``, and
  keyword-only options, and no parameter carries cyclopts metadata
  (``Annotated[..., Parameter(...)]``);
- words are ``--name value``, ``--name=value`` or ``--flag`` for a ``bool`` option, or
  positional values; no word starts with ``-`` otherwise (``-h``, ``--help``, ``--version``,
  ``--``, an unknown or repeated option, a negative number all go to cyclopts);
- option types are ``str``, ``Path``, ``bool``, ``int`` (plain ASCII digits) and ``list[str]``
  (repeatable), optionally ``| None``; a value of any other type goes to cyclopts;
- every parameter without a default is given.

``tests/test_cli_fastargs.py`` checks, for every command of the table, that whatever this
binds cyclopts binds to the same function with the same arguments, and that the rest falls
through.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STR = frozenset({"str", "str | None", "Optional[str]"})
_PATH = frozenset({"Path", "Path | None", "Optional[Path]"})
_LIST = frozenset({"list[str]", "list[str] | None", "Optional[list[str]]"})
_INT = frozenset({"int", "int | None", "Optional[int]"})

Bound = tuple[Callable[..., Any], list[Any], dict[str, Any]]


def command(tokens: list[str]) -> tuple[Callable[..., Any], list[str]] | None:
    """(the command's function, the words after its name), or None when the words name none."""
    from logist.cli import _C, COMMANDS

    group, rest = ("job", tokens[1:]) if tokens[:1] == ["job"] else ("", tokens)
    if not rest:
        return None
    for g, name, target, _ in COMMANDS:
        if g == group and name == rest[0]:
            module, _, func = target.partition(":")
            __import__(_C + module)
            return getattr(sys.modules[_C + module], func), rest[1:]
    return None


def bind(tokens: list[str]) -> Bound | None:
    """(function, args, kwargs) for a command line read in full, or None (ask cyclopts)."""
    found = command(tokens)
    if found is None:
        return None
    fn, words = found
    return bind_words(fn, words)


def _kind(annotation: object) -> str | None:
    if not isinstance(annotation, str):  # every command module uses `from __future__ import annotations`
        return None
    if annotation in _STR:
        return "str"
    if annotation in _PATH:
        return "path"
    if annotation in _LIST:
        return "list"
    if annotation in _INT:
        return "int"
    if annotation == "bool":
        return "bool"
    return "other"


def _convert(kind: str | None, text: str) -> Any:
    """The value of ``text`` for a parameter of ``kind`` (None: not plainly one, ask cyclopts).
    An int is plain ASCII digits, which ``int()`` and cyclopts read alike (no sign, no base
    prefix, no decimal point)."""
    if kind == "int":
        return int(text) if text.isascii() and text.isdigit() else None
    return Path(text) if kind == "path" else text


class _Signature:
    """What the fast binder reads of a command's function: its positional-only parameters, the
    ``*args`` name (or None), its keyword-only options by their ``--name`` and each kind."""

    def __init__(self, fn: Callable[..., Any], positional: tuple[str, ...], keywords: tuple[str, ...],
                 rest: str | None, annotations: dict[str, object]) -> None:
        self.fn, self.positional, self.keywords, self.rest = fn, positional, keywords, rest
        self.options = {"--" + name.replace("_", "-").strip("-"): name for name in keywords}
        self.kinds = {name: _kind(annotations.get(name)) for name in (*positional, *keywords)}

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Signature | None:
        """The signature, or None when it has anything the binder leaves to cyclopts."""
        code = getattr(fn, "__code__", None)
        if code is None or code.co_argcount != code.co_posonlyargcount or code.co_flags & 0x08:
            return None  # a parameter that may be positional or named, or **kwargs: cyclopts
        annotations: dict[str, object] = getattr(fn, "__annotations__", {})
        if any("Annotated" in str(a) or "Parameter" in str(a) for a in annotations.values()):
            return None  # cyclopts metadata (another name, a negative flag, ...): cyclopts reads it
        names = code.co_varnames
        npos, nkw = code.co_posonlyargcount, code.co_kwonlyargcount
        keywords = names[npos:npos + nkw]
        if any(name != name.lower() for name in keywords):
            return None  # cyclopts turns PascalCase into words: not worth a second rule
        rest: str | None = None  # *args: the positional values after the named ones (str only)
        if code.co_flags & 0x04:
            rest = names[npos + nkw]
            if annotations.get(rest) != "str":
                return None
        return cls(fn, names[:npos], keywords, rest, annotations)

    def complete(self, args: list[Any], kwargs: dict[str, Any]) -> bool:
        """Every parameter without a default is given."""
        if len(args) < len(self.positional) - len(self.fn.__defaults__ or ()):
            return False
        defaults = self.fn.__kwdefaults__ or {}
        return all(name in kwargs or name in defaults for name in self.keywords)


def _positional(sig: _Signature, args: list[Any], word: str) -> bool:
    """Bind one positional word (False: leave the line to cyclopts)."""
    if len(args) >= len(sig.positional):
        if sig.rest is None:
            return False
        args.append(word)
        return True
    kind = sig.kinds[sig.positional[len(args)]]
    value = _convert(kind, word)
    if kind not in ("str", "path", "int") or value is None:
        return False
    args.append(value)
    return True


def _option(sig: _Signature, kwargs: dict[str, Any], word: str, words: list[str], i: int) -> int | None:
    """Bind the option ``word`` (its value inline or the next word at ``i``); the index of the
    next word, or None to leave the line to cyclopts."""
    option, eq, value = word.partition("=")
    name = sig.options.get(option)
    if name is None:
        return None
    kind = sig.kinds[name]
    if kind == "bool":
        if eq or name in kwargs:
            return None
        kwargs[name] = True
        return i
    if kind not in ("str", "path", "list", "int"):
        return None
    if not eq:
        if i >= len(words):
            return None
        value, i = words[i], i + 1
    if value.startswith("-"):
        return None  # a value that looks like an option: cyclopts decides
    if kind == "list":
        kwargs.setdefault(name, []).append(value)
        return i
    if name in kwargs or _convert(kind, value) is None:
        return None
    kwargs[name] = _convert(kind, value)
    return i


def bind_words(fn: Callable[..., Any], words: list[str]) -> Bound | None:
    """(fn, args, kwargs) for ``words`` read in full, or None (ask cyclopts)."""
    sig = _Signature.of(fn)
    if sig is None:
        return None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-"):
            if not _positional(sig, args, word):
                return None
            continue
        after = _option(sig, kwargs, word, words, i)
        if after is None:
            return None
        i = after
    return (fn, args, kwargs) if sig.complete(args, kwargs) else None
