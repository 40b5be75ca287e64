"""The CLI as a person meets it (docs/cli.md, Conventions): an example in every command's
help, flags shown once, one error style."""

from __future__ import annotations

import pytest
from test_docs import help_of, registered_commands


@pytest.mark.parametrize("path", registered_commands(include_hidden=True), ids=lambda p: " ".join(p))
def test_every_command_has_an_example_and_flags_shown_once(path, capsys):
    text = help_of(path, capsys)
    assert "Example: logist " in text or "Example: cd $(logist " in text, \
        f"`logist {' '.join(path)} --help` has no example"
    assert "--no-json" not in text and "[default: False]" not in text and "--empty-" not in text


def test_parse_errors_and_logist_errors_look_the_same(cli):
    parse = cli("job", "list", "--frobnicate")
    ours = cli("job", "status", "no-such-job")
    for r in (parse, ours):
        assert r.out == ""
        assert r.err.startswith("logist: error: "), r.err
        assert "\n  hint: " in r.err, r.err
        assert not any(ch in r.err for ch in "╭╰│"), r.err
    assert (parse.code, ours.code) == (2, 1)


def test_reject_needs_a_message(cli):
    from _core import create_from_toml, refs_snapshot

    job_id = create_from_toml(cli, 'title = "Gate"\nrequires_approval = true\n[[steps]]\nprompt = "p"\n'
                                   '[steps.mock]\nscenario = "success"\n', "--activate")
    assert cli("job", "run", job_id).code == 5  # rests in APPROVAL_REQUIRED
    before = refs_snapshot(cli.repo)
    for args in ((), ("--message", "  ")):
        r = cli("job", "reject", job_id, *args)
        assert r.code == 2 and "reject needs --message" in r.err and "--message" in r.err
    assert refs_snapshot(cli.repo) == before
    assert "PENDING" in cli.ok("job", "reject", job_id, "--message", "handle the empty case").out


def test_job_run_with_only_drafts_names_them_and_activate(cli):
    from _core import create_job

    a = create_job(cli, "--title", "Draft one", "--step", "x")
    r = cli.ok("job", "run")
    assert "no PENDING jobs" in r.out and a in r.out and "logist job activate" in r.out


def test_create_warns_about_uncommitted_changes_the_job_will_not_see(cli):
    (cli.repo / "README.md").write_text("edited, not committed\n")
    r = cli.ok("job", "create", "--title", "Dirty", "--step", "x", "--json")
    assert "uncommitted changes (README.md)" in r.err and "will not see them" in r.err
    job = r.json()
    assert set(job) >= {"id", "state", "step", "step_count", "branch", "worktree", "head", "holder"}
    from conftest import git

    assert "edited" not in git(cli.repo, "show", f"logist/{job['id']}:README.md")
    clean = cli.ok("job", "create", "--title", "Clean", "--step", "x", "--base", "HEAD")
    assert "uncommitted" in clean.err  # still dirty: warned again
    git(cli.repo, "checkout", "--", "README.md")
    assert "uncommitted" not in cli.ok("job", "create", "--title", "Clean", "--step", "x").err


def test_show_budgets_as_a_table_and_json_on_log_and_path(cli):
    from _core import create_from_toml

    job_id = create_from_toml(cli, 'title = "B"\n[budget]\nmax_cost_usd = 2.5\nmax_attempts = 4\n'
                                   '[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "success"\n', "--activate")
    out = cli.ok("job", "show", job_id).out
    assert "{" not in out.split("prompt")[0], out  # no Python dict
    assert "max_cost_usd" in out and "$2.50" in out and "4 per step" in out
    cli.ok("job", "run", job_id)
    log = cli.ok("job", "log", job_id, "--json").json()
    assert log["id"] == job_id and log["step"] == 1 and "mock: done" in log["output"]
    path = cli.ok("job", "path", job_id, "--json").json()
    assert path["id"] == job_id and path["worktree"]
    assert cli("job", "log", job_id, "--json", "--follow").code == 2


def test_attach_to_a_job_that_is_not_running_says_so(cli):
    from _core import create_job

    job_id = create_job(cli, "--title", "Idle", "--step", "x")
    r = cli("job", "attach", job_id)
    assert r.code == 1 and "not running (it is DRAFT" in r.err and "job activate" in r.err
    assert r.out == ""


def test_help_topics_are_the_shipped_docs(cli):
    r = cli.ok("help")
    assert "states" in r.out and "stopping" in r.out and "jobfile" in r.out
    assert cli.ok("help", "stop").out.startswith("# Stopping a running job")
    r = cli("help", "nope")
    assert r.code == 2 and "topics:" in r.err


def test_bash_completion_completes_commands(cli, tmp_path):
    import subprocess

    script = tmp_path / "logist.bash"
    script.write_text(cli.ok("completion", "bash").out)
    line = "logist job st"
    probe = (f'source "{script}"; COMP_WORDS=(logist job st); COMP_CWORD=2; COMP_LINE="{line}"; '
             f'COMP_POINT={len(line)}; _logist; echo "${{COMPREPLY[@]}}"')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30).stdout.split()
    assert {"status", "step", "stop"} <= set(out), out
    for shell in ("zsh", "fish"):
        assert "logist" in cli.ok("completion", shell).out
    assert cli("completion", "tcsh").code == 2


def test_follow_prints_a_header_before_each_step(cli):
    import re

    from _core import create_from_toml, kill_group
    from conftest import run_logist

    job_id = create_from_toml(cli, 'title = "Two"\n[[steps]]\nname = "first"\nprompt = "a"\n[steps.mock]\n'
                                   'scenario = "slow"\ndelay_s = 4.0\n[[steps]]\nname = "second"\nprompt = "b"\n'
                                   '[steps.mock]\nscenario = "success"\n', "--activate")
    r = run_logist("job", "run", "--detach", job_id, cwd=cli.repo)
    assert r.returncode == 0, r.stderr
    runner = int(re.search(r"pid (\d+)", r.stdout).group(1))
    try:
        out = run_logist("job", "attach", job_id, "--timeout", "60", cwd=cli.repo)
        assert out.returncode == 0, out.stderr
    finally:
        kill_group(runner)
    text = out.stdout
    first = text.index(f"── {job_id}: step 1/2 first · agent mock · attempt 1 · run 1 ──")
    second = text.index(f"── {job_id}: step 2/2 second · agent mock · attempt 1 · run 1 ──")
    assert first < text.index("working slowly") < second
    assert text.rstrip().endswith(f"{job_id}: SUCCESS (step 2/2)")


def test_refusals_name_commands_that_exist_and_history_keeps_whole_reasons(cli):
    from _core import create_from_toml, create_job

    job_id = create_job(cli, "--title", "Pending", "--step", "x", "--activate")
    r = cli("job", "approve", job_id)
    assert r.code == 1 and "`logist job run`" in r.err and "`logist job cancel`" in r.err
    assert "start" not in r.err
    long_reason = "word " * 40
    stuck = create_from_toml(cli, 'title = "S"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "stuck"\n',
                             "--activate")
    cli("job", "run", stuck)
    cli.ok("job", "suspend", stuck, "--message", long_reason)
    out = cli.ok("job", "history", stuck).out
    assert long_reason.strip() in out  # not cut at 80 characters
    import re

    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", out)  # local time, with its offset
    for e in cli.ok("job", "history", stuck, "--json").json():
        assert e["t"].endswith("Z")  # ISO 8601 UTC in --json
