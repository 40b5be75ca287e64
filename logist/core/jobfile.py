"""Job files (TOML), the source of `logist job create --file`.

Unknown keys, wrong types, no steps, a step with neither prompt nor command: a JobFileError
naming the file, the key and (where it can be found) the line. Nothing is created on error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from logist.core.errors import JobFileError
from logist.core.limits import MAX_JOB_FILE_BYTES, TooLarge, has_control, human_bytes, read_bounded
from logist.core.tomlcompat import tomllib


class _Strict(BaseModel):
    # strict: a TOML string is not a number or a boolean ("yes" is not true); ints are floats.
    model_config = ConfigDict(extra="forbid", strict=True)


def check_title(v: str) -> str:
    """A title is one line of text: not blank, no control characters (a title is printed in
    listings and commit messages)."""
    if not v.strip():
        raise ValueError("a title cannot be blank")
    if has_control(v):
        raise ValueError("a title cannot hold control characters (newlines, tabs, escapes)")
    return v


def _nul_path(value: Any, path: str) -> str | None:
    """The key path of the first string holding a NUL byte (no command or argument can)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)  # type: ignore[assignment]
    else:
        return None
    for k, v in items:
        if isinstance(k, str) and "\x00" in k:
            return f"{path}.{k!r}".lstrip(".")
        found = _nul_path(v, f"{path}.{k}".lstrip("."))
        if found:
            return found
    return None


class BudgetFile(_Strict):
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)


class ObserverFile(_Strict):
    patterns: dict[str, str] = Field(default_factory=dict)


class StepFile(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    prompt: str = ""
    agent: str | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    requires_approval: bool = False
    mock: dict[str, Any] | None = None
    model: str | None = None
    args: list[str] = Field(default_factory=list)
    skip_permissions: bool = False
    output_format: Literal["json", "stream-json"] | None = None
    allowed_tools: list[str] | None = None  # claude: --allowedTools (docs/agents.md)
    env: dict[str, str] = Field(default_factory=dict)  # NAME = "${NAME}": read at run time

    @model_validator(mode="after")
    def _prompt_or_command(self) -> StepFile:
        if not self.prompt.strip() and not self.command:
            raise ValueError("a step needs a prompt or a command")
        return self

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.command:
            opts["command"] = list(self.command)
        if self.mock is not None:
            opts["mock"] = dict(self.mock)
        if self.model:
            opts["model"] = self.model
        if self.args:
            opts["args"] = list(self.args)
        if self.skip_permissions:
            opts["skip_permissions"] = True
        if self.output_format:
            opts["output_format"] = self.output_format
        if self.allowed_tools:
            opts["allowed_tools"] = list(self.allowed_tools)
        if self.env:
            opts["env"] = dict(self.env)
        return opts


class JobFile(_Strict):
    title: str = Field(min_length=1, max_length=300)
    prompt: str = ""
    agent: str = "mock"
    requires_approval: bool = False
    budget: BudgetFile = Field(default_factory=BudgetFile)
    sentinel: dict[str, float | int | bool] = Field(default_factory=dict)
    observer: ObserverFile = Field(default_factory=ObserverFile)
    env: dict[str, str] = Field(default_factory=dict)  # every step's; a step's own env wins
    steps: list[StepFile] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = _nul_path(data, "")
        if where:
            raise ValueError(f"{where} holds a NUL byte (no command, argument or prompt can)")
        return data

    @field_validator("title")
    @classmethod
    def _title_is_one_line(cls, v: str) -> str:
        return check_title(v)


def _line_of(text: str, key: str, start: int = 0, end: int | None = None) -> int | None:
    pat = re.compile(rf"^[ \t]*(\[+[ \t]*)?{re.escape(key)}\b", re.M)
    m = pat.search(text, start, len(text) if end is None else end)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _line_for(text: str, parts: list[str]) -> int | None:
    """The line of the key at ``parts`` (e.g. ``steps.1.prompt``): within the n-th ``[[steps]]``."""
    if len(parts) >= 2 and parts[0] == "steps" and parts[1].isdigit():
        headers = list(re.finditer(r"^[ \t]*\[\[[ \t]*steps[ \t]*\]\]", text, re.M))
        n = int(parts[1])
        if n < len(headers):
            start = headers[n].start()
            end = headers[n + 1].start() if n + 1 < len(headers) else len(text)
            key = next((p for p in reversed(parts[2:]) if not p.isdigit()), None)
            line = _line_of(text, key, start, end) if key else None
            return line or text.count("\n", 0, start) + 1
    last_name = next((p for p in reversed(parts) if not p.isdigit()), None)
    return _line_of(text, last_name) if last_name else None


def parse_job_file(path: str | Path) -> JobFile:
    path = Path(path)
    try:
        raw = read_bounded(path, MAX_JOB_FILE_BYTES)
    except FileNotFoundError:
        raise JobFileError(f"job file {path} does not exist",
                           hint="check the path, or start from .logist/job.example.toml "
                                "(written by `logist init`)") from None
    except TooLarge:
        raise JobFileError(f"job file {path} is larger than {human_bytes(MAX_JOB_FILE_BYTES)}; "
                           "not a job file",
                           hint="see `logist help jobfile` for the format; nothing was created") from None
    except OSError as exc:
        raise JobFileError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobFileError(f"job file {path} is not UTF-8 text (byte {exc.start}); a job file is TOML",
                           hint="see `logist help jobfile` for the format; nothing was created") from None
    return parse_job_text(text, str(path))


def parse_job_text(text: str, where: str = "<job file>") -> JobFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise JobFileError(f"{where}: nested too deeply to be a job file",
                           hint="see `logist help jobfile` for the format; nothing was created") from None
    try:
        return JobFile.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(f"{where}: {describe(exc, text)}",
                           hint="see `logist help jobfile` for the format; nothing was created") from None


def describe(exc: ValidationError, text: str = "") -> str:
    """``key (line n): why`` for the first error of a job's validation: one line, no pydantic
    dump (no input echo, no URL)."""
    err = exc.errors()[0]
    parts = [str(p) for p in err["loc"]]
    key = ".".join(parts) or "(top level)"
    line = _line_for(text, parts) if text else None
    at = f" (line {line})" if line else ""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "string_too_long":
        msg = f"too long (at most {err.get('ctx', {}).get('max_length')} characters)"
    return f"{key}{at}: {msg}" if parts else msg
