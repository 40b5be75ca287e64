"""Running steps (docs/architecture.md#data-flow-of-a-step) through the real CLI and Engine: real
agent processes (the mock agent and real programs), real commits, notes and budgets."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from _core import (
    create_from_toml,
    create_job,
    history_at,
    kill_group,
    pid_gone,
    record_at,
    refs_snapshot,
    subject,
    tip,
    trailers,
    worktree_status,
)
from _oracle import Oracle
from conftest import git, run_cli, run_logist, wait_for

PY = json.dumps(sys.executable)


def mock_job(title: str = "Mock job", *, steps: list[str], head: str = "") -> str:
    """A job file with one [[steps]] per entry; each entry is the body of its [steps.mock] table."""
    text = f'title = "{title}"\nprompt = "The whole job"\n{head}\n'
    for i, mock in enumerate(steps, 1):
        text += f'[[steps]]\nname = "s{i}"\nprompt = "Do part {i}"\n[steps.mock]\n{mock}\n'
    return text


RUN_EXIT = {"SUCCESS": 0, "APPROVAL_REQUIRED": 5}  # anything else: 6 (docs/exit-codes.md)


def run_job(cli, text: str) -> tuple[str, dict]:
    job_id = create_from_toml(cli, text, "--activate")
    r = cli("job", "run", job_id)
    status = cli.ok("job", "status", job_id, "--json").json()
    assert r.code == RUN_EXIT.get(status["state"], 6), (r, status["state"])
    return job_id, status


def commits_of(repo, job_id) -> list[str]:
    return git(repo, "rev-list", "--reverse", f"logist/{job_id}", "--not", "main").split()


def tos(repo, job_id) -> list[str]:
    return [trailers(repo, c)["Logist-To"] for c in commits_of(repo, job_id)]


def harvest_commits(repo, job_id) -> list[str]:
    return [c for c in commits_of(repo, job_id) if trailers(repo, c)["Logist-From"] == "HARVESTING"]


def step_cycle(end: str) -> list[str]:
    return ["PROVISIONING", "EXECUTING", "HARVESTING", end]


# ----------------------------------------------------------------------------- a three-step job

def test_three_step_mock_job_runs_to_success(cli):
    repo = cli.repo
    job_id = create_from_toml(cli, mock_job("Greeting", steps=[
        'writes = { "hello.txt" = "hello\\n" }\nsummary = "wrote hello"',
        'writes = { "hello.txt" = "hello, world\\n", "docs/notes.md" = "# notes\\n" }',
        'writes = { "done.txt" = "done\\n" }',
    ]), "--activate")
    r = cli("job", "run", job_id)
    assert r.code == 0, r
    assert "SUCCESS" in r.out
    status = cli.ok("job", "status", job_id, "--json").json()
    assert (status["state"], status["step"], status["step_count"]) == ("SUCCESS", 3, 3)
    # the work is on the branch
    final = tip(repo, job_id)
    assert git(repo, "show", f"{final}:hello.txt") == "hello, world"
    assert git(repo, "show", f"{final}:docs/notes.md") == "# notes"
    assert git(repo, "show", f"{final}:done.txt") == "done"
    # and so is the record: one commit per transition, four per step
    assert tos(repo, job_id) == ["PENDING", *step_cycle("PENDING"), *step_cycle("PENDING"), *step_cycle("SUCCESS")]
    rec = record_at(repo, final, job_id)
    assert [s["status"] for s in rec["steps"]] == ["SUCCESS"] * 3
    assert rec["steps"][0]["summary"] == "wrote hello"
    assert len(history_at(repo, final, job_id)) == len(commits_of(repo, job_id))
    assert Oracle(repo).check_job(job_id, state="SUCCESS")["steps"] == rec["steps"]
    # each step's work landed in its own harvest commit
    h1, h2, h3 = harvest_commits(repo, job_id)
    assert git(repo, "diff", "--name-only", f"{h1}^", h1).splitlines() == [
        f".logist/jobs/{job_id}/history.jsonl", f".logist/jobs/{job_id}/manifest.json", "hello.txt"]
    assert "docs/notes.md" in git(repo, "diff", "--name-only", f"{h2}^", h2)
    assert subject(repo, h3) == f"logist({job_id}): HARVESTING -> SUCCESS (step 3/3)"
    assert worktree_status(cli.ok("job", "path", job_id).out.strip()) == ""
    assert git(repo, "worktree", "list", "--porcelain").count("locked") == 0  # unlocked after the step


def test_prompt_is_assembled_and_recorded_verbatim(cli):
    repo = cli.repo
    job_id, _ = run_job(cli, mock_job("Prompts", steps=['summary = "first part done"', ""]))
    rec = record_at(repo, tip(repo, job_id), job_id)
    second = rec["steps"][1]["assembled_prompt"]
    for part in ("The whole job", "Do part 2", "first part done", '"action"', "COMPLETED"):
        assert part in second, part
    provisioning = [c for c in commits_of(repo, job_id) if trailers(repo, c)["Logist-To"] == "PROVISIONING"]
    body = git(repo, "log", "-1", "--format=%B", provisioning[1])
    assert "Do part 2" in body and "first part done" in body


# ----------------------------------------------------------------------------- every mock scenario

SCENARIOS = {
    # scenario table -> (state, words in the reason)
    "success": ('scenario = "success"', "SUCCESS", []),
    "stuck": ('scenario = "stuck"', "INTERVENTION_REQUIRED", ["stuck"]),
    "retry": ('scenario = "retry"\nsucceed_on_attempt = 2', "SUCCESS", []),
    "error": ('scenario = "error"', "INTERVENTION_REQUIRED", ["code 3"]),
    "api_error": ('scenario = "api_error"', "INTERVENTION_REQUIRED", ["code 1"]),
    "auth_error": ('scenario = "auth_error"', "INTERVENTION_REQUIRED", ["code 1"]),
    "context_full": ('scenario = "context_full"', "INTERVENTION_REQUIRED", ["context"]),
    "approval": ('scenario = "approval"', "APPROVAL_REQUIRED", []),
    "slow": ('scenario = "slow"\ndelay_s = 0.5', "SUCCESS", []),
    "rate_limit": ('scenario = "rate_limit"\ndelay_s = 0.3', "SUCCESS", []),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_mock_scenario_lands_where_the_table_says(cli, name):
    mock, state, words = SCENARIOS[name]
    job_id, status = run_job(cli, mock_job(name, steps=[mock + '\nwrites = { "out.txt" = "x" }']))
    assert status["state"] == state, status
    for w in words:
        assert w in status["reason"], (w, status["reason"])
    repo = cli.repo
    last = commits_of(repo, job_id)[-1]
    t = trailers(repo, last)
    assert (t["Logist-From"], t["Logist-To"]) == ("HARVESTING", state)
    if state == "INTERVENTION_REQUIRED":
        assert status["reason"] and status["reason"] in git(repo, "log", "-1", "--format=%b", last)
    if state == "SUCCESS":  # finished: its worktree was given back (everything is on the branch)
        assert not status["worktree_exists"]
        assert f"worktree {status['worktree']}\n" not in git(repo, "worktree", "list", "--porcelain") + "\n"
    else:
        assert worktree_status(status["worktree"]) == ""


def test_retry_runs_the_same_step_again(cli):
    repo = cli.repo
    job_id, status = run_job(cli, mock_job("Retry", steps=['scenario = "retry"\nsucceed_on_attempt = 3'],
                                           head="[budget]\nmax_attempts = 3"))
    assert status["state"] == "SUCCESS" and status["attempt"] == 3
    assert tos(repo, job_id) == ["PENDING", *step_cycle("PENDING"), *step_cycle("PENDING"), *step_cycle("SUCCESS")]
    outcomes = [trailers(repo, c).get("Logist-Outcome") for c in harvest_commits(repo, job_id)]
    assert outcomes == ["RETRY", "RETRY", "COMPLETED"]
    hist = history_at(repo, tip(repo, job_id), job_id)
    starts = [e["data"]["attempt"] for e in hist if e.get("to") == "PROVISIONING"]
    assert starts == [1, 2, 3]


def test_retry_exhausted_is_an_intervention_naming_max_attempts(cli):
    job_id, status = run_job(cli, mock_job("Exhausted", steps=['scenario = "retry"\nsucceed_on_attempt = 9'],
                                           head="[budget]\nmax_attempts = 2"))
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "max_attempts" in status["reason"] and "RETRY" in status["reason"]
    assert status["attempt"] == 2
    assert len(harvest_commits(cli.repo, job_id)) == 2


def test_approval_on_a_middle_step_goes_on(cli):
    job_id, status = run_job(cli, mock_job("Middle", steps=['scenario = "approval"', ""]))
    assert status["state"] == "SUCCESS"


# ----------------------------------------------------------------------------- human gates

def test_requires_approval_gate_with_reject_and_approve(cli):
    repo = cli.repo
    job_id, status = run_job(cli, mock_job("Gate", steps=['writes = { "a.txt" = "a" }'],
                                           head="requires_approval = true"))
    assert status["state"] == "APPROVAL_REQUIRED"
    assert cli("job", "resubmit", job_id).code == 1  # the table refuses it here
    cli.ok("job", "reject", job_id, "--message", "Please use a capital H")
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "PENDING"
    reject = tip(repo, job_id)
    assert "Please use a capital H" in git(repo, "log", "-1", "--format=%B", reject)
    assert trailers(repo, reject)["Logist-To"] == "PENDING"
    # the step runs again with the reviewer's note in its prompt
    assert cli("job", "run", job_id).code == 5  # APPROVAL_REQUIRED again: its own exit code
    rec = record_at(repo, tip(repo, job_id), job_id)
    assert rec["state"] == "APPROVAL_REQUIRED"
    assert "Please use a capital H" in rec["steps"][0]["assembled_prompt"]
    cli.ok("job", "approve", job_id, "--message", "Looks good to me")
    approve = tip(repo, job_id)
    assert "Looks good to me" in git(repo, "log", "-1", "--format=%B", approve)
    assert subject(repo, approve) == f"logist({job_id}): APPROVAL_REQUIRED -> SUCCESS (step 1/1)"
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"
    assert cli("job", "approve", job_id).code == 1


def test_step_level_requires_approval(cli):
    text = ('title = "Step gate"\n[[steps]]\nprompt = "a"\n[[steps]]\nprompt = "b"\nrequires_approval = true\n')
    _, status = run_job(cli, text)
    assert status["state"] == "APPROVAL_REQUIRED" and status["step"] == 2


def test_intervention_fix_and_resubmit(cli):
    repo = cli.repo
    check = f'[{PY}, "-c", "import os, sys; sys.exit(0 if os.path.exists(\'fixed.txt\') else 5)"]'
    job_id, status = run_job(cli, f'title = "Needs a fix"\n[[steps]]\nprompt = "check"\ncommand = {check}\n')
    assert status["state"] == "INTERVENTION_REQUIRED" and "code 5" in status["reason"]
    wt = status["worktree"]
    (__import__("pathlib").Path(wt) / "fixed.txt").write_text("fixed by a person\n")
    cli.ok("job", "resubmit", job_id, "--message", "added fixed.txt")
    assert "added fixed.txt" in git(repo, "log", "-1", "--format=%B", f"logist/{job_id}")
    cli.ok("job", "run", job_id)
    status = cli.ok("job", "status", job_id, "--json").json()
    assert status["state"] == "SUCCESS"
    assert git(repo, "show", f"logist/{job_id}:fixed.txt") == "fixed by a person"


# ----------------------------------------------------------------------------- budgets

def test_max_cost_usd(cli):
    job_id, status = run_job(cli, mock_job("Costly", steps=["cost_usd = 0.03", "cost_usd = 0.03", "cost_usd = 0.03"],
                                           head="[budget]\nmax_cost_usd = 0.05"))
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "max_cost_usd" in status["reason"] and "budget" in status["reason"]
    assert status["step"] == 2  # the breach is seen at the harvest of step 2
    # a resubmitted job is refused again before its step starts
    cli.ok("job", "resubmit", job_id)
    assert cli("job", "run", job_id).code == 6
    status = cli.ok("job", "status", job_id, "--json").json()
    assert status["state"] == "INTERVENTION_REQUIRED" and "max_cost_usd" in status["reason"]
    assert tos(cli.repo, job_id)[-2:] == ["PROVISIONING", "INTERVENTION_REQUIRED"]


def test_max_seconds_stops_a_hung_step(cli):
    repo = cli.repo
    job_id, status = run_job(cli, mock_job("Hangs", steps=['scenario = "hang"'],
                                           head="[budget]\nmax_seconds = 1"))
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "max_seconds" in status["reason"] and "budget" in status["reason"]
    agent = json.loads((repo / ".git" / "logist" / "run" / job_id / "agent.json").read_text())
    wait_for(lambda: pid_gone(agent["pid"]), 10, "the hung agent to be gone")
    assert 0.5 < status["seconds"] < 30


# ----------------------------------------------------------------------------- command agent

def test_command_agent_runs_a_real_program(cli):
    repo = cli.repo
    prog = ("import os, pathlib; pathlib.Path('built.txt').write_text(os.environ['LOGIST_JOB_ID']); "
            "print('building'); print('prompt has', len(os.environ['LOGIST_PROMPT']), 'bytes')")
    text = f'title = "Real program"\n[[steps]]\nprompt = "build"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    job_id, status = run_job(cli, text)
    assert status["state"] == "SUCCESS"
    assert git(repo, "show", f"logist/{job_id}:built.txt") == job_id
    hist = history_at(repo, tip(repo, job_id), job_id)
    assert [e["data"].get("exit_code") for e in hist if e.get("to") == "HARVESTING"] == [0]
    assert "building" in cli.ok("job", "log", job_id).out


def test_a_command_step_gets_only_what_the_job_file_says(cli):
    repo = cli.repo
    prog = "import os, pathlib; pathlib.Path('prompt.txt').write_text(os.environ['LOGIST_PROMPT'])"
    text = (f'title = "Plain"\nprompt = "The job."\n[[steps]]\nprompt = "run the tests"\n'
            f'command = [{PY}, "-c", {json.dumps(prog)}]\n[[steps]]\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n')
    job_id, status = run_job(cli, text)
    assert status["state"] == "SUCCESS"
    rec = record_at(repo, tip(repo, job_id), job_id)
    assert [s["assembled_prompt"] for s in rec["steps"]] == ["The job.\n\nrun the tests\n", "The job.\n"]
    harvests = harvest_commits(repo, job_id)
    assert git(repo, "show", f"{harvests[0]}:prompt.txt") == "The job.\n\nrun the tests"
    provisioning = [c for c in commits_of(repo, job_id) if trailers(repo, c)["Logist-To"] == "PROVISIONING"]
    for c in provisioning:  # no outcome protocol anywhere: not in the commit, not in the record
        body = git(repo, "log", "-1", "--format=%B", c)
        assert '"action"' not in body and "COMPLETED" not in body and "# Job:" not in body


def test_command_with_a_fenced_outcome(cli):
    prog = 'print("```json"); print(\'{"action": "STUCK", "summary": "need the API spec"}\'); print("```")'
    text = f'title = "Outcome"\n[[steps]]\nprompt = "x"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    _, status = run_job(cli, text)
    assert status["state"] == "INTERVENTION_REQUIRED" and "need the API spec" in status["reason"]


def test_the_record_survives_an_agent_that_commits(cli):
    """docs/architecture.md#invariants, 8: an agent that commits (and even edits .logist/) keeps its work; logist's
    record comes from logist's own last commit."""
    repo = cli.repo
    prog = ("import json, pathlib, subprocess; "
            "pathlib.Path('agent.txt').write_text('agent work'); "
            "p = next(pathlib.Path('.logist/jobs').glob('*/manifest.json')); "
            "m = json.loads(p.read_text()); m['state'] = 'SUCCESS'; m['cost_usd'] = 1000; "
            "p.write_text(json.dumps(m)); "
            "subprocess.run(['git', 'add', '-A'], check=True); "
            "subprocess.run(['git', 'commit', '-q', '-m', 'agent: my own commit'], check=True)")
    text = (f'title = "Committer"\n[[steps]]\nprompt = "x"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
            '[[steps]]\nprompt = "y"\n')
    job_id = create_from_toml(cli, text, "--activate")
    cli.ok("job", "step", job_id)
    status = cli.ok("job", "status", job_id, "--json").json()
    assert (status["state"], status["step"], status["cost_usd"]) == ("PENDING", 2, 0.0)
    log = git(repo, "log", "--format=%s", f"logist/{job_id}")
    assert "agent: my own commit" in log  # the agent's commit is kept as an ancestor
    assert git(repo, "show", f"logist/{job_id}:agent.txt") == "agent work"
    assert worktree_status(status["worktree"]) == ""
    cli.ok("job", "run", job_id)
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"


