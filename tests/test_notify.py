"""Notifications (docs/cli.md#notifications): the person's [notify] command runs when a job
comes to need them or finishes, with the job in its environment; only from config.local.toml."""

from __future__ import annotations

import json
import sys

from _core import create_from_toml, create_job, refs_snapshot

STUCK = 'title = "Stuck one"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "stuck"\n'
RECORDER = ("import json, os, sys; "
            "open(sys.argv[1], 'a').write(json.dumps({k: v for k, v in os.environ.items() "
            "if k.startswith('LOGIST_')}) + '\\n')")


def _configure(cli, out, *, local: bool = True, extra: str = "") -> None:
    name = "config.local.toml" if local else "config.toml"
    path = cli.repo / ".logist" / name
    text = path.read_text() if path.exists() else ""
    path.write_text(text + f"\n[notify]\ncommand = {json.dumps([sys.executable, '-c', RECORDER, str(out)])}\n{extra}")


def _seen(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_the_command_runs_when_a_job_needs_a_person_or_finishes(cli, tmp_path):
    out = tmp_path / "notified.jsonl"
    _configure(cli, out)
    stuck = create_from_toml(cli, STUCK, "--activate")
    assert cli("job", "run", stuck).code == 6
    done = create_job(cli, "--title", "Quick", "--step", "x", "--activate")
    cli.ok("job", "run", done)
    seen = _seen(out)  # `job run` returns once its notifications ran
    assert [(s["LOGIST_JOB_ID"], s["LOGIST_STATE"]) for s in seen] == [
        (stuck, "INTERVENTION_REQUIRED"), (done, "SUCCESS")]
    assert "ambiguous" in seen[0]["LOGIST_REASON"] and seen[0]["LOGIST_TITLE"] == "Stuck one"
    assert seen[0]["LOGIST_STEP"] == "1/1" and seen[0]["LOGIST_REPO"] == str(cli.repo)
    assert _ids_needing_me(cli) == [stuck]


def _ids_needing_me(cli) -> list[str]:
    return [r["id"] for r in cli.ok("job", "list", "--needs-me", "--json").json()]


def test_notify_on_chooses_the_states(cli, tmp_path):
    out = tmp_path / "notified.jsonl"
    _configure(cli, out, extra='on = ["SUCCESS"]\n')
    stuck = create_from_toml(cli, STUCK, "--activate")
    assert cli("job", "run", stuck).code == 6
    assert _seen(out) == []


def test_a_command_in_the_committed_config_never_runs(cli, tmp_path):
    out = tmp_path / "notified.jsonl"
    _configure(cli, out, local=False)
    stuck = create_from_toml(cli, STUCK, "--activate")
    assert cli("job", "run", stuck).code == 6
    assert _seen(out) == []


def test_a_failing_command_changes_nothing_and_bad_settings_are_refused(cli, tmp_path):
    path = cli.repo / ".logist" / "config.local.toml"
    path.write_text(f"[notify]\ncommand = {json.dumps([sys.executable, '-c', 'raise SystemExit(3)'])}\n")
    stuck = create_from_toml(cli, STUCK, "--activate")
    r = cli("job", "run", stuck)
    assert r.code == 6 and "notify command" in r.err and "exited 3" in r.err
    path.write_text('[notify]\non = ["EXPLODED"]\n')
    before = refs_snapshot(cli.repo)
    r = cli("job", "create", "--title", "x", "--step", "y")
    assert r.code == 1 and "notify" in r.err and "EXPLODED" in r.err
    assert refs_snapshot(cli.repo) == before
