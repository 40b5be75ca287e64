"""The programs logist starts besides agents and git: a detached runner (``job run --detach``),
a step's side process (the watcher), and helper tools (``grep`` as the observer's prefilter,
``gh`` for pull requests).

With :mod:`logist.git.gitcmd` (git) and the runtimes (agents) this is the only place that starts
processes; ``tests/test_layers.py`` checks that no other module imports :mod:`subprocess`.
argv is always a list, never a shell line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


def run_program(argv: Sequence[str], *, input: bytes | None = None, cwd: str | Path | None = None,
                env: Mapping[str, str] | None = None, timeout: float | None = None
                ) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion; stdout and stderr captured as bytes, stdin is ``input`` (or
    /dev/null). OSError when it cannot start; TimeoutError once ``timeout`` seconds have passed
    (the program is killed)."""
    try:
        return subprocess.run(list(argv), input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, cwd=cwd, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g}s") from None


def spawn_detached(argv: Sequence[str], *, out: IO[bytes], cwd: str | os.PathLike[str],
                   env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session and process group of its own (a signal to the terminal or to
    another group never reaches it), stdin from /dev/null, stdout and stderr to ``out``. The
    caller keeps the Popen and reaps it."""
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            cwd=os.fspath(cwd), env=env, start_new_session=True, close_fds=True)


def run_foreground(argv: Sequence[str], *, cwd: str | Path | None = None) -> int:
    """Run ``argv`` on this terminal (stdin, stdout and stderr inherited: a pager, `job attach`)
    and wait for it; its exit code. OSError when it cannot start."""
    return subprocess.run(list(argv), cwd=cwd, check=False).returncode
