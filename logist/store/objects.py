"""Git objects built in process: ``ObjectWriter`` (blobs, trees, commits with dulwich) and the
message of a transition commit (``commit_message``: subject, body, Logist-* trailers;
docs/refs.md). The job store (``logist.store.jobstore``) uses both."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from logist.core.errors import ConcurrentUpdateError
from logist.core.redact import redact
from logist.core.termsafe import sanitize
from logist.git.gitcmd import git_out

if TYPE_CHECKING:  # dulwich and the model are imported where an object or record is built
    from dulwich.objects import ObjectID, ShaFile

    from logist.core.model import HistoryEntry, Manifest


@dataclass
class _Identity:
    name: bytes
    email: bytes


class ObjectWriter:
    """Builds blobs, trees and commits in process with dulwich."""

    def __init__(self, common_dir: Path) -> None:
        from dulwich.object_store import DiskObjectStore

        self.store = DiskObjectStore(str(common_dir / "objects"))
        # Parsed objects by id: objects never change, so this can't go stale. Holds what the
        # last transitions wrote and read (the next one reads the same commit and trees).
        self._cache: dict[bytes, object] = {}
        self._ident: _Identity | None = None
        self._common_dir = common_dir

    def identity(self) -> _Identity:
        if self._ident is None:
            out = git_out(["var", "GIT_COMMITTER_IDENT"], cwd=self._common_dir, check=False)
            name, _, rest = out.partition(" <")
            email = rest.partition(">")[0]
            if not name or not email:
                name, email = "logist", "logist@localhost"
            self._ident = _Identity(name.encode(), email.encode())
        return self._ident

    def _add(self, obj: ShaFile) -> None:
        """``add_object`` with a bounded retry: dulwich raises FileLocked at once when another
        process writes the same loose object (docs/architecture.md#known-hazards-of-git); a lock left by a killed writer
        is removed once it is older than a minute."""
        from dulwich.file import FileLocked

        for i in range(8):
            try:
                self.store.add_object(obj)
                self._remember(obj.id, obj)
                return
            except FileLocked as exc:
                lock = Path(str(getattr(exc, "lockfilename", "") or ""))
                try:
                    if lock.name and time.time() - lock.stat().st_mtime > 60:
                        lock.unlink()
                        continue
                except OSError:
                    pass
                if i == 7:
                    raise ConcurrentUpdateError(f"cannot write object {obj.id.decode()}: {exc}",
                                                hint="try again") from None
                time.sleep(0.005 * (2 ** i))

    def blob(self, data: bytes) -> bytes:
        from dulwich.objects import Blob

        b = Blob.from_string(data)
        self._add(b)
        return b.id

    def tree_with_record(self, root_tree: bytes, job_id: str, files: dict[str, bytes]) -> bytes:
        """``root_tree`` with .logist/jobs/<id>/ replaced by ``files`` (other jobs untouched)."""
        from dulwich.objects import Tree

        record = Tree()
        for name, data in sorted(files.items()):
            record.add(name.encode(), 0o100644, cast("ObjectID", self.blob(data)))
        self._add(record)
        path = [b".logist", b"jobs", job_id.encode()]
        return self._replace(root_tree, path, record.id)

    def _replace(self, tree_oid: bytes | None, path: list[bytes], new_oid: bytes) -> bytes:
        from dulwich.objects import Tree

        tree = Tree()
        if tree_oid is not None:
            for entry in self.get(tree_oid).iteritems():
                tree.add(entry.path, entry.mode, entry.sha)
        head, rest = path[0], path[1:]
        if rest:
            sub = None
            if head in tree:
                mode, sha = tree[head]
                if mode == 0o040000:
                    sub = sha
            child = self._replace(sub, rest, new_oid)
        else:
            child = new_oid
        tree[head] = (0o040000, cast("ObjectID", child))
        self._add(tree)
        return tree.id

    def commit(self, tree: bytes, parents: list[str], message: str) -> str:
        from dulwich.objects import Commit

        ident = self.identity()
        c = Commit()
        c.tree = tree
        c.parents = [cast("ObjectID", p.encode()) for p in parents]
        who = ident.name + b" <" + ident.email + b">"
        c.author = c.committer = who
        now = int(time.time())
        c.author_time = c.commit_time = now
        c.author_timezone = c.commit_timezone = 0
        c.encoding = b"UTF-8"
        c.message = message.encode()
        self._add(c)
        return c.id.decode()

    def commit_tree_of(self, commit_oid: str) -> bytes:
        tree: bytes = self.get(commit_oid.encode()).tree
        return tree

    def get(self, oid: bytes) -> Any:
        """The parsed object ``oid`` (KeyError if absent). Callers must not modify it."""
        obj = self._cache.get(oid)
        if obj is None:
            from logist.git.gitread import load

            obj = load(self.store, oid)
            self._remember(oid, obj)
        return obj

    def _remember(self, oid: bytes, obj: Any) -> None:
        if len(self._cache) >= 256:
            self._cache.pop(next(iter(self._cache)))
        self._cache[oid] = obj


def commit_message(job_id: str, entry: HistoryEntry, manifest: Manifest, *, body: str = "",
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
