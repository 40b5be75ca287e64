"""Hermetic test environment: every test gets its own HOME, git config and tmp repository.

Nothing here fakes git: repositories, bare remotes and worktrees are real.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GITCONFIG = ("[user]\n\tname = Test User\n\temail = test@example.invalid\n"
             "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(GITCONFIG)
    for key in list(os.environ):
        if key.startswith(("GIT_", "LOGIST_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))  # job worktrees go there
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.setenv("GIT_EDITOR", "false")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    # import from the checkout under test when run as a subprocess
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import logist.git.gitcmd as gitcmd
    monkeypatch.setattr(gitcmd, "_BASE_ENV", None)
    yield


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", poll: float = 0.02):
    """Poll ``predicate()`` until it returns something truthy and return that value; fail with
    an AssertionError naming ``what`` after ``timeout`` seconds. The one polling helper of the
    suite: tests wait for an event with it, never with a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
def wtdir(repo) -> Path:
    """Where ``repo``'s job worktrees go by default (docs/cli.md, ``[worktrees] dir``)."""
    from logist.store.jobstore import default_worktrees_dir

    return default_worktrees_dir(Path(repo) / ".git")


def git(cwd, *args, check=True) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout.strip()


# ------------------------------------------------------------------------ template repositories
# The repositories most tests start from (``repo``, ``project``, ``net``) are built once per test
# process (an xdist worker) by real git and `logist init`, in an environment of their own (never
# the first test's), and copied into each test's tmp path: the same files and history at a
# fraction of the processes. A copy is a plain file copy; git's index is refreshed after it
# (new inodes and ctimes), and the clone's remote URL names the copied bare remote.
_TEMPLATES: dict[str, Path] = {}


def _template_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LOGIST_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_TERMINAL_PROMPT="0",
               GIT_EDITOR="false", LOGIST_NO_WATCHER="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _build_template(kind: str, base: Path) -> Path:
    """Build template ``kind`` under ``base``: "repo" (one commit on main), "project" (that,
    after `logist init`) or "net" (a bare remote and a clone ``a`` that pushed the project's
    first two commits, its origin/HEAD set)."""
    where = base / kind
    home = base / f"{kind}-home"
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text(GITCONFIG)
    env = _template_env(home)

    def run(*argv, cwd):
        proc = subprocess.run(list(map(str, argv)), cwd=str(cwd), env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"

    logist = (sys.executable, "-m", "logist")
    if kind == "net":
        remote, a = where / "remote.git", where / "a"
        where.mkdir()
        run("git", "init", "-q", "--bare", "-b", "main", remote, cwd=where)
        run("git", "clone", "-q", remote, a, cwd=where)
        (a / "README.md").write_text("# project\n")
        run("git", "add", "README.md", cwd=a)
        run("git", "commit", "-q", "-m", "initial", cwd=a)
        run(*logist, "init", cwd=a)
        run("git", "add", ".logist", cwd=a)
        run("git", "commit", "-q", "-m", "logist init", cwd=a)
        run("git", "push", "-q", "origin", "main", cwd=a)
        run("git", "remote", "set-head", "origin", "main", cwd=a)
        return where
    where.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=where)
    (where / "README.md").write_text("# project\n")
    run("git", "add", "README.md", cwd=where)
    run("git", "commit", "-q", "-m", "initial", cwd=where)
    if kind == "project":
        run(*logist, "init", cwd=where)
    return where


def copy_template(kind: str, dest: Path, base: Path) -> Path:
    """A copy of template ``kind`` (built under ``base`` the first time) at ``dest``."""
    import shutil

    if kind not in _TEMPLATES:
        _TEMPLATES[kind] = _build_template(kind, base)
    src = _TEMPLATES[kind]
    if kind == "net":  # ``dest`` (the test's tmp path) gets remote.git and a
        for name in ("remote.git", "a"):
            shutil.copytree(src / name, dest / name, symlinks=True)
        config = dest / "a" / ".git" / "config"
        config.write_text(config.read_text().replace(str(src), str(dest)))
        git(dest / "a", "update-index", "-q", "--refresh")
        return dest
    shutil.copytree(src, dest, symlinks=True)
    git(dest, "update-index", "-q", "--refresh")
    return dest


@pytest.fixture
def repo(tmp_path, tmp_path_factory) -> Path:
    """A real git repository with one commit on main (a copy of a template: see above)."""
    path = tmp_path / "project"
    if (path / ".git").is_dir():  # ``project`` came first and made it
        return path
    return copy_template("repo", path, tmp_path_factory.getbasetemp() / "templates")


def run_logist(*args, cwd, env=None, input=None, timeout=120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (`python -m logist`): for what needs a process of its
    own (a crash point, a signal, a second process running at the same time)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "logist", *map(str, args)], cwd=str(cwd),
                          capture_output=True, text=True, env=full_env, input=input, timeout=timeout)


