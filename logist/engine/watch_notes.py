"""The side process's notes (docs/observer.md): observer and sentinel note lines buffered for
the next notes commit (kept and retried when one fails), and what an earlier watcher of the same
step already noted (its (signal, line) pairs, its ladder start times), read from git only when
needed."""

from __future__ import annotations

from logist.core.errors import LogistError

TYPE_CHECKING = False  # typing itself costs an import (this runs in the side process)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable


class NoteBuffer:
    """Note lines waiting for the next notes commit; kept on failure and retried."""

    def __init__(self, repo: str, ref: str, commit: str, log: Callable[[str], None]) -> None:
        self.repo, self.ref, self.commit, self.log = repo, ref, commit, log
        self.lines: list[str] = []
        self.written = 0
        self.errors: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        if not self.lines:
            return
        from logist.git.notes import append_notes

        batch = list(self.lines)
        try:
            append_notes(self.repo, self.ref, {self.commit: batch})
        except LogistError as exc:
            self.errors.append(str(exc))
            self.log(f"could not write {len(batch)} note line(s) to {self.ref}: {exc}")
            if len(self.lines) > 10000:  # never grow without bound
                del self.lines[:-10000]
            return
        del self.lines[:len(batch)]
        self.written += len(batch)


def prior_interventions(repo: str, commit: str) -> list[float]:
    """Ladder start times already noted on this commit (a restarted watcher keeps the cap)."""
    from datetime import datetime

    from logist.git.notes import read_note_lines
    from logist.git.refs import NOTES_SENTINEL

    out = []
    try:
        for obj in read_note_lines(repo, NOTES_SENTINEL, commit):
            if obj.get("action") == "interrupt" and isinstance(obj.get("t"), str):
                try:
                    out.append(datetime.fromisoformat(obj["t"].replace("Z", "+00:00")).timestamp())
                except ValueError:
                    continue
    except LogistError:
        return []
    return out


def _noted_lines(repo: str, commit: str) -> set[tuple[str, int]]:
    """(signal, line) of the observer note lines already on ``commit``."""
    from logist.git.notes import read_note_lines
    from logist.git.refs import NOTES_OBSERVER

    try:
        lines = read_note_lines(repo, NOTES_OBSERVER, commit)
    except LogistError:
        return set()
    return {(o["signal"], o["line"]) for o in lines
            if isinstance(o.get("signal"), str) and isinstance(o.get("line"), int)}


class SeenSignals:
    """The (signal, line) pairs an earlier watcher of the same step noted, read from git only
    when the first signal comes (most steps have none)."""

    def __init__(self, repo: str, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self._pairs: set[tuple[str, int]] | None = None

    def __contains__(self, pair: tuple[str, int]) -> bool:
        if self._pairs is None:
            self._pairs = _noted_lines(self.repo, self.commit)
        return pair in self._pairs
