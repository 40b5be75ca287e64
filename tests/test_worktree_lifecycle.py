"""Worktrees that cost nothing at rest (docs/architecture.md#worktrees): with [worktrees]
at_first_step and keep_finished = false a job's worktree is made when its first step starts,
released when the job ends in SUCCESS or CANCELED, and brought back on demand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _core import create_from_toml, write
from conftest import git

PY = json.dumps(sys.executable)


def job(title: str, code: int = 0) -> str:
    prog = f"import pathlib, sys; pathlib.Path('out.txt').write_text('{title}'); sys.exit({code})"
    return f'title = "{title}"\n[[steps]]\nname = "s"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'


def worktrees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")][1:]


def configure(repo: Path, text: str) -> None:
    write(repo / ".logist" / "config.local.toml", text)


LAZY = "[worktrees]\nat_first_step = true\nkeep_finished = false\n"


def test_made_at_the_first_step_released_at_success_back_on_demand(cli):
    repo = cli.repo
    configure(repo, LAZY)
    draft = create_from_toml(cli, job("Draft"), name="d.toml")
    jid = create_from_toml(cli, job("Done"), "--activate", name="j.toml")
    assert worktrees(repo) == []  # neither a DRAFT nor a PENDING job has one
    st = cli.ok("job", "status", jid, "--json").json()
    assert st["worktree_exists"] is False and "makes it" in cli.ok("job", "status", jid).out
    assert cli("job", "run", jid).code == 0
    assert worktrees(repo) == []  # released: everything is on the branch
    assert git(repo, "show", f"logist/{jid}:out.txt") == "Done"
    wt = Path(cli.ok("job", "path", jid).out.strip())  # back on demand, on the job's branch
    assert worktrees(repo) == [str(wt)]
    assert git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{jid}"
    assert git(wt, "status", "--porcelain") == "" and (wt / "out.txt").read_text() == "Done"
    # a rerun of a finished job runs in it and releases it again
    assert cli("job", "rerun", jid).code == 0
    assert worktrees(repo) == []
    assert cli.ok("job", "status", draft, "--json").json()["state"] == "DRAFT"
    assert not any(draft in w for w in worktrees(repo))


def test_cancel_releases_a_clean_worktree_and_keeps_one_with_changes(cli):
    repo = cli.repo
    configure(repo, LAZY)
    a = create_from_toml(cli, job("Fails A", 3), "--activate", name="a.toml")
    b = create_from_toml(cli, job("Fails B", 3), "--activate", name="b.toml")
    assert cli("job", "run", a).code == 6 and cli("job", "run", b).code == 6
    assert len(worktrees(repo)) == 2  # a job that needs a person keeps its worktree
    wt_b = Path(cli.ok("job", "path", b).out.strip())
    write(wt_b / "notes.txt", "a person's notes\n")
    cli.ok("job", "cancel", a)
    cli.ok("job", "cancel", b)
    assert worktrees(repo) == [str(wt_b)]  # changes are never thrown away
    assert (wt_b / "notes.txt").read_text() == "a person's notes\n"
    assert cli("doctor").code == 0


def test_by_default_a_job_has_its_worktree_from_create_to_cleanup(cli):
    repo = cli.repo
    jid = create_from_toml(cli, job("Kept"), "--activate")
    assert len(worktrees(repo)) == 1
    assert cli("job", "run", jid).code == 0
    (wt,) = worktrees(repo)
    assert (Path(wt) / "out.txt").read_text() == "Kept"


def test_sparse_worktree(cli):
    repo = cli.repo
    for d in ("src", "tests", "docs", "vendor"):
        write(repo / d / "f.txt", d + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dirs")
    configure(repo, '[worktrees]\nsparse = ["src/", "tests/"]\nkeep_finished = true\n')
    jid = create_from_toml(cli, job("Sparse"), "--activate")
    assert cli("job", "run", jid).code == 0
    wt = Path(cli.ok("job", "path", jid).out.strip())
    assert (wt / "src/f.txt").exists() and (wt / "tests/f.txt").exists() and (wt / "README.md").exists()
    assert not (wt / "docs").exists() and not (wt / "vendor").exists()
    assert (wt / ".logist" / "jobs" / jid / "manifest.json").exists()
    # what is not checked out is not deleted from the branch
    files = git(repo, "ls-tree", "-r", "--name-only", f"logist/{jid}").splitlines()
    assert {"docs/f.txt", "vendor/f.txt", "src/f.txt", "out.txt"} <= set(files)
    assert git(wt, "status", "--porcelain") == ""
