"""Helpers of the sharing tests (test_sharing, test_cleanup, test_hooks, test_worker, test_doctor,
test_review ...): a bare remote with clones (``Net``), the CLI in process (``lg``), jobs made and
run (``make_job``), remote refs and records read with plain git, a fake ``gh``.
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from conftest import git, run_logist


@dataclass
class Res:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def lg(cwd: Path, *args, code: int | None = 0) -> Res:
    """Run `logist -C cwd *args` in process (fast); assert the exit code unless code=None."""
    from logist.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["-C", str(cwd), *map(str, args)])
    res = Res(rc, out.getvalue(), err.getvalue())
    if code is not None:
        assert rc == code, f"logist {' '.join(map(str, args))} -> {rc} (wanted {code})\n{res.out}\n{res.err}"
    assert "Traceback" not in res.err and "internal error" not in res.err, res.err
    return res


def lg_proc(cwd: Path, *args, code: int | None = 0, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    proc = run_logist(*args, cwd=cwd, env=env, timeout=timeout)
    if code is not None:
        assert proc.returncode == code, f"logist {args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def manifest_at(repo: Path, rev: str, job_id: str) -> dict:
    return json.loads(git(repo, "show", f"{rev}:.logist/jobs/{job_id}/manifest.json"))


def remote_manifest(remote: Path, job_id: str) -> dict | None:
    proc = subprocess.run(["git", "--git-dir", str(remote), "show",
                           f"refs/heads/logist/{job_id}:.logist/jobs/{job_id}/manifest.json"],
                          capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def remote_refs(remote: Path, prefix: str = "") -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(remote), "for-each-ref",
                          "--format=%(objectname) %(refname)", *([prefix] if prefix else [])],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def refs_snapshot(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(objectname) %(refname)")


def transitions(repo: Path, rev: str) -> list[tuple[str, str]]:
    out = git(repo, "log", "--reverse", "--format=%(trailers:key=Logist-From,valueonly,separator=%x2C)|"
                                        "%(trailers:key=Logist-To,valueonly,separator=%x2C)", rev)
    return [tuple(line.split("|")) for line in out.splitlines() if line.strip("|")]


JOB_TOML = """\
title = "{title}"
agent = "mock"
[[steps]]
name = "write"
prompt = "write the file"
[steps.mock]
writes = {writes}
cost_usd = 0.01
tokens = 10
"""

COMMAND_TOML = """\
title = "{title}"
[[steps]]
name = "build"
agent = "command"
command = ["{python}", "-c", "open('ran.txt', 'w').write('ran')"]
"""


def make_job(repo: Path, title: str = "Job", *, writes: dict[str, str] | None = None,
             run: bool = True, activate: bool = True, toml: str | None = None) -> str:
    """Create a job (with work when ``writes``), optionally run it. Returns its id."""
    if toml is None and writes is None:
        args = ["job", "create", "--title", title, "--step", "do it"]
    else:
        text = toml or JOB_TOML.format(title=title, writes="{ " + ", ".join(
            f'"{k}" = {json.dumps(v)}' for k, v in writes.items()) + " }")
        f = repo.parent / f"job-{abs(hash((title, text))) % 10**8}.toml"
        f.write_text(text)
        args = ["job", "create", "--file", f]
    if activate:
        args.append("--activate")
    jid = lg(repo, *args).out.strip()
    if run and activate:
        lg(repo, "job", "run", jid)
    return jid


@dataclass
class Net:
    """A bare remote and clones of it (the first, ``a``, made the project's first commits)."""

    tmp: Path
    remote: Path
    a: Path

    def clone(self, name: str, *, init: bool = True) -> Path:
        path = self.tmp / name
        git(self.tmp, "clone", "-q", str(self.remote), str(path))
        if init:
            lg(path, "init")
        return path


def fake_gh(dir_: Path, log: Path, *, fail: bool = False,
            fail_message: str = "a pull request for branch already exists") -> Path:
    """A `gh` on PATH that records its argv and body file and prints a PR URL."""
    dir_.mkdir(parents=True, exist_ok=True)
    script = dir_ / "gh"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, sys
        argv = sys.argv[1:]
        opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        body = open(opts["body-file"]).read() if "body-file" in opts else ""
        with open({str(log)!r}, "w") as fh:
            json.dump({{"argv": argv, "opts": opts, "body": body}}, fh)
        if {fail!r}:
            print({fail_message!r}, file=sys.stderr)
            sys.exit(1)
        print("https://github.com/acme/project/pull/7")
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script
