"""The adapters read output captured from the real CLIs (tests/fixtures/agents/<agent>/, made
with tests/real_agents/capture.py against tests/model_server.py; see docs/agents.md).

Each fixture is what the pinned CLI printed, stdout and stderr together, as logist logs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from logist.agents import get_agent
from logist.agents.base import StepContext
from logist.engine.doom import RETRY_LOOP_LINES, Doom

FIXTURES = Path(__file__).parent / "fixtures" / "agents"


def read(agent: str, name: str) -> str:
    return (FIXTURES / agent / name).read_text()


def parse(agent: str, name: str, code: int | None, **ctx_extra):
    ctx = StepContext("j-1", 1, 1, "s", "p", Path("."), {}, **ctx_extra)
    return get_agent(agent).parse(read(agent, name), code, ctx)


@pytest.mark.parametrize("agent,name,tokens,cost", [
    ("claude", "write-success.jsonl", 240, 0.0016),
    ("codex", "write-success.jsonl", 240, 0.0),
    ("gemini", "write-success.jsonl", 360, 0.0),
    ("cline", "write-success.jsonl", 240, 0.0),
    ("aider", "write.txt", 2451, 0.0004),
])
def test_a_real_successful_run_is_completed_with_its_numbers(agent, name, tokens, cost):
    res = parse(agent, name, 0)
    assert res.action == "COMPLETED", res.reason
    assert res.evidence_files == ["hello.txt"]
    assert (res.tokens, res.cost_usd) == (tokens, pytest.approx(cost))
    assert not res.denials and not res.fatal
    # nothing in a good run looks doomed to the watcher
    assert Doom(agent).scan(read(agent, name).encode()) is None


@pytest.mark.parametrize("agent,name,words", [
    ("claude", "permission-denied-gitdir.jsonl", "Write /tmp/probe/repo/.git/logist-wt/j1/hello.txt"),
    ("claude", "deny-bash.jsonl", "Bash python3 -c"),
    ("codex", "deny.jsonl", "patch rejected: writing outside of the project"),
    ("gemini", "deny.jsonl", "Path not in workspace"),
    ("cline", "deny-no-auto-approve.jsonl", "requires approval"),
])
def test_a_denied_action_is_listed_with_the_option_that_grants_it(agent, name, words):
    res = parse(agent, name, 0)
    assert res.action == "COMPLETED"  # what the agent said; the harvest does not believe it
    assert any(words in d for d in res.denials), res.denials
    assert "denied" in res.reason and "To grant them" in res.reason
    if agent == "claude":
        assert "allowed_tools" in res.reason


@pytest.mark.parametrize("agent,name,code,words", [
    ("claude", "bare.jsonl", 1, "Not logged in"),
    ("codex", "auth.jsonl", 1, "401 Unauthorized"),
    ("codex", "nokey.jsonl", 1, "Missing environment variable"),
    ("codex", "usage-full-auto.txt", 2, "unexpected argument '--full-auto'"),
    ("gemini", "auth.jsonl", 145, "API key not valid"),
    ("gemini", "nokey.jsonl", 41, "GEMINI_API_KEY"),
    ("gemini", "untrusted.txt", 55, "not running in a trusted directory"),
    ("cline", "auth.jsonl", 1, "Incorrect API key"),
    ("aider", "auth.txt", 0, "not able to authenticate you"),
    ("aider", "nokey.txt", 0, "not able to authenticate you"),
    ("aider", "login-offer.txt", None, "No LLM model was specified"),
])
def test_failures_no_retry_fixes_are_fatal_with_the_agents_own_words(agent, name, code, words):
    res = parse(agent, name, code)
    assert res.action == "FAILED" and res.fatal, res
    assert words in res.reason
    assert "\x1b" not in res.reason and "For more information" not in res.reason


@pytest.mark.parametrize("agent,name,reason", [
    ("claude", "auth.jsonl", "the API key is missing or not valid"),
    ("aider", "login-offer.txt", "No LLM model was specified"),
    ("codex", "auth.jsonl", "401 Unauthorized"),
    ("gemini", "untrusted.txt", "not running in a trusted directory"),
])
def test_the_watcher_stops_a_doomed_run_at_its_first_fatal_line(agent, name, reason):
    found = Doom(agent).scan(read(agent, name).encode())
    assert found is not None and reason in found


@pytest.mark.parametrize("agent,name", [
    ("claude", "hang.jsonl"),  # api_retry events, server closing the connection
    ("codex", "reconnect-no-network.jsonl"),  # "Reconnecting... waiting for network" forever
    ("aider", "reconnect-no-network.txt"),  # "Retrying in N seconds..."
])
def test_a_reconnect_loop_is_no_progress(agent, name):
    doom = Doom(agent)
    found = doom.scan(read(agent, name).encode())
    assert found is not None and "kept retrying" in found
    assert doom.retries >= RETRY_LOOP_LINES


@pytest.mark.parametrize("line", [
    "Login to OpenRouter or create a free account? (Y)es/(N)o [Yes]: y",
    "Run pip install? (Y)es/(N)o [Yes]: y",
    "Install playwright? (Y)es/(N)o [Yes]: y",
])
def test_aider_offers_that_yes_always_would_accept_are_fatal(line):
    """--yes-always answers every question: a login or an install offer ends the step."""
    assert Doom("aider").scan(line.encode() + b"\n") == line


def test_retries_with_progress_between_them_are_not_a_loop():
    lines = ['{"type":"error","message":"Reconnecting... 1/5 (stream disconnected)"}',
             '{"type":"item.completed","item":{"type":"agent_message","text":"working"}}'] * 5
    assert Doom("codex").scan("\n".join(lines).encode()) is None


def test_codex_tokens_of_a_resumed_thread_are_this_runs_delta():
    # turn.completed of a resumed thread counts the whole thread: 240 reported, 100 recorded
    res = parse("codex", "write-success.jsonl", 0, session_id="thread-1", prior_tokens=100)
    assert res.tokens == 140
    # claude: a resumed session's modelUsage and cost are the session's: this run is the rest
    res = parse("claude", "write-success.jsonl", 0, session_id="s-1", prior_tokens=120,
                prior_cost_usd=0.0008)
    assert (res.tokens, res.cost_usd) == (120, pytest.approx(0.0008))
    assert parse("codex", "write-success.jsonl", 0).tokens == 240


def test_claude_cost_and_tokens_come_from_model_usage():
    text = read("claude", "write-success.jsonl")
    # a result whose usage and modelUsage disagree: both numbers come from modelUsage
    text = text.replace('"usage":{"input_tokens":200', '"usage":{"input_tokens":999')
    res = get_agent("claude").parse(text, 0, StepContext("j-1", 1, 1, "s", "p", Path("."), {}))
    assert (res.tokens, res.cost_usd) == (240, pytest.approx(0.0016))


def test_the_observer_reads_real_output_without_false_signals():
    """Lines captured from the real CLIs that used to be misread (docs/observer.md)."""
    from logist.engine.observer import compile_patterns

    p = compile_patterns()
    good = {name: read(agent, name) for agent, name in [
        ("claude", "write-success.jsonl"), ("codex", "write-success.jsonl"),
        ("gemini", "write-success.jsonl"), ("cline", "write-success.jsonl")]}
    wrong = {"api_error", "completed", "approval_requested", "auth_error"}
    for name, text in good.items():
        for line in text.splitlines():
            assert not wrong & set(p.classify(line)), (name, line[:200])
    untrusted = read("gemini", "untrusted.txt").splitlines()
    assert [p.classify(line) for line in untrusted if "Approval mode overridden" in line] == [[], []]
    assert p.classify("job aider-401-8vhj started in /tmp/401/x") == []
    assert p.classify("Please set an Auth method in your /root/.gemini/settings.json") == ["auth_error"]
    from logist.agents.outcome import OUTCOME_INSTRUCTIONS
    for line in OUTCOME_INSTRUCTIONS.splitlines():  # an agent echoing its prompt
        assert "approval_requested" not in p.classify(line) and "completed" not in p.classify(line)
    for agent, name in [("claude", "auth.jsonl"), ("codex", "auth.jsonl"), ("gemini", "auth.jsonl"),
                        ("cline", "auth.jsonl"), ("aider", "auth.txt")]:
        assert any("auth_error" in p.classify(line) for line in read(agent, name).splitlines()), agent
