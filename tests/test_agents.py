"""Agents: the outcome protocol, the mock scenarios as real processes, the command agent, and the
AI adapters against fake CLIs (tests/fakes) that print each tool's documented output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from logist.agents import AGENTS, OUTCOME_INSTRUCTIONS, agent_names, find_outcome, get_agent, validate_agent_options
from logist.agents.base import ARGV_PROMPT_LIMIT, AgentResult, StepContext
from logist.agents.results import iter_json_objects
from logist.core.errors import AgentError
from logist.runtimes import HostRuntime

FAKES = Path(__file__).resolve().parent / "fakes"
AI_AGENTS = ["claude", "codex", "aider", "cline", "gemini"]


# --------------------------------------------------------------------------- helpers

def ctx_for(workdir: Path, options: dict | None = None, *, prompt: str = "Say hello.",
            attempt: int = 1, session_id: str | None = None) -> StepContext:
    return StepContext(job_id="hello-7k2q", step_number=2, step_count=3, step_name="greet",
                       prompt=prompt, workdir=workdir, options=options or {}, attempt=attempt,
                       session_id=session_id)


@pytest.fixture
def run(tmp_path):
    """Run an agent's invocation as a real process through HostRuntime; kill leftovers."""
    handles = []

    def start(agent, ctx):
        inv = agent.build(ctx)
        handle = HostRuntime().spawn(inv.argv, cwd=ctx.workdir, env=inv.env,
                                     log_path=tmp_path / "logs" / f"step{len(handles)}.log",
                                     stdin=inv.stdin)
        handles.append(handle)
        return handle

    def finish(agent, ctx, timeout: float = 20.0) -> tuple[AgentResult, str]:
        handle = start(agent, ctx)
        code = handle.wait(timeout)
        assert code is not None, "agent did not exit in time"
        output = handle.log_path.read_text()
        return agent.parse(output, code, ctx), output

    finish.start = start
    yield finish
    for handle in handles:
        handle.kill()
        handle.wait(5)


@pytest.fixture
def work(tmp_path) -> Path:
    path = tmp_path / "worktree"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- outcome protocol

def block(obj, fence: str = "```json") -> str:
    return f"{fence}\n{json.dumps(obj) if not isinstance(obj, str) else obj}\n```"


def test_last_outcome_block_wins_and_blocks_that_are_not_outcomes_are_skipped():
    text = "\n".join([
        "thinking...",
        block({"action": "RETRY", "summary": "first"}),
        block({"action": "DONE", "summary": "bad action"}),
        block("{not json"),
        "```python\nprint('x')\n```",
        block({"action": "COMPLETED", "summary": "second", "evidence_files": ["a.py"]}, "```"),
        block({"summary": "no action key"}),
        block(["COMPLETED"]),
    ])
    out = find_outcome(text)
    assert out["action"] == "COMPLETED" and out["summary"] == "second"
    assert out["evidence_files"] == ["a.py"] and out["approval"] is False and out["warnings"] == []


def test_outcome_tolerates_crlf_and_reads_optional_fields():
    text = ("done\r\n```JSON\r\n" + json.dumps({
        "action": "STUCK", "summary": "need a key", "reason": "no API key", "cost_usd": 0.25,
        "tokens": 1000, "approval": True, "extra": "ignored"}) + "\r\n```\r\n")
    out = find_outcome(text)
    assert out == {"action": "STUCK", "summary": "need a key", "evidence_files": [],
                   "reason": "no API key", "approval": True, "cost_usd": 0.25, "tokens": 1000,
                   "warnings": []}


def test_python_block_closing_fence_does_not_swallow_the_outcome():
    text = "```python\nx = 1\n```\nthen\n" + block({"action": "COMPLETED", "summary": "ok"})
    assert find_outcome(text)["summary"] == "ok"


def test_no_outcome_and_the_instructions_example_is_not_an_outcome():
    assert find_outcome("") is None
    assert find_outcome("all done, no block") is None
    assert find_outcome(OUTCOME_INSTRUCTIONS) is None  # an echoed prompt reports nothing
    assert '"action"' in OUTCOME_INSTRUCTIONS and "```json" in OUTCOME_INSTRUCTIONS


