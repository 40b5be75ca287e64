"""Ids people can type (docs/cli.md, "The job id"): short generated ids, unique prefixes,
the job of the worktree the command runs in, and candidates when no job is given."""

from __future__ import annotations

import re

from _core import create_job, refs_snapshot, tip
from conftest import git, run_cli


def test_generated_ids_are_short_and_cut_at_a_word(cli):
    job_id = create_job(cli, "--title", "Refactor the authentication middleware to use tokens",
                        "--step", "x")
    assert re.fullmatch(r"refactor-the-authenticat-[a-z0-9]{4}", job_id), job_id
    job_id = create_job(cli, "--title", "Fix the login page redirect loop", "--step", "x")
    assert re.fullmatch(r"fix-the-login-page-[a-z0-9]{4}", job_id), job_id
    assert len(job_id) <= 29
    assert git(cli.repo, "rev-parse", "--verify", f"refs/heads/logist/{job_id}")


def test_a_long_id_of_an_older_job_keeps_working(cli):
    long_id = "refactor-the-authentication-middleware-t-age3"
    assert create_job(cli, "--title", "Old", "--step", "x", "--id", long_id) == long_id
    assert cli.ok("job", "status", long_id, "--json").json()["id"] == long_id
    assert cli.ok("job", "status", "refactor-the-authentication", "--json").json()["id"] == long_id


def test_a_unique_prefix_names_the_job_everywhere(cli):
    a = create_job(cli, "--title", "Alpha work", "--step", "x", "--id", "alpha-work-1111")
    create_job(cli, "--title", "Beta work", "--step", "x", "--id", "beta-work-2222")
    assert cli.ok("job", "status", "alp", "--json").json()["id"] == a
    assert cli.ok("job", "status", "alpha-", "--json").json()["id"] == a  # a prefix may end at a word
    assert cli.ok("job", "show", "alpha-w", "--json").json()["id"] == a
    r = cli.ok("job", "activate", "al")
    assert r.out.startswith(f"{a}: PENDING")
    assert cli.ok("job", "select", "alpha").out.strip() == f"selected {a}"
    assert cli.ok("job", "path", "a").out.strip().endswith(a)
    r = cli.ok("job", "suspend", "alph")
    assert "SUSPENDED" in r.out
    assert git(cli.repo, "log", "-1", "--format=%s", f"logist/{a}").endswith("PENDING -> SUSPENDED (step 1/1)")


def test_an_ambiguous_prefix_lists_the_candidates_and_changes_nothing(cli):
    create_job(cli, "--title", "Fix one", "--step", "x", "--id", "fix-one-aaaa")
    create_job(cli, "--title", "Fix two", "--step", "x", "--id", "fix-two-bbbb")
    before = refs_snapshot(cli.repo)
    r = cli("job", "activate", "fix")
    assert r.code == 2
    assert "'fix' is the start of 2 job ids" in r.err
    assert "fix-one-aaaa" in r.err and "fix-two-bbbb" in r.err
    assert refs_snapshot(cli.repo) == before
    # an exact id wins over the longer ids it starts
    create_job(cli, "--title", "Fix", "--step", "x", "--id", "fix")
    assert cli.ok("job", "status", "fix", "--json").json()["id"] == "fix"


def test_an_unknown_id_names_the_jobs_there_are(cli):
    create_job(cli, "--title", "Only", "--step", "x", "--id", "only-job-cccc")
    r = cli("job", "status", "zzz")
    assert r.code == 1 and "no job 'zzz'" in r.err and "only-job-cccc" in r.err


def test_no_job_given_lists_the_candidates(cli):
    r = cli("job", "status")
    assert r.code == 2 and "no job given" in r.err and "no jobs yet" in r.err
    create_job(cli, "--title", "One", "--step", "x", "--id", "one-dddd")
    r = cli("job", "status")
    assert r.code == 2 and "one-dddd" in r.err


def test_inside_a_job_worktree_that_job_is_meant_before_the_selected_one(cli):
    a = create_job(cli, "--title", "Here", "--step", "x", "--id", "here-eeee")
    b = create_job(cli, "--title", "Selected", "--step", "x", "--id", "selected-ffff")
    cli.ok("job", "select", b)
    wt = cli.ok("job", "path", a).out.strip()
    r = run_cli("job", "status", "--json", cwd=wt)
    assert r.returncode == 0, r.stderr
    assert '"id":"here-eeee"' in r.stdout
    # a subdirectory of the worktree too; outside it, the selected job
    sub = f"{wt}/deeper"
    import os

    os.makedirs(sub)
    assert '"id":"here-eeee"' in run_cli("job", "status", "--json", cwd=sub).stdout
    assert '"id":"selected-ffff"' in run_cli("job", "status", "--json", cwd=cli.repo).stdout
    assert tip(cli.repo, a)
