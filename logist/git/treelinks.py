"""The symlinks of a commit's tree, and which of them point outside it or into a ``.git``.

A job branch fetched from a remote is data, not code; but checked out as a worktree, a symlink
committed on it (``hk -> ../../../hooks``, ``abs -> /home/me``) becomes a door out of the
worktree for anything that writes there. logist never writes through a symlink
(:mod:`logist.core.safepath`); on top of that a fetched job whose tree holds such a link is not
trusted (it does not run until a person looks: docs/sharing.md, "Trust") and ``logist doctor``
names it. Reading the links costs one ``git ls-tree -r`` and one ``git cat-file --batch`` (only
when the tree has links).
"""

from __future__ import annotations

from pathlib import Path

from logist.core.safepath import tree_link_problems
from logist.git.gitcmd import CatFileBatch, git

__all__ = ["MAX_LINKS", "dangerous_links", "tree_links"]

# More links than this in one tree are not read one by one: the tree is judged dangerous.
MAX_LINKS = 10_000
_MAX_TARGET = 4096


def tree_links(repo: str | Path, rev: str) -> dict[str, str]:
    """{path: target} of every symlink in the tree of ``rev`` (a commit or tree id).

    Raises ValueError when the tree cannot be read or holds more than MAX_LINKS links."""
    proc = git(["ls-tree", "-r", "-z", "--full-tree", rev, "--"], cwd=repo, check=False, text=False)
    if proc.returncode != 0:
        raise ValueError(f"cannot list the tree of {rev}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    found: list[tuple[str, str]] = []
    for entry in proc.stdout.split(b"\0"):
        if not entry.startswith(b"120000 "):
            continue
        meta, _, path = entry.partition(b"\t")
        parts = meta.split()
        if len(parts) != 3:
            continue
        found.append((path.decode("utf-8", errors="surrogateescape"), parts[2].decode()))
        if len(found) > MAX_LINKS:
            raise ValueError(f"the tree of {rev} holds more than {MAX_LINKS} symlinks")
    if not found:
        return {}
    with CatFileBatch(repo) as batch:
        blobs = batch.read_many([oid for _p, oid in found])
    links = {}
    for (path, _oid), blob in zip(found, blobs, strict=True):
        if blob is None or len(blob) > _MAX_TARGET:
            links[path] = "/" + "?" * 8  # unreadable or absurd: judged like an absolute link
        else:
            links[path] = blob.decode("utf-8", errors="surrogateescape")
    return links


def dangerous_links(repo: str | Path, rev: str) -> list[str]:
    """One reason per symlink of ``rev``'s tree that points outside the tree (absolute, or
    ``..`` above its root), into any ``.git``, or through a chain of links that does."""
    try:
        links = tree_links(repo, rev)
    except ValueError as exc:
        return [str(exc)]
    return tree_link_problems(links)