def test_iter_json_objects_reads_jsonl_pretty_json_and_mixed_lines():
    text = ('log line\n{"a": 1}\n{broken\n  {\n    "b": {"c": 2}\n  }\n'
            'warn: {"not": "at line start"}\n{"d": 3}')
    assert list(iter_json_objects(text)) == [{"a": 1}, {"b": {"c": 2}}, {"d": 3}]


def test_missing_outcome_semantics_plain_versus_ai(work):
    ctx = ctx_for(work, {"command": ["true"]})
    plain = get_agent("command").parse("ran fine\n", 0, ctx)
    assert plain.action == "COMPLETED" and plain.exit_code == 0
    ai = get_agent("aider").parse("I did it, trust me.\n", 0, ctx)
    assert ai.action == "NO_OUTCOME" and "without a valid outcome" in ai.reason
    unknown = get_agent("command").parse("ran\n", None, ctx)
    assert unknown.action == "NO_OUTCOME" and "unknown" in unknown.reason
    with_outcome = get_agent("command").parse(block({"action": "RETRY", "summary": "x"}), None,
                                              ctx)
    assert with_outcome.action == "RETRY"


# --------------------------------------------------------------------------- mock scenarios

def mock(scenario: str, **spec) -> dict:
    return {"mock": {"scenario": scenario, **spec}}


def test_mock_success_writes_files_before_the_outcome(run, work):
    agent = get_agent("mock")
    ctx = ctx_for(work, mock("success", writes={"src/hello.py": "print('hi')\n", "NOTES.md": "n"},
                             cost_usd=0.5, tokens=1234, summary="wrote hello",
                             output=["extra line one"]))
    result, output = run(agent, ctx)
    assert result.action == "COMPLETED" and result.exit_code == 0
    assert result.summary == "wrote hello"
    assert result.cost_usd == 0.5 and result.tokens == 1234
    assert sorted(result.evidence_files) == ["NOTES.md", "src/hello.py"]
    assert (work / "src/hello.py").read_text() == "print('hi')\n"
    assert output.index("mock: wrote src/hello.py") < output.index("```json")
    assert "extra line one" in output


def test_mock_stuck(run, work):
    result, _ = run(get_agent("mock"), ctx_for(work, mock("stuck")))
    assert result.action == "STUCK" and "ambiguous" in result.reason


@pytest.mark.parametrize("attempt,wanted,action", [(1, None, "RETRY"), (2, None, "COMPLETED"),
                                                   (2, 3, "RETRY"), (3, 3, "COMPLETED")])
def test_mock_retry_until_succeed_on_attempt(run, work, attempt, wanted, action):
    spec = mock("retry", **({"succeed_on_attempt": wanted} if wanted else {}))
    result, _ = run(get_agent("mock"), ctx_for(work, spec, attempt=attempt))
    assert result.action == action


def test_mock_error_exits_3_with_an_error_line(run, work):
    result, output = run(get_agent("mock"), ctx_for(work, mock("error")))
    assert result.action == "FAILED" and result.exit_code == 3
    assert result.reason.startswith("mock agent exited with code 3: error:")
    assert "error: mock agent failed" in output


@pytest.mark.parametrize("scenario,line", [
    ("api_error", "API Error: 500 Internal Server Error"),
    ("auth_error", "Error: 401 Unauthorized - invalid API key (authentication_error)"),
])
def test_mock_api_and_auth_errors_exit_1(run, work, scenario, line):
    result, output = run(get_agent("mock"), ctx_for(work, mock(scenario)))
    assert result.action == "FAILED" and result.exit_code == 1
    assert line in output and line in result.reason


def test_mock_rate_limit_then_success(run, work):
    result, output = run(get_agent("mock"), ctx_for(work, mock("rate_limit", delay_s=0.15)))
    assert result.action == "COMPLETED"
    assert output.count("Error: 429 Too Many Requests - rate limit exceeded, retrying in 1s") == 3


def test_mock_context_full_is_stuck(run, work):
    result, output = run(get_agent("mock"), ctx_for(work, mock("context_full")))
    assert result.action == "STUCK" and "context window exceeded" in result.reason
    assert "(context_length_exceeded)" in output


