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


def estimate(repo: Path) -> int:
    """git's own estimate of the loose objects (what `git gc --auto` compares with gc.auto)."""
    return packing.loose_estimate((repo / ".git").resolve())


def loose_until(repo: Path, at_least: int) -> None:
    """Commit batches of new files until git's estimate reaches ``at_least``."""
    batch = 0
    while estimate(repo) < at_least:
        files = repo / f"batch{batch}"
        files.mkdir()
        for i in range(200):
            (files / f"b{i}").write_text(f"batch {batch} blob {i}\n")
        git(repo, "add", files.name)
        git(repo, "commit", "-q", "-m", f"batch {batch}")
        batch += 1


def count(repo: Path) -> int:
    return int(dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())["count"])


def test_below_half_the_limit_nothing_happens(repo):
    loose_objects(repo, 300)
    before = count(repo)
    assert not packing.pack_if_needed((repo / ".git").resolve())
    assert count(repo) == before


def test_past_half_the_limit_loose_objects_are_packed(repo):
    git(repo, "config", "gc.auto", "2000")
    loose_until(repo, 1100)
    common = (repo / ".git").resolve()
    packing._LIMITS.clear()
    assert packing.pack_if_needed(common)
    assert count(repo) == 0
    assert "packs: 1" in git(repo, "count-objects", "-v")
    git(repo, "fsck", "--no-progress")  # everything still there
    assert git(repo, "show", "HEAD:batch0/b7") == "batch 0 blob 7"


def test_auto_gc_turned_off_is_respected(repo):
    git(repo, "config", "gc.auto", "0")
    loose_until(repo, 1100)
    before = count(repo)
    packing._LIMITS.clear()
    assert not packing.pack_if_needed((repo / ".git").resolve())
    assert count(repo) == before


def test_a_logist_transition_packs_once_past_half_the_limit(cli):
    repo = cli.repo
    git(repo, "config", "gc.auto", "2100")
    loose_until(repo, 1100)  # past half of gc.auto by git's own count
    packing._LIMITS.clear()
    job = cli.ok("job", "create", "--title", "Packs", "--step", "s").out.strip()
    assert count(repo) < 50, "the transition left the loose objects in place"
    assert estimate(repo) < 1050
    cli.ok("job", "activate", job)
    git(repo, "fsck", "--no-progress")
    assert git(repo, "log", "-1", "--format=%(trailers:key=Logist-To,valueonly)", f"logist/{job}") == "PENDING"
