"""Where the real agent CLIs are installed and how each is pointed at the scripted model server.

``tests/real_agents/install.sh`` installs them (versions in ``versions.txt``) into a prefix,
``.real-agents/`` at the repository root unless ``LOGIST_REAL_AGENTS_PREFIX`` says otherwise.
:func:`agent_env` gives the environment a CLI needs to talk to the model server at ``url`` the
way each CLI documents it (endpoint and key from the environment, or its own config file in a
private HOME), and nothing else of the machine's: HOME, XDG dirs and the CLI's state live under
``home``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("claude", "codex", "gemini", "cline", "aider")

#: A key shape no provider issues; the scripted server accepts any key.
TEST_KEY = "scripted-test-key-0001"


# Read once, at import: the test fixtures clear LOGIST_* variables from each test's environment.
_PREFIX = Path(os.environ.get("LOGIST_REAL_AGENTS_PREFIX") or ROOT / ".real-agents")


def prefix() -> Path:
    """The install prefix of the real CLIs (``LOGIST_REAL_AGENTS_PREFIX``, default
    ``.real-agents/`` at the repository root)."""
    return _PREFIX


def bin_dir() -> Path:
    return prefix() / "bin"


def pinned_versions() -> dict[str, str]:
    """``{cli: version}`` from ``versions.txt``."""
    out: dict[str, str] = {}
    for line in (Path(__file__).parent / "versions.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            out[parts[0]] = parts[1]
    return out


def installed(name: str) -> Path | None:
    """The CLI's executable in the prefix, or None when it is not installed there."""
    exe = bin_dir() / name
    return exe if exe.exists() and os.access(exe, os.X_OK) else None


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: the prefix's bin first on PATH, private HOME and XDG dirs, no
    proxies, no colour."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(home)
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state")):
        env[var] = str(home / sub)
    env["NO_COLOR"] = "1"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "Real Agent Test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "real-agents@example.invalid"
    home.mkdir(parents=True, exist_ok=True)
    return env


def agent_env(name: str, url: str | None, home: Path, *, key: str | None = TEST_KEY
              ) -> dict[str, str]:
    """The environment for CLI ``name`` to use the model server at ``url`` (None: no endpoint
    configured, as on a fresh machine) with API key ``key`` (None: no key)."""
    env = base_env(home)
    if name == "claude":
        # Claude Code: ANTHROPIC_BASE_URL + ANTHROPIC_API_KEY; no update checks or telemetry.
        env["DISABLE_AUTOUPDATER"] = "1"
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        if url:
            env["ANTHROPIC_BASE_URL"] = url
        if key:
            env["ANTHROPIC_API_KEY"] = key
    elif name == "codex":
        # Codex: a model provider in $CODEX_HOME/config.toml (its documented way to use another
        # endpoint); the key in the variable the provider names. No WebSocket transport.
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        env["CODEX_HOME"] = str(codex_home)
        if url:
            (codex_home / "config.toml").write_text(
                'model_provider = "scripted"\n'
                "[model_providers.scripted]\n"
                'name = "scripted"\n'
                f'base_url = "{url}/v1"\n'
                'env_key = "SCRIPTED_API_KEY"\n'
                'wire_api = "responses"\n'
                "supports_websockets = false\n"
                "request_max_retries = 8\n"
                "stream_max_retries = 8\n"
                "stream_idle_timeout_ms = 10000\n")
            if key:
                env["SCRIPTED_API_KEY"] = key
        elif key:
            env["CODEX_API_KEY"] = key
    elif name == "gemini":
        # Gemini CLI: GEMINI_API_KEY + GOOGLE_GEMINI_BASE_URL, with the API-key auth type
        # selected in ~/.gemini/settings.json (with only the base URL set, 0.61 picks its
        # "gateway" auth type and then refuses it: "Invalid auth method selected.").
        settings = home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text('{"security": {"auth": {"selectedType": "gemini-api-key"}}, '
                            '"general": {"disableAutoUpdate": true}, '
                            '"privacy": {"usageStatisticsEnabled": false}}\n')
        if url:
            env["GOOGLE_GEMINI_BASE_URL"] = url
        if key:
            env["GEMINI_API_KEY"] = key
    elif name == "cline":
        # Cline CLI: reads no endpoint from the environment; `cline auth` stores the provider
        # (openai-compatible, base URL, key, model) in ~/.cline/data/settings/providers.json.
        if url:
            import subprocess
            subprocess.run([str(installed("cline") or "cline"), "auth", "-p", "openai-compatible",
                            "-k", key or "", "-m", "gpt-scripted", "-b", f"{url}/v1"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=True)
    elif name == "aider":
        # aider (litellm): OPENAI_API_BASE + OPENAI_API_KEY, model openai/<name>; no network
        # look-ups of model prices.
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        if url:
            env["OPENAI_API_BASE"] = f"{url}/v1"
            env["AIDER_MODEL"] = "openai/gpt-4o-mini"
        if key:
            env["OPENAI_API_KEY"] = key
    else:
        raise ValueError(f"unknown agent {name!r}")
    return env
