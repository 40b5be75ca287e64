"""A job id that passed validation (docs/refs.md): :class:`JobId`.

A job id names a branch, refs, a worktree and a directory, so it is checked once where it comes
in (the CLI's job argument, a record read from git, a ref listed by git) and carried as a
``JobId`` from there: the ref builders (logist.git.refs) and the store take one without checking
it again, and mypy tells a plain ``str`` from a checked id. ``JobId(text)`` is the one
constructor, and it validates (a ``JobId`` given to it is returned as it is).
"""

from __future__ import annotations

import re
from typing import Any

from logist.core.errors import InvalidIdError

JOB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")  # \Z: "$" would accept a trailing newline


def is_job_id(text: object) -> bool:
    """True if ``text`` is a valid job id: 1-63 characters of a-z, 0-9 and '-', starting with a
    letter or digit, not ending with '-'."""
    return isinstance(text, str) and bool(JOB_ID_RE.match(text)) and not text.endswith("-")


class JobId(str):
    """A valid job id (a ``str``); constructing one validates it (InvalidIdError)."""

    __slots__ = ()

    def __new__(cls, text: object) -> JobId:
        if type(text) is cls:
            return text
        if not is_job_id(text):
            raise InvalidIdError(
                f"invalid job id {repr(text)[:80]}: ids are 1-63 characters of a-z, 0-9 and '-', "
                "starting with a letter or digit",
                hint="run `logist job list` to see the ids of your jobs")
        return super().__new__(cls, text)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """In a record (logist.core.model): a string, checked like any id (a ValueError, so an
        invalid record is a ManifestError naming the field)."""
        from pydantic_core import core_schema

        def check(text: str) -> JobId:
            if not is_job_id(text):
                raise ValueError(f"invalid job id {text!r}")
            return cls(text)

        return core_schema.no_info_after_validator_function(
            check, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema())
