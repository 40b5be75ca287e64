"""`.logist/config.toml`: project settings, validated strictly.

A per-machine `.logist/config.local.toml` (git-ignored through .git/info/exclude) overrides it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from logist.core.errors import ConfigError
from logist.core.limits import (
    MAX_CONFIG_BYTES,
    TooLarge,
    has_control,
    human_bytes,
    read_bounded,
)

if TYPE_CHECKING:
    from logist.core.config_model import Config


# The sections of the config (tables of the TOML file); the rest are plain values.
SECTIONS = frozenset({"worktrees", "locks", "logs", "observer", "limits", "notify", "harvest"})


def __getattr__(name: str) -> Any:
    """``Config`` and its sections live in ``logist.core.config_model`` (pydantic), imported
    only where a config is validated."""
    if name in ("Config", "NOTIFY_STATES", "WorktreeConfig", "LockConfig", "LogConfig", "LimitsConfig", "HarvestConfig",
                "ObserverConfig", "NotifyConfig"):
        from logist.core import config_model

        return getattr(config_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from logist.core.tomlcompat import tomllib  # here: a config read back from its cache parses no TOML

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
    from pydantic import ValidationError

    from logist.core.config_model import Config

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


def load_config(project_root: Path, cache_dir: Path | None = None) -> Config:
    """The merged config of a project (defaults when there is no file).

    ``cache_dir``: where validated configs are remembered (the repository's logist cache):
    the same merged data validated before is read from its dump there, as a
    :class:`ConfigView`, without the models or the TOML parser (docs/performance.md#fresh-processes).
    The cache can only miss: its key is logist's version, the config model's source and the bytes
    of both files.
    """
    path = _cache_path(cache_dir, project_root) if cache_dir is not None else None
    if path is not None:
        try:
            dump = json.loads(path.read_bytes())
        except (OSError, ValueError):
            dump = None
        if isinstance(dump, dict) and dump.keys() >= SECTIONS:
            return cast("Config", ConfigView(dump))
    layers = read_layers(project_root)
    data = _merged(layers)
    from pydantic import ValidationError

    from logist.core.config_model import Config

    try:
        config = Config.model_validate(data)
    except ValidationError:
        parts, why = model_error(layers) or ([], "invalid")
        raise ConfigError(f"{where(layers, parts)}: {why}", hint=MODEL_HINT) from None
    if path is not None:
        _remember(path, config.model_dump_json().encode())
    return config


def _cache_path(cache_dir: Path, project_root: Path) -> Path | None:
    """Where the validated dump of the config files as they are now would be (the key: logist's
    version, the config model's source and the files' bytes, so no TOML is parsed on a hit, and
    a default changed by an update of logist is never read back stale); None when a file cannot be
    read (the validation then says why)."""
    from logist import __version__

    try:  # CPython's own sha1 (hashlib would load OpenSSL first)
        from _sha1 import sha1  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        from hashlib import sha1
    parts = [__version__.encode()]
    try:  # and the model's source: a default changed within one version misses the cache too
        parts.append(Path(__file__).with_name("config_model.py").read_bytes())
    except OSError:  # pragma: no cover - installed without sources
        pass
    for file in config_files(project_root):
        try:
            parts.append(b"1" + read_bounded(file, MAX_CONFIG_BYTES))
        except FileNotFoundError:
            parts.append(b"0")
        except (OSError, TooLarge):
            return None
    key = sha1(b"".join(len(p).to_bytes(8, "big") + p for p in parts)).hexdigest()
    return cache_dir / f"config-{key}.json"


def _remember(path: Path, dump: bytes) -> None:
    """Write the dump (atomically) and drop the dumps of earlier configs: the cache holds the
    config as it is now (another one is validated again)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(dump)
        os.replace(tmp, path)
        for old in path.parent.glob("config-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache: failing to remember only costs a validation later


class _SectionView:
    """One section of a validated config's dump, by attribute (``config.locks.lease_seconds``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


class ConfigView:
    """A validated config read back from its dump: the attributes of ``Config`` (sections as
    objects, every value as the model dumped it). tests/test_config_cache.py compares it with
    the model."""

    def __init__(self, dump: dict[str, Any]) -> None:
        for key, value in dump.items():
            self.__dict__[key] = _SectionView(value) if key in SECTIONS else value


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
