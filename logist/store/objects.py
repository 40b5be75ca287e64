"""Git objects built in process: ``ObjectWriter`` (blobs, trees, commits, written as loose
objects by ``logist.git.loose``) and the message of a transition commit (``commit_message``:
subject, body, Logist-* trailers; docs/refs.md). The job store (``logist.store.jobstore``) uses
both."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logist.core.jobid import JobId
from logist.core.redact import redact
from logist.core.termsafe import sanitize
from logist.git import loose
from logist.git.gitcmd import git_out

if TYPE_CHECKING:  # the model is imported where a record is built
    from logist.core.model import HistoryEntry, Manifest
    from logist.store.record_view import EntryView, RecordView


@dataclass
class _Identity:
    name: bytes
    email: bytes


class ObjectWriter:
    """Builds blobs, trees and commits in process.

    Objects are written loose by ``logist.git.loose`` (no dulwich: a command that makes one
    transition pays less than dulwich's import). The trees a record replaces are read with
    one ``git cat-file --batch``, or in process with dulwich once :meth:`load_objects` was
    called (a runner, which reads the same commits and trees transition after transition:
    docs/performance.md#fresh-processes).
    """

    def __init__(self, common_dir: Path) -> None:
        self._common_dir = common_dir
        self._objects = common_dir / "objects"
        self.store: Any = None  # dulwich's DiskObjectStore, once load_objects() ran
        # Parsed objects by id: objects never change, so this can't go stale. Holds what the
        # last transitions read (the next one reads the same commit and trees).
        self._cache: dict[bytes, object] = {}
        self._trees: dict[str, list[loose.TreeEntry]] = {}
        self._ident: _Identity | None = None

    @property
    def objects_loaded(self) -> bool:
        """Whether objects are read in process (dulwich)."""
        return self.store is not None

    def load_objects(self) -> None:
        """Read objects in process from now on (imports dulwich once)."""
        if self.store is None:
            from dulwich.object_store import DiskObjectStore

            self.store = DiskObjectStore(str(self._objects))

    def identity(self) -> _Identity:
        if self._ident is None:
            out = git_out(["var", "GIT_COMMITTER_IDENT"], cwd=self._common_dir, check=False)
            name, _, rest = out.partition(" <")
            email = rest.partition(">")[0]
            if not name or not email:
                name, email = "logist", "logist@localhost"
            self._ident = _Identity(name.encode(), email.encode())
        return self._ident

    def _write(self, kind: bytes, data: bytes) -> str:
        return loose.write_object(self._objects, kind, data)

    def blob(self, data: bytes) -> bytes:
        return self._write(b"blob", data).encode()

    def tree_with_record(self, root_tree: bytes, job_id: JobId, files: dict[str, bytes]) -> bytes:
        """``root_tree`` with .logist/jobs/<id>/ replaced by ``files`` (other jobs untouched)."""
        record = [(loose.FILE_MODE, name.encode(), bytes.fromhex(self.blob(data).decode()))
                  for name, data in files.items()]
        new = self._write(b"tree", loose.format_tree(record))
        root = root_tree.decode()
        levels = self._levels(root)  # the root, .logist, .logist/jobs (None: not there)
        for name, entries in zip((job_id.encode(), b"jobs", b".logist"), reversed(levels), strict=True):
            tree = loose.with_entry(entries or [], name, loose.DIR_MODE, new)
            new = self._write(b"tree", loose.format_tree(tree))
        return new.encode()

    def _levels(self, root: str) -> list[list[loose.TreeEntry] | None]:
        """The entries of ``root``, of its ``.logist`` and of ``.logist/jobs`` (None: absent)."""
        out: list[list[loose.TreeEntry] | None] = []
        batch = None
        try:
            oid: str | None = root
            for name in (None, b".logist", b"jobs"):
                if name is not None:
                    parent = out[-1] or []
                    found = [e for e in parent if e[1] == name and e[0] == loose.DIR_MODE]
                    oid = found[0][2].hex() if found else None
                if oid is None:
                    out.append(None)
                    continue
                entries = self._trees.get(oid)
                if entries is None:
                    if self.store is not None:
                        entries = loose.parse_tree(self.get(oid.encode()).as_raw_string())
                    else:
                        if batch is None:
                            from logist.git.gitcmd import CatFileBatch

                            batch = CatFileBatch(self._common_dir)
                        data = batch.read(oid, kind="tree")
                        if data is None:
                            raise KeyError(oid)
                        entries = loose.parse_tree(data)
                    self._remember_tree(oid, entries)
                out.append(entries)
        finally:
            if batch is not None:
                batch.close()
        return out

    def _remember_tree(self, oid: str, entries: list[loose.TreeEntry]) -> None:
        if len(self._trees) >= 64:
            self._trees.pop(next(iter(self._trees)))
        self._trees[oid] = entries

    def commit(self, tree: bytes, parents: list[str], message: str) -> str:
        ident = self.identity()
        who = ident.name + b" <" + ident.email + b">"
        data = loose.format_commit(tree.decode(), parents, who, int(time.time()), message.encode())
        return self._write(b"commit", data)

    def commit_tree_of(self, commit_oid: str) -> bytes:
        if self.store is not None:
            tree: bytes = self.get(commit_oid.encode()).tree
            return tree
        from logist.git.gitcmd import CatFileBatch

        # The trees a record replaces come along (one process): the root, .logist, .logist/jobs.
        with CatFileBatch(self._common_dir) as batch:
            got = batch.read_objects([commit_oid, f"{commit_oid}^{{tree}}", f"{commit_oid}^{{tree}}:.logist",
                                      f"{commit_oid}^{{tree}}:.logist/jobs"])
        if got[0] is None or got[0][1] != "commit" or not got[0][2].startswith(b"tree "):
            raise KeyError(commit_oid)
        for answer in got[1:]:
            if answer is not None and answer[1] == "tree":
                self._remember_tree(answer[0], loose.parse_tree(answer[2]))
        return got[0][2][5:45]

    def get(self, oid: bytes) -> Any:
        """The parsed object ``oid`` (KeyError if absent). Callers must not modify it."""
        obj = self._cache.get(oid)
        if obj is None:
            from logist.git.gitread import load

            self.load_objects()
            obj = load(self.store, oid)
            self._remember(oid, obj)
        return obj

    def _remember(self, oid: bytes, obj: Any) -> None:
        if len(self._cache) >= 256:
            self._cache.pop(next(iter(self._cache)))
        self._cache[oid] = obj


def commit_message(job_id: JobId, entry: HistoryEntry | EntryView, manifest: Manifest | RecordView, *, body: str = "",
                   lease: str | None = None, extra_trailers: dict[str, str] | None = None) -> str:
    """Subject ``logist(<id>): FROM -> TO (step n/m)``, a body, and Logist-* trailers."""
    frm = entry.from_state.value if entry.from_state else "create"
    to = entry.to_state.value if entry.to_state else manifest.state.value
    if entry.event in ("run", "restep", "note"):
        subject = f"logist({job_id}): {entry.event} {frm} -> {to}"
    else:
        subject = f"logist({job_id}): {frm} -> {to}"
    step = entry.step or manifest.step  # the step this transition acted on
    subject += f" (step {step}/{manifest.step_count})"
    trailers = {
        "Logist-Job": job_id,
        "Logist-Run": str(manifest.run),
        "Logist-Step": f"{step}/{manifest.step_count}",
        "Logist-From": frm,
        "Logist-To": to,
        "Logist-Event": entry.event,
        "Logist-Transition-Id": entry.transition_id or "",
    }
    if entry.outcome:
        trailers["Logist-Outcome"] = entry.outcome
    if entry.cost_usd:
        trailers["Logist-Cost-USD"] = f"{entry.cost_usd:.6f}".rstrip("0").rstrip(".")
    if entry.tokens:
        trailers["Logist-Tokens"] = str(entry.tokens)
    if lease:
        trailers["Logist-Lease"] = lease
    trailers.update(extra_trailers or {})
    text = body or entry.reason
    lines = [subject, ""]
    if text:
        lines += [_one_paragraph(text), ""]
    lines += [f"{k}: {_trailer_value(v)}" for k, v in trailers.items()]
    return "\n".join(lines) + "\n"


def _one_paragraph(text: str) -> str:
    # Keep the body from looking like trailers or a second subject; secrets masked, control
    # characters escaped (plain `git log` prints it).
    text = sanitize(redact(text))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())[:4000]


def _trailer_value(v: str) -> str:
    return " ".join(sanitize(redact(str(v)), newlines=False).split())[:300]
