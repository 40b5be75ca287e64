"""Every adapter end to end through `logist job run`, with the real agent CLI.

The CLIs are installed at pinned versions by ``tests/real_agents/install.sh`` (``.ci/run`` does
it); each test runs one CLI against the scripted model server of ``tests/model_server.py`` on
127.0.0.1, configured the way the CLI documents (``tests/real_agents/clis.py``), with no extra
``args`` and no ``skip_permissions``. A CLI that is not installed is skipped, saying so.

Scenarios (docs/agents.md): ``write`` (the CLI's own write tool creates hello.txt: SUCCESS, the
file in the harvest commit, tokens recorded, the CLI's version in the trailer, none of its state
committed), ``auth`` (HTTP 401), ``deny`` (a tool call the CLI's permissions refuse), ``loop``
(the server closes every connection: a reconnect loop), ``nokey`` and ``retry`` (RETRY, then
the same session resumed). Every failure must end in INTERVENTION_REQUIRED within 30 s, with
the agent's own words and exactly one execution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, run_cli

sys.path.insert(0, str(Path(__file__).parent))
from model_server import ModelServer, Script
from real_agents import clis

pytestmark = pytest.mark.real_agents

VERSIONS = clis.pinned_versions()


# logist's own cache of the CLIs' versions (.git/logist/agent-versions.json, keyed by path,
# mtime and size) as the tests of this process filled it
_VERSION_CACHE: dict[str, str] = {}
RUN_TIMEOUT = 90  # bound of one `logist job run` (the scenarios end well within 30 s)


def need(agent: str) -> Path:
    exe = clis.installed(agent)
    if exe is None:
        pytest.skip(f"{agent} CLI not installed under {clis.prefix()}: run "
                    "tests/real_agents/install.sh (CI does)")
    return exe


def logist(*args: str, cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logist", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def job_file(tmp: Path, agent: str, **step: object) -> Path:
    lines = ['title = "Real agent"', f'agent = "{agent}"',
             "[budget]", "max_attempts = 3",
             "[[steps]]", 'name = "write"', 'prompt = "Create the file hello.txt with a greeting."']
    lines += [f"{k} = {json.dumps(v)}" for k, v in step.items()]
    path = tmp / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Run:
    """One job of ``agent`` run through `logist job run` against a scripted model server."""

    def __init__(self, project: Path, tmp: Path, agent: str, scenario: str, *,
                 url: bool = True, key: bool = True, probe: bool = False, **step: object) -> None:
        """``probe``: logist asks the CLI its version itself (`CLI --version`); otherwise the
        repository starts with logist's version cache as an earlier test of this process left
        it (a node CLI takes 1-2 s of CPU to say its version)."""
        need(agent)
        versions = project / ".git" / "logist" / "agent-versions.json"
        if not probe and _VERSION_CACHE:
            versions.write_text(json.dumps(_VERSION_CACHE))
        self.project, self.agent = project, agent
        self.server = ModelServer(Script(scenario=scenario), max_seconds=RUN_TIMEOUT + 30).start()
        home = tmp / f"{agent}-home"
        self.env = {**os.environ,
                    **clis.agent_env(agent, self.server.url if url else None, home,
                                     key=clis.TEST_KEY if key else None)}
        self.env["GIT_CONFIG_GLOBAL"] = os.environ["GIT_CONFIG_GLOBAL"]
        # create and status in process; the run, with the CLI under test, a process of its own
        made = run_cli("job", "create", "--file", str(job_file(tmp, agent, **step)), "--activate",
                       "--json", cwd=project, env=self.env)
        assert made.returncode == 0, made.stderr
        self.id = json.loads(made.stdout)["id"]
        started = time.monotonic()
        try:
            self.proc = logist("job", "run", self.id, cwd=project, env=self.env)
        finally:
            self.seconds = time.monotonic() - started
            self.server.stop()
        self.status = json.loads(run_cli("job", "status", self.id, "--json", cwd=project,
                                         env=self.env).stdout)
        self.branch = f"refs/heads/logist/{self.id}"
        try:
            _VERSION_CACHE.update(json.loads(versions.read_text()))
        except (OSError, ValueError):
            pass

    def manifest(self) -> dict:
        return json.loads(git(self.project, "show",
                              f"{self.branch}:.logist/jobs/{self.id}/manifest.json"))

    def history(self) -> list[dict]:
        raw = git(self.project, "show", f"{self.branch}:.logist/jobs/{self.id}/history.jsonl")
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def executions(self) -> int:
        """How many times an agent was started for the job (one per attempt)."""
        return sum(1 for e in self.history() if e.get("to") == "EXECUTING")

    def explain(self) -> str:
        return (f"exit {self.proc.returncode} after {self.seconds:.1f}s\nstdout: {self.proc.stdout}"
                f"\nstderr: {self.proc.stderr}\nstatus: {self.status}")


AGENTS = ["claude", "codex", "gemini", "cline", "aider"]


@pytest.mark.parametrize("agent", AGENTS)
def test_the_cli_writes_a_file_that_lands_in_the_harvest_commit(project, tmp_path, agent):
    run = Run(project, tmp_path, agent, "write", probe=True)  # the version asked of the CLI
    assert run.proc.returncode == 0, run.explain()
    assert run.status["state"] == "SUCCESS", run.explain()
    # the file the CLI's own tool wrote is in the harvest commit, and nothing of its state
    tree = git(project, "ls-tree", "-r", "--name-only", run.branch).splitlines()
    assert "hello.txt" in tree
    assert git(project, "show", f"{run.branch}:hello.txt").startswith("hello from the scripted model")
    assert not [p for p in tree if p.startswith(".aider") or "/.aider" in p], tree
    # the worktree is outside the git dir (where agent CLIs refuse to write)
    assert ".git" not in Path(run.status["worktree"]).parts
    m = run.manifest()
    assert m["tokens"] > 0 and m["steps"][0]["agent_version"] == VERSIONS[agent]
    trailers = git(project, "log", "-1", "--format=%(trailers:key=Logist-Agent,valueonly)", run.branch)
    assert trailers.strip() == f"{agent} {VERSIONS[agent]}"
    assert run.executions() == 1


FAILURES = {  # agent -> scenario -> words the reason must hold
    "claude": {"auth": "API key is missing or not valid", "deny": "denied",
               "loop": "kept retrying", "nokey": "Not logged in"},
    "codex": {"auth": "401", "deny": "denied", "loop": "kept retrying",
              "nokey": "Missing environment variable"},
    "gemini": {"auth": "API key not valid", "deny": "denied",
               "nokey": "GEMINI_API_KEY"},
    "cline": {"auth": "Incorrect API key", "deny": "denied"},
    "aider": {"auth": "not able to authenticate", "loop": "kept retrying",
              "nokey": "No LLM model was specified"},
}


@pytest.mark.parametrize("agent,scenario", [(a, s) for a, ss in FAILURES.items() for s in ss])
def test_a_failure_goes_to_a_person_at_once_with_the_agents_words(project, tmp_path, agent,
                                                                  scenario):
    step: dict[str, object] = {}
    if agent == "cline" and scenario == "deny":
        step["args"] = ["--auto-approve", "false"]  # cline auto-approves everything by default
    bare = scenario == "nokey" and agent == "aider"  # no model, no key: aider offers a login
    loop = "drop" if agent == "codex" else "hang"  # codex retries a refused connection silently
    run = Run(project, tmp_path, agent, "write" if scenario in ("nokey",) else
              {"loop": loop}.get(scenario, scenario),
              url=not bare, key=scenario != "nokey", **step)
    assert run.status["state"] == "INTERVENTION_REQUIRED", run.explain()
    reason = run.status.get("reason") or run.manifest()["reason"]
    assert FAILURES[agent][scenario] in reason, run.explain()
    assert "\x1b" not in reason and "For more information" not in reason
    assert run.executions() == 1, run.history()
    # the step's own time, from the agent's start to the job resting: the CLIs' and logist's
    # start-up on a loaded 2-core machine is not the agent being stopped late
    assert run.status["seconds"] < 30, run.explain()
    if scenario == "deny":
        assert "To grant them" in reason


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini"])
def test_retry_resumes_the_session_and_counts_tokens_once(project, tmp_path, agent):
    run = Run(project, tmp_path, agent, "retry")
    assert run.status["state"] == "SUCCESS", run.explain()
    assert run.executions() == 2
    m = run.manifest()
    assert 0 < m["tokens"] <= run.server.tokens_served, (m["tokens"], run.server.tokens_served)
