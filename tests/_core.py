"""Helpers shared by the core test files (store, CLI, engine, bad input).

Everything runs against real repositories; the CLI is called in process (``logist.cli.main``
returns the exit code) unless a test needs a real process.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from conftest import git


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Cli:
    """``cli(*args)`` runs ``logist -C <repo> *args`` in process and captures its output."""

    def __init__(self, capsys, repo: Path | None) -> None:
        self.capsys = capsys
        self.repo = repo

    def __call__(self, *args, cwd: Path | None | str = "repo") -> Result:
        """``cwd``: where -C points (default: the repo; None: no -C at all)."""
        from logist.cli import main

        where = self.repo if cwd == "repo" else cwd
        argv = (["-C", str(where)] if where is not None else []) + [str(a) for a in args]
        self.capsys.readouterr()
        code = main(argv)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args, cwd: Path | None | str = "repo") -> Result:
        r = self(*args, cwd=cwd)
        assert r.code == 0, f"logist {' '.join(map(str, args))} exited {r.code}\n{r.out}\n{r.err}"
        return r


def refs_snapshot(repo: Path) -> str:
    """Every ref and what it points at (``git for-each-ref``)."""
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def tip(repo: Path, job_id: str) -> str:
    return git(repo, "rev-parse", f"refs/heads/logist/{job_id}")


def record_at(repo: Path, rev: str, job_id: str) -> dict:
    return json.loads(git(repo, "show", f"{rev}:.logist/jobs/{job_id}/manifest.json"))


def history_at(repo: Path, rev: str, job_id: str) -> list[dict]:
    text = git(repo, "show", f"{rev}:.logist/jobs/{job_id}/history.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def trailers(repo: Path, rev: str) -> dict[str, str]:
    out = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    pairs = {}
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        pairs[key] = value
    return pairs


def subject(repo: Path, rev: str) -> str:
    return git(repo, "log", "-1", "--format=%s", rev)


def worktree_status(wt: Path) -> str:
    return git(wt, "status", "--porcelain", "--untracked-files=all")


def tree_digest(path: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every file under ``path``."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        if p.is_file() and not p.is_symlink():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def mtimes(path: Path) -> dict[str, int]:
    """{relative path: mtime_ns} of everything under ``path`` (the directory itself too)."""
    out = {".": path.stat().st_mtime_ns}
    for p in sorted(path.rglob("*")):
        out[p.relative_to(path).as_posix()] = p.lstat().st_mtime_ns
    return out


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return data[data.rindex(b")") + 2:].split()[0] == b"Z"
    except OSError:
        return True


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a detached runner), ignoring a gone one."""
    import signal

    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "internal error" not in text, text


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def create_job(cli: Cli, *args) -> str:
    """`logist job create ... --json`; returns the new id."""
    return cli.ok("job", "create", *args, "--json").json()["id"]


def job_worktree(cli: Cli, job_id: str) -> Path:
    """The job's worktree, made now if it has none (`logist job path`: a job gets its worktree
    at its first step and gives it back when it finishes; docs/architecture.md#worktrees)."""
    return Path(cli.ok("job", "path", job_id).out.strip())


def create_from_toml(cli: Cli, text: str, *args, name: str = "job.toml") -> str:
    path = write(cli.repo.parent / "jobfiles" / name, text)
    return create_job(cli, "--file", path, *args)


def git_input(cwd, *args, input: str) -> str:
    """``git`` with text on stdin."""
    import subprocess

    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, input=input)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
