"""Git objects as bytes, and loose objects written in process (no dulwich, no git process).

A transition writes a handful of objects (two blobs, four trees, a commit). Their format is
git's own and small: ``<type> <size>\\0<content>``, sha1 of that is the id, zlib of it is the
loose file ``objects/xx/yyyy...``. Writing them here costs less than importing dulwich in a
fresh process (docs/performance.md#fresh-processes). A loose file is written under a temporary
name (``tmp_obj_*``, git's own prefix: ``git prune`` removes one a killed writer left) and
renamed into place, so a reader never sees half an object; an object that exists is not
written again (same id, same content).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

try:  # CPython's own sha1: hashlib would load OpenSSL first, a cost on every fresh process
    from _sha1 import sha1  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a build without it
    from hashlib import sha1

DIR_MODE = b"40000"
FILE_MODE = b"100644"

TreeEntry = tuple[bytes, bytes, bytes]  # (mode, name, 20-byte binary id)


def object_id(kind: bytes, data: bytes) -> str:
    """The id git gives ``data`` as an object of type ``kind`` (what ``git hash-object`` prints)."""
    return sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()


def write_object(objects_dir: Path, kind: bytes, data: bytes) -> str:
    """Write ``data`` as a loose object of type ``kind`` (blob, tree, commit); its id."""
    raw = b"%s %d\0" % (kind, len(data)) + data
    oid = sha1(raw).hexdigest()
    folder = objects_dir / oid[:2]
    path = folder / oid[2:]
    if path.exists():
        return oid
    folder.mkdir(exist_ok=True)
    tmp = folder / f"tmp_obj_{os.getpid()}_{oid[2:10]}_{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        try:
            os.write(fd, zlib.compress(raw))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return oid


def parse_tree(data: bytes) -> list[TreeEntry]:
    """The entries of a tree object's content, in their order."""
    entries: list[TreeEntry] = []
    i = 0
    while i < len(data):
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        entries.append((data[i:space], data[space + 1:nul], data[nul + 1:nul + 21]))
        i = nul + 21
    return entries


def _order(entry: TreeEntry) -> bytes:
    return entry[1] + b"/" if entry[0] == DIR_MODE else entry[1]  # git's tree order


def format_tree(entries: list[TreeEntry]) -> bytes:
    return b"".join(b"%s %s\0%s" % e for e in sorted(entries, key=_order))


def with_entry(entries: list[TreeEntry], name: bytes, mode: bytes, oid: str) -> list[TreeEntry]:
    """``entries`` with ``name`` set to ``(mode, oid)`` (added, or replacing what had that name)."""
    return [e for e in entries if e[1] != name] + [(mode, name, bytes.fromhex(oid))]


def format_commit(tree: str, parents: list[str], who: bytes, when: int, message: bytes) -> bytes:
    """A commit object's content, as dulwich writes it for logist (UTC, UTF-8)."""
    head = [b"tree " + tree.encode()] + [b"parent " + p.encode() for p in parents]
    stamp = who + b" %d +0000" % when
    head += [b"author " + stamp, b"committer " + stamp, b"encoding UTF-8"]
    return b"\n".join(head) + b"\n\n" + message
