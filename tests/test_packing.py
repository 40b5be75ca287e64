"""logist packs the loose objects it writes before git's auto-gc limit is reached, so the user's
next `git commit` does not start a `git gc --auto`. Checked with `git count-objects` and
`git gc --auto`'s own decision."""

from __future__ import annotations

from pathlib import Path

from conftest import git

from logist.git import packing


def loose_objects(repo: Path, n: int) -> None:
    """About ``n`` loose objects reachable from a commit (what logist's transitions leave)."""
    files = repo / "many"
    files.mkdir()
    for i in range(n):
        (files / f"b{i}").write_text(f"blob {i}\n")
    git(repo, "add", "many")
    git(repo, "commit", "-q", "-m", "many files")


def count(repo: Path) -> int:
    return int(dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())["count"])


def test_below_half_the_limit_nothing_happens(repo):
    loose_objects(repo, 300)
    before = count(repo)
    assert not packing.pack_if_needed((repo / ".git").resolve())
    assert count(repo) == before


def test_past_half_the_limit_loose_objects_are_packed(repo):
    git(repo, "config", "gc.auto", "2000")
    loose_objects(repo, 2500)
    assert count(repo) > 2000
    common = (repo / ".git").resolve()
    packing._LIMITS.clear()
    assert packing.pack_if_needed(common)
    assert count(repo) == 0
    assert "packs: 1" in git(repo, "count-objects", "-v")
    git(repo, "fsck", "--no-progress")  # everything still there
    assert git(repo, "show", "HEAD:many/b7") == "blob 7"


def test_auto_gc_turned_off_is_respected(repo):
    git(repo, "config", "gc.auto", "0")
    loose_objects(repo, 1500)
    before = count(repo)
    packing._LIMITS.clear()
    assert not packing.pack_if_needed((repo / ".git").resolve())
    assert count(repo) == before
