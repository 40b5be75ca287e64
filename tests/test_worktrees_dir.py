"""`worktrees.dir` cannot aim logist at the system: never `/`, system paths, home, the git
directory or a non-directory; an existing directory is used only when logist created it (marked
with `.logist-worktrees`), it is empty, or it holds only this repository's worktrees; `doctor`
and `doctor --fix` touch only what logist created (docs/cli.md#configuration)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _core import no_traceback, refs_snapshot
from conftest import git


def _set_dir(repo: Path, value: str) -> None:
    (repo / ".logist" / "config.local.toml").write_text(f"[worktrees]\ndir = {json.dumps(value)}\n")


def _create(cli):
    return cli("job", "create", "--title", "t", "--step", "s")


@pytest.mark.parametrize(("value", "why"), [
    ("/", "system or home directory"), ("/etc", "system path"), ("/usr/local/wt", "system path"),
    ("/dev/null", "system path"), ("/var/lib/x", "system path"), ("/home", "system or home"),
    ("~", "system or home directory"), (".git", "is the git directory"),
    (".git/objects", "inside the git directory"), (".git/refs/heads", "inside the git directory"),
    (".", "holds the git directory"), ("..", "holds the git directory"),
    ("a\tb", "control characters"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_refused_places(cli, value, why):
    _set_dir(cli.repo, value)
    before = refs_snapshot(cli.repo)
    r = _create(cli)
    assert r.code == 1, r
    assert "worktrees.dir" in r.err and why in r.err and "config.local.toml" in r.err, r.err
    no_traceback(r.err)
    assert refs_snapshot(cli.repo) == before
    d = cli("doctor", "--json")
    assert d.code == 1
    findings = json.loads(d.out)["findings"]
    assert [f["kind"] for f in findings] == ["invalid-config"], findings
    assert not any("rm " in (f["fix"] or "") for f in findings)
    fixed = cli("doctor", "--fix")
    assert fixed.code == 1 and "removed" not in fixed.out
    assert not (Path("/etc") / "t").exists()


def test_a_file_is_not_a_directory(cli, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("mine\n")
    _set_dir(cli.repo, str(f))
    r = _create(cli)
    assert r.code == 1 and "is not a directory" in r.err, r.err
    assert f.read_text() == "mine\n"


def test_a_users_directory_is_not_taken_nor_touched(cli, tmp_path):
    user = tmp_path / "user-dir"
    (user / "empty-sub").mkdir(parents=True)
    (user / "notes").mkdir()
    (user / "notes" / "a.txt").write_text("keep\n")
    _set_dir(cli.repo, str(user))
    before = refs_snapshot(cli.repo)
    r = _create(cli)
    assert r.code == 1 and "logist did not create" in r.err, r.err
    assert refs_snapshot(cli.repo) == before
    d = json.loads(cli("doctor", "--json").out)["findings"]
    assert [f["kind"] for f in d] == ["unowned-worktrees-dir"], d
    cli("doctor", "--fix")
    assert sorted(p.name for p in user.iterdir()) == ["empty-sub", "notes"]
    assert (user / "notes" / "a.txt").read_text() == "keep\n"
    assert not (user / ".logist-worktrees").exists()


def test_a_new_directory_is_created_marked_and_only_its_own_empty_dirs_are_fixed(cli, tmp_path):
    wdir = tmp_path / "worktrees-here"
    _set_dir(cli.repo, str(wdir))
    job = cli.ok("job", "create", "--title", "Mine", "--step", "s").out.strip()
    assert (wdir / ".logist-worktrees").is_file()  # checked and marked at create
    assert not (wdir / job).exists()  # the worktree itself comes with the first step
    cli.ok("job", "path", job)
    assert (wdir / job / ".git").is_file()
    (wdir / "user-sub").mkdir()  # a user's empty directory, in logist's directory
    (wdir / "user-files").mkdir()
    (wdir / "user-files" / "x").write_text("x\n")
    findings = json.loads(cli("doctor", "--json").out)["findings"]
    kinds = {f["job"]: f for f in findings}
    assert kinds["user-sub"]["kind"] == "stray-directory" and not kinds["user-sub"]["auto_fix"]
    assert kinds["user-files"]["kind"] == "stray-directory"
    assert not any("rm -r" in (f["fix"] or "") for f in findings), findings
    cli("doctor", "--fix")
    assert (wdir / "user-sub").is_dir() and (wdir / "user-files" / "x").is_file()
    # the job's own worktree directory, emptied and unregistered, is logist's to remove
    git(cli.repo, "worktree", "remove", "--force", str(wdir / job))
    (wdir / job).mkdir()
    findings = json.loads(cli("doctor", "--json").out)["findings"]
    own = [f for f in findings if f["job"] == job and f["kind"] == "empty-worktree-dir"]
    assert own and own[0]["auto_fix"], findings
    cli("doctor", "--fix")
    assert not (wdir / job).exists()  # logist's empty directory: removed
    assert (wdir / "user-sub").is_dir()
    cli.ok("job", "path", job)  # the job's worktree is made again when it is needed
    assert (wdir / job / ".git").is_file()


def test_an_existing_empty_directory_or_one_with_our_worktrees_is_adopted(cli, tmp_path):
    wdir = tmp_path / "empty"
    wdir.mkdir()
    _set_dir(cli.repo, str(wdir))
    job = cli.ok("job", "create", "--title", "Adopted", "--step", "s").out.strip()
    assert (wdir / ".logist-worktrees").is_file()
    # a pre-marker directory that holds only this repository's worktrees is adopted too
    os.unlink(wdir / ".logist-worktrees")
    cli.ok("job", "path", job)
    os.unlink(wdir / ".logist-worktrees")
    second = cli.ok("job", "create", "--title", "Second", "--step", "s").out.strip()
    cli.ok("job", "path", second)
    assert (wdir / ".logist-worktrees").is_file() and (wdir / job).is_dir() and (wdir / second).is_dir()
