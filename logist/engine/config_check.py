"""The project's config judged the way a step will use it (`job create` refuses a bad one,
`logist doctor` lists every problem)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logist.store.jobstore import JobStore

if TYPE_CHECKING:  # job files (TOML + their models) and the record's models are imported
    # only where a job is created or changed: `job status` needs neither
    pass


@dataclass
class ConfigProblem:
    """One invalid setting of the project's config (what `logist doctor` reports)."""

    path: str  # the file that sets it (.logist/config.toml or .logist/config.local.toml)
    key: str  # dotted, e.g. observer.patterns.deploy or sentinel.silence_seconds
    message: str  # "<file>: <key> (line n): why"
    hint: str


def config_problems(store: JobStore) -> list[ConfigProblem]:
    """Every invalid setting of the project's config (``.logist/config.toml`` +
    ``config.local.toml``), judged the way a step will use it: the model (types, unknown keys:
    the first such error), every ``[observer.patterns]`` regex, and every ``[sentinel]`` setting
    (known key, right type, in range; the raw TOML value, so ``"300"`` is not a number)."""
    from logist.core.config import MODEL_HINT, config_files, model_error, read_layers, source_of, where
    from logist.core.errors import ConfigError

    root = store.config_root()
    try:
        layers = read_layers(root)
    except ConfigError as exc:  # not TOML at all
        path = next((p for p in config_files(root) if exc.message.startswith(f"{p}:")),
                    config_files(root)[0])
        return [ConfigProblem(str(path), "", exc.message, exc.hint or _FIX)]
    out: list[ConfigProblem] = []
    model_key = None
    bad = None if _known_valid(store) else model_error(layers)
    if bad is not None:
        parts, why = bad
        model_key = ".".join(parts)
        out.append(ConfigProblem(str(source_of(layers, parts)), model_key,
                                 f"{where(layers, parts)}: {why}", MODEL_HINT))

    def problem(parts: list[str], why: str, hint: str = _FIX) -> None:
        key = ".".join(parts)
        if key != model_key:  # the model's error already names it
            out.append(ConfigProblem(str(source_of(layers, parts)), key,
                                     f"{where(layers, parts)}: {why}", hint))

    patterns, sentinel = _merged_sections(layers)
    _pattern_problems(patterns, problem)
    _sentinel_problems(sentinel, problem)
    if model_key is None:
        try:
            store.worktrees_dir()
        except ConfigError as exc:
            out.append(ConfigProblem(str(source_of(layers, ["worktrees", "dir"])), "worktrees.dir",
                                     exc.message, exc.hint or _FIX))
    return out


_FIX = "fix it in the file named above and run the command again"


def _known_valid(store: JobStore) -> bool:
    """The config files, as they are, passed the model before (the store read them back from
    the validated-config cache): the model would find nothing, and is not imported."""
    from logist.core.config import ConfigView
    from logist.core.errors import ConfigError

    try:
        return isinstance(store.config, ConfigView)
    except ConfigError:
        return False
Problem = Callable[..., None]  # problem(key parts, why[, hint])


def _merged_sections(layers: list[tuple[Any, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``[observer.patterns]``, ``[sentinel]``) as the config files' layers merge them."""
    patterns: dict[str, Any] = {}
    sentinel: dict[str, Any] = {}
    for _, data in layers:
        observer = data.get("observer")
        if isinstance(observer, dict) and isinstance(observer.get("patterns"), dict):
            patterns.update(observer["patterns"])
        if isinstance(data.get("sentinel"), dict):
            sentinel.update(data["sentinel"])
    return patterns, sentinel


def _pattern_problems(patterns: dict[str, Any], problem: Problem) -> None:
    """Every observer pattern that is not a usable regex."""
    from logist.core.errors import ConfigError
    from logist.engine.observer import validate_patterns

    for name, pattern in patterns.items():
        try:
            validate_patterns({name: pattern})
        except ConfigError as exc:
            problem(["observer", "patterns", str(name)], exc.message)


def _sentinel_problems(sentinel: dict[str, Any], problem: Problem) -> None:
    """Every sentinel setting that is unknown or invalid alone, then what is wrong with the valid
    ones together."""
    from logist.core.errors import ConfigError
    from logist.engine.sentinel import SentinelConfig

    known = set(SentinelConfig.__dataclass_fields__)
    valid = {}
    for key, value in sentinel.items():
        if key not in known:
            problem(["sentinel", str(key)], "unknown sentinel setting",
                    "known settings: " + ", ".join(sorted(known)))
            continue
        try:
            SentinelConfig.from_dict({key: value})
        except ConfigError as exc:
            problem(["sentinel", str(key)], exc.message.removeprefix(f"sentinel.{key} "))
            continue
        valid[key] = value
    try:
        SentinelConfig.from_dict(valid)
    except ConfigError as exc:
        problem(["sentinel"], exc.message)


def check_project_config(store: JobStore) -> None:
    """ConfigError for the first of :func:`config_problems` (naming the file, key and why)."""
    from logist.core.errors import ConfigError

    problems = config_problems(store)
    if problems:
        raise ConfigError(problems[0].message, hint=problems[0].hint)