# ----------------------------------------------------------------------------- cost, tokens, logs, metrics

def test_cost_and_token_trailers_add_up(cli):
    repo = cli.repo
    job_id, status = run_job(cli, mock_job("Totals", steps=["cost_usd = 0.01\ntokens = 100",
                                                            "cost_usd = 0.02\ntokens = 250",
                                                            "cost_usd = 0.125\ntokens = 1000"]))
    assert status["state"] == "SUCCESS"
    costs = git(repo, "log", "--format=%(trailers:key=Logist-Cost-USD,valueonly)", f"logist/{job_id}").split()
    tokens = git(repo, "log", "--format=%(trailers:key=Logist-Tokens,valueonly)", f"logist/{job_id}").split()
    assert sum(float(c) for c in costs) == pytest.approx(0.155)
    assert sum(int(t) for t in tokens) == 1350
    assert status["cost_usd"] == pytest.approx(0.155) and status["tokens"] == 1350
    last = trailers(repo, tip(repo, job_id))
    assert float(last["Logist-Cost-USD-Total"]) == pytest.approx(0.155)
    assert last["Logist-Tokens-Total"] == "1350"
    oracle = Oracle(repo)
    rec = oracle.check_job(job_id, state="SUCCESS")
    assert oracle.trailers(oracle.tip(job_id))["Logist-Tokens-Total"] == str(rec["tokens"]) == "1350"


