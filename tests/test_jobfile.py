"""Job files (TOML, docs/jobfile.md): the documented format parses; every kind of bad file gets an
error naming the file, the key and the line, and creates nothing."""

from __future__ import annotations

import re

import pytest
from _core import create_job, no_traceback, record_at, refs_snapshot, tip, write
from conftest import git, wtdir

from logist.core.errors import JobFileError
from logist.core.jobfile import parse_job_file, parse_job_text
from logist.share.install import data_dir

# A job file with every kind of key and comment (docs/jobfile.md has the complete example).
FULL_EXAMPLE = '''\
title = "Add greeting"
prompt = "What the whole job is for"
agent = "mock"                 # default agent of every step
requires_approval = false      # last step ends in APPROVAL_REQUIRED instead of SUCCESS
[budget]                       # max_cost_usd, max_seconds, max_attempts
max_cost_usd = 2.0
[sentinel]                     # per-job overrides of .logist/config.toml (docs/observer.md#thresholds)
silence_seconds = 300
[observer.patterns]            # extra observer regexes, name = "regex"
deploy_started = "DEPLOY STARTED"
[[steps]]
name = "write"
prompt = "Create hello.txt"
agent = "command"              # per-step agent; command agents take an argv list
command = ["python3", "-c", "print('hi')"]
[steps.mock]                   # what the mock agent does in this step
scenario = "success"           # scenarios: docs/jobfile.md
writes = { "hello.txt" = "hello\\n" }
cost_usd = 0.01
'''

MINIMAL = 'title = "t"\n[[steps]]\nprompt = "p"\n'


def test_full_example_parses():
    spec = parse_job_text(FULL_EXAMPLE, "example.toml")
    assert spec.title == "Add greeting" and spec.agent == "mock" and not spec.requires_approval
    assert spec.budget.max_cost_usd == 2.0 and spec.budget.max_attempts == 3
    assert spec.sentinel == {"silence_seconds": 300}
    assert spec.observer.patterns == {"deploy_started": "DEPLOY STARTED"}
    (step,) = spec.steps
    assert step.agent == "command" and step.command == ["python3", "-c", "print('hi')"]
    assert step.mock == {"scenario": "success", "writes": {"hello.txt": "hello\n"}, "cost_usd": 0.01}


def test_full_example_creates_a_job_with_its_fields(cli):
    job_id = create_job(cli, "--file", write(cli.repo.parent / "example.toml", FULL_EXAMPLE))
    rec = record_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert rec["title"] == "Add greeting" and rec["prompt"] == "What the whole job is for"
    assert rec["budget"]["max_cost_usd"] == 2.0
    assert rec["sentinel"] == {"silence_seconds": 300}
    assert rec["observer_patterns"] == {"deploy_started": "DEPLOY STARTED"}
    (step,) = rec["steps"]
    assert step["name"] == "write" and step["agent"] == "command" and step["prompt"] == "Create hello.txt"
    assert step["options"]["command"] == ["python3", "-c", "print('hi')"]
    assert step["status"] == "PENDING"


def test_minimal_file_gets_defaults(tmp_path):
    spec = parse_job_file(write(tmp_path / "j.toml", MINIMAL))
    assert spec.agent == "mock" and spec.steps[0].name is None and spec.budget.max_attempts == 3


def test_a_command_alone_is_a_step():
    spec = parse_job_text('title = "t"\n[[steps]]\ncommand = ["true"]\n')
    assert spec.steps[0].command == ["true"]


def test_integers_are_accepted_where_numbers_are_expected():
    spec = parse_job_text('title = "t"\n[budget]\nmax_cost_usd = 2\nmax_seconds = 60\n' + MINIMAL[12:])
    assert spec.budget.max_cost_usd == 2.0 and spec.budget.max_seconds == 60


