"""`.logist/config.toml`: project settings, validated strictly.

A per-machine `.logist/config.local.toml` (git-ignored through .git/info/exclude) overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from logist.errors import ConfigError
from logist.tomlcompat import tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorktreeConfig(_Section):
    dir: str = ""  # empty: <git-common-dir>/logist/worktrees


class LockConfig(_Section):
    lease_seconds: float = Field(default=120.0, gt=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)


class LogConfig(_Section):
    max_note_bytes: int = Field(default=256_000, gt=0)


class ObserverConfig(_Section):
    patterns: dict[str, str] = Field(default_factory=dict)
    repeat_seconds: float = Field(default=5.0, ge=0)


class Config(_Section):
    default_agent: str = "mock"
    worktrees: WorktreeConfig = Field(default_factory=WorktreeConfig)
    locks: LockConfig = Field(default_factory=LockConfig)
    logs: LogConfig = Field(default_factory=LogConfig)
    sentinel: dict[str, float | int | bool] = Field(default_factory=dict)
    observer: ObserverConfig = Field(default_factory=ObserverConfig)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the file and run the command again") from None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(project_root: Path) -> Config:
    """The merged config of a project (defaults when there is no file)."""
    base = project_root / ".logist" / "config.toml"
    data = _merge(_read(base), _read(project_root / ".logist" / "config.local.toml"))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{base}: {loc}: {err['msg']}",
                          hint="see docs/cli.md#configuration for the keys") from None
