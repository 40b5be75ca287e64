"""Keep logist's own writes from pushing a repository over git's auto-gc limit.

Each transition writes a few loose objects (commit, trees, record blobs). Left alone, 1,000 jobs
leave about 7,000 of them, over git's `gc.auto` limit (6,700 by default), and the user's next
ordinary `git commit`, `fetch` or `merge` starts a `git gc --auto` that, in a repository with
many jobs, takes half a minute. So after writing, logist estimates the loose objects the way git
does (the entries of one fan-out directory, objects/17, times 256) and, once that passes half
the limit, packs them itself with `git repack -d` (incremental: only loose objects go into one
new pack; nothing else is rewritten).

The estimate costs one directory listing; the repack runs about once per few thousand objects.
"""

from __future__ import annotations

import os
from pathlib import Path

from logist.core.errors import GitError
from logist.git.gitcmd import git

DEFAULT_GC_AUTO = 6700


def loose_estimate(common_dir: Path) -> int:
    """git's own estimate of the loose objects: the files in objects/17, times 256."""
    try:
        names = os.listdir(common_dir / "objects" / "17")
    except OSError:
        return 0
    return sum(1 for n in names if len(n) == 38) * 256


_LIMITS: dict[Path, int] = {}


def gc_auto_limit(common_dir: Path) -> int:
    """The repository's `gc.auto` (read once per process)."""
    if common_dir not in _LIMITS:
        out = git(["config", "--type=int", "--get", "gc.auto"], cwd=common_dir, check=False).stdout.strip()
        try:
            _LIMITS[common_dir] = int(out) if out else DEFAULT_GC_AUTO
        except ValueError:
            _LIMITS[common_dir] = DEFAULT_GC_AUTO
    return _LIMITS[common_dir]


def pack_if_needed(common_dir: Path, *, fraction: float = 0.5) -> bool:
    """Pack loose objects when git's estimate passes ``fraction`` of its auto-gc limit.
    Returns True when it packed. Never raises: a failed repack leaves the objects loose."""
    estimate = loose_estimate(common_dir)
    if estimate < 1024:
        return False  # fewer than ~1,000 loose objects: not worth a config read
    limit = gc_auto_limit(common_dir)
    if limit <= 0 or estimate < limit * fraction:
        return False  # gc.auto = 0 means the user turned auto-gc off: leave the repository alone
    try:
        proc = git(["repack", "-d", "-q", "--no-write-bitmap-index"], cwd=common_dir, check=False, timeout=300)
    except GitError:
        return False
    return proc.returncode == 0
