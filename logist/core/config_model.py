"""The config models (pydantic): `.logist/config.toml` validated strictly.

Imported by ``logist.core.config`` only where a config is validated: a config validated before
is read from its cached dump (docs/performance.md#fresh-processes).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from logist.core.limits import DEFAULT_MAX_LOG_BYTES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorktreeConfig(_Section):
    dir: str = ""  # empty: $XDG_DATA_HOME/logist/worktrees/<repo>-<hash> (outside the repository)
    at_first_step: bool = True  # a job's worktree is made when its first step starts (false: at job create)
    keep_finished: bool = False  # true: keep a job's worktree after SUCCESS/CANCELED (false: released)
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
