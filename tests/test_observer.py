"""Observer: built-in signals on real agent output, user patterns, rate limiting, redaction."""

from __future__ import annotations

import json
import shutil

import pytest

import logist.engine.observer as observer_mod
from logist.core.errors import ConfigError
from logist.engine.observer import BUILTIN_PATTERNS, Observer, Signal, compile_patterns, validate_patterns

# Lines as the agent CLIs print them (Claude Code, Codex CLI, Aider, Gemini CLI, generic tools).
REAL_LINES = [
    # rate_limit
    ('API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has '
     'exceeded your per-minute rate limit"}}', "rate_limit"),
    ('API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "rate_limit"),
    ("Claude AI usage limit reached|1750000000", "rate_limit"),
    ("stream error: exceeded retry limit, last status: 429 Too Many Requests; retrying 3/5 in 2.1s…", "rate_limit"),
    ("litellm.RateLimitError: AnthropicException - rate_limit_error", "rate_limit"),
    ("The API provider has rate limited you. Try again later or check your quotas.", "rate_limit"),
    ("[API Error: got status: 429 Too Many Requests. RESOURCE_EXHAUSTED]", "rate_limit"),
    ("Quota exceeded for quota metric 'Generate Content API requests per minute'", "rate_limit"),
    # auth_error
    ("Invalid API key · Please run /login", "auth_error"),
    ('API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
     "auth_error"),
    ("Error: Incorrect API key provided: sk-proj-********************abcd.", "auth_error"),
    ("litellm.AuthenticationError: AnthropicException - invalid x-api-key", "auth_error"),
    ("API key not valid. Please pass a valid API key.", "auth_error"),
    ("unexpected status 401 Unauthorized: Missing bearer or basic authentication in header", "auth_error"),
    # context_full
    ("Prompt is too long", "context_full"),
    ("This model's maximum context length is 128000 tokens. However, your messages resulted in 130532 tokens.",
     "context_full"),
    ('{"error":{"code":"context_length_exceeded","message":"Your input exceeds the context window of this model."}}',
     "context_full"),
    ("The chat session is larger than the context window!", "context_full"),
    ("Your estimated chat context of 210,000 tokens exceeds the 200,000 token limit for claude!", "context_full"),
    ("The input token count (1100000) exceeds the maximum number of tokens allowed (1048576).", "context_full"),
    # api_error
    ('API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}', "api_error"),
    ("API Error (Connection error.) · Retrying in 4 seconds… (attempt 2/10)", "api_error"),
    ("stream error: unexpected status 503 Service Unavailable; retrying 1/5 in 190ms…", "api_error"),
    ("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.", "api_error"),
    ("[API Error: got status: 500 INTERNAL. {\"error\":{\"code\":500}}]", "api_error"),
    ("HTTP 502 Bad Gateway from upstream", "api_error"),
    # waiting_input
    ("Do you want to proceed?", "waiting_input"),
    ("Do you want to make this edit to src/app.py?", "waiting_input"),
    ("Add src/app.py to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:", "waiting_input"),
    ("Allow command `rm -rf build`? [y/N]", "waiting_input"),
    ("Overwrite existing file? (y/n)", "waiting_input"),
    ("Press Enter to continue", "waiting_input"),
    ("Apply this change?", "waiting_input"),
    ("Continue?", "waiting_input"),
    # approval_requested
    ("The migration is ready; it needs your approval before I run it against production.", "approval_requested"),
    ("Please review the diff in src/billing.py before merging.", "approval_requested"),
    ("Waiting for sign-off from the team lead.", "approval_requested"),
    # completed
    ('{"outcome": "COMPLETED", "summary": "Added retry logic", "evidence": ["tests/test_retry.py"]}', "completed"),
    ('```json {"status":"completed","summary":"done"} ```', "completed"),
    ("Task completed: all 14 tests pass.", "completed"),
    # error
    ("Traceback (most recent call last):", "error"),
    ("ValueError: invalid literal for int() with base 10: 'abc'", "error"),
    ("error: failed to push some refs to 'origin'", "error"),
    ("fatal: not a git repository (or any of the parent directories): .git", "error"),
    ("error[E0308]: mismatched types", "error"),
    ("thread 'main' panicked at src/main.rs:4:5:", "error"),
    ("npm ERR! code ELIFECYCLE", "error"),
    ("Exception in thread \"main\" java.lang.NullPointerException: boom", "error"),
]

QUIET_LINES = [
    "⏺ Read(file_path: \"/home/dev/project/src/module.py\")",
    "  ⎿  Read 120 lines (ctrl+r to expand)",
    "============================= 42 passed in 3.21s ==============================",
    "Tokens: 12k sent, 1.2k received. Cost: $0.02 message, $0.31 session.",
    "I'll update the function to handle the empty list case and add a test for it.",
    "diff --git a/src/util.py b/src/util.py",
    "+    return compute_total(items, discount=500) if items else 0",
    "Applied edit to src/components/Button.tsx",
    "Running 4290 tests across 12 workers",
    "",
]


@pytest.fixture(scope="module")
def patterns():
    return compile_patterns()


@pytest.mark.parametrize("line,expected", REAL_LINES)
def test_builtin_signal_on_real_output(patterns, line, expected):
    assert patterns.classify(line) == [expected]


@pytest.mark.parametrize("line", QUIET_LINES)
def test_ordinary_output_has_no_signal(patterns, line):
    assert patterns.classify(line) == []


def test_every_builtin_is_covered_by_the_corpus():
    assert {sig for _l, sig in REAL_LINES} == set(BUILTIN_PATTERNS)


def test_most_specific_builtin_wins(patterns):
    assert patterns.classify("Error: 429 rate limit") == ["rate_limit"]
    assert patterns.classify("Error: 401 invalid api key") == ["auth_error"]
    assert patterns.classify("API Error: 400 prompt is too long") == ["context_full"]
    assert patterns.classify("Error: Do you want to proceed? (y/n)") == ["waiting_input"]
    assert patterns.classify("Error: something broke") == ["error"]


def test_terminal_escapes_and_crlf_do_not_hide_a_signal(patterns):
    assert patterns.classify("\x1b[31mError:\x1b[0m disk full\r") == ["error"]
    data = b"ok\r\n\x1b[1mDo you want to proceed?\x1b[0m\r\n"
    assert [(i, n) for i, _l, n in patterns.scan(data, bulk=False)] == [(1, ["waiting_input"])]


def test_user_patterns_add_override_and_disable():
    p = compile_patterns(None, {"deploy": r"Deploying to (staging|prod)", "error": r"\bFAILED\b"},
                         {"completed": ""})
    assert p.names[-1] == "deploy"
    assert "completed" not in p.names
    # override: the user's regex replaces the built-in, keeping its place and exclusivity
    assert p.classify("FAILED tests/test_a.py::test_x") == ["error"]
    assert p.classify("Traceback (most recent call last):") == []
    # added: independent of the built-ins
    assert p.classify("Error: 429 while Deploying to prod") == ["rate_limit", "deploy"]
    assert p.classify("Task completed") == []
    # user patterns are case-sensitive unless they say otherwise
    assert p.classify("deploying to prod") == []
    assert compile_patterns(None, {"deploy": r"(?i)deploying"}).classify("DEPLOYING now") == ["deploy"]
    # later tables win
    p2 = compile_patterns(None, {"x": "aaa"}, {"x": "bbb"})
    assert p2.classify("bbb") == ["x"] and p2.classify("aaa") == []


def test_invalid_patterns_are_clear_errors():
    with pytest.raises(ConfigError) as exc:
        validate_patterns({"stuck_build": "build (stuck"})
    msg = str(exc.value)
    assert "'stuck_build'" in msg and "missing )" in msg and "build (stuck" in msg
    with pytest.raises(ConfigError, match="matches an empty line"):
        validate_patterns({"everything": "x*"})
    with pytest.raises(ConfigError, match="must be a string"):
        validate_patterns({"n": 5})
    with pytest.raises(ConfigError, match="pattern name"):
        validate_patterns({"bad name!": "x"})
    with pytest.raises(ConfigError, match="table"):
        validate_patterns(["x"])
    with pytest.raises(ConfigError, match="'error'"):
        compile_patterns(None, {"error": "[unclosed"})
    assert validate_patterns({"deploy": "Deploying"}) == {"deploy": "Deploying"}
    assert validate_patterns(None) == {}


def test_signal_json_line():
    sig = Signal(0.5, "rate_limit", 7, "API Error: 429")
    obj = json.loads(sig.to_json())
    assert list(obj) == ["t", "signal", "line", "text"]
    assert obj == {"t": "1970-01-01T00:00:00.500Z", "signal": "rate_limit", "line": 7,
                   "text": "API Error: 429"}
    assert json.loads(Signal(0, "x", 1, "y", repeats=3).to_json())["repeats"] == 3


def test_rate_limiting_counts_repeats():
    obs = Observer(repeat_seconds=5)
    out = []
    for i in range(10):  # one 429 per second for 10 s
        out += obs.feed(i + 1, f"API Error: 429 attempt {i}", t=100.0 + i)
    out += obs.finish(t=120.0)
    assert [(s.line, s.repeats) for s in out] == [(1, 0), (6, 4), (10, 3)]
    assert sum(1 + s.repeats for s in out) == obs.matches == 10
    assert obs.finish(t=121.0) == []
    # other signals are limited independently
    obs2 = Observer(repeat_seconds=5)
    assert len(obs2.feed(1, "API Error: 429", 0.0)) == 1
    assert len(obs2.feed(2, "Traceback (most recent call last):", 0.1)) == 1
    assert obs2.feed(3, "API Error: 429", 0.2) == []
    assert obs2.last_seen["rate_limit"] == (0.2, 3)


def test_text_is_redacted_cleaned_and_cut():
    obs = Observer(max_text=300)
    (sig,) = obs.feed(1, "\x1b[31mError:\x1b[0m auth failed for ANTHROPIC_API_KEY=sk-ant-api03-"
                         + "A" * 40 + "\tend", 0.0)
    assert "sk-ant" not in sig.text and "AAAA" not in sig.text
    assert sig.text.startswith("Error: auth failed for ANTHROPIC_API_KEY=[REDACTED]")
    assert "\x1b" not in sig.text and "\t" not in sig.text
    (long_sig,) = Observer(max_text=300).feed(2, "Traceback (most recent call last): " + "x" * 5000, 0.0)
    assert len(long_sig.text) == 300 and long_sig.text.endswith("…")


def _corpus(n_filler: int = 3000) -> bytes:
    lines = []
    for i in range(n_filler):
        lines.append(QUIET_LINES[i % len(QUIET_LINES)])
        if i % 97 == 0:
            lines.append(REAL_LINES[(i // 97) % len(REAL_LINES)][0])
    lines.append("İSTANBUL ſ unicode line with Task completed")
    return ("\n".join(lines) + "\n").encode()


def test_chunk_scan_finds_the_same_as_line_by_line(patterns):
    data = _corpus()
    expect = [(i, patterns.classify(line)) for i, line in enumerate(data.decode().split("\n")[:-1])]
    expect = [(i, n) for i, n in expect if n]
    got = [(i, n) for i, _l, n in patterns.scan(data, bulk=False)]
    assert got == expect and len(got) > 30


@pytest.mark.skipif(shutil.which("grep") is None, reason="no grep")
def test_grep_prefilter_agrees_with_python(patterns):
    data = _corpus()
    assert patterns.scan(data, bulk=True) == patterns.scan(data, bulk=False)
    user = compile_patterns(None, {"deploy": "Applied edit", "error": r"(?i)\bdiff\b"})
    assert user.scan(data, bulk=True) == user.scan(data, bulk=False)


def test_without_grep_the_bulk_path_falls_back_to_python(patterns, monkeypatch):
    data = _corpus()
    expect = patterns.scan(data, bulk=False)
    monkeypatch.setattr(observer_mod, "_GREP", None)
    assert patterns.scan(data, bulk=True) == expect


def test_feed_chunk_numbers_lines_from_the_given_start():
    obs = Observer()
    sigs = obs.feed_chunk(b"hello\nAPI Error: 429\nok\nTraceback (most recent call last):\n",
                          first_line_no=41, t=5.0)
    assert [(s.signal, s.line) for s in sigs] == [("rate_limit", 42), ("error", 44)]
    # a last line without a newline still counts
    assert [s.line for s in Observer().feed_chunk(b"a\nPrompt is too long", 1, 0.0)] == [2]
