"""logist.core.safepath: writes that never leave their directory, and link judgement."""

from __future__ import annotations

import os

import pytest

from logist.core.safepath import UnsafePathError, check_relative, link_escapes, read_file, remove_file, write_file


@pytest.mark.parametrize("rel,why", [
    ("", "not a file path"), (".", "not a file path"), ("/etc/passwd", "absolute"),
    ("\\x", "absolute"), ("C:/x", "absolute"), ("a/../../x", "'..'"), ("..", "'..'"),
    (".git/hooks/post-merge", ".git"), ("sub/.GIT/config", ".git"), ("x/.git./y", ".git"),
    ("a\0b", "NUL"),
])
def test_check_relative_refuses(rel, why):
    with pytest.raises(UnsafePathError, match=why.replace(".", r"\.").replace("(", r"\(")):
        check_relative(rel)


def test_check_relative_keeps_plain_paths():
    assert check_relative("./a//b/c.txt") == ["a", "b", "c.txt"]
    assert check_relative(".gitignore") == [".gitignore"]


def test_write_file_refuses_every_link_on_the_way(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "hk").symlink_to(outside)
    (root / "d").mkdir()
    (root / "d" / "up").symlink_to("../..")
    (root / "f").symlink_to(outside / "victim")
    (root / "plain").write_text("x")
    for rel, why in [("hk/post-merge", "hk is a symlink"), ("d/up/outside/x", "d/up is a symlink"),
                     ("f", "it is a symlink"), ("plain/x", "plain is not a directory")]:
        with pytest.raises(UnsafePathError, match=why):
            write_file(root, rel, b"evil")
    assert list(outside.iterdir()) == []
    assert read_file(root, "f") is None and read_file(root, "hk/x") is None


def test_write_file_creates_parents_and_replaces_files(tmp_path):
    write_file(tmp_path, "a/b/c.txt", b"one")
    (tmp_path / "a" / "b" / "c.txt").chmod(0o444)
    write_file(tmp_path, "a/b/c.txt", b"two")
    assert (tmp_path / "a/b/c.txt").read_bytes() == b"two" == read_file(tmp_path, "a/b/c.txt")
    assert remove_file(tmp_path, "a/b/c.txt") and not (tmp_path / "a/b/c.txt").exists()


def test_replace_links_removes_the_link_not_its_target(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("precious")
    (root / ".logist").symlink_to(outside)
    (outside / "m").symlink_to(outside / "victim")
    write_file(root, ".logist/jobs/j/manifest.json", b"{}", replace_links=True)
    assert not os.path.islink(root / ".logist") and (root / ".logist/jobs/j/manifest.json").read_bytes() == b"{}"
    assert sorted(p.name for p in outside.iterdir()) == ["m", "victim"]
    assert (outside / "victim").read_text() == "precious"


@pytest.mark.parametrize("path,target,bad", [
    ("hk", "../../../hooks", "outside"), ("hk", "/etc", "absolute"), ("a/b", "../../x", "outside"),
    ("a/b", "../c", None), ("g", ".git/hooks", "into a .git"), ("s/g", "../sub/.git", "into a .git"),
    ("l", "docs/./x", None), ("x", "", "absolute"),
])
def test_link_escapes(path, target, bad):
    why = link_escapes(path, target)
    assert (why is None) if bad is None else (bad in why)


def test_link_chains_and_loops():
    links = {"a": "b/..", "b": "c", "hk": "a/../../hooks"}
    assert "outside" in link_escapes("hk", links["hk"], links)
    loop = {"x": "y/z", "y": "x"}
    assert "loop" in link_escapes("x", loop["x"], loop)
    assert link_escapes("ok", "b", {"b": "c", "ok": "b"}) is None
