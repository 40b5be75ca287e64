"""The side process's configuration (docs/observer.md): the observer's patterns and rate limit,
the sentinel's ladder, the step's agent; from JSON text or a mapping, every key checked.

Imported by the side process at start: only ``json`` and logist's errors at load."""

from __future__ import annotations

import json

from logist.core.errors import ConfigError

TYPE_CHECKING = False  # typing itself costs an import (this runs in the side process)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping
    from typing import Any, TypeGuard

    from logist.engine.sentinel import SentinelConfig


class WatchConfig:
    """What the watcher matches and when it intervenes (see :func:`parse_config`)."""

    __slots__ = ("patterns", "sentinel", "repeat_seconds", "max_text", "agent")

    def __init__(self, patterns: dict[str, str] | None = None,
                 sentinel: SentinelConfig | None = None, repeat_seconds: float = 5.0,
                 max_text: int = 300, agent: str | None = None) -> None:
        if sentinel is None:
            from logist.engine.sentinel import SentinelConfig

            sentinel = SentinelConfig()
        self.patterns = dict(patterns or {})
        self.sentinel = sentinel
        self.repeat_seconds = repeat_seconds
        self.max_text = max_text
        self.agent = agent  # the step's agent: its own reader of fatal lines and retry loops

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatchConfig) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return "WatchConfig(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    if isinstance(value, dict):
        return True
    from collections.abc import Mapping

    return isinstance(value, Mapping)


def config_table(config: str | Mapping) -> Mapping:
    """The config as a mapping with only known keys (ConfigError otherwise)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as exc:
            raise ConfigError(f"watcher config is not valid JSON: {exc}") from None
    if not _is_mapping(config):
        raise ConfigError("watcher config must be a JSON object")
    unknown = sorted(set(config) - {"patterns", "sentinel", "observer", "agent"})
    if unknown:
        raise ConfigError(f"unknown watcher config key(s): {', '.join(unknown)}",
                          hint="known keys: patterns, sentinel, observer, agent")
    agent = config.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise ConfigError("watcher config 'agent' must be an agent name")
    return config


def observer_part(config: Mapping) -> tuple[dict[str, str], float, int]:
    """(patterns, repeat_seconds, max_text) of a config table, checked (not compiled)."""
    patterns = config.get("patterns") or {}
    if not _is_mapping(patterns):
        raise ConfigError("watcher config 'patterns' must be an object of name: regex")
    obs = config.get("observer") or {}
    if not _is_mapping(obs) or set(obs) - {"repeat_seconds", "max_text"}:
        raise ConfigError("watcher config 'observer' accepts only repeat_seconds and max_text")
    repeat = obs.get("repeat_seconds", 5.0)
    max_text = obs.get("max_text", 300)
    if isinstance(repeat, bool) or not isinstance(repeat, (int, float)) or repeat < 0:
        raise ConfigError(f"observer.repeat_seconds must be a number >= 0, not {repeat!r}")
    if isinstance(max_text, bool) or not isinstance(max_text, int) or max_text < 20:
        raise ConfigError(f"observer.max_text must be a whole number >= 20, not {max_text!r}")
    return dict(patterns), float(repeat), max_text


def parse_config(config: str | Mapping | None) -> WatchConfig:
    """The watcher's configuration from JSON text or a mapping; ConfigError on anything unknown."""
    from logist.engine.observer import compile_patterns
    from logist.engine.sentinel import SentinelConfig

    if config is None or config == "":
        return WatchConfig()
    table = config_table(config)
    patterns, repeat, max_text = observer_part(table)
    compile_patterns(None, patterns)  # validate now, with a clear error
    sentinel = SentinelConfig.from_dict(table.get("sentinel"))
    return WatchConfig(patterns, sentinel, repeat, max_text, table.get("agent"))