def run_cli(*args, cwd, env=None, input=None) -> subprocess.CompletedProcess:
    """Run the CLI in this process (``logist.cli.main``) as :func:`run_logist` runs it in a
    subprocess: in ``cwd``, with ``env`` added to the environment (a value of None removes the
    variable), ``input`` on stdin, stdout and stderr captured, the exit code returned. The same
    code path minus the interpreter start (~0.2 s of CPU a call): for every command that is not
    about the process boundary. Never with a crash point (it would end the test process)."""
    import contextlib
    import io

    import logist.git.gitcmd as gitcmd
    from logist.cli import main

    assert "LOGIST_CRASH_AT" not in (env or {}), "a crash point needs run_logist (a process of its own)"
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    old_cwd, old_stdin = os.getcwd(), sys.stdin
    try:
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        gitcmd._BASE_ENV = None  # git's environment is derived from os.environ once
        os.chdir(cwd)
        sys.stdin = io.StringIO(input or "")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = old_stdin
        os.chdir(old_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        gitcmd._BASE_ENV = None
    return subprocess.CompletedProcess(["logist", *argv], code, out.getvalue(), err.getvalue())


# ---------------------------------------------------------------------------- shared fixtures
# Defined here (not imported into test modules) so every test module sees the same fixture.


@pytest.fixture
def project(tmp_path, tmp_path_factory, capsys) -> Path:
    """``repo`` after `logist init` (the same path when a test asks for both)."""
    path = tmp_path / "project"
    if not (path / ".git").is_dir():
        return copy_template("project", path, tmp_path_factory.getbasetemp() / "templates")
    from logist.cli import main  # ``repo`` came first: init it in place

    assert main(["-C", str(path), "init"]) == 0
    capsys.readouterr()
    return path


@pytest.fixture
def cli(project, capsys):
    """``cli(*args)`` runs ``logist -C <project> *args`` in process (see ``_core.Cli``)."""
    from _core import Cli

    return Cli(capsys, project)


@pytest.fixture
def procs():
    """Background processes of the test (``_crashkit.Procs``), each ended by pid at teardown."""
    from _crashkit import Procs

    p = Procs()
    yield p
    p.kill_all()


@pytest.fixture
def net(tmp_path, tmp_path_factory, monkeypatch):
    """A bare remote and a first clone that made the project's first commits (``_sharekit.Net``)."""
    from _sharekit import Net

    # The observer/sentinel side process is not what these tests are about: leave the CPU of a
    # 2-core CI box to git and the workers (test_push_fetch_round_trip turns it back on).
    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")
    copy_template("net", tmp_path, tmp_path_factory.getbasetemp() / "templates")
    return Net(tmp_path, tmp_path / "remote.git", tmp_path / "a")


# ---------------------------------------------------------------------------- real agent CLIs
# tests/test_real_agents.py skips a CLI that is not installed. With LOGIST_REQUIRE_REAL_AGENTS=1
# (.ci/run sets it after tests/real_agents/install.sh) a run in which no real-agent test passed
# fails: CI must not go green on a machine where the CLIs silently went missing.
_REAL_AGENTS_PASSED: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and "real_agents" in report.keywords:
        _REAL_AGENTS_PASSED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("LOGIST_REQUIRE_REAL_AGENTS") != "1" or exitstatus != 0:
        return
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller sees every report and decides
    selected = [item for item in session.items if "real_agents" in item.keywords] \
        if session.items else []
    if not _REAL_AGENTS_PASSED and (selected or not session.items):
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "\nLOGIST_REQUIRE_REAL_AGENTS=1 but no real-agent test ran: "
            "tests/real_agents/install.sh installed no agent CLI", red=True)
        session.exitstatus = 1


# ------------------------------------------------------------------ no process outlives its test
@pytest.fixture(autouse=True)
def no_process_left(tmp_path):
    """After each test, every process whose command line names this test's tmp path, or whose
    working directory is inside it, is killed by pid: a step's shell that a killed `logist job
    run` left behind (it runs in a session of its own), or a helper an agent CLI detached (cline
    3's `--cline-hub-daemon --cwd <worktree>`). Torn down last, after ``procs`` ends its own."""
    yield
    kill_leftovers(tmp_path)


def kill_leftovers(place: Path) -> list[int]:
    """Kill (SIGKILL, by pid) every process but this one whose command line names ``place`` or
    whose working directory is inside it; the pids killed."""
    mark = str(place)
    # the path whole: ".../test_x1" must not match ".../test_x10" (pytest numbers its dirs)
    named = re.compile(re.escape(mark.encode()) + rb"(?![A-Za-z0-9_.-])")
    me, killed = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if named.search(cmdline) or cwd == mark or cwd.startswith(mark + os.sep):
            try:
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
            except OSError:
                pass
    return killed