def test_mock_approval_asks_for_sign_off(run, work):
    result, output = run(get_agent("mock"), ctx_for(work, mock("approval",
                                                               writes={"a.txt": "a"})))
    assert result.action == "COMPLETED" and result.requests_approval is True
    assert "Requesting approval: please review and sign off" in output
    assert (work / "a.txt").exists()


def test_mock_slow_streams_lines_while_running(run, work):
    agent = get_agent("mock")
    ctx = ctx_for(work, mock("slow", delay_s=1.5))
    handle = run.start(agent, ctx)
    wait_for(lambda: "working slowly (1/5)" in handle.log_path.read_text(), what="first line")
    assert handle.is_alive()  # the line was visible in the log before the process ended
    assert handle.wait(20) == 0
    output = handle.log_path.read_text()
    assert output.count("working slowly") == 5
    assert agent.parse(output, 0, ctx).action == "COMPLETED"


def test_mock_hang_prints_nothing_and_never_exits(run, work):
    handle = run.start(get_agent("mock"), ctx_for(work, mock("hang")))
    assert handle.wait(0.5) is None
    handle.terminate()
    assert handle.wait(10) == -15
    assert handle.log_path.read_text() == ""


def test_mock_waiting_input_asks_and_blocks_without_reading_stdin(run, work):
    handle = run.start(get_agent("mock"), ctx_for(work, mock("waiting_input")))
    wait_for(lambda: "Do you want to proceed? (y/n)" in handle.log_path.read_text(),
             what="the question")
    assert handle.wait(0.3) is None
    handle.interrupt()
    assert handle.wait(10) == 130  # interrupted quietly, like a CLI: no traceback
    assert "Traceback" not in handle.log_path.read_text()


def test_mock_ignore_signals_needs_a_kill(run, work):
    spec = mock("waiting_input", ignore_signals=["INT", "TERM"])
    handle = run.start(get_agent("mock"), ctx_for(work, spec))
    # The question is printed after the handlers are installed.
    wait_for(lambda: "(y/n)" in handle.log_path.read_text(), what="the question")
    handle.interrupt()
    handle.terminate()
    assert handle.wait(0.3) is None
    handle.kill()
    assert handle.wait(10) == -9


def test_mock_refuses_to_write_outside_the_worktree_even_unvalidated(work, tmp_path):
    env = {"LOGIST_MOCK_SPEC": json.dumps({"writes": {"../escape.txt": "x"}})}
    inv = get_agent("mock").build(ctx_for(work))
    handle = HostRuntime().spawn(inv.argv, cwd=work, env={**inv.env, **env},
                                 log_path=tmp_path / "esc.log")
    assert handle.wait(20) == 2
    assert not (tmp_path / "escape.txt").exists()


def test_mock_invocation_is_python_dash_m_with_the_spec_in_env(work):
    spec = {"scenario": "success", "tokens": 5}
    inv = get_agent("mock").build(ctx_for(work, {"mock": spec}, attempt=4))
    assert inv.argv == [sys.executable, "-m", "logist.agents.mock_agent"]
    assert json.loads(inv.env["LOGIST_MOCK_SPEC"]) == spec
    assert inv.env["LOGIST_MOCK_ATTEMPT"] == "4" and inv.env["LOGIST_JOB_ID"] == "hello-7k2q"
    assert inv.stdin is None


# --------------------------------------------------------------------------- command agent

def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_command_success_gets_the_prompt_in_env_not_argv(run, work):
    code = ("import os; print(os.environ['LOGIST_PROMPT']); "
            "print(os.environ['LOGIST_JOB_ID'], os.environ['LOGIST_STEP'])")
    ctx = ctx_for(work, {"command": py(code)}, prompt="Fix the 'login' bug; $HOME `x`")
    inv = get_agent("command").build(ctx)
    assert ctx.prompt not in inv.argv and inv.argv[:2] == [sys.executable, "-c"]
    result, output = run(get_agent("command"), ctx)
    assert result.action == "COMPLETED" and result.exit_code == 0
    assert "Fix the 'login' bug; $HOME `x`\nhello-7k2q 2\n" in output


def test_command_nonzero_exit_is_failed_with_the_code(run, work):
    ctx = ctx_for(work, {"command": py("import sys; print('boom'); sys.exit(7)")})
    result, _ = run(get_agent("command"), ctx)
    assert result.action == "FAILED" and result.exit_code == 7
    assert result.reason == "command exited with code 7: boom"


