"""In-process reads of refs and objects: the hot path of every transition, with no git process.

A transition reads the branch tip, the record and the history, then writes one commit. Asking
git for those three things costs a process each (2-3 ms apiece, more than the dulwich work of
the commit itself), so they are read here directly: loose ref files and ``packed-refs`` from
the common git dir, objects through dulwich's object store (loose objects and packs).

Anything this module does not fully understand raises :class:`Unsupported`, and the caller
asks git instead (``logist.store.jobstore`` does): a reftable repository, a symbolic or peeled ref, a
ref that does not point at a commit, an object dulwich cannot find (a partial clone's promisor
objects, a pack removed under our feet). A read therefore never gives a different answer from
git's; it only skips the process when the answer is plain.

Reads are never cached across calls except ``packed-refs``, whose parsed form is reused only
while the file's inode, size and mtime are unchanged (git replaces it by rename).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_OID_RE = re.compile(rb"[0-9a-f]{40}\Z")
# The ref namespaces logist reads, all of them shared by every worktree (in the common dir).
_SHARED_PREFIXES = ("refs/heads/", "refs/logist/", "refs/notes/")


class Unsupported(Exception):
    """This read needs git itself; the message says why."""


class RepoReader:
    """Reads refs and objects of one repository in process."""

    def __init__(self, common_dir: Path, get_object) -> None:
        """``get_object(oid: bytes)``: a parsed dulwich object, KeyError when absent."""
        self._common = common_dir
        self._get = get_object
        self._packed: tuple[tuple[int, int, int], bytes] | None = None
        self._reftable = (common_dir / "reftable").is_dir()

    # ---- refs ------------------------------------------------------------------------
    def ref(self, name: str) -> str | None:
        """The object id ``name`` points at, or None when the ref does not exist."""
        if self._reftable or not name.startswith(_SHARED_PREFIXES) or ".." in name:
            raise Unsupported(f"ref {name} is not a plain shared ref")
        try:
            raw = (self._common / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return self._packed_ref(name)
        except OSError as exc:
            raise Unsupported(f"cannot read {name}: {exc}") from None
        value = raw.strip()
        if not _OID_RE.match(value):
            raise Unsupported(f"ref {name} is symbolic or malformed")
        return value.decode()

    def any_ref_under(self, prefix: str) -> bool:
        """Whether some ref is named ``prefix...`` (a loose file there, or a ``packed-refs``
        line); a leftover ``.lock`` file counts, so the answer can only err towards True."""
        if self._reftable or not prefix.startswith(_SHARED_PREFIXES) or ".." in prefix or not prefix.endswith("/"):
            raise Unsupported(f"{prefix} is not a plain shared ref namespace")
        for _dir, _subdirs, files in os.walk(self._common / prefix):
            if files:
                return True
        return self._packed_find(b" " + prefix.encode("utf-8", "surrogateescape")) is not None

    def _packed_ref(self, name: str) -> str | None:
        """The object id of ``name`` in ``packed-refs`` (its line ``<oid> <name>``), or None."""
        return self._packed_find(b" " + name.encode("utf-8", "surrogateescape") + b"\n")

    def _packed_find(self, needle: bytes) -> str | None:
        """The object id of the first ``packed-refs`` line whose text after the id starts with
        ``needle`` (which starts with the space): a search in C over the file's bytes, not a
        parse of every line (a repository of 10,000 jobs has 20,000 of them)."""
        data = self._packed_bytes()
        i = data.find(needle)
        while i >= 0:
            if i >= 41 and data[i - 41:i - 40] == b"\n" and _OID_RE.match(data[i - 40:i]):
                return data[i - 40:i].decode()
            i = data.find(needle, i + 1)
        return None

    def _packed_bytes(self) -> bytes:
        """``packed-refs`` as bytes, a newline before the first line and after the last."""
        path = self._common / "packed-refs"
        try:
            st = path.stat()
        except FileNotFoundError:
            return b""
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._packed is not None and self._packed[0] == key:
            return self._packed[1]
        try:
            data = b"\n" + path.read_bytes() + b"\n"
        except FileNotFoundError:
            return b""
        self._packed = (key, data)
        return data

    def commit(self, name: str) -> str | None:
        """Like ``git rev-parse --verify -q NAME^{commit}`` for a plain ref: None if absent."""
        oid = self.ref(name)
        if oid is None:
            return None
        if self._object(oid).type_name != b"commit":
            raise Unsupported(f"ref {name} does not point at a commit")
        return oid

    # ---- objects ---------------------------------------------------------------------
    def _object(self, oid: str | bytes):
        key = oid.encode() if isinstance(oid, str) else oid
        try:
            return self._get(key)
        except KeyError:
            raise Unsupported(f"object {key.decode()} is not in the local object store") from None
        except Exception as exc:  # a pack replaced under us, a corrupt object: let git say
            raise Unsupported(f"cannot read object {key.decode()}: {exc}") from None

    def blob_at(self, commit: str, path: str) -> bytes | None:
        """Content of ``commit:path``, None when the path is not a blob in that commit."""
        obj = self._object(commit)
        if obj.type_name != b"commit":
            raise Unsupported(f"{commit} is not a commit")
        tree = self._object(obj.tree)
        parts = path.encode().split(b"/")
        for i, part in enumerate(parts):
            try:
                mode, sha = tree[part]
            except KeyError:
                return None
            last = i == len(parts) - 1
            if last:
                if mode & 0o170000 != 0o100000:
                    return None
                return self._object(sha).as_raw_string()
            if mode != 0o040000:
                return None
            tree = self._object(sha)
        return None


def load(object_store, oid: bytes):
    """``object_store[oid]``, looking among loose objects first.

    The objects a transition reads (the parent commit, its trees, the record) were written
    loose by the transition before; dulwich looks in packs first and rescans the pack
    directory on every miss, a ``listdir`` per object. Raises KeyError when absent.
    """
    loose = getattr(object_store, "_get_loose_object", None)
    if loose is not None:
        obj = loose(oid)
        if obj is not None:
            return obj
    return object_store[oid]
