"""The CLI as a person meets it (docs/cli.md, Conventions): an example in every command's
help, flags shown once, one error style."""

from __future__ import annotations

import pytest
from test_docs import help_of, registered_commands


@pytest.mark.parametrize("path", registered_commands(include_hidden=True), ids=lambda p: " ".join(p))
def test_every_command_has_an_example_and_flags_shown_once(path, capsys):
    text = help_of(path, capsys)
    assert "Example: logist " in text or "Example: cd $(logist " in text, \
        f"`logist {' '.join(path)} --help` has no example"
    assert "--no-json" not in text and "[default: False]" not in text and "--empty-" not in text


def test_parse_errors_and_logist_errors_look_the_same(cli):
    parse = cli("job", "list", "--frobnicate")
    ours = cli("job", "status", "no-such-job")
    for r in (parse, ours):
        assert r.out == ""
        assert r.err.startswith("logist: error: "), r.err
        assert "\n  hint: " in r.err, r.err
        assert not any(ch in r.err for ch in "╭╰│"), r.err
    assert (parse.code, ours.code) == (2, 1)
