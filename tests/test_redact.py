"""Secrets are masked before anything is noted or committed; texts are capped head + tail."""

from __future__ import annotations

import pytest

from logist.core.redact import MASK, cap, redact

SECRETS = [
    # (text, the secret that must disappear)
    ("ANTHROPIC_API_KEY is sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abc",
     "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abc"),
    ("using key sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789", "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"),
    ("legacy sk-Abcdefghijklmnopqrstuvwx1234", "sk-Abcdefghijklmnopqrstuvwx1234"),
    ("remote: ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 ok", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("token gho_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "gho_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
     "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("aws AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE"),
    ("slack xoxb-1234567890-0987654321-AbCdEfGh", "xoxb-1234567890-0987654321-AbCdEfGh"),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstuvw", "AIzaSyA1234567890abcdefghijklmnopqrstuvw"),
    ("curl -H 'Authorization: Bearer abc123.def456-ghi789'", "abc123.def456-ghi789"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("db password=hunter2secret and more", "hunter2secret"),
    ('{"client_secret": "s3cr3t-value-xyz"}', "s3cr3t-value-xyz"),
    ("export OPENAI_API_KEY=abcdefghijklmnop", "abcdefghijklmnop"),
    ("GITHUB_TOKEN: tok-987654321", "tok-987654321"),
    ("cloning https://alice:p4ssw0rd@github.com/org/repo.git", "p4ssw0rd"),
]


@pytest.mark.parametrize("text,secret", SECRETS)
def test_secret_shapes_are_masked(text, secret):
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_assignment_keeps_the_key_and_the_rest():
    assert redact("password=hunter2secret and more") == f"password={MASK} and more"
    assert redact('{"api_key": "abcdef123456"}') == f'{{"api_key": "{MASK}"}}'
    assert redact("Authorization: Bearer abcdefgh12345678") == f"Authorization: Bearer {MASK}"
    assert redact("https://alice:p4ssw0rd@host/x") == f"https://alice:{MASK}@host/x"


def test_private_key_block_across_lines():
    text = ("before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
            "AAAAbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\nafter")
    out = redact(text)
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in out and "AAAAbm9uZQ==" not in out
    assert out.startswith("before\n") and out.endswith("\nafter")
    # an unterminated block is masked to the end
    assert "MIIE" not in redact("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA")


@pytest.mark.parametrize("text", [
    "max_tokens=4096 Tokens: 12k sent, 1.2k received.",
    "def login(token: str = None) -> bool:",
    "password=None",
    "the sky is blue; no secrets here",
    "Read 42 lines from src/auth/keys.py",
    "token=${GITHUB_TOKEN}",
    "",
])
def test_ordinary_text_is_unchanged(text):
    assert redact(text) == text


def test_redact_is_idempotent_and_keeps_unicode():
    once = redact("İstanbul ⏺ password=abcdef12 ✓ sk-ant-api03-xxxxxxxxxxxxxxxx")
    assert "abcdef12" not in once and "sk-ant-api03" not in once
    assert once.startswith("İstanbul ⏺ password=")
    assert redact(once) == once


def test_redact_many_lines_only_touches_secret_lines():
    lines = [f"line {i}: nothing to see" for i in range(5000)]
    lines[1234] = "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIbPxRfiCYEXAMPLEKEY"
    out = redact("\n".join(lines)).split("\n")
    assert len(out) == 5000
    assert out[1234] == f"export AWS_SECRET_ACCESS_KEY={MASK}"
    assert out[:1234] == lines[:1234] and out[1235:] == lines[1235:]


def test_cap_keeps_head_and_tail_with_a_marker():
    text = "HEAD" + "x" * 10000 + "TAIL"
    out = cap(text, 200)
    assert len(out.encode()) <= 200
    assert out.startswith("HEAD") and out.endswith("TAIL")
    assert "bytes cut by logist" in out
    assert cap("short", 200) == "short"


def test_cap_never_splits_a_character():
    text = "é" * 1000 + "漢字" * 500
    out = cap(text, 301)
    assert len(out.encode("utf-8")) <= 301
    out.encode("utf-8")  # valid
    assert out.startswith("é") and out.endswith("字")


def test_cap_tiny_budget_and_errors():
    assert len(cap("a" * 100, 5).encode()) <= 5
    with pytest.raises(ValueError):
        cap("x", -1)


def test_fine_grained_github_token_alone_is_masked():
    """github_pat_ is a hint of its own (no other hint need occur on the line)."""
    token = "github_pat_" + "A1b2C3d4" * 4
    assert redact(token) == MASK
    assert redact(f"GH {token}\nnext") == f"GH {MASK}\nnext"


def _pieces():
    """Fragments that look like hints but cannot match, fragments that match, and filler."""
    benign = ['"tokens":12', "max_tokens", "high", "keyboard", "task-1", "Asian", "passes",
              "secretary", "author", "credentialing", "api_keys", "sk-1", "ghost", "http://x/y",
              '"key_count": 3', "token list", "Password reset", "AKIA short"]
    secret = ['"token":"abcdef123"', "token = abcdef1234", "password: hunter2secret", "TOKEN=abcdef1234",
              "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
              "AKIAIOSFODNN7EXAMPLE", "https://u:pw1234@host", "Bearer abcdefgh12345678",
              '{"client_secret": "s3cr3t-value-xyz"}', "private_key = 'abc123xyz'",
              "github_pat_" + "A1b2C3d4" * 4, "credentials: zz-top-123"]
    filler = [" ", ", ", "\n", " the ", '","', "x", "İ"]
    return benign, secret, filler


def test_precheck_never_skips_a_match():
    """The pre-check only decides which lines the regex reads: the result equals the regex run
    over the whole text, for texts mixing look-alikes, secrets and filler (seeded, 3,000)."""
    import random

    from logist.core.redact import _SECRET_RE, _replace

    benign, secret, filler = _pieces()
    rnd = random.Random(1729)
    for _ in range(3000):
        parts = [rnd.choice(benign if rnd.random() < 0.7 else secret) if rnd.random() < 0.6
                 else rnd.choice(filler) for _ in range(rnd.randint(1, 12))]
        text = "".join(parts)
        assert redact(text) == _SECRET_RE.sub(_replace, text), text


def test_a_one_line_json_listing_is_redacted_where_needed():
    """`job list --json` is one line with a "tokens" key per row: the look-alikes do not make
    the regex read the line, a real secret in one title still goes."""
    import json

    rows = [{"id": f"job-{i}", "title": f"Job {i}", "tokens": i, "worktree": "/home/high/wt"}
            for i in range(300)]
    text = json.dumps(rows, separators=(",", ":"))
    assert redact(text) == text
    rows[123]["title"] = "deploy with password=hunter2secret"
    out = json.loads(redact(json.dumps(rows, separators=(",", ":"))))
    assert out[123]["title"] == f"deploy with password={MASK}"
    assert out[:123] == rows[:123] and out[124:] == rows[124:]