def test_step_log_is_a_redacted_note_on_the_harvest_commit(cli):
    repo = cli.repo
    secrets = ["sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
               "ghp_abcdefghijklmnopqrstuvwxyz0123456789ABCD",
               "AKIAIOSFODNN7EXAMPLE"]
    output = json.dumps(["using key " + secrets[0], "GITHUB_TOKEN=" + secrets[1], "aws " + secrets[2],
                         "an ordinary line"])
    job_id, status = run_job(cli, mock_job("Secrets", steps=[f"output = {output}"]))
    assert status["state"] == "SUCCESS"
    (harvest,) = harvest_commits(repo, job_id)
    note = git(repo, "notes", "--ref=refs/notes/logist/logs", "show", harvest)
    assert Oracle(repo).note("refs/notes/logist/logs", harvest) == note
    assert "an ordinary line" in note and "mock agent starting" in note
    assert "[REDACTED]" in note
    for s in secrets:
        assert s not in note
    assert "an ordinary line" in git(repo, "log", "-1", harvest)  # notes.displayRef shows it
    out = cli.ok("job", "log", job_id, "--step", "1").out
    assert "an ordinary line" in out and secrets[0] not in out


def test_history_notes_and_last_signal(cli):
    """The side process's observer notes are read back by `job history --notes` and `job status`."""
    job_id, status = run_job(cli, mock_job("Limited", steps=['scenario = "rate_limit"\ndelay_s = 0.3']))
    assert status["state"] == "SUCCESS"
    assert (status["last_signal"] or "").startswith("rate_limit")
    items = cli.ok("job", "history", job_id, "--notes", "--json").json()
    notes = [i for i in items if i["event"] == "notes"]
    assert notes and notes[0]["signal"] == "rate_limit" and notes[0]["ref"] == "observer"
    # the note itself, read without logist: on one of the job's commits, naming the signal
    oracle = Oracle(cli.repo)
    observed = [oracle.note("refs/notes/logist/observer", c.hexsha) for c in oracle.logist_commits(job_id)]
    signals = [json.loads(line)["signal"] for n in observed if n for line in n.splitlines()]
    assert "rate_limit" in signals, observed
    executing = [i for i in items if i.get("to") == "EXECUTING"]
    assert items.index(notes[0]) > items.index(executing[0])  # shown after the step's EXECUTING entry


