"""Worktrees that cost nothing at rest (docs/architecture.md#worktrees): by default a job's
worktree is made when its first step starts, released when the job ends in SUCCESS or CANCELED
(kept, and said so, when anything in it is not on the branch), and brought back on demand.
``[worktrees] at_first_step = false`` / ``keep_finished = true`` keep the old behaviour. Every
check is made with git itself (``git worktree list``, ``git for-each-ref``, ``git show``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _core import create_from_toml, write
from _crashkit import assert_released, fsck_clean, logist
from conftest import git, wtdir

from logist.core.faults import crash_env

PY = json.dumps(sys.executable)


def job(title: str, code: int = 0) -> str:
    prog = f"import pathlib, sys; pathlib.Path('out.txt').write_text('{title}'); sys.exit({code})"
    return f'title = "{title}"\n[[steps]]\nname = "s"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'


def worktrees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")][1:]


def configure(repo: Path, text: str) -> None:
    write(repo / ".logist" / "config.local.toml", text)


def test_made_at_the_first_step_released_at_success_back_on_demand(cli):
    repo = cli.repo
    draft = create_from_toml(cli, job("Draft"), name="d.toml")
    jid = create_from_toml(cli, job("Done"), "--activate", name="j.toml")
    assert worktrees(repo) == []  # neither a DRAFT nor a PENDING job has one
    st = cli.ok("job", "status", jid, "--json").json()
    assert st["worktree_exists"] is False and "makes it" in cli.ok("job", "status", jid).out
    assert cli("job", "run", jid).code == 0
    assert_released(repo, jid)  # everything is on the branch
    assert git(repo, "show", f"logist/{jid}:out.txt") == "Done"
    wt = Path(cli.ok("job", "path", jid).out.strip())  # back on demand, on the job's branch
    assert worktrees(repo) == [str(wt)]
    assert git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{jid}"
    assert git(wt, "status", "--porcelain") == "" and (wt / "out.txt").read_text() == "Done"
    # a rerun of a finished job runs in it and releases it again
    assert cli("job", "rerun", jid).code == 0
    assert_released(repo, jid)
    # a restep brings it back for the step and releases it again (the job is still SUCCESS)
    assert cli("job", "restep", jid, "1").code == 0
    assert_released(repo, jid)
    assert cli.ok("job", "status", draft, "--json").json()["state"] == "DRAFT"
    assert not any(draft in w for w in worktrees(repo))
    fsck_clean(repo)


def test_cancel_releases_a_clean_worktree_and_keeps_one_with_changes(cli):
    repo = cli.repo
    a = create_from_toml(cli, job("Fails A", 3), "--activate", name="a.toml")
    b = create_from_toml(cli, job("Fails B", 3), "--activate", name="b.toml")
    assert cli("job", "run", a).code == 6 and cli("job", "run", b).code == 6
    assert len(worktrees(repo)) == 2  # a job that needs a person keeps its worktree
    wt_b = Path(cli.ok("job", "path", b).out.strip())
    write(wt_b / "notes.txt", "a person's notes\n")
    cli.ok("job", "cancel", a)
    r = cli.ok("job", "cancel", b)
    assert_released(repo, a)
    assert worktrees(repo) == [str(wt_b)]  # changes are never thrown away
    assert "worktree kept" in r.err and "'notes.txt'" in r.err and f"git -C {wt_b} status" in r.err
    assert (wt_b / "notes.txt").read_text() == "a person's notes\n"
    assert cli("doctor").code == 0
    # once the note is gone, `job clean --keep-branch` releases it; the branch stays
    (wt_b / "notes.txt").unlink()
    cli.ok("job", "clean", b, "--keep-branch", "--yes")
    assert_released(repo, b)


def test_a_finished_job_whose_head_moved_or_that_is_locked_keeps_its_worktree(cli):
    repo = cli.repo
    a = create_from_toml(cli, job("Moved", 3), "--activate", name="a.toml")
    b = create_from_toml(cli, job("Locked", 3), "--activate", name="b.toml")
    assert cli("job", "run", a).code == 6 and cli("job", "run", b).code == 6
    wt_a, wt_b = (Path(cli.ok("job", "path", j).out.strip()) for j in (a, b))
    git(wt_a, "checkout", "-q", "--detach")
    git(repo, "worktree", "lock", "--reason", "mine", str(wt_b))
    ra, rb = cli.ok("job", "cancel", a), cli.ok("job", "cancel", b)
    assert f"its HEAD is not on logist/{a}" in ra.err and "it is locked" in rb.err
    assert sorted(worktrees(repo)) == sorted([str(wt_a), str(wt_b)])
    assert "locked mine" in git(repo, "worktree", "list", "--porcelain")


def test_ignored_files_go_with_a_released_worktree(cli):
    """As with `git worktree remove`: what git ignores (build output) is not work."""
    repo = cli.repo
    write(repo / ".gitignore", "build/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore build/")
    prog = "import pathlib; pathlib.Path('build').mkdir(); pathlib.Path('build/x.o').write_text('x')"
    text = f'title = "Builds"\n[[steps]]\nname = "s"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    jid = create_from_toml(cli, text, "--activate")
    assert cli("job", "run", jid).code == 0
    assert_released(cli.repo, jid)


def test_old_behaviour_is_one_setting_away(cli):
    repo = cli.repo
    configure(repo, "[worktrees]\nat_first_step = false\nkeep_finished = true\n")
    jid = create_from_toml(cli, job("Kept"), "--activate")
    assert worktrees(repo) == [str(wtdir(repo) / jid)]  # made at create
    assert cli("job", "run", jid).code == 0
    (wt,) = worktrees(repo)
    assert (Path(wt) / "out.txt").read_text() == "Kept"
    assert git(Path(wt), "status", "--porcelain") == ""


@pytest.mark.parametrize("point", ["release-after-rename", "release-after-prune"])
def test_a_release_killed_midway_is_finished_by_recover(project, point):
    """A kill -9 between the steps of a release (rename aside, git forgets it, delete): the job
    is SUCCESS with its whole worktree or none, `logist recover` finishes the release, and
    `job path` makes a good one again."""
    path = project.parent / "j.toml"
    path.write_text(job("Crashy"))
    r = logist(project, "job", "create", "--file", str(path), "--activate", "--json")
    jid = json.loads(r.stdout)["id"]
    r = logist(project, "job", "run", jid, env=crash_env(point))
    assert r.returncode == 137, r.stderr
    wt = wtdir(project) / jid
    assert not wt.exists()  # the rename is the one step that takes it away
    (aside,) = wt.parent.glob(f".logist-releasing-{jid}-*")
    assert (aside / "out.txt").read_text() == "Crashy"
    listed = git(project, "worktree", "list", "--porcelain")
    assert (f"worktree {wt}\n" in listed) == (point == "release-after-rename")
    st = logist(project, "job", "status", jid, "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["state"] == "SUCCESS"
    found = json.loads(logist(project, "doctor", "--json").stdout)["findings"]
    assert [f["fix"] for f in found if f["kind"] == "interrupted-release"] == ["logist recover"]
    rec = logist(project, "recover")
    assert rec.returncode == 0, rec.stderr
    assert "interrupted release" in rec.stdout + rec.stderr
    assert_released(project, jid)
    assert git(project, "for-each-ref", "refs/logist/locks/") == ""
    fsck_clean(project)
    back = Path(logist(project, "job", "path", jid).stdout.strip())
    assert back == wt and git(wt, "status", "--porcelain") == "" and (wt / "out.txt").read_text() == "Crashy"


def test_job_path_right_after_an_interrupted_release(project):
    """No `logist recover` first: a command that needs the worktree makes it; the aside copy
    does not stand in its way."""
    path = project.parent / "j.toml"
    path.write_text(job("Again"))
    jid = json.loads(logist(project, "job", "create", "--file", str(path), "--activate", "--json").stdout)["id"]
    assert logist(project, "job", "run", jid, env=crash_env("release-after-rename")).returncode == 137
    back = Path(logist(project, "job", "path", jid).stdout.strip())
    assert git(back, "symbolic-ref", "HEAD") == f"refs/heads/logist/{jid}"
    assert git(back, "status", "--porcelain") == ""
    listed = subprocess.run(["git", "-C", str(project), "worktree", "list", "--porcelain"],
                            capture_output=True, text=True).stdout
    assert listed.count(f"branch refs/heads/logist/{jid}\n") == 1


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
    assert git(wt, "config", "core.sparseCheckout") == "true"
    assert git(wt, "sparse-checkout", "list").splitlines() == [".logist", "src", "tests"]
    # what is not checked out is not deleted from the branch
    files = git(repo, "ls-tree", "-r", "--name-only", f"logist/{jid}").splitlines()
    assert {"docs/f.txt", "vendor/f.txt", "src/f.txt", "out.txt"} <= set(files)
    assert git(wt, "status", "--porcelain") == ""
    # the main checkout is not sparse
    assert (repo / "docs/f.txt").exists() and (repo / "vendor/f.txt").exists()


def test_a_stale_registration_of_the_branch_elsewhere_does_not_stop_job_path(cli, tmp_path):
    """git still records a worktree of the job branch whose directory was deleted by hand: the
    new worktree is made all the same (git forgets the stale one first), and only then."""
    import shutil

    repo = cli.repo
    jid = create_from_toml(cli, job("Stale"), "--activate")
    elsewhere = tmp_path / "elsewhere"
    git(repo, "worktree", "add", "-q", str(elsewhere), f"logist/{jid}")
    shutil.rmtree(elsewhere)
    assert "prunable" in git(repo, "worktree", "list", "--porcelain")
    wt = Path(cli.ok("job", "path", jid).out.strip())
    assert wt == wtdir(repo) / jid and worktrees(repo) == [str(wt)]
    assert git(wt, "symbolic-ref", "HEAD") == f"refs/heads/logist/{jid}"
