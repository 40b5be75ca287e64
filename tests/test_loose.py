"""Loose objects written in process (logist/git/loose.py, docs/performance.md#fresh-processes),
checked with git itself: ids as `git hash-object` gives them, trees and commits that
`git cat-file`, `git ls-tree` and `git fsck --strict` accept, git's tree order, and a
leftover temporary file that git ignores."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import git

from logist.git import loose


def _objects(repo: Path) -> Path:
    return repo / ".git" / "objects"


def test_a_blob_has_the_id_git_gives_it(repo):
    for data in (b"", b"hello\n", bytes(range(256)) * 40):
        oid = loose.write_object(_objects(repo), b"blob", data)
        expected = subprocess.run(["git", "-C", str(repo), "hash-object", "--stdin"], input=data,
                                  capture_output=True, check=True).stdout.decode().strip()
        assert oid == expected == loose.object_id(b"blob", data)
        shown = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", oid], capture_output=True,
                               check=True).stdout
        assert shown == data
        assert loose.write_object(_objects(repo), b"blob", data) == oid  # again: no change


def test_trees_and_a_commit_that_git_accepts(repo):
    objs = _objects(repo)
    a = loose.write_object(objs, b"blob", b"a\n")
    b = loose.write_object(objs, b"blob", b"b\n")
    # names whose order differs between "as a file" and "as a directory" (git sorts a
    # directory as name + "/"): "x.txt" < "x/" but "x" < "x.txt" as plain names
    sub = loose.write_object(objs, b"tree", loose.format_tree([(loose.FILE_MODE, b"inner", bytes.fromhex(a))]))
    entries = [(loose.FILE_MODE, b"x.txt", bytes.fromhex(a)), (loose.DIR_MODE, b"x", bytes.fromhex(sub)),
               (loose.FILE_MODE, b"x-y", bytes.fromhex(b))]
    tree = loose.write_object(objs, b"tree", loose.format_tree(entries))
    listed = git(repo, "ls-tree", "-r", "--name-only", tree).splitlines()
    assert listed == ["x-y", "x.txt", "x/inner"]
    assert loose.parse_tree(git_bytes(repo, "cat-file", "tree", tree)) == sorted(
        entries, key=lambda e: e[1] + (b"/" if e[0] == loose.DIR_MODE else b""))
    replaced = loose.with_entry(loose.parse_tree(git_bytes(repo, "cat-file", "tree", tree)), b"x-y",
                                loose.FILE_MODE, a)
    tree2 = loose.write_object(objs, b"tree", loose.format_tree(replaced))
    assert git(repo, "rev-parse", f"{tree2}:x-y") == a
    head = git(repo, "rev-parse", "HEAD")
    commit = loose.write_object(objs, b"commit", loose.format_commit(
        tree2, [head], b"Test User <test@example.invalid>", 1700000000, b"subject\n\nbody\n"))
    assert git(repo, "log", "-1", "--format=%P|%an|%ae|%at|%s", commit) == \
        f"{head}|Test User|test@example.invalid|1700000000|subject"
    git(repo, "update-ref", "refs/heads/loose-test", commit)
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"], capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def git_bytes(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def test_a_temporary_file_left_by_a_killed_writer_is_ignored_by_git(repo):
    folder = _objects(repo) / "ab"
    folder.mkdir(exist_ok=True)
    (folder / "tmp_obj_12345_deadbeef_0000").write_bytes(b"half an object")
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0 and "bad sha1" not in fsck.stdout + fsck.stderr
