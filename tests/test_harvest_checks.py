"""What the harvest does not take on an agent's word (docs/agents.md#permissions-are-explicit):
a COMPLETED outcome whose evidence files do not exist is not SUCCESS; terminal escapes never
reach a reason or a commit message."""

from __future__ import annotations

import json

from conftest import git, run_cli


def logist(project, *args):
    return run_cli(*args, cwd=project)


def run_command_job(project, tmp_path, outcome: dict) -> tuple[str, dict]:
    code = f"import json; print('```json'); print(json.dumps({outcome!r})); print('```')"
    job = tmp_path / "job.toml"
    job.write_text('title = "Says it did"\n[[steps]]\nagent = "command"\n'
                   f"command = {json.dumps(['python3', '-c', code])}\n")
    made = logist(project, "job", "create", "--file", str(job), "--activate", "--json")
    assert made.returncode == 0, made.stderr
    job_id = json.loads(made.stdout)["id"]
    logist(project, "job", "run", job_id)
    return job_id, json.loads(logist(project, "job", "status", job_id, "--json").stdout)


def test_completed_with_missing_evidence_is_not_success(project, tmp_path):
    job_id, status = run_command_job(project, tmp_path, {
        "action": "COMPLETED", "summary": "wrote it", "evidence_files": ["made-up.txt"]})
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "made-up.txt" in status["reason"] and "does not exist" in status["reason"]
    body = git(project, "log", "-1", "--format=%B", f"logist/{job_id}")
    assert "made-up.txt" in body


def test_terminal_escapes_never_reach_the_reason(project, tmp_path):
    job_id, status = run_command_job(project, tmp_path, {
        "action": "STUCK", "summary": "\x1b[31mred alert\x1b[0m"})
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "red alert" in status["reason"] and "\x1b" not in status["reason"]
    assert "\x1b" not in git(project, "log", "-1", "--format=%B", f"logist/{job_id}")
