"""Checks of a step's agent options (run when a job is created) and its ``env``: values that look
like secrets must be ``${NAME}`` references, resolved from the environment of `logist job run`
only when the step starts, and masked wherever they could be written down."""

from __future__ import annotations

import re
from typing import Any

from logist.core.errors import AgentError


def check_str_list(value: Any, what: str, *, non_empty: bool = False) -> list[str]:
    """``value`` when it is a list of strings, else an AgentError naming ``what``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AgentError(f"{what} must be a list of strings, got {value!r}")
    if non_empty and (not value or not value[0]):
        raise AgentError(f"{what} must be a non-empty list of strings whose first item names a "
                         f"program, got {value!r}")
    return value


def validate_common(agent: str, options: Any) -> None:
    """Type checks of the options every agent understands: model, args, and the flags."""
    if not isinstance(options, dict):
        raise AgentError(f"agent {agent!r}: step options must be a table, got {options!r}")
    model = options.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise AgentError(f"agent {agent!r}: model must be a non-empty string, got {model!r}")
    if "args" in options:
        check_str_list(options["args"], f"agent {agent!r}: args")
        for arg in options["args"]:
            refuse_literal_secret(agent, "args", arg)
    if "env" in options:
        check_env(agent, options["env"])
    for flag in ("skip_permissions", "requires_approval"):
        if flag in options and not isinstance(options[flag], bool):
            raise AgentError(f"agent {agent!r}: {flag} must be true or false, "
                             f"got {options[flag]!r}")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]{0,127})\}")
_REF_HINT = ('pass it by reference: env = { NAME = "${NAME}" } in the job file (or the step), '
             "with NAME set in the environment of `logist job run`")


def refuse_literal_secret(agent: str, where: str, value: str) -> None:
    """AgentError when ``value`` holds a key or token of a known shape (it would be committed
    verbatim in the job's record)."""
    from logist.core.redact import key_shaped, redact

    if key_shaped(value):
        raise AgentError(f"agent {agent!r}: {where} holds what looks like a secret "
                         f"({redact(value)[:80]!r}); it would be committed in the job's record",
                         hint=_REF_HINT)


def check_env(agent: str, env: Any) -> None:
    """``env`` is a table of NAME = value; values that look like secrets must be references."""
    if not isinstance(env, dict):
        raise AgentError(f"agent {agent!r}: env must be a table of NAME = \"value\", got {env!r}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise AgentError(f"agent {agent!r}: env: {name!r} is not a variable name",
                             hint="use letters, digits and _ (not starting with a digit)")
        if not isinstance(value, str):
            raise AgentError(f"agent {agent!r}: env.{name} must be a string, got {value!r}")
        if "\x00" in value:
            raise AgentError(f"agent {agent!r}: env.{name} holds a NUL byte")
        if not _ENV_REF.search(value):
            refuse_literal_secret(agent, f"env.{name}", value)


def resolve_env(options: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The step's ``env`` with each ``${NAME}`` read from ``environ`` (default: this process's
    environment, i.e. that of `logist job run`). The values never go into the record: only the
    references are stored. AgentError naming the variable when one is not set."""
    import os

    table = options.get("env") or {}
    src = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name, value in table.items():
        def one(m: re.Match[str], name: str = name) -> str:
            var = m.group(1)
            if var not in src:
                raise AgentError(f"env.{name} refers to ${{{var}}}, which is not set in the "
                                 "environment of `logist job run`",
                                 hint=f"export {var}=... before running the job")
            return src[var]
        out[name] = _ENV_REF.sub(one, value)
    return out


def secret_values(options: dict[str, Any]) -> list[str]:
    """The values the step's ``env`` references resolve to now (to mask them in notes)."""
    try:
        resolved = resolve_env(options)
    except AgentError:
        return []
    refs = options.get("env") or {}
    return [v for k, v in resolved.items() if v and len(v) >= 4 and v != refs.get(k)]


def mask_values(text: str, values: list[str]) -> str:
    """``text`` with every occurrence of each of ``values`` replaced by ``[REDACTED]``."""
    for v in sorted(set(values), key=len, reverse=True):
        text = text.replace(v, "[REDACTED]")
    return text
