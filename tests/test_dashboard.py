"""`logist dashboard` in a real terminal: tmux runs it at 80x24, the test reads the screen with
capture-pane and types with send-keys; what the keys did is checked with git."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from _core import create_from_toml, create_job, record_at
from conftest import git, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

APPROVAL = 'title = "{title}"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "approval"\n'
STUCK = 'title = "{title}"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "stuck"\n'


class Term:
    """One tmux server (its own socket) with one 80x24 window running a command."""

    def __init__(self, tmp_path, command: str) -> None:
        self.sock = str(tmp_path / "tmux.sock")
        self.exit_file = tmp_path / "exit"
        self.tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
                  f"{command}; echo EXIT=$? > {self.exit_file}; sleep 30")

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait(self, text: str, timeout: float = 30.0) -> str:
        def shown() -> str | None:
            screen = self.screen()
            return screen if text in screen else None

        try:
            return wait_for(shown, timeout, f"{text!r} on screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def exit_code(self) -> int:
        wait_for(lambda: self.exit_file.exists() and self.exit_file.read_text().strip(), 20, "the exit code")
        return int(self.exit_file.read_text().strip().removeprefix("EXIT="))

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=30)


def _state(repo, job_id: str) -> str:
    return record_at(repo, f"refs/heads/logist/{job_id}", job_id)["state"]


def test_dashboard_puts_what_needs_you_first_and_acts_on_keys(cli, tmp_path):
    repo = cli.repo
    done = create_job(cli, "--title", "Done already", "--step", "x", "--activate", "--id", "done-aaaa")
    cli.ok("job", "run", done)
    draft = create_job(cli, "--title", "Later", "--step", "x", "--id", "later-bbbb")
    stuck = create_from_toml(cli, STUCK.format(title="Stuck"), "--activate", "--id", "stuck-cccc", name="s.toml")
    assert cli("job", "run", stuck).code == 6
    first = create_from_toml(cli, APPROVAL.format(title="Sign one"), "--activate", "--id", "sign-one-dddd",
                             name="a1.toml")
    assert cli("job", "run", first).code == 5
    second = create_from_toml(cli, APPROVAL.format(title="Sign two"), "--activate", "--id", "sign-two-eeee",
                              name="a2.toml")
    assert cli("job", "run", second).code == 5

    term = Term(tmp_path, f"{sys.executable} -m logist -C {repo} dashboard --interval 0.5")
    try:
        screen = term.wait("NEEDS YOU (3)")
        lines = screen.splitlines()
        assert lines[1].startswith("NEEDS YOU (3)")  # right under the title line
        assert all(len(line) <= 80 for line in lines) and len(lines) <= 24
        at = {j: screen.index(j) for j in (second, first, stuck, draft)}
        assert at[second] < at[first] < at[stuck] < screen.index("WAITING") < at[draft]
        assert "mock agent asks for sign-off" in screen and "the task is ambiguous" in screen  # the reasons
        assert "FINISHED (1) folded" in screen and done not in screen
        assert f"> {second}" in screen  # the first job that needs you is selected
        assert "f finished q quit" in screen  # every key is named, within 80 columns

        term.keys("a")  # approve the selected job
        wait_for(lambda: _state(repo, second) == "SUCCESS", 20, "the approval")
        subject = git(repo, "log", "-1", "--format=%s", f"logist/{second}")
        assert subject.endswith("APPROVAL_REQUIRED -> SUCCESS (step 1/1)")
        term.wait(f"> {first}")

        term.keys("r")  # reject asks for the note
        term.wait("what should change?")
        term.keys("use a warmer greeting", "Enter")
        wait_for(lambda: _state(repo, first) == "PENDING", 20, "the rejection")
        assert "use a warmer greeting" in git(repo, "log", "-1", "--format=%B", f"logist/{first}")

        term.wait("NEEDS YOU (1)")
        term.keys("k")  # up: from the rejected job (now waiting) to the stuck one
        term.wait(f"> {stuck}")
        term.keys("u")  # resubmit
        wait_for(lambda: _state(repo, stuck) == "PENDING", 20, "the resubmit")

        term.keys("f")  # unfold the finished jobs
        screen = term.wait(done)
        assert "FINISHED (2)" in screen and second in screen
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()


def test_dashboard_ctrl_c_exits_130_and_a_pipe_gets_one_frame(cli, tmp_path):
    job_id = create_from_toml(cli, STUCK.format(title="Stuck"), "--activate", name="s.toml")
    assert cli("job", "run", job_id).code == 6
    term = Term(tmp_path, f"{sys.executable} -m logist -C {cli.repo} dashboard")
    try:
        term.wait("NEEDS YOU (1)")
        term.keys("C-c")
        assert term.exit_code() == 130
    finally:
        term.close()
    piped = subprocess.run([sys.executable, "-m", "logist", "-C", str(cli.repo), "dashboard"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert piped.returncode == 0
    assert piped.stdout.splitlines()[1] == "NEEDS YOU (1)" and job_id in piped.stdout
    data = cli.ok("dashboard", "--once", "--json").json()
    assert [r["id"] for r in data["needs_you"]] == [job_id]
    assert data["needs_you"][0]["state"] == "INTERVENTION_REQUIRED" and data["needs_you"][0]["note"]
    assert set(data) == {"needs_you", "running", "waiting", "finished"}


def test_foreground_run_shows_a_live_status_line_on_a_terminal(cli, tmp_path):
    # the agent runs for 3 s, at least two of the status line's 1 s ticks after its first line
    slow = 'title = "Slow"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "slow"\ndelay_s = 3.0\n'
    job_id = create_from_toml(cli, slow, "--activate", name="slow.toml")
    term = Term(tmp_path, f"{sys.executable} -m logist -C {cli.repo} job run {job_id}")
    try:
        # job, step N/M, agent, elapsed, cost so far and the agent's last output line
        screen = term.wait("working slowly")
        line = next(ln for ln in screen.splitlines() if ln.startswith(f"{job_id}  step 1/1  mock  "))
        assert "$0.00" in line and "mock: working slowly" in line, line
        assert term.exit_code() == 0
        final = term.screen()
        assert f"{job_id}: SUCCESS" in final
        assert not any(ln.startswith(f"{job_id}  step 1/1") for ln in final.splitlines())  # erased at the end
    finally:
        term.close()
    other = create_from_toml(cli, slow.replace("3.0", "1.5"), "--activate", name="slow2.toml")
    piped = subprocess.run([sys.executable, "-m", "logist", "-C", str(cli.repo), "job", "run", other],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr  # plain progress lines only
    assert f"{other}: EXECUTING -> HARVESTING" in piped.stderr


def test_dashboard_stop_key_suspends_a_running_job(cli, tmp_path):
    import json
    import re

    from _core import kill_group

    hang = 'title = "Hang"\n[[steps]]\nprompt = "p"\n[steps.mock]\nscenario = "hang"\n'
    job_id = create_from_toml(cli, hang, "--activate", name="hang.toml")
    r = subprocess.run([sys.executable, "-m", "logist", "-C", str(cli.repo), "job", "run", "--detach", job_id],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    runner = int(re.search(r"pid (\d+)", r.stdout).group(1))
    agent_file = cli.repo / ".git" / "logist" / "run" / job_id / "agent.json"
    term = Term(tmp_path, f"{sys.executable} -m logist -C {cli.repo} dashboard --interval 0.5")
    agent = None
    try:
        agent = wait_for(lambda: agent_file.exists() and json.loads(agent_file.read_text()).get("pid"), 30,
                         "the agent")
        screen = term.wait("RUNNING (1)")
        assert f"> {job_id}" in screen
        term.keys("s")
        wait_for(lambda: _state(cli.repo, job_id) == "SUSPENDED", 30, "the stop")
        term.wait(f"{job_id}: SUSPENDED")
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()
        kill_group(runner)
        if agent:
            kill_group(agent)
