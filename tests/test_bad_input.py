"""Bad input (docs/architecture.md#invariants, 7): a clear message on stderr, a non-zero exit (2 usage,
1 refused, 4 busy), no traceback, and no change: refs identical before and after."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _core import create_job, no_traceback, refs_snapshot, tip, write  # noqa: F401
from conftest import git, run_logist

BAD_IDS = ["../x", "--upload-pack=x", "-x", "x/y", "X", "a b", "a..b", "x" * 64, "ends-", "é", "a\nb", "abc\n",
           "refs/heads/main", ".", ""]


@pytest.fixture
def job(cli):
    return create_job(cli, "--title", "Target", "--step", "one", "--step", "two")


def expect(cli, args, code, *words, cwd="repo"):
    before = refs_snapshot(cli.repo)
    r = cli(*args, cwd=cwd)
    assert r.code == code, (args, r)
    for w in words:
        assert w in r.err, (args, w, r.err)
    assert r.err.startswith("logist: error:") or code == 2, r.err
    no_traceback(r.err + r.out)
    assert refs_snapshot(cli.repo) == before, args
    return r


@pytest.mark.parametrize("command", ["status", "show", "history", "path", "select", "activate", "cancel",
                                     "step", "run", "metrics"])
def test_bad_job_ids_are_usage_errors(cli, job, command):
    cli.ok("job", "select", job)  # a selected job must not stand in for a bad id
    for bad in BAD_IDS:
        # `--` so that option-shaped ids reach logist's own validation
        r = expect(cli, ["job", command, "--", bad], 2)
        assert "invalid job id" in r.err, (bad, r)


@pytest.mark.parametrize("bad", ["--upload-pack=x", "-x", "--exec=touch /tmp/pwned"])
def test_option_shaped_ids_without_double_dash(cli, job, bad):
    expect(cli, ["job", "status", bad], 2)


@pytest.mark.parametrize("bad", ["../x", "--upload-pack=x", "x/y", "UPPER"])
def test_bad_ids_for_create(cli, bad):
    expect(cli, ["job", "create", "--title", "t", "--step", "s", f"--id={bad}"], 2)


@pytest.mark.parametrize(("base", "word"), [("--upload-pack=x", "invalid base"), ("no-such-branch", "no-such-branch"),
                                           ("HEAD~5", "HEAD~5"), ("0" * 40, "not a commit")])
def test_bad_base(cli, base, word):
    expect(cli, ["job", "create", "--title", "t", "--step", "s", f"--base={base}"], 2, word)


@pytest.mark.parametrize("command", ["status", "show", "history", "path", "select", "activate", "suspend",
                                     "resume", "cancel", "approve", "reject", "resubmit", "step", "run",
                                     "metrics"])
def test_unknown_job(cli, job, command):
    expect(cli, ["job", command, "no-such-job"], 1, "no-such-job", "logist job list")


@pytest.mark.parametrize(("action", "state"), [("approve", "DRAFT"), ("reject", "DRAFT"), ("resubmit", "DRAFT"),
                                               ("resume", "DRAFT"), ("step", "DRAFT"), ("run", "DRAFT")])
def test_refused_transitions(cli, job, action, state):
    expect(cli, ["job", action, job], 1, state)


def test_refused_transitions_after_activation(cli, job):
    cli.ok("job", "activate", job)
    for action in ("activate", "approve", "reject", "resubmit", "resume"):
        expect(cli, ["job", action, job], 1, "PENDING")


def test_step_numbers_are_checked(cli, job):
    for step in ("0", "3", "-1"):
        expect(cli, ["job", "log", job, "--step", step], 2)
    expect(cli, ["job", "log", job, "--step", "two"], 2)


def test_job_files(cli, tmp_path):
    expect(cli, ["job", "create", "--file", tmp_path / "missing.toml"], 1, "missing.toml", "does not exist")
    bad = write(tmp_path / "bad.toml", 'title = "t"\n[[steps]]\nprompt = "p"\nretries = 3\n')
    expect(cli, ["job", "create", "--file", bad], 1, str(bad), "steps.0.retries", "line 4", "unknown key")
    broken = write(tmp_path / "broken.toml", 'title = "t\n')
    expect(cli, ["job", "create", "--file", broken], 1, str(broken), "TOML")


def test_outside_a_repository(tmp_path, capsys):
    from _core import Cli

    outside = tmp_path / "nowhere"
    outside.mkdir()
    for args in (["job", "list"], ["job", "status", "x-1"], ["job", "create", "--title", "t", "--step", "s"],
                 ["dashboard", "--once"], ["job", "run"]):
        r = Cli(capsys, outside)(*args)
        assert r.code == 1 and "not a git repository" in r.err, (args, r)
        no_traceback(r.err)
    r = Cli(capsys, tmp_path / "does-not-exist")("job", "list")
    assert r.code == 1 and "not a directory" in r.err


def test_invalid_config(cli, job):
    cfg = cli.repo / ".logist" / "config.toml"
    cfg.write_text("[worktrees]\ndir = 3\n")
    expect(cli, ["job", "create", "--title", "t", "--step", "s"], 1, "config.toml", "worktrees.dir")
    cfg.write_text("this is [not toml")
    expect(cli, ["job", "create", "--title", "t", "--step", "s"], 1, "config.toml", "TOML")


# ----------------------------------------------------------------------------- a bad record at the tip

def _commit_on_branch(repo: Path, job_id: str, files: dict[str, str | None], message: str) -> str:
    """Commit ``files`` (None = delete) on top of logist/<id> with plumbing, as a user or tool might."""
    index = repo / ".git" / "tmp-index"
    env = {"GIT_INDEX_FILE": str(index)}
    branch = f"refs/heads/logist/{job_id}"

    def g(*args, input=None):
        import os

        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, input=input,
                              env={**os.environ, **env})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    g("read-tree", branch)
    for path, content in files.items():
        if content is None:
            g("rm", "--cached", "-q", path)
        else:
            oid = g("hash-object", "-w", "--stdin", input=content)
            g("update-index", "--add", "--cacheinfo", f"100644,{oid},{path}")
    tree = g("write-tree")
    commit = g("commit-tree", tree, "-p", branch, "-m", message)
    g("update-ref", branch, commit)
    index.unlink()
    return commit


@pytest.mark.parametrize("damage", ["invalid", "malformed", "missing", "other-job"])
def test_a_bad_record_at_the_tip_names_the_commit(cli, job, damage):
    repo = cli.repo
    path = f".logist/jobs/{job}/manifest.json"
    good = git(repo, "show", f"logist/{job}:{path}")
    content = {"invalid": good.replace('"DRAFT"', '"EXPLODED"'), "malformed": good[:40],
               "missing": None, "other-job": good.replace(f'"id": "{job}"', '"id": "someone-else"')}[damage]
    bad = _commit_on_branch(repo, job, {path: content}, "tamper")
    short = bad[:12]
    for command in ("status", "show", "history", "activate", "cancel", "step", "run", "metrics"):
        expect(cli, ["job", command, job], 1, short)
    # list keeps working and shows the job as invalid
    rows = cli.ok("job", "list", "--json").json()
    (row,) = [r for r in rows if r["id"] == job]
    assert row["state"] == "INVALID" and short in row["error"]
    assert "INVALID" in cli.ok("job", "list").out
    cli.ok("dashboard", "--once")


def test_bad_input_in_a_real_process(project):
    """The same guarantees through `python -m logist`: stderr message, exit code, no traceback."""
    before = refs_snapshot(project)
    cases = [(["job", "status", "--", "../x"], 2), (["job", "status", "--upload-pack=x"], 2),
             (["job", "status", "no-such-job"], 1), (["job", "create", "--file", "/nonexistent.toml"], 1),
             (["job", "bogus-command"], 2)]
    for args, code in cases:
        r = run_logist(*args, cwd=project)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert r.stderr.strip(), args
        no_traceback(r.stderr + r.stdout)
    assert refs_snapshot(project) == before


def test_a_repository_without_commits(tmp_path, capsys):
    from _core import Cli

    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))
    c = Cli(capsys, empty)
    c.ok("init")
    before = refs_snapshot(empty)
    r = c("job", "create", "--title", "t", "--step", "s")
    assert r.code == 2 and "HEAD" in r.err and "--base" in r.err
    no_traceback(r.err)
    assert refs_snapshot(empty) == before
