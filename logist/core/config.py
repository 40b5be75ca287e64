"""`.logist/config.toml`: project settings, validated strictly.

A per-machine `.logist/config.local.toml` (git-ignored through .git/info/exclude) overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from logist.core.errors import ConfigError
from logist.core.limits import (
    DEFAULT_MAX_LOG_BYTES,
    MAX_CONFIG_BYTES,
    TooLarge,
    has_control,
    human_bytes,
    read_bounded,
)
from logist.core.tomlcompat import tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorktreeConfig(_Section):
    dir: str = ""  # empty: $XDG_DATA_HOME/logist/worktrees/<repo>-<hash> (outside the repository)
    at_first_step: bool = False  # make a job's worktree when its first step starts, not at job create
    keep_finished: bool = True  # false: release a job's worktree when it ends in SUCCESS/CANCELED
    sparse: list[str] = Field(default_factory=list)  # directories a job's worktree checks out (empty: all)


class LockConfig(_Section):
    lease_seconds: float = Field(default=120.0, gt=0, le=7 * 24 * 3600)
    heartbeat_seconds: float = Field(default=15.0, gt=0)


class LogConfig(_Section):
    max_note_bytes: int = Field(default=256_000, gt=0)


class LimitsConfig(_Section):
    max_log_bytes: int = Field(default=DEFAULT_MAX_LOG_BYTES, ge=4096)


class HarvestConfig(_Section):
    max_file_bytes: int = Field(default=5_000_000, ge=1)  # new files larger stay out of the harvest
    exclude: list[str] = Field(default_factory=list)  # gitignore-like globs left out of the harvest
    include: list[str] = Field(default_factory=list)  # globs always harvested (over the defaults)


class ObserverConfig(_Section):
    patterns: dict[str, str] = Field(default_factory=dict)
    repeat_seconds: float = Field(default=5.0, ge=0)


NOTIFY_STATES = ("INTERVENTION_REQUIRED", "APPROVAL_REQUIRED", "SUCCESS", "CANCELED", "SUSPENDED")


class NotifyConfig(_Section):
    """Telling a person (docs/cli.md#notifications). ``command`` is honoured only from
    .logist/config.local.toml: a command in the committed file would run for everyone who
    clones the repository."""

    command: list[str] = Field(default_factory=list)  # argv, never a shell line
    on: list[str] = Field(default_factory=lambda: ["INTERVENTION_REQUIRED", "APPROVAL_REQUIRED", "SUCCESS"])
    bell: bool = True

    def model_post_init(self, _context: Any) -> None:
        bad = [s for s in self.on if s not in NOTIFY_STATES]
        if bad:
            raise ValueError(f"notify.on: unknown state {bad[0]!r}; one of {', '.join(NOTIFY_STATES)}")


class Config(_Section):
    default_agent: str = "mock"
    worktrees: WorktreeConfig = Field(default_factory=WorktreeConfig)
    locks: LockConfig = Field(default_factory=LockConfig)
    logs: LogConfig = Field(default_factory=LogConfig)
    sentinel: dict[str, float | int | bool] = Field(default_factory=dict)
    observer: ObserverConfig = Field(default_factory=ObserverConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    harvest: HarvestConfig = Field(default_factory=HarvestConfig)


def _read(path: Path) -> dict[str, Any]:
    """The TOML data of one config file ({} when it does not exist); ConfigError naming the
    file when it cannot be read, is too large, is not UTF-8 text or not TOML."""
    fix = "fix the file and run the command again"
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return {}
    except TooLarge:
        raise ConfigError(f"{path}: larger than {human_bytes(MAX_CONFIG_BYTES)}; not a config file",
                          hint=fix) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}",
                          hint="it must be a TOML file logist can read; fix it and run the command again") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a config file is TOML",
                          hint=fix) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint=fix) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file", hint=fix) from None


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_files(project_root: Path) -> list[Path]:
    """The project's config files, in the order they are merged (a later one overrides)."""
    return [project_root / ".logist" / "config.toml", project_root / ".logist" / "config.local.toml"]


def read_layers(project_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, its raw TOML data) for each config file, in merge order ({} when absent)."""
    return [(path, _read(path)) for path in config_files(project_root)]


def _has(data: Any, parts: list[str]) -> bool:
    for p in parts:
        if not isinstance(data, dict) or p not in data:
            return False
        data = data[p]
    return True


def source_of(layers: list[tuple[Path, dict[str, Any]]], parts: list[str]) -> Path:
    """The file whose value of the key at ``parts`` wins (the last one that sets it; else the
    first file, .logist/config.toml)."""
    for path, data in layers[::-1]:
        if _has(data, parts):
            return path
    return layers[0][0]


def line_of(path: Path, parts: list[str]) -> int | None:
    """Best effort: the line of ``key = ...`` under its ``[section]`` (for error messages)."""
    import re

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not parts:
        return None
    *section, key = parts
    quoted = rf'(?:{re.escape(key)}|"{re.escape(key)}"|\'{re.escape(key)}\')'
    start, end = 0, len(text)
    if section:
        head = re.search(r"^[ \t]*\[[ \t]*" + r"[ \t]*\.[ \t]*".join(map(re.escape, section))
                         + r"[ \t]*\][ \t]*(?:#.*)?$", text, re.M)
        if head:
            start = head.end()
            nxt = re.compile(r"^[ \t]*\[", re.M).search(text, start)
            end = nxt.start() if nxt else len(text)
        else:  # a dotted key (sentinel.x = ...) or an inline table: look for the key anywhere
            start = 0
    m = re.compile(rf"^[ \t]*(?:[\w.\"' ]*\.)?[ \t]*{quoted}[ \t]*=", re.M).search(text, start, end)
    return text.count("\n", 0, m.start()) + 1 if m else None


def where(layers: list[tuple[Path, dict[str, Any]]], parts: list[str]) -> str:
    """``<file>: <dotted key> (line n)``: where a setting comes from, for an error message."""
    path = source_of(layers, parts)
    line = line_of(path, parts) if path.is_file() else None
    return f"{path}: {'.'.join(parts)}" + (f" (line {line})" if line else "")


def _merged(layers: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _, layer in layers:
        data = _merge(data, layer)
    return data


def model_error(layers: list[tuple[Path, dict[str, Any]]]) -> tuple[list[str], str] | None:
    """(key path, why) of the first error of the merged config against the model; None if valid."""
    data = _merged(layers)
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # the key's path in the data (pydantic adds the names of union members: drop them)
        parts: list[str] = []
        node: Any = data
        for p in (str(x) for x in err["loc"]):
            if not isinstance(node, dict) or p not in node:
                break
            parts.append(p)
            node = node[p]
        return parts, "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return None


MODEL_HINT = "fix it (`logist help cli` lists the keys under Configuration) and run the command again"


def load_config(project_root: Path) -> Config:
    """The merged config of a project (defaults when there is no file)."""
    layers = read_layers(project_root)
    try:
        return Config.model_validate(_merged(layers))
    except ValidationError:
        parts, why = model_error(layers) or ([], "invalid")
        raise ConfigError(f"{where(layers, parts)}: {why}", hint=MODEL_HINT) from None


# ---- worktrees.dir: a directory logist owns, never the system's or the repository's -------------

WORKTREES_MARKER = ".logist-worktrees"  # written by logist in a worktrees dir it created (or adopted empty)
# Never a worktrees dir, nor inside one (except the temporary directories).
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                 "/sbin", "/sys", "/usr", "/var", "/opt", "/srv", "/snap", "/root", "/System", "/Library",
                 "/Applications", "/private", "/Volumes", "/nix")
# Never a worktrees dir themselves (a subdirectory is fine).
_SYSTEM_ROOTS = ("/", "/home", "/Users", "/tmp", "/var/tmp", "/mnt", "/media", "/private/tmp")
_TEMP_TREES = ("/tmp", "/var/tmp", "/private/tmp", "/private/var/folders", "/var/folders")


def _inside(p: str, top: str) -> bool:
    return p == top or p.startswith(top.rstrip("/") + "/")


def worktrees_dir_problem(path: Path, *, common_dir: Path, logist_dir: Path) -> str | None:
    """Why ``path`` (the resolved ``worktrees.dir``) cannot hold job worktrees, or None.

    Refused: ``/`` and other system paths, a path that is or holds the git directory (the
    project itself, ``.git``), a place inside the git directory other than logist's own, and
    anything that exists but is not a directory (``/dev/null``, a file)."""
    raw = str(path)
    if "\x00" in raw or has_control(raw):
        return "it holds control characters"
    if not path.is_absolute():
        return "it is not an absolute path"
    forms = {os.path.normpath(raw), os.path.realpath(raw)}
    home = os.path.realpath(os.path.expanduser("~"))
    for p in forms:
        if p in _SYSTEM_ROOTS or p == home:
            return f"{p} is a system or home directory, not one for worktrees"
        temp = any(_inside(p, t) for t in _TEMP_TREES)
        in_home = home not in ("/", "") and _inside(p, home)
        if not temp and not in_home and any(_inside(p, s) for s in _SYSTEM_TREES):
            return f"{p} is a system path"
    real = os.path.realpath(raw)
    git_dir = os.path.realpath(common_dir)
    if _inside(git_dir, real):
        return f"it {'is' if real == git_dir else 'holds'} the git directory {git_dir}"
    if _inside(real, git_dir) and not _inside(real, os.path.realpath(logist_dir)):
        return f"it is inside the git directory {git_dir} (only {logist_dir} is logist's there)"
    if os.path.lexists(raw) and not os.path.isdir(raw):
        return "it exists and is not a directory"
    return None
