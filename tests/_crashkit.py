"""Helpers of the crash, recovery, race and hostile-agent tests.

Real repositories, real kills: a command that crashes (a crash point) or runs beside another
is a `python -m logist` process of its own; the others run in process. Every wait polls with a
deadline; every process a test starts is killed by its pid at the end (``Procs``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

from conftest import git, run_cli, wait_for

ENV = {"LOGIST_NO_WATCHER": "1"}


def logist(repo: Path, *args, env: dict | None = None, timeout: float = 120,
           input: str | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """`logist -C repo *args` (watcher off unless env says otherwise): as a `python -m logist`
    process of its own when ``env`` sets a crash point or ``process`` is true, else in process
    (``conftest.run_cli``: the same code without the interpreter start)."""
    if process or "LOGIST_CRASH_AT" in (env or {}):
        full = {**os.environ, **ENV, **(env or {})}
        for k, v in list(full.items()):
            if v is None:
                del full[k]
        return subprocess.run([sys.executable, "-m", "logist", "-C", str(repo), *map(str, args)],
                              capture_output=True, text=True, env=full, timeout=timeout, input=input)
    return run_cli("-C", repo, *args, cwd=repo, env={**ENV, **(env or {})}, input=input)


class Procs:
    """Background processes of one test; ``kill_all`` ends each by pid (and its group)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []  # other pids to kill (agents found in the run dir)

    def start(self, repo: Path, *args, env: dict | None = None, new_session: bool = True,
              ) -> subprocess.Popen:
        full = {**os.environ, **ENV, **(env or {})}
        p = subprocess.Popen([sys.executable, "-m", "logist", "-C", str(repo), *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full,
                             start_new_session=new_session)
        self.procs.append(p)
        return p

    def popen(self, argv, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def kill_all(self) -> None:
        for pid in self.pids:
            _kill_group_or_pid(pid)
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                _kill_group_or_pid(p.pid)
            try:
                p.communicate(timeout=10)
            except Exception:
                pass


class Lines:
    """Collects a process's stderr (or ``stream``) lines as they come (a reader thread);
    ``wait_for(text)``."""

    def __init__(self, proc: subprocess.Popen, stream=None) -> None:
        import threading

        self.lines: list[str] = []
        self.proc = proc
        self.stream = proc.stderr if stream is None else stream
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                self._t.join(5)
                if needle not in self.text():
                    raise AssertionError(f"process ended without {needle!r}: {self.text()}")
                return True
            return False

        wait_for(seen, timeout=timeout, what=f"{needle!r} in the output")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        self._t.join(10)
        return self.proc.returncode, self.text()


def _kill_group_or_pid(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def init_project(repo: Path) -> None:
    r = logist(repo, "init")
    assert r.returncode == 0, r.stderr


def create(repo: Path, toml: str, *, job_id: str | None = None, env: dict | None = None,
           activate: bool = True) -> str:
    """`logist job create --file ...`: in process (nothing to crash here), or as a process of its
    own when ``env`` is given (a crash point while creating)."""
    import contextlib
    import io

    from logist.cli import main

    path = repo.parent / f"job-{time.monotonic_ns()}.toml"
    path.write_text(toml)
    args = ["job", "create", "--file", str(path)]
    if activate:
        args.append("--activate")
    if job_id:
        args += ["--id", job_id]
    if env is not None:
        r = logist(repo, *args, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-C", str(repo), *args])
    assert code == 0, err.getvalue()
    return out.getvalue().strip().splitlines()[-1]


def sh_step(name: str, script: str, **extra) -> str:
    """A [[steps]] table running ``sh -c script`` with the command agent."""
    lines = ["[[steps]]", f"name = {json.dumps(name)}", 'agent = "command"',
             f"command = {json.dumps(['sh', '-c', script])}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def mock_step(name: str, writes: dict[str, str], **mock) -> str:
    w = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in writes.items())
    lines = ["[[steps]]", f"name = {json.dumps(name)}", f'prompt = "do {name}"', "[steps.mock]",
             f"writes = {{ {w} }}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in mock.items()]
    return "\n".join(lines) + "\n"


def status(repo: Path, job_id: str) -> dict:
    """`logist job status ID --json`, in process (a read)."""
    import contextlib
    import io

    from logist.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-C", str(repo), "job", "status", job_id, "--json"])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def run_dir(repo: Path, job_id: str) -> Path:
    return repo / ".git" / "logist" / "run" / job_id


def agent_info(repo: Path, job_id: str) -> dict | None:
    try:
        return json.loads((run_dir(repo, job_id) / "agent.json").read_text())
    except (OSError, ValueError):
        return None


def wait_agent_running(repo: Path, job_id: str, *, timeout: float = 60) -> dict:
    """Wait until the step's agent has been spawned and recorded its pid; agent.json."""
    def ready():
        info = agent_info(repo, job_id)
        if info and info.get("pid"):
            pid_file = run_dir(repo, job_id) / f"exec-{info['transition_id']}.pid"
            return info if pid_file.exists() else None
        return None
    return wait_for(ready, timeout=timeout, what=f"the agent of {job_id} to start")


def lock_holder_pid(repo: Path, job_id: str) -> int | None:
    raw = subprocess.run(["git", "-C", str(repo), "cat-file", "-p", f"refs/logist/locks/{job_id}"],
                         capture_output=True, text=True)
    if raw.returncode != 0:
        return None
    try:
        return int(json.loads(raw.stdout)["pid"])
    except (ValueError, KeyError):
        return None


def history(repo: Path, job_id: str, rev: str | None = None) -> list[dict]:
    raw = git(repo, "show", f"{rev or 'refs/heads/logist/' + job_id}:.logist/jobs/{job_id}/history.jsonl")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def manifest(repo: Path, job_id: str, rev: str | None = None) -> dict:
    return json.loads(git(repo, "show", f"{rev or 'refs/heads/logist/' + job_id}:.logist/jobs/{job_id}/manifest.json"))


def worktree(repo: Path, job_id: str) -> Path:
    from conftest import wtdir

    return wtdir(repo) / job_id


def fsck_clean(repo: Path) -> None:
    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--no-progress", "--no-dangling"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [line for line in (proc.stdout + proc.stderr).splitlines()
           if any(w in line for w in ("error", "missing", "broken", "corrupt", "bad "))]
    assert not bad, bad


def no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t and "internal error" not in t, t


def assert_consistent(repo: Path, job_id: str, *, state: str = "SUCCESS",
                      files_added_once: tuple[str, ...] = (), check_worktree: bool = True,
                      rewritten: bool = False) -> list[dict]:
    """The invariants after any crash and recovery: the state, a clean fsck, no lock left,
    one commit per history entry (same transition ids, in order), a chained history, each
    named file added by exactly one commit, a clean and unlocked worktree.

    ``rewritten``: an agent rewrote part of the branch, so some of logist's commits are only
    reachable from refs/logist/displaced/: the branch then holds an ordered subset of them."""
    m = manifest(repo, job_id)
    assert m["state"] == state, (m["state"], m["reason"])
    fsck_clean(repo)
    assert git(repo, "for-each-ref", "refs/logist/locks/") == ""
    h = history(repo, job_id)
    assert m["transition_seq"] == len(h) - 1
    tids = [e["transition_id"] for e in h]
    assert len(set(tids)) == len(tids), "a transition was recorded twice"
    for prev, cur in pairwise(h):
        if cur.get("event") == "transition":
            assert cur["from"] == prev["to"], (prev, cur)
    # one logist commit per entry, in order, on the branch since its base
    out = git(repo, "log", "--reverse", "--format=%x1e%(trailers:key=Logist-Transition-Id,valueonly)%x00%P",
              f"{m['base']}..refs/heads/logist/{job_id}")
    commit_tids = []
    for rec in out.split("\x1e"):
        if not rec.strip():
            continue
        tid, _, parents = rec.partition("\x00")
        assert len(parents.split()) == 1, "a merge commit on the job branch"
        if tid.strip():
            commit_tids.append(tid.strip())
    if rewritten:
        it = iter(tids)
        assert all(t in it for t in commit_tids), (commit_tids, tids)
    elif m["run"] > 1:  # a rerun starts the branch over; earlier runs stay at refs/logist/runs
        current = [e["transition_id"] for e in h if e.get("run") == m["run"] and e.get("event") == "transition"]
        assert commit_tids[-len(current):] == current, (commit_tids, current)
    else:
        assert commit_tids == tids, (commit_tids, tids)
    for f in files_added_once:
        adds = git(repo, "log", "--format=%H", "--diff-filter=A", f"refs/heads/logist/{job_id}", "--", f)
        assert len(adds.split()) == 1, f"{f} added {len(adds.split())} times"
    if check_worktree and state in ("SUCCESS", "CANCELED"):
        assert_released(repo, job_id)
    elif check_worktree:
        wt = worktree(repo, job_id)
        assert git(wt, "status", "--porcelain") == ""
        listing = git(repo, "worktree", "list", "--porcelain")
        block = listing.split(f"worktree {wt}")[1].split("\n\n")[0] if str(wt) in listing else ""
        assert "locked" not in block
    return h


def assert_released(repo: Path, job_id: str) -> None:
    """A finished job's worktree is released (docs/architecture.md#worktrees): git lists no
    worktree for it, its directory and any renamed-aside copy are gone, the branch is there."""
    wt = worktree(repo, job_id)
    listing = git(repo, "worktree", "list", "--porcelain") + "\n"
    assert f"worktree {wt}\n" not in listing, listing
    assert f"branch refs/heads/logist/{job_id}\n" not in listing, listing
    assert not wt.exists()
    if wt.parent.is_dir():
        assert not list(wt.parent.glob(".logist-releasing-*"))
    branch = f"refs/heads/logist/{job_id}"
    assert git(repo, "for-each-ref", "--format=%(refname)", branch) == branch


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def admin_dir(repo: Path, job_id: str) -> Path:
    """The git admin dir of a job's worktree (where its index.lock lives)."""
    text = (worktree(repo, job_id) / ".git").read_text().strip()
    return Path(text.removeprefix("gitdir:").strip())


def kill_group_when_file_appears(proc: subprocess.Popen, path: Path, *, timeout: float = 60) -> bool:
    """SIGKILL ``proc``'s process group the moment ``path`` exists (polled every ~0.2 ms, a
    git holding its lock file); True if the kill landed while the file was there (it is still
    there after the group is dead), False if ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.lexists(path):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
            proc.wait(timeout=10)
            return os.path.lexists(path)
        if proc.poll() is not None:
            return False
        time.sleep(0.0002)
    raise AssertionError(f"{path} never appeared within {timeout}s")
