"""The records the last ``job list`` read, by job and tip, so the next one reads only what moved.

A job's record at a given tip commit never changes: the commit is content-addressed, and so is
the tree it names. So a listing keeps every valid record it read in one file under the git dir,
``{job id: [tip, record]}``, and the next listing asks git (one ``cat-file --batch``) only for
the jobs whose tip is not the one remembered: after one transition, one record; with nothing
changed, none. Reading 1,000 records from git costs a ``cat-file`` that inflates every commit
and tree on the way to each record (most of them loose objects between two packings); reading
them back from this file is one ``json.loads``.

Only records that passed validation go in (known valid by ``logist.store.record_cache``, or
checked by the model), and a remembered record is used only for the very tip it was read at,
after the same shape check as a record read from git. A lost, stale or damaged file costs a
full read, never a wrong answer; the file name carries the schema and logist versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ListingCache:
    def __init__(self, logist_dir: Path) -> None:
        from logist import __version__
        from logist.core.states import SCHEMA_VERSION

        self.path = logist_dir / "cache" / f"listing-s{SCHEMA_VERSION}-v{__version__}.json"

    def load(self) -> dict[str, tuple[str, Any]]:
        """{job id: (tip, record data)}; empty when the file is missing or damaged."""
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {jid: (v[0], v[1]) for jid, v in data.items()
                if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)}

    def save(self, entries: dict[str, tuple[str, Any]]) -> None:
        """Replace the file with ``entries`` (written aside, then renamed: a reader sees the
        old file or the new one). A failure is ignored: the next listing reads from git."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({jid: [tip, data] for jid, (tip, data) in entries.items()},
                                      separators=(",", ":")))
            os.replace(tmp, self.path)
        except (OSError, ValueError, TypeError):
            try:
                tmp.unlink()
            except OSError:
                pass
