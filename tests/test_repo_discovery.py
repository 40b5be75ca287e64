"""Finding the repository without a git process gives git's own answer (`git rev-parse`), and
leaves every layout it does not read itself to git (logist.store.repo.find_repo)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import git

from logist.core.errors import NotARepositoryError
from logist.store.repo import _plain_repo, find_repo


def _git_says(cwd: Path) -> tuple[Path, Path, Path]:
    out = git(cwd, "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir").splitlines()
    common = Path(out[2]) if Path(out[2]).is_absolute() else cwd / out[2]
    return Path(out[0]).resolve(), Path(out[1]).resolve(), common.resolve()


def _found(cwd: Path) -> tuple[Path, Path, Path]:
    p = find_repo(cwd)
    return p.root.resolve(), p.git_dir.resolve(), p.common_dir.resolve()


def test_plain_layouts_are_read_from_the_files_with_gits_answer(repo, tmp_path):
    (repo / "src" / "deep").mkdir(parents=True)
    linked = tmp_path / "elsewhere" / "linked"
    git(repo, "worktree", "add", "-q", "-b", "topic", str(linked))
    (linked / "sub").mkdir()
    link = tmp_path / "via-symlink"
    link.symlink_to(repo / "src")
    for cwd in (repo, repo / "src" / "deep", linked, linked / "sub", link):
        assert _plain_repo(cwd) is not None, cwd  # read without git
        assert _found(cwd) == _git_says(cwd), cwd


def test_other_layouts_are_left_to_git(repo, tmp_path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    for cwd in (repo / ".git", repo / ".git" / "refs", bare):
        assert _plain_repo(cwd) is None, cwd
        with pytest.raises(NotARepositoryError):
            find_repo(cwd)
    git(repo, "config", "core.worktree", str(repo))
    assert _plain_repo(repo) is None  # core.worktree: git's answer
    assert _found(repo) == _git_says(repo)
    git(repo, "config", "--unset", "core.worktree")
    assert _plain_repo(repo) is not None
    (repo / ".git" / "config").write_text((repo / ".git" / "config").read_text()
                                          + "[include]\n\tpath = more.cfg\n")
    assert _plain_repo(repo) is None  # an include may set anything: git reads it


def test_not_a_repository(tmp_path):
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    assert subprocess.run(["git", "-C", str(plain), "rev-parse"], capture_output=True, env=env).returncode != 0
    if _plain_repo(plain) is None:  # nothing above tmp_path is a repository on a test machine
        with pytest.raises(NotARepositoryError):
            find_repo(plain)


def test_a_gitfile_that_is_not_a_gitdir_line_is_left_to_git(repo, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / ".git").write_text("not a gitdir line\n")
    assert _plain_repo(odd) is None
    with pytest.raises(NotARepositoryError):
        find_repo(odd)