def test_command_fenced_outcome_wins(run, work):
    out = json.dumps({"action": "STUCK", "summary": "tests need a database"})
    ctx = ctx_for(work, {"command": py(f"print('```json'); print({out!r}); print('```')")})
    result, _ = run(get_agent("command"), ctx)
    assert result.action == "STUCK" and result.reason == "tests need a database"


def test_command_args_are_appended_and_no_shell_is_used(run, work):
    ctx = ctx_for(work, {"command": py("import sys; print(sys.argv[1:])"),
                         "args": ["a b", "$(echo no)", ";"]})
    result, output = run(get_agent("command"), ctx)
    assert result.action == "COMPLETED"
    assert "['a b', '$(echo no)', ';']" in output


def test_command_missing_program_and_bad_options(work):
    with pytest.raises(AgentError, match="not on PATH"):
        get_agent("command").build(ctx_for(work, {"command": ["no-such-program-xyz"]}))
    for bad in ({}, {"command": []}, {"command": "make test"}, {"command": ["make", 3]},
                {"command": [""]}):
        with pytest.raises(AgentError, match="command"):
            validate_agent_options("command", bad)
    assert get_agent("command").runs_commands is True


# --------------------------------------------------------------------------- AI adapters

@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Put tests/fakes first on PATH; return the file each fake records its argv/stdin in."""
    monkeypatch.setenv("PATH", str(FAKES) + os.pathsep + os.environ.get("PATH", ""))
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.delenv("FAKE_MODE", raising=False)
    return record


EXPECTED = {  # agent: (cost_usd, tokens, session_id)
    "claude": (0.0421, 1200 + 300 + 500 + 250, "0b7e4d1c-5f7a-4a57-9a43-2f6c1d9e8a10"),
    "codex": (0.0, 24763 + 122, "0b7e4d1c-5f7a-4a57-9a43-2f6c1d9e8a10"),
    "aider": (0.0263, 3000 + 42 + 12450 + 1100, None),
    "cline": (0.011 + 0.02, 2 * (1500 + 200 + 100 + 50), None),
    "gemini": (0.0, 4300, "0b7e4d1c-5f7a-4a57-9a43-2f6c1d9e8a10"),
}

PROMPT = "- first line starts with a dash\nsecond line with 'quotes' and $VARS\n"


@pytest.mark.parametrize("name", AI_AGENTS)
def test_ai_agent_success_reads_outcome_cost_tokens_session(run, work, fakes, name):
    agent = get_agent(name)
    assert agent.ai is True and agent.runs_commands is False
    assert agent.executable() == str(FAKES / name)
    ctx = ctx_for(work, {}, prompt=PROMPT)
    result, _ = run(agent, ctx)
    cost, tokens, session = EXPECTED[name]
    assert result.action == "COMPLETED", result.reason
    assert result.summary == "added the greeting" and result.evidence_files == ["hello.txt"]
    assert result.cost_usd == pytest.approx(cost) and result.tokens == tokens
    assert result.session_id == session and result.exit_code == 0
    seen = json.loads(fakes.read_text())
    assert seen["cwd"] == str(work)
    assert PROMPT in seen["argv"] or f"--message={PROMPT}" in seen["argv"] \
        or f"--prompt={PROMPT}" in seen["argv"]
    assert seen["stdin"] == ""


@pytest.mark.parametrize("name", AI_AGENTS)
def test_ai_agent_error_is_failed_with_the_reason(run, work, fakes, monkeypatch, name):
    monkeypatch.setenv("FAKE_MODE", "error")
    result, _ = run(get_agent(name), ctx_for(work))
    assert result.action == "FAILED" and result.exit_code == 1
    assert result.reason.startswith(f"{name} exited with code 1: ")
    expected = {"claude": "API Error: 500", "codex": "401 Unauthorized",
                "aider": "not able to authenticate", "cline": "429 Rate limit",
                "gemini": "429 Resource exhausted"}[name]
    assert expected in result.reason


@pytest.mark.parametrize("name", AI_AGENTS)
def test_ai_agent_without_outcome_is_no_outcome(run, work, fakes, monkeypatch, name):
    monkeypatch.setenv("FAKE_MODE", "no_outcome")
    result, _ = run(get_agent(name), ctx_for(work))
    assert result.action == "NO_OUTCOME" and result.exit_code == 0
    assert "without a valid outcome" in result.reason
    assert "hello.txt" in result.summary  # the agent's final words are kept


@pytest.mark.parametrize("name,fmt", [("claude", "json"), ("gemini", "json")])
def test_single_object_json_formats(run, work, fakes, name, fmt):
    result, output = run(get_agent(name), ctx_for(work, {"output_format": fmt}))
    assert result.action == "COMPLETED"
    cost, tokens, session = EXPECTED[name]
    if name == "gemini":
        tokens = 4400 + 600  # summed over the models of stats.models
    assert (result.cost_usd, result.tokens, result.session_id) == (pytest.approx(cost), tokens,
                                                                   session)


def test_gemini_json_error_object(run, work, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "error")
    result, _ = run(get_agent("gemini"), ctx_for(work, {"output_format": "json"}))
    assert result.action == "FAILED" and "429 Resource exhausted" in result.reason


def test_cline_run_result_event(run, work, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_CLINE_RUN_RESULT", "1")
    result, _ = run(get_agent("cline"), ctx_for(work))
    assert result.action == "COMPLETED"
    assert result.cost_usd == pytest.approx(0.031) and result.tokens == 3700


def test_ai_error_reported_with_exit_0_is_failed(work):
    line = json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True,
                       "session_id": "s", "total_cost_usd": 0.1, "usage": {}})
    result = get_agent("claude").parse(line + "\n", 0, ctx_for(work))
    assert result.action == "FAILED" and "error_max_turns" in result.reason
    assert result.cost_usd == 0.1 and result.session_id == "s"


def test_argv_of_each_agent(work, fakes):
    opts = {"model": "m-1", "args": ["--extra", "x"], "skip_permissions": False}
    argv = {n: get_agent(n).build(ctx_for(work, opts, prompt="do it", session_id="S1")).argv
            for n in AI_AGENTS}
    assert argv["claude"][1:] == ["-p", "--output-format", "stream-json", "--verbose",
                                  "--resume", "S1", "--model", "m-1", "--permission-mode",
                                  "acceptEdits", "--extra", "x", "do it"]
    assert argv["codex"][1:] == ["exec", "--json", "--sandbox", "workspace-write", "--model", "m-1",
                                 "--extra", "x", "resume", "S1", "do it"]
    assert argv["gemini"][1:] == ["--output-format", "stream-json", "--skip-trust", "--approval-mode",
                                  "auto_edit", "--model", "m-1", "--resume", "S1", "--extra",
                                  "x", "--prompt", "do it"]
    assert argv["aider"][1:3] == ["--message", "do it"]
    assert {"--yes-always", "--no-auto-commits", "--no-dirty-commits", "--analytics-disable"} <= set(argv["aider"])
    assert argv["aider"][-6:] == ["--edit-format", "diff", "--model", "m-1", "--extra", "x"]
    assert argv["cline"][1:] == ["--json", "--model", "m-1", "--extra", "x", "do it"]
    for name, args in argv.items():
        assert args[0] == str(FAKES / name)
        assert not {"sh", "bash", "-c"} & set(args[:2])
    skip = {"skip_permissions": True}
    assert "--dangerously-skip-permissions" in get_agent("claude").build(
        ctx_for(work, skip)).argv
    assert "--dangerously-bypass-approvals-and-sandbox" in get_agent("codex").build(
        ctx_for(work, skip)).argv
    gemini = get_agent("gemini").build(ctx_for(work, skip)).argv
    assert gemini[gemini.index("--approval-mode") + 1] == "yolo"
    assert "--allowedTools=Bash(pytest:*),Edit" in get_agent("claude").build(
        ctx_for(work, {"allowed_tools": ["Bash(pytest:*)", "Edit"]})).argv
    own_format = get_agent("aider").build(ctx_for(work, {"args": ["--edit-format", "whole"]})).argv
    assert own_format.count("--edit-format") == 1 and "diff" not in own_format


def test_dash_prompts_are_never_taken_for_options(work, fakes):
    ctx = ctx_for(work, prompt="-rf everything")
    assert get_agent("claude").build(ctx).argv[-2:] == ["--", "-rf everything"]
    assert get_agent("gemini").build(ctx).argv[-1] == "--prompt=-rf everything"
    assert get_agent("aider").build(ctx).argv[1] == "--message=-rf everything"


@pytest.mark.parametrize("name", ["claude", "codex", "cline", "gemini"])
def test_prompt_too_long_for_argv_goes_through_stdin(run, work, fakes, name):
    prompt = "x" * (ARGV_PROMPT_LIMIT + 10) + "\nend"
    ctx = ctx_for(work, prompt=prompt)
    inv = get_agent(name).build(ctx)
    assert inv.stdin == prompt and all(len(a) < 1000 for a in inv.argv)
    result, _ = run(get_agent(name), ctx)
    assert result.action == "COMPLETED"
    assert json.loads(fakes.read_text())["stdin"] == prompt


def test_aider_prompt_too_long_is_a_clear_error(work, fakes):
    with pytest.raises(AgentError, match="too long"):
        get_agent("aider").build(ctx_for(work, prompt="x" * (ARGV_PROMPT_LIMIT + 1)))


@pytest.mark.parametrize("name", AI_AGENTS)
def test_missing_binary_names_the_install_and_the_mock(work, monkeypatch, tmp_path, name):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    agent = get_agent(name)
    assert agent.executable() is None
    with pytest.raises(AgentError) as err:
        agent.build(ctx_for(work))
    assert "not on PATH" in str(err.value) and 'agent = "mock"' in str(err.value)
    assert "install" in err.value.hint


# --------------------------------------------------------------------------- registry, options

def test_registry():
    assert agent_names() == ["mock", "command", "claude", "codex", "aider", "cline", "gemini"]
    assert set(AGENTS) == set(agent_names())
    for name in agent_names():
        agent = get_agent(name)
        assert agent.name == name and agent.ai is (name in AI_AGENTS)
    with pytest.raises(AgentError, match=r"unknown agent 'gpt'; known agents: mock, command"):
        get_agent("gpt")


@pytest.mark.parametrize("name,options,match", [
    ("mock", {"mock": {"scenario": "explode"}}, "unknown mock scenario 'explode'"),
    ("mock", {"mock": {"scenaro": "success"}}, "unknown mock option"),
    ("mock", {"mock": {"writes": {"/etc/passwd": "x"}}}, "relative path"),
    ("mock", {"mock": {"writes": {"a/../../b": "x"}}}, "relative path"),
    ("mock", {"mock": {"writes": {"a": 1}}}, "mock.writes"),
    ("mock", {"mock": {"cost_usd": -1}}, "mock.cost_usd"),
    ("mock", {"mock": {"tokens": 1.5}}, "mock.tokens"),
    ("mock", {"mock": {"succeed_on_attempt": 0}}, "mock.succeed_on_attempt"),
    ("mock", {"mock": {"output": "one line"}}, "mock.output"),
    ("mock", {"mock": {"ignore_signals": ["KILL"]}}, "ignore_signals"),
    ("mock", {"mock": "success"}, "table"),
    ("claude", {"model": ""}, "model"),
    ("claude", {"args": "--verbose"}, "args"),
    ("claude", {"output_format": "text"}, "output_format"),
    ("gemini", {"skip_permissions": "yes"}, "skip_permissions"),
    ("codex", {"requires_approval": 1}, "requires_approval"),
    ("nope", {}, "unknown agent"),
])
def test_validate_options_errors(name, options, match):
    with pytest.raises(AgentError, match=match):
        validate_agent_options(name, options)


def test_validate_options_accepts_good_options():
    validate_agent_options("mock", {"mock": {"scenario": "retry", "succeed_on_attempt": 3,
                                             "writes": {"a/b.txt": "x"}, "cost_usd": 1,
                                             "tokens": 2, "delay_s": 0.5, "summary": "s",
                                             "output": ["l"], "ignore_signals": ["INT"]}})
    validate_agent_options("mock", {})
    validate_agent_options("command", {"command": ["make", "test"], "args": ["-j2"]})
    for name in AI_AGENTS:
        validate_agent_options(name, {"model": "x", "args": ["--y"], "skip_permissions": True,
                                      "requires_approval": False})
