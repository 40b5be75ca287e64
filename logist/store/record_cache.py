"""Which record blobs are known to be valid, so that listing jobs needs no pydantic.

A record is validated with the pydantic model (:func:`logist.core.model.parse_manifest`) before
logist writes it, and whenever logist reads one it did not write (fetched from a remote,
rewritten by hand). A blob is content-addressed: once valid, the same oid is valid forever
under the same model. So the oids of validated manifests are remembered in one append-only
file under the git dir, and ``job list`` only needs ``json.loads`` for records it finds
there; anything else takes the full validation (and is remembered when it passes).

The file can only ever cause a *miss* (a record validated again), never a wrong *hit*: a
line is looked up only by an object id git reported, the file name carries the schema and
logist versions (a new model starts a new file), and a line lost to a concurrent rewrite
costs one validation. Only logist writes it; nothing fetched from a remote goes in without
passing the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def blob_oid(data: bytes) -> str:
    """The git blob id of ``data`` (what ``git hash-object`` prints)."""
    from logist.git.loose import object_id

    return object_id(b"blob", data)


class ValidRecordCache:
    def __init__(self, logist_dir: Path) -> None:
        from logist import __version__
        from logist.core.states import SCHEMA_VERSION

        self.path = logist_dir / "cache" / f"valid-records-s{SCHEMA_VERSION}-v{__version__}"

    def load(self) -> set[str]:
        """The remembered ids. Lines are not checked one by one: a malformed line can never
        equal an object id that git reports, so it can only be a miss."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return set()
        return set(data.decode("ascii", "replace").split("\n")) - {""}

    def contains(self, oid: str) -> bool:
        """``oid in load()`` for one id, without parsing the file."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return False
        needle = oid.encode() + b"\n"
        return data.startswith(needle) or (b"\n" + needle) in data

    def add(self, oids: Iterable[str]) -> None:
        """Append ``oids`` (one ``write`` with O_APPEND: lines never interleave)."""
        payload = "".join(f"{o}\n" for o in oids).encode()
        if not payload:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
        except OSError:
            pass  # a cache: failing to remember only costs a validation later

    def compact(self, keep: Iterable[str], known: set[str]) -> None:
        """Rewrite the file with only ``keep`` ∩ ``known`` once it has grown well past them."""
        keep_set = {o for o in keep if o in known}
        if len(known) <= 4 * len(keep_set) + 1000:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes("".join(f"{o}\n" for o in sorted(keep_set)).encode())
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