def test_metrics_csv(cli):
    retry = 'scenario = "retry"\nsucceed_on_attempt = 2\ncost_usd = 0.25\ntokens = 5'
    job_id, _ = run_job(cli, mock_job("Metrics", steps=["cost_usd = 0.5\ntokens = 10", retry]))
    r = cli.ok("job", "metrics", job_id, "--csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [r_["step"] for r_ in rows] == ["1", "2", "total"]
    assert set(rows[0]) >= {"step", "name", "agent", "status", "attempts", "cost_usd", "tokens", "seconds"}
    assert (rows[0]["attempts"], float(rows[0]["cost_usd"]), rows[0]["tokens"]) == ("1", 0.5, "10")
    assert (rows[1]["attempts"], float(rows[1]["cost_usd"]), rows[1]["tokens"]) == ("2", 0.5, "10")
    total = rows[2]
    assert (total["attempts"], float(total["cost_usd"]), total["tokens"]) == ("3", 1.0, "20")
    assert float(total["seconds"]) == pytest.approx(float(rows[0]["seconds"]) + float(rows[1]["seconds"]), abs=0.01)
    assert float(total["seconds"]) > 0
    data = cli.ok("job", "metrics", job_id, "--json").json()
    assert data["total"]["cost_usd"] == 1.0


# ----------------------------------------------------------------------------- many jobs, background, dashboard

def test_run_without_id_runs_every_pending_job(cli):
    repo = cli.repo
    pending = [create_from_toml(cli, mock_job(f"Job {i}", steps=[f'writes = {{ "f{i}.txt" = "{i}" }}']),
                                "--activate", name=f"j{i}.toml") for i in range(3)]
    draft = create_job(cli, "--title", "Draft", "--step", "x")
    failing = create_from_toml(cli, mock_job("Failing", steps=['scenario = "stuck"']), "--activate")
    draft_tip = tip(repo, draft)
    r = cli("job", "run")
    assert r.code == 6, r  # one of them needs intervention
    for j in pending:
        assert cli.ok("job", "status", j, "--json").json()["state"] == "SUCCESS"
        assert j in r.out
    assert cli.ok("job", "status", failing, "--json").json()["state"] == "INTERVENTION_REQUIRED"
    assert tip(repo, draft) == draft_tip
    assert "no PENDING jobs" in cli.ok("job", "run").out


def test_run_detach_and_attach(project):
    """`job attach` follows a detached run through both steps. Step 1 waits for a gate file, so
    attach starts while it runs (no timing window): the gate opens once attach has shown
    step 1's first line."""
    import subprocess

    from _crashkit import Lines

    repo = project
    gate = repo.parent / "release-step-1"
    code = ("import os, time\nprint('step one is working', flush=True)\nend = time.monotonic() + 120\n"
            f"while not os.path.exists({str(gate)!r}) and time.monotonic() < end:\n    time.sleep(0.02)\n"
            "print('step one is done', flush=True)\n")
    text = (f'title = "Background"\nprompt = "The whole job"\n[[steps]]\nname = "gated"\nprompt = "x"\n'
            f'command = [{PY}, "-c", {json.dumps(code)}]\n'
            '[[steps]]\nname = "s2"\nprompt = "Do part 2"\n[steps.mock]\noutput = ["second step says hi"]\n')
    r = run_cli("job", "create", "--activate", "--json", "--file", _write_job(repo, text), cwd=repo)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    r = run_logist("job", "run", "--detach", job_id, cwd=repo)
    assert r.returncode == 0, r.stderr
    pid = int(re.search(r"pid (\d+)", r.stdout).group(1))
    attach = None
    try:
        # when --detach returns, the background runner holds the job
        assert git(repo, "for-each-ref", f"refs/logist/locks/{job_id}")
        attach = subprocess.Popen([sys.executable, "-m", "logist", "job", "attach", job_id, "--timeout", "90"],
                                  cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out_lines = Lines(attach, attach.stdout)
        out_lines.wait_for("step one is working")
        # a step that is already running is refused, never started twice
        busy = run_cli("job", "step", job_id, cwd=repo)
        assert busy.returncode == 4 and "busy" in busy.stderr
        gate.write_text("go")
        code, out = out_lines.finish(timeout=120)
        assert code == 0, attach.stderr.read()
        assert "step one is done" in out and "second step says hi" in out
        # the end of step 2's output too (printed just before the agent exits)
        assert out.count("mock: done") == 1 and out.count('"action": "COMPLETED"') == 1, out
        assert out.rstrip().endswith(f"{job_id}: SUCCESS (step 2/2)")
        wait_for(lambda: pid_gone(pid), 20, "the detached runner to exit")
    finally:
        gate.write_text("go")  # a failed test leaves no agent waiting
        if attach is not None and attach.poll() is None:
            attach.kill()
            attach.wait()
        kill_group(pid)
    status = json.loads(run_cli("job", "status", job_id, "--json", cwd=repo).stdout)
    assert status["state"] == "SUCCESS"


def _write_job(repo, text):
    path = repo.parent / "bg.toml"
    path.write_text(text)
    return path


def test_dashboard_once(cli):
    a, _ = run_job(cli, mock_job("Dash done", steps=["cost_usd = 0.5"]))
    b = create_job(cli, "--title", "Dash waiting", "--step", "x", "--activate")
    r = cli.ok("dashboard", "--once")
    lines = r.out.splitlines()
    assert lines[1] == "NEEDS YOU (0)  nothing needs you"
    row_a = next(line for line in lines if line.strip().startswith(a))
    assert "SUCCESS" in row_a and "$0.50" in row_a and "1/1" in row_a
    row_b = next(line for line in lines if line.strip().startswith(b))
    assert "PENDING" in row_b
    assert lines.index("WAITING (1)") < lines.index(row_b) < lines.index("FINISHED (1)") < lines.index(row_a)
    r = run_logist("dashboard", "--once", cwd=cli.repo)
    assert r.returncode == 0 and a in r.stdout


# ----------------------------------------------------------------------------- harvest details

def test_harvest_respects_gitignore_and_deletions(cli):
    repo = cli.repo
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "old.txt").write_text("old\n")
    git(repo, "add", ".gitignore", "old.txt")
    git(repo, "commit", "-q", "-m", "ignore logs")
    prog = ("import os, pathlib; os.remove('old.txt'); pathlib.Path('debug.log').write_text('noise'); "
            "pathlib.Path('build').mkdir(); pathlib.Path('build/out.bin').write_text('x'); "
            "pathlib.Path('kept.txt').write_text('kept')")
    job_id, status = run_job(cli, f'title = "Ignore"\n[[steps]]\nprompt = "x"\n'
                                  f'command = [{PY}, "-c", {json.dumps(prog)}]\n')
    assert status["state"] == "SUCCESS"
    (h,) = harvest_commits(repo, job_id)
    changed = git(repo, "diff", "--name-status", f"{h}^", h).splitlines()
    assert "D\told.txt" in changed and "A\tkept.txt" in changed
    assert not any("debug.log" in c or "build/" in c for c in changed)
    # what git ignores does not keep a finished job's worktree (as with `git worktree remove`)
    assert not status["worktree_exists"] and not Path(status["worktree"]).exists()


def test_step_log_note_is_capped(cli):
    cfg = cli.repo / ".logist" / "config.toml"
    cfg.write_text(cfg.read_text().replace("max_note_bytes = 256000", "max_note_bytes = 2000"))
    lines = json.dumps([f"line {i:04d} " + "x" * 60 for i in range(400)])
    job_id, status = run_job(cli, mock_job("Chatty", steps=[f"output = {lines}"]))
    assert status["state"] == "SUCCESS"
    (h,) = harvest_commits(cli.repo, job_id)
    note = git(cli.repo, "notes", "--ref=refs/notes/logist/logs", "show", h)
    assert 0 < len(note.encode()) <= 2000 + 200
    assert "line 0000" in note  # the head is kept


@pytest.mark.parametrize(("agent", "step"), [("claude", 'prompt = "x"'),
                                             ("command", 'command = ["definitely-not-a-program-xyz"]')])
def test_an_agent_that_cannot_start_is_an_intervention(cli, agent, step):
    import shutil

    if agent == "claude" and shutil.which("claude"):
        pytest.skip("a real claude is installed here")
    text = f'title = "Cannot start"\nagent = "{agent}"\n[[steps]]\n{step}\n'
    job_id, status = run_job(cli, text)
    assert status["state"] == "INTERVENTION_REQUIRED"
    assert "not on PATH" in status["reason"]
    assert "refs/logist/locks/" not in refs_snapshot(cli.repo)
    assert worktree_status(status["worktree"]) == ""


def test_run_all_in_parallel(cli):
    repo = cli.repo
    ids = [create_from_toml(cli, mock_job(f"Par {i}", steps=[f'writes = {{ "p{i}.txt" = "{i}" }}', "cost_usd = 0.01"]),
                            "--activate", name=f"p{i}.toml") for i in range(3)]
    r = cli("job", "run", "--parallel", "2", "--json")
    assert r.code == 0, r
    results = {x["id"]: x for x in r.json()}
    assert set(results) == set(ids)
    for i, j in enumerate(ids):
        assert results[j]["state"] == "SUCCESS"
        assert tos(repo, j) == ["PENDING", *step_cycle("PENDING"), *step_cycle("SUCCESS")]
        assert git(repo, "show", f"logist/{j}:p{i}.txt") == str(i)
        assert not any(f"p{k}.txt" in git(repo, "ls-tree", "-r", "--name-only", f"logist/{j}")
                       for k in range(3) if k != i)
    assert "refs/logist/locks/" not in refs_snapshot(repo)
    proc = __import__("subprocess").run(["git", "-C", str(repo), "fsck", "--no-dangling"], capture_output=True,
                                        text=True)
    assert proc.returncode == 0, proc.stderr


def test_job_step_runs_exactly_one_step(cli):
    repo = cli.repo
    job_id = create_from_toml(cli, mock_job("Stepwise", steps=["", ""]), "--activate")
    r = cli.ok("job", "step", job_id, "--json")
    assert (r.json()["state"], r.json()["step"]) == ("PENDING", 2)
    assert tos(repo, job_id) == ["PENDING", *step_cycle("PENDING")]
    r = cli.ok("job", "step", job_id)
    assert "SUCCESS" in r.out
    assert tos(repo, job_id) == ["PENDING", *step_cycle("PENDING"), *step_cycle("SUCCESS")]
    before = refs_snapshot(repo)
    r = cli("job", "step", job_id)
    assert r.code == 1 and "SUCCESS" in r.err
    assert refs_snapshot(repo) == before


# ----------------------------------------------------------------------------- what an agent leaves, side processes

def test_processes_a_command_agent_leaves_behind_are_stopped_and_recorded(cli, tmp_path):
    """A real shell agent that backgrounds a sleeper and exits: the sleeper is stopped right
    after, and the harvest says so (history entry and commit body)."""
    repo = cli.repo
    pid_file = tmp_path / "sleeper.pid"
    script = f"sleep 1000 & echo $! > {pid_file}; echo started a sleeper"
    text = (f'title = "Leaves a sleeper"\n[[steps]]\nprompt = "x"\n'
            f'command = ["/bin/sh", "-c", {json.dumps(script)}]\n')
    sleeper = None
    try:
        job_id, status = run_job(cli, text)
        sleeper = int(pid_file.read_text())
        assert status["state"] == "SUCCESS", status
        wait_for(lambda: pid_gone(sleeper), 10, "the sleeper to be gone")
        hist = history_at(repo, tip(repo, job_id), job_id)
        (harvesting,) = [e for e in hist if e.get("to") == "HARVESTING"]
        (warning,) = harvesting["data"]["warnings"]
        assert warning.startswith("the agent left 1 process running in its process group") \
            and "SIGTERM" in warning, warning
        (harvest,) = harvest_commits(repo, job_id)
        assert f"Warning: {warning}" in git(repo, "log", "-1", "--format=%B", harvest)
        assert "started a sleeper" in cli.ok("job", "log", job_id).out
    finally:
        if sleeper and not pid_gone(sleeper):  # clean up by pid if the test failed
            os.kill(sleeper, 9)


def test_processes_left_by_a_restep_are_stopped_and_recorded(cli, tmp_path):
    """The same for a restep: its commit and history entry say what was stopped."""
    repo = cli.repo
    pid_file = tmp_path / "sleeper.pid"
    script = f"sleep 1000 & echo $! > {pid_file}; echo started a sleeper"
    text = (f'title = "Restep leaves a sleeper"\n[[steps]]\nprompt = "x"\n'
            f'command = ["/bin/sh", "-c", {json.dumps(script)}]\n')
    sleepers = []
    try:
        job_id, status = run_job(cli, text)
        sleepers.append(int(pid_file.read_text()))
        assert status["state"] == "SUCCESS", status
        cli.ok("job", "restep", job_id, "1")
        sleepers.append(int(pid_file.read_text()))
        wait_for(lambda: pid_gone(sleepers[-1]), 10, "the restep's sleeper to be gone")
        hist = history_at(repo, tip(repo, job_id), job_id)
        done = [e for e in hist if e["event"] == "restep" and e["data"].get("phase") == "done"]
        (warning,) = done[-1]["data"]["warnings"]
        assert warning.startswith("the agent left 1 process running in its process group"), warning
        assert f"Warning: {warning}" in git(repo, "log", "-1", "--format=%B", tip(repo, job_id))
    finally:
        for pid in sleepers:  # clean up by pid if the test failed
            if not pid_gone(pid):
                os.kill(pid, 9)


def test_an_agent_that_leaves_nothing_gets_no_warning(cli):
    job_id, status = run_job(cli, 'title = "Clean"\n[[steps]]\nprompt = "x"\ncommand = ["true"]\n')
    assert status["state"] == "SUCCESS"
    hist = history_at(cli.repo, tip(cli.repo, job_id), job_id)
    assert all("warnings" not in e.get("data", {}) for e in hist)


def test_side_processes_finish_during_the_harvest_and_are_reaped_one_at_a_time(cli, monkeypatch):
    """Each step's side process overlaps its harvest; the previous one is reaped before the
    next agent starts, the last before `job run` returns, with its notes in git by then."""
    from logist.engine import watcher

    spawned: list[int] = []
    overlapping: list[list[int]] = []
    real = watcher.spawn_watcher

    def recording(**kw):
        overlapping.append([p for p in spawned if os.path.exists(f"/proc/{p}")])
        pid = real(**kw)
        spawned.append(pid)
        return pid

    monkeypatch.setattr(watcher, "spawn_watcher", recording)
    repo = cli.repo
    step = 'prompt = "x"\ncommand = ["/bin/sh", "-c", "echo Error: 429 Too Many Requests"]\n'
    job_id, status = run_job(cli, 'title = "Three"\n' + f"[[steps]]\n{step}" * 3)
    assert status["state"] == "SUCCESS"
    assert len(spawned) == 3 and overlapping == [[], [], []]  # never two at once, no zombie
    for pid in spawned:  # all reaped by the engine: not even zombies
        assert not os.path.exists(f"/proc/{pid}") or pid_gone(pid)
    executing = [c for c in commits_of(repo, job_id) if trailers(repo, c)["Logist-To"] == "EXECUTING"]
    for c in executing:
        out = git(repo, "notes", "--ref=logist/observer", "show", c)
        assert [json.loads(line)["signal"] for line in out.splitlines()] == ["rate_limit"]
    assert not (repo / ".git" / "logist" / "run" / job_id / "verdict.json").exists()


def test_a_verdict_of_another_step_is_stale(tmp_path):
    from logist.engine.agent_supervisor import read_verdict as _verdict

    path = tmp_path / "verdict.json"
    assert _verdict(path, "a" * 40) is None
    path.write_text(json.dumps({"verdict": "hung", "reason": "silent", "commit": "b" * 40}))
    assert _verdict(path, "b" * 40)["reason"] == "silent"
    assert path.exists()
    assert _verdict(path, "a" * 40) is None and not path.exists()  # stale: removed
    path.write_text("{not json")
    assert _verdict(path, "a" * 40) == {}  # unreadable: the sentinel stopped it, reason unknown
