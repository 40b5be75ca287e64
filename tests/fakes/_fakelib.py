"""Shared helpers of the fake agent CLIs in this directory (test support, standard library only).

Each fake prints what the real tool documents for its non-interactive mode. Environment:

FAKE_MODE     success (default) | error | no_outcome
FAKE_RECORD   a file to write {"argv": [...], "stdin": "...", "cwd": "..."} to
"""

from __future__ import annotations

import json
import os
import sys

SESSION = "0b7e4d1c-5f7a-4a57-9a43-2f6c1d9e8a10"
SUMMARY = "added the greeting"


def mode() -> str:
    return os.environ.get("FAKE_MODE", "success")


def record() -> None:
    """Write argv, stdin and cwd where the test asked for them."""
    path = os.environ.get("FAKE_RECORD")
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"argv": sys.argv[1:], "stdin": stdin, "cwd": os.getcwd()}, fh)


def reply() -> str:
    """The agent's final answer: prose, then (unless no_outcome) the outcome block."""
    text = "I added hello.txt with a greeting."
    if mode() == "no_outcome":
        return text
    outcome = {"action": "COMPLETED", "summary": SUMMARY, "evidence_files": ["hello.txt"]}
    return text + "\n\n```json\n" + json.dumps(outcome) + "\n```"


def emit(obj: object, *, indent: int | None = None) -> None:
    print(json.dumps(obj, indent=indent), flush=True)


def flag(name: str, default: str | None = None) -> str | None:
    """The value after ``name`` (or in ``name=value``) in argv."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return default
