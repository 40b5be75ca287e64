"""Writes that never leave a directory: no symlink is followed, no ``.git`` is entered.

logist writes files into a job's worktree (the record's working copy, the mock agent's
``writes``), and the worktree's content comes from the job branch, which may have been fetched
from a remote or changed by the agent. A symlink committed on the branch (``hk ->
../../../hooks``, ``abs -> /etc``) would turn a plain ``open(wt / "hk/post-merge", "w")`` into
a write outside the worktree. So every write here walks the path one component at a time with
``openat``-style calls (``dir_fd``) and ``O_NOFOLLOW``: a symlink anywhere on the way, a
non-directory where a directory is needed, a ``..``, an absolute path or a ``.git`` component is
refused with :class:`UnsafePathError` before anything is written, and the check cannot be raced
by swapping a directory for a symlink in between (each step opens the directory it checked).

:func:`link_escapes` judges a symlink read from a git tree (without touching the disk): does it
point outside the tree or into a ``.git``? See docs/sharing.md ("Trust").

Only the standard library and :mod:`logist.core.errors` are imported: the mock agent process
uses this module too.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Mapping
from pathlib import Path

from logist.core.errors import LogistError

__all__ = ["UnsafePathError", "check_relative", "link_escapes", "read_file", "remove_file",
           "tree_link_problems", "why_unsafe", "write_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafePathError(LogistError):
    """A path that would be written outside its directory, into ``.git`` or through a symlink."""


def _is_git_name(name: str) -> bool:
    # ".git" in any case (case-insensitive file systems), and ".git " / ".git." that Windows
    # and some file systems treat as the same name.
    return name.rstrip(" .").casefold() == ".git"


def check_relative(rel: str) -> list[str]:
    """The components of ``rel``, a relative path that stays inside its directory.

    Refuses (UnsafePathError, saying why): empty, NUL, absolute (``/x``, ``\\x``, ``C:``),
    any ``..``, and any ``.git`` component. ``.`` and empty components are dropped.
    """
    if not isinstance(rel, str) or not rel:
        raise UnsafePathError(f"refusing to write {rel!r}: not a file path")
    if "\0" in rel:
        raise UnsafePathError(f"refusing to write {rel!r}: the path contains a NUL byte")
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(f"refusing to write {rel!r}: an absolute path (it must be relative "
                              "to the worktree)")
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePathError(f"refusing to write {rel!r}: not a file path")
    if ".." in parts:
        raise UnsafePathError(f"refusing to write {rel!r}: '..' would climb out of the worktree")
    if any(_is_git_name(p) for p in parts):
        raise UnsafePathError(f"refusing to write {rel!r}: it is inside a .git directory")
    return parts


def why_unsafe(rel: str) -> str | None:
    """Why ``rel`` is not a plain relative path inside its directory (see
    :func:`check_relative`), or None when it is."""
    try:
        check_relative(rel)
    except UnsafePathError as exc:
        return exc.message
    return None


def _open_parent(root: Path, rel: str, parts: list[str], *, create: bool,
                 replace_links: bool) -> int:
    """An fd of the directory that holds ``parts[-1]``, walked from ``root`` without following
    any symlink (creating missing directories when ``create``)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for i, name in enumerate(parts[:-1]):
            where = "/".join(parts[: i + 1])
            for _attempt in range(3):
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    break
                except FileNotFoundError:
                    if not create:
                        raise UnsafePathError(f"cannot write {rel!r}: {where}/ does not exist") from None
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        if not replace_links:
                            raise UnsafePathError(
                                f"refusing to write {rel!r}: {where} is a symlink (to "
                                f"{_readlink(name, fd)!r}); logist never writes through a symlink"
                            ) from None
                        os.unlink(name, dir_fd=fd)  # removes the link itself, never its target
                        continue
                    raise UnsafePathError(f"refusing to write {rel!r}: {where} is not a "
                                          "directory") from None
            else:  # pragma: no cover - a directory swapped three times under us
                raise UnsafePathError(f"refusing to write {rel!r}: {where} keeps changing")
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _readlink(name: str, dir_fd: int) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return "?"