# Each bad file: (text, key named in the message, line named in the message or None).
BAD = {
    "unknown top-level key": ('title = "t"\ncolour = "red"\n[[steps]]\nprompt = "p"\n', "colour", 2),
    "unknown key in a step": ('title = "t"\n[[steps]]\nprompt = "p"\n[[steps]]\nprompt = "q"\nfoo = 1\n',
                              "steps.1.foo", 6),
    "same unknown key in the second step": (
        'title = "t"\n[[steps]]\nprompt = "p"\n[[steps]]\nprompt = "q"\nretries = 2\n[[steps]]\n'
        'prompt = "r"\n', "steps.1.retries", 6),
    "unknown key in budget": ('title = "t"\n[budget]\nmax_tokens = 5\n[[steps]]\nprompt = "p"\n',
                              "budget.max_tokens", 3),
    "wrong type: string for a number": (
        'title = "t"\n[budget]\nmax_cost_usd = "2.0"\n[[steps]]\nprompt = "p"\n', "budget.max_cost_usd", 3),
    "wrong type: string for a boolean": (
        'title = "t"\nrequires_approval = "yes"\n[[steps]]\nprompt = "p"\n', "requires_approval", 2),
    "wrong type: number for a string": ('title = 5\n[[steps]]\nprompt = "p"\n', "title", 1),
    "wrong type: float for an integer": (
        'title = "t"\n[budget]\nmax_attempts = 2.5\n[[steps]]\nprompt = "p"\n', "budget.max_attempts", 3),
    "wrong type: command is a string": ('title = "t"\n[[steps]]\ncommand = "ls -l"\n', "steps.0.command", 3),
    "out of range": ('title = "t"\n[budget]\nmax_attempts = 0\n[[steps]]\nprompt = "p"\n',
                     "budget.max_attempts", 3),
    "no steps": ('title = "t"\nsteps = []\n', "steps", 2),
    "steps missing": ('title = "t"\nprompt = "p"\n', "steps", None),
    "title missing": ('[[steps]]\nprompt = "p"\n', "title", None),
    "step without prompt or command": ('title = "t"\n[[steps]]\nname = "x"\n', "steps.0", 2),
    "second step without prompt or command": (
        'title = "t"\n[[steps]]\nprompt = "p"\n\n[[steps]]\nname = "x"\n', "steps.1", 5),
    "blank prompt": ('title = "t"\n[[steps]]\nprompt = "   "\n', "steps.0", 2),
    "steps is a table": ('title = "t"\n[steps]\nprompt = "p"\n', "steps", 2),
    "observer pattern not a string": ('title = "t"\n[observer.patterns]\nx = 1\n' + MINIMAL[12:],
                                      "observer.patterns.x", 3),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_names_file_key_and_line(tmp_path, case):
    text, key, line = BAD[case]
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(JobFileError) as info:
        parse_job_file(path)
    msg = info.value.message
    assert str(path) in msg
    assert f": {key}" in msg, msg
    if line is not None:
        assert f"(line {line})" in msg, msg
    assert "\n" not in msg


def test_not_toml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.toml", 'title = "t"\n[[steps]\nprompt = "p"\n')
    with pytest.raises(JobFileError) as info:
        parse_job_file(path)
    assert str(path) in info.value.message and "line 2" in info.value.message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(JobFileError, match="does not exist"):
        parse_job_file(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00title")
    with pytest.raises(JobFileError, match="bin.toml"):
        parse_job_file(tmp_path / "bin.toml")
    with pytest.raises(JobFileError):
        parse_job_file(tmp_path)  # a directory


def test_missing_file_hint_names_the_example_init_writes(tmp_path):
    with pytest.raises(JobFileError) as info:
        parse_job_file(tmp_path / "nope.toml")
    named = re.search(r"\.logist/[\w.]+\.toml", info.value.hint).group(0)
    assert (data_dir("template") / named).is_file(), named


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_through_the_cli_creates_nothing(cli, case):
    text, key, _ = BAD[case]
    path = write(cli.repo.parent / "bad.toml", text)
    before = refs_snapshot(cli.repo)
    worktrees = wtdir(cli.repo)
    r = cli("job", "create", "--file", path)
    assert r.code == 1, r
    assert r.out == ""
    assert str(path) in r.err and key in r.err
    no_traceback(r.err)
    assert refs_snapshot(cli.repo) == before
    assert not worktrees.exists() or not any(worktrees.iterdir())


@pytest.mark.parametrize(("mock", "word"), [
    ('scenario = "explode"', "scenario"),
    ('cost_usd = "free"', "cost_usd"),
    ('writes = { "../outside.txt" = "x" }', "outside"),
    ('colour = "red"', "colour"),
])
def test_bad_mock_table_creates_nothing(cli, mock, word):
    path = write(cli.repo.parent / "bad.toml", f'title = "t"\n[[steps]]\nprompt = "p"\n[steps.mock]\n{mock}\n')
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", "--file", path)
    assert r.code == 1 and word in r.err
    no_traceback(r.err)
    assert refs_snapshot(cli.repo) == before


def test_unknown_agent_creates_nothing(cli):
    path = write(cli.repo.parent / "bad.toml", 'title = "t"\nagent = "skynet"\n[[steps]]\nprompt = "p"\n')
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", "--file", path)
    assert r.code == 1 and "skynet" in r.err
    assert refs_snapshot(cli.repo) == before


def test_command_line_overrides_the_file(cli):
    path = write(cli.repo.parent / "j.toml", MINIMAL)
    job_id = create_job(cli, "--file", path, "--title", "Other title", "--prompt", "Other prompt")
    rec = record_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert rec["title"] == "Other title" and rec["prompt"] == "Other prompt"
    assert job_id.startswith("other-title-")


def test_job_list_and_status_do_not_import_the_job_file_parser(cli):
    """logist.core.jobfile (TOML job files and their models) is imported by `job create` only:
    `job list` and `job status` (which import logist.engine.job_status) never pay for it, and
    neither does importing logist.engine.jobs (job creation) alone."""
    import subprocess
    import sys

    jid = create_job(cli, "--title", "Lazy", "--step", "x")
    for args in (["job", "list"], ["job", "status", jid], ["job", "status", jid, "--json"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "logist", "-C", str(cli.repo),
                               *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "logist.store.jobstore" in imported, args  # (the import trace is there)
        assert "logist.core.jobfile" not in imported, args
    assert "logist.engine.job_status" in imported  # `job status` does use logist.engine.job_status
    probe = subprocess.run([sys.executable, "-c", "import sys, logist.engine.jobs, logist.engine.job_status; "
                            "print('logist.core.jobfile' in sys.modules)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr


# ---- the project's config is checked at `job create` (what a step would only find later)

# (edit of the shipped .logist/config.toml: (old, new) or a config.local.toml text,
#  file named, key named, why)
BAD_CONFIG = {
    "bad regex": (("[observer.patterns]", '[observer.patterns]\nok = "fine"\nbad = "deploy (started"'),
                  "config.toml", "observer.patterns.bad (line 31)", "invalid regex"),
    "regex matching every line": (("[observer.patterns]", '[observer.patterns]\nall = ".*"'),
                                  "config.toml", "observer.patterns.all", "matches an empty line"),
    "pattern not a string": (("[observer.patterns]", "[observer.patterns]\nnum = 5"),
                             "config.toml", "observer.patterns.num", "valid string"),
    "unknown sentinel key": (("silence_seconds = 300", "silence_secs = 300"),
                             "config.toml", "sentinel.silence_secs (line 26)", "unknown sentinel setting"),
    "sentinel number as a string": (("silence_seconds = 300", 'silence_seconds = "300"'),
                                    "config.toml", "sentinel.silence_seconds", "must be a number, not '300'"),
    "sentinel not a number": (("silence_seconds = 300", 'silence_seconds = "5m"'),
                              "config.toml", "sentinel.silence_seconds", "number"),
    "sentinel boolean as a string": (("silence_seconds = 300", 'enabled = "yes"'),
                                     "config.toml", "sentinel.enabled", "must be true or false"),
    "sentinel out of range": (("silence_seconds = 300", "cpu_idle_fraction = 2"),
                              "config.toml", "sentinel.cpu_idle_fraction", "between 0 and 1"),
    "unknown top-level key": (('default_agent = "mock"', 'default_agent = "mock"\ncolour = "red"'),
                              "config.toml", "colour (line 7)", "unknown key"),
    "bad value in config.local.toml": ("[sentinel]\nsilence_seconds = -1\n",
                                       "config.local.toml", "sentinel.silence_seconds (line 2)", "> 0"),
    "bad regex in config.local.toml": ('[observer.patterns]\nx = "["\n',
                                       "config.local.toml", "observer.patterns.x", "invalid regex"),
}


def _break_config(repo, edit) -> None:
    cfg = repo / ".logist" / "config.toml"
    if isinstance(edit, tuple):
        old, new = edit
        text = cfg.read_text()
        assert text.count(old) == 1, old
        cfg.write_text(text.replace(old, new))
    else:
        write(repo / ".logist" / "config.local.toml", edit)


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_bad_project_config_is_refused_at_create_and_creates_nothing(cli, case):
    edit, file, key, why = BAD_CONFIG[case]
    _break_config(cli.repo, edit)
    jobfile = write(cli.repo.parent / "ok.toml", MINIMAL)
    before = refs_snapshot(cli.repo)
    worktrees_before = git(cli.repo, "worktree", "list", "--porcelain")
    for args in (["--title", "t", "--step", "s"], ["--file", jobfile], ["--title", "t", "--step", "s", "--activate"]):
        r = cli("job", "create", *args)
        assert r.code == 1, (case, r)
        assert r.out == ""
        no_traceback(r.err)
        first = r.err.splitlines()[0]
        assert first.startswith(f"logist: error: {cli.repo / '.logist' / file}: {key}"), first
        assert why in first, first
        assert r.err.splitlines()[1].startswith("  hint: "), r.err
    assert refs_snapshot(cli.repo) == before
    assert git(cli.repo, "for-each-ref", "refs/heads/logist/", "refs/logist/") == ""
    assert git(cli.repo, "worktree", "list", "--porcelain") == worktrees_before


def test_valid_project_config_with_patterns_and_sentinel_creates(cli):
    _break_config(cli.repo, ("[observer.patterns]", '[observer.patterns]\ndeploy = "DEPLOY (STARTED|DONE)"'))
    write(cli.repo / ".logist" / "config.local.toml", "[sentinel]\nsilence_seconds = 60\nenabled = false\n")
    assert create_job(cli, "--title", "t", "--step", "s")
