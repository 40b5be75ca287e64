"""Validated configs remembered (logist/core/config.py, docs/performance.md#fresh-processes): a
config validated before is read back without the models, with every value the model gives; a
changed file, or the same text with another TOML type, is validated again."""

from __future__ import annotations

import pydantic
import pytest

from logist.core import config as cfg
from logist.core.config_model import Config
from logist.core.errors import ConfigError

FULL = """\
default_agent = "command"
[worktrees]
at_first_step = true
sparse = ["src", "docs"]
[locks]
lease_seconds = 300
[logs]
max_note_bytes = 1000
[sentinel]
max_idle_seconds = 30
[observer]
patterns = { "stuck" = "waiting for input" }
[limits]
max_log_bytes = 8192
[notify]
on = ["SUCCESS"]
bell = false
[harvest]
exclude = ["*.tmp"]
"""


def _write(root, text, name="config.toml"):
    (root / ".logist").mkdir(exist_ok=True)
    (root / ".logist" / name).write_text(text)


def _same(view, model) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, pydantic.BaseModel):
            _same(getattr(view, name), value)
        else:
            assert getattr(view, name) == value, name
            assert type(getattr(view, name)) is type(value), name


def test_the_sections_are_the_models_sections():
    assert cfg.SECTIONS == {n for n, f in Config.model_fields.items()
                            if isinstance(f.annotation, type) and issubclass(f.annotation, pydantic.BaseModel)}


@pytest.mark.parametrize("text", ["", FULL])
def test_a_config_validated_before_is_read_back_alike(tmp_path, text):
    root, cache = tmp_path / "p", tmp_path / "cache"
    root.mkdir()
    _write(root, text)
    first = cfg.load_config(root, cache_dir=cache)
    assert isinstance(first, Config)
    second = cfg.load_config(root, cache_dir=cache)
    assert isinstance(second, cfg.ConfigView)
    _same(second, first)
    _same(second, cfg.load_config(root))  # no cache: the model


def test_a_changed_config_is_validated_again(tmp_path):
    root, cache = tmp_path / "p", tmp_path / "cache"
    root.mkdir()
    _write(root, FULL)
    cfg.load_config(root, cache_dir=cache)
    _write(root, FULL.replace("lease_seconds = 300", "lease_seconds = -1"))
    with pytest.raises(ConfigError, match="lease_seconds"):
        cfg.load_config(root, cache_dir=cache)
    _write(root, 'default_agent = "1979-05-27"\n')
    assert cfg.load_config(root, cache_dir=cache).default_agent == "1979-05-27"
    cfg.load_config(root, cache_dir=cache)
    _write(root, "default_agent = 1979-05-27\n")  # a TOML date, not the string: not the same config
    with pytest.raises(ConfigError, match="default_agent"):
        cfg.load_config(root, cache_dir=cache)
    _write(root, FULL)
    _write(root, "[locks]\nlease_seconds = 0\n", name="config.local.toml")  # the local file counts
    with pytest.raises(ConfigError, match="lease_seconds"):
        cfg.load_config(root, cache_dir=cache)


def test_the_cache_holds_the_config_as_it_is_now(tmp_path):
    root, cache = tmp_path / "p", tmp_path / "cache"
    root.mkdir()
    for n in (1, 2, 3):
        _write(root, f"[locks]\nlease_seconds = {n * 100}\n")
        cfg.load_config(root, cache_dir=cache)
        assert len(list(cache.glob("config-*.json"))) == 1
        assert cfg.load_config(root, cache_dir=cache).locks.lease_seconds == n * 100


def test_nothing_is_written_where_logist_is_not_set_up(repo):
    from logist.store.jobstore import JobStore

    store = JobStore.discover(repo)
    assert store.config.locks.lease_seconds > 0
    assert not (repo / ".git" / "logist").exists()


def test_the_cache_key_follows_the_config_models_source(tmp_path, monkeypatch):
    """A default changed in logist/core/config_model.py (the same version string, as in a
    development checkout) is never read back stale from a cache written before the change."""
    from pathlib import Path

    _write(tmp_path, FULL)
    before = cfg._cache_path(tmp_path / "cache", tmp_path)
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: real(self) + (b"\n# changed" if self.name == "config_model.py" else b""))
    after = cfg._cache_path(tmp_path / "cache", tmp_path)
    assert before is not None and after is not None and before != after
