"""The `logist` command line (docs/cli.md): create/list/status/show/history, human transitions,
select/LOGIST_JOB, path, -C, exit codes, and read commands that never write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _core import (
    Cli,
    create_from_toml,
    create_job,
    history_at,
    mtimes,
    no_traceback,
    record_at,
    refs_snapshot,
    tip,
    tree_digest,
)
from conftest import git, run_logist, wtdir

STATUS_KEYS = {"id", "state", "step", "step_count", "run", "branch", "worktree", "head", "cost_usd"}


def test_help_lists_the_commands(cli):
    r = cli.ok("--help", cwd=None)
    for word in ("init", "job", "dashboard"):
        assert word in r.out
    r = cli.ok("job", "--help", cwd=None)
    for word in ("create", "list", "status", "show", "history", "select", "path", "activate", "suspend",
                 "resume", "cancel", "approve", "reject", "resubmit", "step", "run", "attach", "metrics"):
        assert word in r.out, word


def test_python_dash_m_logist_works(project):
    r = run_logist("--help", cwd=project)
    assert r.returncode == 0 and "job" in r.stdout
    r = run_logist("job", "create", "--title", "Sub", "--step", "x", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    r = run_logist("job", "status", job_id, "--json", cwd=project)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == job_id


# ----------------------------------------------------------------------------- create

def test_create_prints_the_id(cli):
    r = cli.ok("job", "create", "--title", "Plain output", "--step", "x")
    job_id = r.out.strip()
    assert job_id.startswith("plain-output-") and "\n" not in job_id
    assert git(cli.repo, "rev-parse", "--verify", f"refs/heads/logist/{job_id}")


def test_create_json_object(cli):
    data = cli.ok("job", "create", "--title", "Json", "--step", "a", "--step", "b", "--json").json()
    assert {"id", "state", "branch", "worktree"} <= set(data)
    assert data["state"] == "DRAFT" and data["branch"] == f"logist/{data['id']}"


def test_create_options_reach_the_record(cli):
    job_id = create_job(cli, "--title", "Opts", "--prompt", "The whole job", "--agent", "mock",
                        "--step", "first", "--step", "second", "--activate")
    rec = record_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert rec["prompt"] == "The whole job" and rec["state"] == "PENDING" and rec["agent"] == "mock"
    assert [(s["name"], s["prompt"], s["agent"]) for s in rec["steps"]] == [
        ("step-1", "first", "mock"), ("step-2", "second", "mock")]


def test_create_with_only_a_prompt_has_one_step(cli):
    job_id = create_job(cli, "--title", "One", "--prompt", "Do the thing")
    rec = record_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert [s["prompt"] for s in rec["steps"]] == ["Do the thing"]


@pytest.mark.parametrize("args", [("--step", "x"), ("--title", "No steps")])
def test_create_without_title_or_steps_is_a_usage_error(cli, args):
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", *args)
    assert r.code == 2 and "logist: error:" in r.err
    assert refs_snapshot(cli.repo) == before


def test_create_before_init_is_refused(repo, capsys):
    r = Cli(capsys, repo)("job", "create", "--title", "Early", "--step", "x")
    assert r.code == 1 and "logist init" in r.err


# ----------------------------------------------------------------------------- list / status / show / history

def test_list_human_and_json(cli):
    a = create_job(cli, "--title", "Alpha", "--step", "x", "--activate")
    b = create_job(cli, "--title", "Beta", "--step", "x")
    c = create_job(cli, "--title", "Gamma", "--step", "x")
    cli.ok("job", "cancel", c)
    out = cli.ok("job", "list").out
    header = out.splitlines()[0]
    assert header.split()[:3] == ["ID", "STATE", "STEP"]
    assert a in out and b in out and c not in out  # finished jobs only with --all
    assert "PENDING" in out and "DRAFT" in out
    assert c in cli.ok("job", "list", "--all").out
    rows = cli.ok("job", "list", "--json").json()
    assert {r["id"] for r in rows} == {a, b}
    rows = {r["id"]: r for r in cli.ok("job", "list", "--json", "--all").json()}
    assert set(rows) == {a, b, c}
    assert rows[c]["state"] == "CANCELED"
    for r in rows.values():
        assert {"id", "state", "step", "step_count", "run", "branch", "head", "cost_usd"} <= set(r)
        assert r["head"] == tip(cli.repo, r["id"])


def test_list_with_no_jobs(cli):
    assert "no jobs" in cli.ok("job", "list").out
    assert cli.ok("job", "list", "--json").json() == []


def test_status_json_has_the_documented_fields(cli):
    job_id = create_job(cli, "--title", "Status", "--step", "a", "--step", "b", "--activate")
    data = cli.ok("job", "status", job_id, "--json").json()
    assert STATUS_KEYS <= set(data)
    assert data["id"] == job_id and data["state"] == "PENDING"
    assert (data["step"], data["step_count"], data["run"]) == (1, 2, 1)
    assert data["branch"] == f"logist/{job_id}"
    assert data["head"] == tip(cli.repo, job_id)
    assert Path(data["worktree"]) == wtdir(cli.repo) / job_id
    assert data["cost_usd"] == 0.0


def test_status_human(cli):
    job_id = create_job(cli, "--title", "Readable", "--step", "a")
    out = cli.ok("job", "status", job_id).out
    for word in ("state", "DRAFT", "step", "1/1", "branch", f"logist/{job_id}", "worktree", "head"):
        assert word in out, word


def test_show_prints_the_whole_record(cli):
    job_id = create_job(cli, "--title", "Show", "--prompt", "All of it", "--step", "a")
    data = cli.ok("job", "show", job_id, "--json").json()
    assert data == record_at(cli.repo, tip(cli.repo, job_id), job_id)
    out = cli.ok("job", "show", job_id).out
    assert "All of it" in out and "Show" in out


def test_history_lists_every_transition(cli):
    job_id = create_job(cli, "--title", "History", "--step", "a")
    for action in ("activate", "suspend", "resume"):
        cli.ok("job", action, job_id)
    entries = cli.ok("job", "history", job_id, "--json").json()
    assert isinstance(entries, list)
    assert [(e["event"], e.get("from"), e["to"]) for e in entries] == [
        ("create", None, "DRAFT"), ("transition", "DRAFT", "PENDING"),
        ("transition", "PENDING", "SUSPENDED"), ("transition", "SUSPENDED", "PENDING")]
    assert all(e["t"] for e in entries)
    stored = history_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert [{k: v for k, v in e.items() if v != {}} for e in entries] == stored
    out = cli.ok("job", "history", job_id).out
    assert "SUSPENDED" in out and "create" in out


# ----------------------------------------------------------------------------- human transitions

def test_human_transitions_and_refusals(cli):
    job_id = create_job(cli, "--title", "Steer", "--step", "a")
    assert cli("job", "resume", job_id).code == 1  # DRAFT cannot resume
    r = cli.ok("job", "activate", job_id)
    assert "PENDING" in r.out
    assert cli("job", "activate", job_id).code == 1
    cli.ok("job", "suspend", job_id)
    assert cli("job", "suspend", job_id).code == 1
    cli.ok("job", "resume", job_id)
    cli.ok("job", "cancel", job_id)
    for action in ("activate", "suspend", "resume", "cancel", "approve", "reject", "resubmit"):
        before = refs_snapshot(cli.repo)
        r = cli("job", action, job_id, *(("--message", "why") if action == "reject" else ()))
        assert r.code == 1 and "CANCELED" in r.err, (action, r)
        no_traceback(r.err)
        assert refs_snapshot(cli.repo) == before


# ----------------------------------------------------------------------------- select / LOGIST_JOB / path / -C

def test_select_and_logist_job(cli, monkeypatch):
    a = create_job(cli, "--title", "First", "--step", "x")
    b = create_job(cli, "--title", "Second", "--step", "x")
    r = cli("job", "status", "--json")
    assert r.code == 2 and "job select" in r.err
    cli.ok("job", "select", a)
    assert cli.ok("job", "status", "--json").json()["id"] == a
    assert cli.ok("job", "show", "--json").json()["id"] == a
    assert cli.ok("job", "history", "--json").json()[0]["to"] == "DRAFT"
    monkeypatch.setenv("LOGIST_JOB", b)  # the environment wins over the selection
    assert cli.ok("job", "status", "--json").json()["id"] == b
    cli.ok("job", "activate")
    assert record_at(cli.repo, tip(cli.repo, b), b)["state"] == "PENDING"
    assert record_at(cli.repo, tip(cli.repo, a), a)["state"] == "DRAFT"
    assert cli.ok("job", "status", a, "--json").json()["id"] == a  # an explicit id wins over both
    monkeypatch.setenv("LOGIST_JOB", "../etc")
    r = cli("job", "status")
    assert r.code == 2 and "invalid job id" in r.err


def test_select_an_unknown_job_is_refused(cli):
    r = cli("job", "select", "no-such-job")
    assert r.code == 1 and "no-such-job" in r.err
    assert cli("job", "status").code == 2  # nothing was selected


def test_path_prints_the_worktree(cli):
    job_id = create_job(cli, "--title", "Path", "--step", "x")
    out = cli.ok("job", "path", job_id).out
    assert out == f"{wtdir(cli.repo) / job_id}\n"
    assert ".git" not in Path(out.strip()).parts  # agent CLIs refuse to write under .git
    assert Path(out.strip()).is_dir()
    assert cli("job", "path", "no-such-job").code == 1


def test_dash_c_runs_elsewhere(cli, monkeypatch, tmp_path):
    job_id = create_job(cli, "--title", "Elsewhere", "--step", "x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.ok("job", "status", job_id, "--json", cwd=cli.repo).json()["id"] == job_id
    monkeypatch.chdir(cli.repo.parent)
    assert cli.ok("-C", cli.repo.name, "job", "status", job_id, "--json", cwd=None).json()["id"] == job_id
    assert cli.ok("-C", cli.repo.parent, "-C", cli.repo.name, "job", "path", job_id, cwd=None).out.strip() \
        .endswith(job_id)
    (cli.repo / "sub").mkdir()
    assert cli.ok("job", "status", job_id, "--json", cwd=cli.repo / "sub").json()["id"] == job_id
    r = run_logist("-C", cli.repo, "job", "list", "--json", cwd=elsewhere)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["id"] == job_id


def test_cwd_is_reset_between_calls(cli, monkeypatch):
    """main() must not remember a previous -C."""
    create_job(cli, "--title", "Sticky", "--step", "x")
    monkeypatch.chdir(cli.repo.parent)
    r = cli("job", "list", cwd=None)
    assert r.code == 1 and "not a git repository" in r.err


# ----------------------------------------------------------------------------- exit codes

def test_busy_job_exits_4(cli):
    from logist.store.jobstore import JobStore
    from logist.store.locks import acquire

    job_id = create_job(cli, "--title", "Busy", "--step", "x", "--activate")
    store = JobStore.discover(cli.repo)
    with acquire(store, job_id, command="test holder"):
        before = refs_snapshot(cli.repo)
        for args in (("job", "suspend", job_id), ("job", "step", job_id), ("job", "run", job_id)):
            r = cli(*args)
            assert r.code == 4, (args, r)
            assert "busy" in r.err and "test holder" in r.err
            no_traceback(r.err)
        assert refs_snapshot(cli.repo) == before
        r = run_logist("job", "cancel", job_id, cwd=cli.repo)
        assert r.returncode == 4 and "busy" in r.stderr
        no_traceback(r.stderr)
    cli.ok("job", "suspend", job_id)  # released: it works again


def test_usage_errors_exit_2(cli):
    for args in (("job", "status", "--no-such-option"), ("job", "frobnicate"), ("job", "create", "--title")):
        r = cli(*args)
        assert r.code == 2, (args, r)
        no_traceback(r.out + r.err)


# ----------------------------------------------------------------------------- read commands never write

READS = [("job", "list"), ("job", "list", "--json"), ("job", "list", "--all"), ("job", "status", "{id}"),
         ("job", "status", "{id}", "--json"), ("job", "show", "{id}"), ("job", "show", "{id}", "--json"),
         ("job", "history", "{id}"), ("job", "history", "{id}", "--json"), ("job", "history", "{id}", "--notes"),
         ("job", "path", "{id}"), ("job", "metrics", "{id}"), ("dashboard", "--once")]


def test_read_commands_never_write(cli):
    repo = cli.repo
    done = create_from_toml(cli, 'title = "Done"\n[[steps]]\nprompt = "p"\n[steps.mock]\n'
                                 'writes = { "x.txt" = "x" }\n', "--activate")
    cli.ok("job", "run", done)
    job_id = create_job(cli, "--title", "Idle", "--step", "x", "--activate")
    from logist.store.jobstore import JobStore

    store = JobStore.discover(repo)
    wts = [store.ensure_worktree(j) for j in (done, job_id)]  # then `job path` only reads
    # logist's caches (.git/logist/cache: records known valid, the last listing) may be
    # written by a read; nothing else may (docs/cli.md, "Read commands never write")
    state = lambda: {k: v for k, v in mtimes(repo / ".git" / "logist").items()  # noqa: E731
                     if k != "cache" and not k.startswith("cache/")}
    snapshot = lambda: (refs_snapshot(repo), [mtimes(w) for w in wts],  # noqa: E731
                        [tree_digest(w) for w in wts], state(), (repo / ".git" / "index").stat().st_mtime_ns,
                        tree_digest(repo / ".git", skip=("objects", "logist/cache")))
    before = snapshot()
    for j in (done, job_id):
        for args in READS:
            r = cli(*[a.format(id=j) for a in args])
            assert r.code == 0, (args, r)
    assert snapshot() == before
    assert {"config" if p.name.startswith("config-") else p.name.split("-s")[0]
            for p in (repo / ".git" / "logist" / "cache").iterdir()} <= {"valid-records", "listing", "config"}