def write_file(root: Path | str, rel: str, data: bytes, *, mode: int = 0o666,
               replace_links: bool = False) -> None:
    """Write ``data`` to ``root/rel`` (parents created) without leaving ``root``.

    Refused with UnsafePathError: what :func:`check_relative` refuses, a symlink as any
    component (the directories on the way or the file itself), a non-directory on the way.
    ``replace_links``: for files that belong to logist (the record's working copy), a symlink on
    the way or at the file is removed (the link, not what it points to) and a real directory or
    file created in its place. The file is replaced like ``git checkout`` does (unlink, then
    create with ``O_EXCL | O_NOFOLLOW``), so a link planted between the two steps is refused too.
    """
    parts = check_relative(rel)
    fd = _open_parent(Path(root), rel, parts, create=True, replace_links=replace_links)
    name = parts[-1]
    try:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode) and not replace_links:
                raise UnsafePathError(f"refusing to write {rel!r}: it is a symlink (to "
                                      f"{_readlink(name, fd)!r}); logist never writes through a symlink")
            if stat.S_ISDIR(st.st_mode):
                raise UnsafePathError(f"refusing to write {rel!r}: it is a directory")
            os.unlink(name, dir_fd=fd)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=fd)
        except FileExistsError:
            raise UnsafePathError(f"refusing to write {rel!r}: something else created it at the "
                                  "same moment") from None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(fd)


def read_file(root: Path | str, rel: str, *, limit: int = 64 << 20) -> bytes | None:
    """The content of the regular file ``root/rel``, or None when it is missing, larger than
    ``limit``, not a regular file, or reached through a symlink (nothing is followed)."""
    parts = check_relative(rel)
    try:
        fd = _open_parent(Path(root), rel, parts, create=False, replace_links=False)
    except (UnsafePathError, OSError):
        return None
    try:
        try:
            f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=fd)
        except OSError:
            return None
        try:
            st = os.fstat(f)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            chunks = []
            while chunk := os.read(f, 1 << 20):
                chunks.append(chunk)
                if sum(map(len, chunks)) > limit:
                    return None
            return b"".join(chunks)
        finally:
            os.close(f)
    finally:
        os.close(fd)


def remove_file(root: Path | str, rel: str) -> bool:
    """Remove ``root/rel`` (a file or a symlink, never what a link points to) without following
    any symlink on the way. False when it was not there or the way to it is not a plain path."""
    parts = check_relative(rel)
    try:
        fd = _open_parent(Path(root), rel, parts, create=False, replace_links=False)
    except (UnsafePathError, OSError):
        return False
    try:
        os.unlink(parts[-1], dir_fd=fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- links in a tree

def link_escapes(path: str, target: str, links: Mapping[str, str] | None = None) -> str | None:
    """Why the symlink at ``path`` (relative to a tree's root) with ``target`` is dangerous, or
    None when it stays inside the tree and outside every ``.git``.

    Decided on the text alone, as a checkout would resolve it: an absolute target, a ``..`` that
    climbs above the root, a ``.git`` component on the way, or (given ``links``, every symlink
    of the tree) a chain through other links of the tree that does one of those.
    """
    links = links or {}
    seen: set[str] = set()
    cur_path, cur_target = path, target
    for _hop in range(40):
        if not cur_target or cur_target.startswith("/") or "\0" in cur_target:
            return f"{path} -> {target}: an absolute link points outside the worktree"
        if len(cur_target) > 1 and cur_target[1] == ":":
            return f"{path} -> {target}: an absolute link points outside the worktree"
        base = posixpath.dirname(cur_path)
        stack: list[str] = [p for p in base.split("/") if p]
        parts = [p for p in cur_target.replace("\\", "/").split("/") if p not in ("", ".")]
        next_link = None
        for i, name in enumerate(parts):
            if name == "..":
                if not stack:
                    return f"{path} -> {target}: it points outside the worktree"
                stack.pop()
                continue
            if _is_git_name(name):
                return f"{path} -> {target}: it points into a .git directory"
            stack.append(name)
            here = "/".join(stack)
            if here in links and here != cur_path:
                # resolving goes on from the link's own target, then the rest of this path
                next_link = (here, links[here], parts[i + 1:])
                break
        if next_link is None:
            return None
        here, tgt, rest = next_link
        if here in seen:
            return f"{path} -> {target}: a loop of symlinks"
        seen.add(here)
        cur_path = here
        cur_target = "/".join([tgt, *rest]) if rest else tgt
    return f"{path} -> {target}: too many levels of symlinks"


def tree_link_problems(links: Mapping[str, str]) -> list[str]:
    """The reasons (one per link) why symlinks of a tree ({path: target}) are dangerous."""
    out = []
    for path in sorted(links):
        reason = link_escapes(path, links[path], links)
        if reason:
            out.append(reason)
    return out
