"""Scripts can trust what logist tells them, in a real repository (docs/exit-codes.md,
docs/architecture.md#reads): `job run`/`step`/`rerun`/`restep` exit 0 only when the work is done;
reads see only the job's own commits, never another job's merged into the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _core import create_from_toml
from conftest import git, run_logist

PY = json.dumps(sys.executable)


def command_job(title: str, *codes: int, approval: bool = False) -> str:
    text = f'title = "{title}"\n' + ("requires_approval = true\n" if approval else "")
    for i, code in enumerate(codes, 1):
        prog = f"import sys; print('step {i} of {title} says hello'); sys.exit({code})"
        text += f'[[steps]]\nname = "s{i}"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    return text


def test_job_run_exit_codes_scripts_can_trust(cli):
    ok = create_from_toml(cli, command_job("Passes", 0, 0), "--activate", name="ok.toml")
    bad = create_from_toml(cli, command_job("Fails", 0, 3), "--activate", name="bad.toml")
    assert cli("job", "step", ok).code == 0  # PENDING at step 2: the step did its work
    assert cli("job", "run", ok).code == 0
    r = cli("job", "run", bad, "--json")
    assert r.code == 6 and json.loads(r.out)["state"] == "INTERVENTION_REQUIRED"
    # the shell sees the same: `logist job run ID && git push` does not push
    proc = subprocess.run(["sh", "-c", 'logist "$@" && echo pushed', "sh", "job", "rerun", bad],
                          cwd=str(cli.repo), capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{sys.prefix}/bin:/usr/bin:/bin"})
    assert proc.returncode == 6 and "pushed" not in proc.stdout, proc
    r = cli("job", "restep", bad, "2")
    assert r.code == 6 and "failed" in r.err
    assert cli("job", "rerun", bad, "--no-run").code == 0  # only prepared
    # no id: the worst of every job run
    ok2 = create_from_toml(cli, command_job("Passes too", 0), "--activate", name="ok2.toml")
    r = cli("job", "run", "--json")
    assert r.code == 6, r
    assert {d["id"]: d["state"] for d in json.loads(r.out)} == {ok2: "SUCCESS", bad: "INTERVENTION_REQUIRED"}
    # refs say the same as the exit codes
    assert '"state": "SUCCESS"' in git(cli.repo, "show", f"logist/{ok}:.logist/jobs/{ok}/manifest.json")


def test_approval_has_its_own_exit_code(cli):
    gated = create_from_toml(cli, command_job("Gated", 0, approval=True), "--activate", name="gate.toml")
    r = cli("job", "run", gated, "--json")
    assert r.code == 5 and json.loads(r.out)["state"] == "APPROVAL_REQUIRED", r
    assert cli("job", "approve", gated).code == 0


def test_job_log_never_shows_another_jobs_output(cli):
    repo = cli.repo
    a = create_from_toml(cli, command_job("Job A", 0), "--activate", name="a.toml")
    assert cli("job", "run", a).code == 0
    git(repo, "merge", "-q", "--no-ff", "-m", "merge A", f"logist/{a}")
    b = create_from_toml(cli, command_job("Job B", 0), "--activate", name="b.toml")
    # B's branch now contains A's commits (merged into main, B's base)
    assert git(repo, "merge-base", "--is-ancestor", f"logist/{a}", f"logist/{b}") == ""
    r = cli("job", "log", b)
    assert r.code == 1 and r.out == "" and "has not run yet" in r.err, r
    assert "Job A" not in r.out + r.err
    assert cli("job", "log", a).out.strip() == "step 1 of Job A says hello"
    status = cli.ok("job", "status", b, "--json").json()
    assert status["last_signal"] is None
    hist = cli.ok("job", "history", b, "--notes", "--json").json()
    assert all(e.get("commit") is None or e["commit"] not in git(repo, "rev-list", f"logist/{a}")
               for e in hist)
    assert cli("job", "run", b).code == 0
    assert cli("job", "log", b).out.strip() == "step 1 of Job B says hello"


def test_reads_do_not_walk_the_project_history(cli, monkeypatch):
    """job status/log/history ask git only for base..tip (first parent), whatever lies behind."""
    from logist.git import gitcmd

    a = create_from_toml(cli, command_job("Bounded", 0), "--activate", name="a.toml")
    assert cli("job", "run", a).code == 0
    base = json.loads(git(cli.repo, "show", f"logist/{a}:.logist/jobs/{a}/manifest.json"))["base"]
    seen: list[list[str]] = []
    real = gitcmd.git

    def spy(args, *a_, **kw):
        seen.append(list(args))
        return real(args, *a_, **kw)

    import logist.store.job_history as jh
    monkeypatch.setattr(jh, "git", spy)
    cli.ok("job", "status", a)
    cli.ok("job", "log", a)
    cli.ok("job", "history", a, "--notes")
    logs = [s for s in seen if s and s[0] == "log"]
    assert logs, seen
    for s in logs:
        assert f"^{base}" in s and "--first-parent" in s, s
    out = run_logist("job", "log", a, cwd=cli.repo)  # a fresh process says the same
    assert out.returncode == 0 and "says hello" in out.stdout
