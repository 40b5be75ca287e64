"""The fast binder of plain command lines (logist/cli/fastargs.py, docs/performance.md#fresh-processes):
whatever it binds, cyclopts binds to the same function with the same arguments, for every
command of the table; what it does not read in full goes to cyclopts; and the hot commands
really run without importing cyclopts (or, for reads and transitions, pydantic and dulwich)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
from conftest import git

from logist.cli import COMMANDS, build_app, fastargs

ALWAYS_CYCLOPTS = [["--help"], ["-h"], ["--version"], ["--"], ["--", "x-1"], ["--no-such-option"],
                   ["-1"], ["x-1", "--help"]]


def _samples(fn) -> list[list[str]]:
    """Command lines built from the function's own signature: each option alone, in the
    forms a user types, repeated, missing its value, with positionals around, all together."""
    sig = inspect.signature(fn)
    opts = [p for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    out: list[list[str]] = [[], ["x-1"], ["x-1", "y-2"], ["x-1", "y-2", "z-3"], [""], ["x-1", "2"], ["x-1", "007"],
                            ["x-1", "0x10"], ["x-1", "2.5"], ["x-1", "٣"]]
    every: list[str] = []
    for p in opts:
        flag = "--" + p.name.replace("_", "-").strip("-")
        ann = str(p.annotation)
        if ann == "bool":
            forms = [[flag], [flag, "x-1"], ["x-1", flag], [f"{flag}=true"], [flag, flag], [flag, "true"]]
            every.append(flag)
        else:
            forms = [[flag, "v a l"], [f"{flag}=v"], [f"{flag}="], [flag, "v", "x-1"], ["x-1", flag, "v"],
                     [flag], [flag, "-v"], [flag, "v", flag, "w"], [flag, "a,b"], [flag, "3"], [f"{flag}=007"],
                     [flag, "0x1f"], [flag, "-1"], [flag, "1.5"], ["x-1", flag, "2"]]
            every += [flag, "4" if "int" in ann else "val"]
        out += forms
    out += [every, ["x-1", *every], [*every, "x-1"]]
    return out + ALWAYS_CYCLOPTS


def _cyclopts_bound(tokens: list[str]):
    command, bound, _ = build_app().parse_args(tokens, exit_on_error=False, print_error=False)
    bound.apply_defaults()
    return command, dict(bound.arguments)


@pytest.mark.parametrize("group,name,target", [(g, n, t) for g, n, t, _ in COMMANDS])
def test_what_the_fast_binder_binds_cyclopts_binds_alike(group, name, target):
    head = [group, name] if group else [name]
    fn, _ = fastargs.command(head)
    for words in _samples(fn):
        fast = fastargs.bind(head + words)
        if fast is None:
            continue
        assert words not in ALWAYS_CYCLOPTS, words
        got_fn, args, kwargs = fast
        assert got_fn is fn
        mine = inspect.signature(fn).bind(*args, **kwargs)
        mine.apply_defaults()
        command, theirs = _cyclopts_bound(head + words)  # raises if cyclopts refuses the line
        assert command is fn, (head, words)
        assert dict(mine.arguments) == theirs, (head, words)


@pytest.mark.parametrize("tokens,expected", [
    (["job", "status", "fix-1"], (["fix-1"], {})),
    (["job", "status", "--json", "fix-1"], (["fix-1"], {"json_": True})),
    (["job", "status"], ([], {})),
    (["job", "list", "--json"], ([], {"json_": True})),
    (["job", "list", "--state", "pending", "--state=draft", "--since", "2h", "--needs-me"],
     ([], {"state": ["pending", "draft"], "since": "2h", "needs_me": True})),
    (["job", "suspend", "fix-1", "--message", "wait for it"], (["fix-1"], {"message": "wait for it"})),
    (["job", "resume", "fix-1"], (["fix-1"], {})),
    (["job", "create", "--title", "T", "--step", "a", "--step", "b", "--activate", "--json"],
     ([], {"title": "T", "step": ["a", "b"], "activate": True, "json_": True})),
    (["init"], ([], {})),
    (["job", "log", "fix-1", "--step", "2"], (["fix-1"], {"step": 2})),
    (["hook", "post-checkout", "a" * 40, "b" * 40, "1"], (["post-checkout", "a" * 40, "b" * 40, "1"], {})),
])
def test_the_hot_commands_take_the_fast_path(tokens, expected):
    fast = fastargs.bind(tokens)
    assert fast is not None, tokens
    assert (fast[1], fast[2]) == expected
    assert _cyclopts_bound(tokens)[0] is fast[0]


@pytest.mark.parametrize("tokens", [
    [], ["job"], ["nope"], ["job", "nope"], ["job", "--help"], ["job", "status", "--help"],
    ["job", "status", "a", "b"], ["job", "suspend", "x", "--message"], ["job", "suspend", "x", "--message", "-m"],
    ["job", "list", "--json=false"], ["job", "status", "--no-json"], ["job", "select"],
    ["job", "trust", "--", "--upload-pack=x"],
])
def test_anything_else_goes_to_cyclopts(tokens):
    assert fastargs.bind(tokens) is None


def test_a_usage_error_still_comes_from_cyclopts(cli):
    r = cli("job", "suspend", "x", "--message")
    assert r.code == 2 and "hint:" in r.err
    r = cli("job", "status", "--no-json")
    assert r.code == 2 and "--no-json" in r.err


PROBE = """
import sys
from logist.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("cyclopts", "pydantic", "dulwich", "rich") if m in sys.modules)
print("\\nHEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _heavy(repo, *args) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, "-C", str(repo), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return [m for m in line[6:].split(",") if m]


def test_reads_import_no_heavy_package(project):
    """A fresh `job status`, `job list --json` and `job metrics` import none of cyclopts,
    pydantic, dulwich, rich once the record at the tip is one logist wrote."""
    out = subprocess.run([sys.executable, "-m", "logist", "-C", str(project), "job", "create", "--title", "Fast",
                          "--step", "one", "--activate", "--json"], capture_output=True, text=True, check=True)
    jid = json.loads(out.stdout)["id"]
    assert _heavy(project, "job", "status", jid) == []
    assert _heavy(project, "job", "list", "--json") == []
    assert _heavy(project, "job", "metrics", jid, "--json") == []


def test_transitions_import_no_heavy_package(project):
    """A fresh `job suspend`/`resume` of a record logist wrote, and a `job create` from plain
    options, import none of cyclopts, pydantic, dulwich, rich (known-valid record and config:
    logist.store.record_view, the config cache); the commits are real: git counts and checks
    them."""
    out = subprocess.run([sys.executable, "-m", "logist", "-C", str(project), "job", "create", "--title", "Fast",
                          "--step", "one", "--activate", "--json"], capture_output=True, text=True, check=True)
    jid = json.loads(out.stdout)["id"]
    before = git(project, "rev-parse", f"refs/heads/logist/{jid}")
    assert _heavy(project, "job", "suspend", jid, "--message", "later") == []
    assert _heavy(project, "job", "resume", jid) == []
    assert _heavy(project, "job", "create", "--title", "Plain", "--step", "one", "--activate") == []
    assert git(project, "rev-list", "--count", f"{before}..refs/heads/logist/{jid}") == "2"
    assert git(project, "log", "-1", "--format=%s", f"logist/{jid}").endswith("SUSPENDED -> PENDING (step 1/1)")
    git(project, "fsck", "--strict", "--no-progress")
