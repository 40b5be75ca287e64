"""Secrets by reference (docs/jobfile.md, ``env``): a job file names variables, `logist job run`
reads their values from its environment, and the values never reach the record, a commit, a
note or a log; a key written literally in ``args`` or ``env`` is refused at `job create`."""

from __future__ import annotations

import json

import pytest
from conftest import git, run_cli

from logist.core.redact import redact

KEY = "sk-proj-" + "Zx9" * 12  # an OpenAI-shaped key (made up)


def logist(project, *args, env=None, check=True):
    proc = run_cli(*args, cwd=project, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def everything_in_git(project) -> str:
    """Every commit message, every blob of every ref, and every note, as one text."""
    out = [git(project, "log", "--all", "--format=%B")]
    for oid in git(project, "rev-list", "--all", "--objects").split("\n"):
        parts = oid.split(" ", 1)
        if git(project, "cat-file", "-t", parts[0]) == "blob":
            out.append(git(project, "cat-file", "-p", parts[0]))
    return "\n".join(out)


def test_env_references_reach_the_agent_and_never_git(project, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        'title = "Uses a key"\n'
        'env = { SERVICE_TOKEN = "${MY_SERVICE_TOKEN}", MODE = "fast" }\n'
        "[[steps]]\n"
        'agent = "command"\n'
        "command = [\"python3\", \"-c\", \"import os; print('token', os.environ['SERVICE_TOKEN'], "
        "os.environ['MODE']); open('seen.txt', 'w').write(os.environ['SERVICE_TOKEN'][:6])\"]\n")
    made = json.loads(logist(project, "job", "create", "--file", str(job), "--activate",
                             "--json").stdout)
    manifest = json.loads(git(project, "show",
                              f"logist/{made['id']}:.logist/jobs/{made['id']}/manifest.json"))
    assert manifest["steps"][0]["options"]["env"] == {"SERVICE_TOKEN": "${MY_SERVICE_TOKEN}",
                                                      "MODE": "fast"}
    secret = "svc-" + "q7" * 20
    run = logist(project, "job", "run", made["id"], env={"MY_SERVICE_TOKEN": secret})
    status = json.loads(logist(project, "job", "status", made["id"], "--json").stdout)
    assert status["state"] == "SUCCESS", run.stdout + run.stderr
    assert git(project, "show", f"logist/{made['id']}:seen.txt") == secret[:6]  # the agent had it
    text = everything_in_git(project)
    assert secret not in text
    assert "token [REDACTED] fast" in git(project, "notes", "--ref", "refs/notes/logist/logs",
                                          "show", f"logist/{made['id']}")


def test_a_missing_variable_stops_the_step_with_its_name(project, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('title = "Needs a key"\nenv = { T = "${NOT_SET_ANYWHERE_1}" }\n'
                   '[[steps]]\nagent = "command"\ncommand = ["true"]\n')
    made = json.loads(logist(project, "job", "create", "--file", str(job), "--activate",
                             "--json").stdout)
    logist(project, "job", "run", made["id"], check=False)
    status = json.loads(logist(project, "job", "status", made["id"], "--json").stdout)
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "NOT_SET_ANYWHERE_1" in json.dumps(status)


@pytest.mark.parametrize("where", ["args", "env"])
def test_a_literal_key_is_refused_at_create_with_a_hint(project, tmp_path, where):
    job = tmp_path / "job.toml"
    value = f'args = ["--api-key", "{KEY}"]' if where == "args" else f'env = {{ OPENAI_API_KEY = "{KEY}" }}'
    job.write_text(f'title = "Leaky"\n[[steps]]\nagent = "claude"\nprompt = "x"\n{value}\n')
    before = git(project, "for-each-ref")
    proc = logist(project, "job", "create", "--file", str(job), check=False)
    assert proc.returncode == 1
    assert "looks like a secret" in proc.stderr and "${NAME}" in proc.stderr
    assert KEY not in proc.stderr
    assert git(project, "for-each-ref") == before  # nothing created


@pytest.mark.parametrize("token", [
    "glpat-" + "A1b2C3d4E5f6G7h8I9j0",
    "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345",
    "sk_live_" + "0123456789abcdefABCD",
    "rk_live_" + "0123456789abcdefABCD",
    "npm_" + "0123456789abcdefghijABCDEFGHIJ012345",
    "xoxe-" + "1234567890-abcdef",
    "AIza" + "SyD-0123456789abcdefghijklmnopqrs",
])
def test_redaction_knows_more_token_shapes(token):
    assert redact(f"using {token} now") == "using [REDACTED] now"
