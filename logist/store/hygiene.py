"""Harvest hygiene: what a step's harvest commit leaves out of the agent's new files.

Before a harvest commits the worktree (``git add -A``, which respects .gitignore), the new
(untracked) files that look like an environment or build output stay out of the commit: a
Python virtual environment (a directory with ``pyvenv.cfg``), ``node_modules/``,
``__pycache__/``, ``*.pyc``/``*.pyo``, any file larger than ``[harvest] max_file_bytes``
(default 5 MB), and what ``[harvest] exclude`` names (gitignore-like globs). ``[harvest]
include`` globs are always committed. What is left out stays in the worktree; the harvest
commit body and ``logist job status`` name it with the ``.gitignore`` line that silences it
(docs/jobfile.md#harvest).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logist.git.gitcmd import git

DEFAULT_MAX_FILE_BYTES = 5_000_000
_DIR_NAMES = {"node_modules": "a node_modules directory", "__pycache__": "Python bytecode"}
_SUFFIXES = {".pyc": "Python bytecode", ".pyo": "Python bytecode"}


@dataclass(frozen=True)
class LeftOut:
    path: str  # relative to the worktree; a directory ends with "/"
    why: str
    gitignore: str  # the line that keeps it out for good

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "why": self.why, "gitignore": self.gitignore}

    def line(self) -> str:
        return f"{self.path} ({self.why}); .gitignore: {self.gitignore}"


def _matches(path: str, globs: list[str]) -> str | None:
    """The first glob matching ``path`` or one of its parent directories (gitignore-like: a
    glob without "/" matches any component; a leading "/" anchors it at the top)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for g in globs:
        pat = g.strip().rstrip("/")
        if not pat:
            continue
        if pat.startswith("/") or "/" in pat:
            pat = pat.lstrip("/")
            if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
                return g
        elif any(fnmatch.fnmatchcase(c, pat) for c in parts):
            return g
    return None


def _human(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def plan(wt: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, exclude: list[str] | None = None,
         include: list[str] | None = None) -> list[LeftOut]:
    """What the next ``git add -A`` in ``wt`` must leave out. Reads only."""
    proc = git(["ls-files", "--others", "--exclude-standard", "-z"], cwd=wt, check=False)
    if proc.returncode != 0:
        return []
    paths = [p for p in proc.stdout.split("\0") if p]
    exclude, include = list(exclude or []), list(include or [])
    venvs = sorted({p[: -len("pyvenv.cfg")] for p in paths if p.endswith("/pyvenv.cfg")})
    out: dict[str, LeftOut] = {}
    for p in paths:
        if include and _matches(p, include):
            continue
        found = None
        for v in venvs:
            if p.startswith(v):
                found = LeftOut(v, "a Python virtual environment (pyvenv.cfg)", "/" + v)
                break
        if found is None:
            parts = p.split("/")
            for i, c in enumerate(parts[:-1]):
                if c in _DIR_NAMES:
                    found = LeftOut("/".join(parts[: i + 1]) + "/", _DIR_NAMES[c], c + "/")
                    break
        if found is None:
            suffix = os.path.splitext(p)[1]
            if suffix in _SUFFIXES:
                found = LeftOut(p, _SUFFIXES[suffix], "*" + suffix)
        if found is None:
            g = _matches(p, exclude)
            if g is not None:
                found = LeftOut(p, f"[harvest] exclude {g!r}", g)
        if found is None:
            try:
                st = os.lstat(wt / p)
            except OSError:
                continue
            if st.st_size > max_file_bytes and not os.path.islink(wt / p):
                found = LeftOut(p, f"{_human(st.st_size)}, over [harvest] max_file_bytes "
                                   f"{_human(max_file_bytes)}", "/" + p)
        if found is not None:
            out.setdefault(found.path, found)
    return sorted(out.values(), key=lambda lo: lo.path)


def add_pathspecs(left_out: list[LeftOut]) -> str:
    """NUL-separated pathspecs for ``git add -A --pathspec-from-file=- --pathspec-file-nul``:
    everything, minus what is left out (literal paths, from the top of the worktree)."""
    specs = [":(top)"] + [f":(top,exclude,literal){lo.path.rstrip('/')}" for lo in left_out]
    return "\0".join(specs) + "\0"


def body_lines(left_out: list[LeftOut]) -> list[str]:
    if not left_out:
        return []
    return ["Left out of this commit (still in the worktree; add the .gitignore line to keep it out):",
            *(f"  {lo.line()}" for lo in left_out)]
