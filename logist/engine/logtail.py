"""Tailing a step's log from its start (the side process, docs/observer.md): whole lines only,
the partial last line held back; a log that does not exist yet, is truncated or replaced is
followed. Only ``os`` at load."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs an import (this runs in the side process)
if TYPE_CHECKING:  # pragma: no cover
    from typing import BinaryIO

READ_MAX = 8 * 1024 * 1024  # bytes read from the log per loop turn
MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is cut and fed anyway


class LogTail:
    """Reads a growing log from its start: whole lines only, the partial last line held back.

    Survives a log that does not exist yet, is truncated (starts over) or replaced."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        self.pending = b""
        self.lines = 0  # whole lines handed out so far
        self._fh: BinaryIO | None = None
        self._ino: int | None = None

    def _open(self) -> bool:
        if self._fh is not None:
            return True
        try:
            self._fh = open(self.path, "rb")
        except OSError:
            return False
        self._ino = os.fstat(self._fh.fileno()).st_ino
        return True

    def mtime(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    def read(self, max_bytes: int = READ_MAX) -> tuple[bytes, int]:
        """(whole lines appended since the last call, number of their first line)."""
        if not self._open():
            return b"", self.lines + 1
        assert self._fh is not None
        try:
            st = os.stat(self.path)
            if st.st_ino != self._ino or st.st_size < self.offset:  # replaced or truncated
                self._fh.close()
                self._fh = None
                self.offset = 0
                self.pending = b""
                if not self._open():
                    return b"", self.lines + 1
        except OSError:
            pass
        fh = self._fh
        assert fh is not None  # still open, or reopened above
        fh.seek(self.offset)
        data = fh.read(max_bytes)
        self.offset += len(data)
        buf = self.pending + data if self.pending else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) >= MAX_PARTIAL:
                complete, self.pending = buf + b"\n", b""
            else:
                self.pending = buf
                return b"", self.lines + 1
        else:
            complete, self.pending = buf[:cut + 1], buf[cut + 1:]
        first = self.lines + 1
        self.lines += complete.count(b"\n")
        return complete, first

    def drain(self) -> tuple[bytes, int]:
        """Everything left, including a final line without a newline."""
        chunks = []
        first = self.lines + 1
        while True:
            data, _ = self.read()
            if not data:
                break
            chunks.append(data)
        if self.pending:
            chunks.append(self.pending + b"\n")
            self.pending = b""
            self.lines += 1
        return b"".join(chunks), first

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
