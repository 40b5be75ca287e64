"""The malformed-input table: ids, job files, configs, records, command-line numbers and the
environment. Each case asserts the exit code, words of the message, no traceback, and refs
unchanged (``git for-each-ref`` before and after). See docs/cli.md#limits for the size limits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _core import no_traceback, refs_snapshot
from conftest import git

DEEP_TOML = 'title = "t"\nx = ' + "[" * 5000 + "]" * 5000 + "\n[[steps]]\nprompt = \"p\"\n"
NUL_TOML = 'title = "t"\n[[steps]]\nagent = "command"\ncommand = ["echo", "a\\u0000b"]\n'
NUL_PROMPT_TOML = 'title = "t"\n[[steps]]\nprompt = "a\\u0000b"\n'
GOOD_TOML = 'title = "t"\n[[steps]]\nprompt = "p"\n'

# (name, job file content (str, bytes, or a path such as /dev/zero), exit code, words of the message)
JOB_FILES = [
    ("deep-5000", DEEP_TOML, 1, ["nested too deeply"]),
    ("dev-zero", Path("/dev/zero"), 1, ["larger than 1 MiB"]),
    ("binary", bytes(range(256)) * 4, 1, ["not UTF-8"]),
    ("big", GOOD_TOML + "#" * (2 * 1024 * 1024), 1, ["larger than 1 MiB"]),
    ("nul-in-command", NUL_TOML, 1, ["steps.0.command.1", "NUL"]),
    ("nul-in-prompt", NUL_PROMPT_TOML, 1, ["steps.0.prompt", "NUL"]),
    ("blank-title", 'title = "   "\n[[steps]]\nprompt = "p"\n', 1, ["title", "blank"]),
    ("escape-title", 'title = "a\\u001b]0;pwned\\u0007b"\n[[steps]]\nprompt = "p"\n', 1,
     ["title", "control characters"]),
    ("newline-title", 'title = "a\\nb"\n[[steps]]\nprompt = "p"\n', 1, ["title", "control characters"]),
    ("long-title", f'title = "{"x" * 301}"\n[[steps]]\nprompt = "p"\n', 1, ["title", "at most 300"]),
    ("not-toml", "title = \n", 1, ["not valid TOML"]),
    ("directory", None, 1, ["cannot read job file"]),
]


def expect(cli, args, code, *words):
    before = refs_snapshot(cli.repo)
    r = cli(*args)
    assert r.code == code, (args, r)
    for w in words:
        assert w in r.err, (args, w, r.err)
    assert r.err.startswith("logist: error:"), r.err
    assert "pydantic" not in r.err and "errors.pydantic.dev" not in r.err, r.err
    no_traceback(r.err + r.out)
    assert refs_snapshot(cli.repo) == before, args
    return r


@pytest.mark.parametrize(("name", "content", "code", "words"), JOB_FILES, ids=[c[0] for c in JOB_FILES])
def test_job_files(cli, tmp_path, name, content, code, words):
    if isinstance(content, Path):
        path = content
    elif content is None:
        path = tmp_path / "a-directory.toml"
        path.mkdir()
    else:
        path = tmp_path / f"{name}.toml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    expect(cli, ["job", "create", "--file", str(path)], code, *words)
    assert time.monotonic() - started < 10, "a bounded read fails fast"


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--title", "   ", "--step", "s"], 2, ["--title is empty"]),
    (["--title", "a\x1b[2Jb", "--step", "s"], 1, ["title", "control characters"]),
    (["--title", "x" * 301, "--step", "s"], 1, ["title: too long (at most 300 characters)"]),
    (["--title", "t", "--step", "s", "--id", ""], 2, ["invalid job id ''"]),
    (["--title", "t", "--step", "s", "--id", " "], 2, ["invalid job id"]),
], ids=["blank-title", "escape-title", "301-title", "empty-id", "space-id"])
def test_create_options(cli, args, code, words):
    r = expect(cli, ["job", "create", *args], code, *words)
    assert "validation error" not in r.err and "input_value" not in r.err


CONFIGS = [
    ("binary", bytes(range(256)) * 4, ["not UTF-8"]),
    ("deep", ("a = " + "[" * 5000 + "]" * 5000 + "\n").encode(), ["nested too deeply"]),
    ("big", b"#" * (2 * 1024 * 1024), ["larger than 1 MiB"]),
    ("not-toml", b"[worktrees\n", ["not valid TOML"]),
    ("directory", None, ["cannot read", "config.local.toml"]),
    ("log-cap-too-small", b"[limits]\nmax_log_bytes = 10\n", ["limits.max_log_bytes"]),
    ("log-cap-string", b"[limits]\nmax_log_bytes = \"big\"\n", ["limits.max_log_bytes"]),
]


@pytest.mark.parametrize(("name", "content", "words"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_configs(cli, name, content, words):
    path = cli.repo / ".logist" / "config.local.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    r = expect(cli, ["job", "create", "--title", "t", "--step", "s"], 1, *words)
    assert "not set up" not in r.err
    # doctor reports it (and does not crash)
    d = cli("doctor")
    no_traceback(d.err + d.out)
    assert d.code != 3


def test_an_unreadable_main_config_is_not_called_not_set_up(cli):
    cfg = cli.repo / ".logist" / "config.toml"
    cfg.unlink()
    cfg.mkdir()
    r = expect(cli, ["job", "create", "--title", "t", "--step", "s"], 1, "cannot read", "config.toml")
    assert "not set up" not in r.err


@pytest.mark.parametrize(("args", "words"), [
    (["gc", "--keep-days", "-1"], ["--keep-days", "-1"]),
    (["gc", "--keep-days", "nan"], ["--keep-days", "nan"]),
    (["gc", "--keep-days", "inf"], ["--keep-days", "inf"]),
    (["recover", "--cleanup", "--keep-days", "-1"], ["--keep-days"]),
    (["recover", "--cleanup", "--keep-days", "nan"], ["--keep-days"]),
    (["job", "attach", "x", "--timeout", "-1"], ["--timeout must be a number more than 0"]),
    (["job", "attach", "x", "--timeout", "0"], ["--timeout"]),
    (["dashboard", "--interval", "0"], ["--interval"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_numbers_on_the_command_line(cli, args, words):
    r = expect(cli, args, 2, *words)
    assert "still running after" not in r.err


@pytest.mark.parametrize(("args", "words"), [
    (["job", "create", "--title", "t", "--step", "s", "--base", ""], ["--base is empty"]),
    (["job", "create", "--title", "t", "--step", "s", "--agent", " "], ["--agent is empty"]),
    (["job", "list", "--remote", ""], ["invalid remote name ''"]),
    (["job", "run", "--parallel", "0"], ["--parallel must be at least 1"]),
    (["job", "run", "--parallel", "-1"], ["--parallel must be at least 1"]),
    (["recover", "--", ""], ["invalid job id ''"]),
    (["recover", "--abandon", ""], ["invalid job id ''"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_empty_values_are_not_defaults(cli, args, words):
    """An empty value is a mistake, not "use the default" (found by a run of 560 malformed
    command lines: no exit 3, no hang, no ref moved; these seven were accepted)."""
    expect(cli, args, 2, *words)


def test_an_option_after_double_dash_is_explained(cli):
    r = expect(cli, ["job", "trust", "--", "--upload-pack=x", "--yes"], 2, "'--yes'", "after `--`")
    assert "Did you mean --yes" not in r.err
    assert "put options before `--`" in r.err


@pytest.mark.parametrize("args", [["job", "status", "--bogus"], ["bogus"], ["job", "bogus"],
                                  ["gc", "--keep-days", "abc"]])
def test_usage_errors_have_logist_shape(cli, args):
    r = expect(cli, args, 2)
    assert "hint: see `logist" in r.err and "╭" not in r.err


# ----------------------------------------------------------------------------- records

def _commit_record(repo: Path, job_id: str, data: str) -> str:
    """Commit a hand-edited record on top of logist/<id> (plumbing, as a tool or agent might)."""
    import os
    import subprocess

    index = repo / ".git" / "tmp-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    branch = f"refs/heads/logist/{job_id}"

    def g(*args, input=None):
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              input=input, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    g("read-tree", branch)
    oid = g("hash-object", "-w", "--stdin", input=data)
    g("update-index", "--add", "--cacheinfo", f"100644,{oid},.logist/jobs/{job_id}/manifest.json")
    commit = g("commit-tree", g("write-tree"), "-p", branch, "-m", "tamper")
    g("update-ref", branch, commit)
    index.unlink()
    return commit


@pytest.mark.parametrize(("field", "value"), [
    ("cost_usd", "NaN"), ("cost_usd", "-1.5"), ("cost_usd", "1e300"), ("cost_usd", "Infinity"),
    ("tokens", "1" + "0" * 400), ("tokens", "-3"), ("seconds", "-1"),
])
def test_impossible_amounts_make_a_record_invalid(cli, field, value):
    job = cli.ok("job", "create", "--title", "Amounts", "--step", "s").out.strip()
    path = f".logist/jobs/{job}/manifest.json"
    data = json.loads(git(cli.repo, "show", f"logist/{job}:{path}"))
    data[field] = "@value@"
    text = json.dumps(data, indent=2).replace('"@value@"', value)
    bad = _commit_record(cli.repo, job, text)
    r = expect(cli, ["job", "status", job], 1, bad[:12], field)
    assert "invalid" in r.err
    rows = cli.ok("job", "list", "--json").json()
    assert [r["state"] for r in rows if r["id"] == job] == ["INVALID"]


def test_env_job_id_is_validated(cli, monkeypatch):
    job = cli.ok("job", "create", "--title", "Env", "--step", "s").out.strip()
    for bad in ("../x", "", "--upload-pack=x", "a\nb"):
        monkeypatch.setenv("LOGIST_JOB", bad)
        r = cli("job", "status")
        no_traceback(r.err)
        if bad:
            assert r.code == 2 and "invalid job id" in r.err, (bad, r)
        else:  # empty means unset
            assert r.code in (0, 1, 2), r
    monkeypatch.setenv("LOGIST_JOB", job)
    assert job in cli.ok("job", "status").out
