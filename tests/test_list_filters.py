"""`job list`: most recently active first, --state, --since, --needs-me, and rows with the
keys of `job status --json` (docs/cli.md)."""

from __future__ import annotations

from _core import create_job, refs_snapshot
from conftest import git


def _ids(cli, *args) -> list[str]:
    return [r["id"] for r in cli.ok("job", "list", "--json", *args).json()]


def test_newest_activity_first_and_filters(cli):
    a = create_job(cli, "--title", "First", "--step", "x", "--id", "first-aaaa")
    b = create_job(cli, "--title", "Second", "--step", "x", "--id", "second-bbbb")
    c = create_job(cli, "--title", "Third", "--step", "x", "--id", "third-cccc")
    cli.ok("job", "activate", a)  # a is now the most recently active
    assert _ids(cli) == [a, c, b]
    assert _ids(cli, "--state", "pending") == [a]
    assert _ids(cli, "--state", "DRAFT,pending") == [a, c, b]
    assert _ids(cli, "--state", "draft", "--state", "PENDING") == [a, c, b]
    cli.ok("job", "cancel", b)
    assert b not in _ids(cli)
    assert _ids(cli, "--state", "canceled") == [b]  # a terminal state named: no --all needed
    assert set(_ids(cli, "--all")) == {a, b, c}
    assert set(_ids(cli, "--since", "1h", "--all")) == {a, b, c}
    assert _ids(cli, "--since", "2999-01-01") == []
    out = cli.ok("job", "list").out
    assert out.index(a) < out.index(c)


def test_rows_are_status_objects(cli):
    job_id = create_job(cli, "--title", "Keys", "--step", "x", "--activate")
    row = cli.ok("job", "list", "--json").json()[0]
    status = cli.ok("job", "status", job_id, "--json").json()
    assert set(status) - set(row) == {"last_signal"}
    for key in ("state", "step", "step_count", "step_name", "agent", "attempt", "run", "branch", "head",
                "base", "cost_usd", "tokens", "updated_at", "created_at", "holder", "interrupted"):
        assert row[key] == status[key], key
    assert row["head"] == git(cli.repo, "rev-parse", f"refs/heads/logist/{job_id}")
    assert row["updated_at"].endswith("Z")


def test_needs_me(cli):
    stuck = create_job(cli, "--title", "Stuck", "--id", "stuck-dddd", "--activate", "--file",
                       _job(cli, "stuck"))
    create_job(cli, "--title", "Fine", "--step", "x", "--id", "fine-eeee", "--activate")
    assert cli("job", "run", stuck).code == 6
    assert _ids(cli, "--needs-me") == [stuck]
    out = cli.ok("job", "list", "--needs-me").out
    assert "INTERVENTION_REQUIRED" in out and "ambiguous" in out  # the reason, not the title


def test_bad_filters_are_usage_errors_and_change_nothing(cli):
    create_job(cli, "--title", "Any", "--step", "x")
    before = refs_snapshot(cli.repo)
    for args in (("--state", "EXPLODED"), ("--since", "yesterday"), ("--since", "-3h")):
        r = cli("job", "list", *args)
        assert r.code == 2, (args, r)
        assert "Traceback" not in r.err and r.err.startswith("logist: error:"), r.err
    assert refs_snapshot(cli.repo) == before


def _job(cli, scenario: str):
    path = cli.repo.parent / f"{scenario}.toml"
    path.write_text(f'title = "{scenario}"\nagent = "mock"\n[[steps]]\nprompt = "p"\n[steps.mock]\n'
                    f'scenario = "{scenario}"\n')
    return path
