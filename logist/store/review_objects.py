"""The objects of a review branch (docs/sharing.md, "Review"): reading objects in one
``cat-file --batch``, a tree without the job's record, the review commit's message and trailers,
object ids computed as git would, and writing trees and commits with git plumbing.

Layer 2 (store): git through :mod:`logist.git.gitcmd`.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from logist.core.errors import GitError
from logist.core.jobid import JobId
from logist.git.gitcmd import CatFileBatch, git

if TYPE_CHECKING:
    from logist.store.repo import RepoBase

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): ?(.*)$")
_IDENT = re.compile(rb"^(.*) <(.*)> (-?\d+) ([+-]\d{4})$")


def trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` lines of a commit message's last paragraph (the last value wins)."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    out: dict[str, str] = {}
    if not paragraphs:
        return out
    for line in paragraphs[-1].splitlines():
        m = _TRAILER.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def read_objects(store: RepoBase, specs: list[str]) -> list[tuple[str, str, bytes] | None]:
    """One ``git cat-file --batch``: (oid, type, content) per spec, None when missing."""
    if not specs:
        return []
    with CatFileBatch(store.root) as batch:
        return batch.read_objects(specs)


def object_id(kind: str, content: bytes, oid_len: int) -> str:
    h = hashlib.sha256() if oid_len == 64 else hashlib.sha1()
    h.update(kind.encode() + b" " + str(len(content)).encode() + b"\0" + content)
    return h.hexdigest()


def _tree_entries(content: bytes, raw_len: int) -> list[tuple[bytes, int, int]]:
    """[(name, start, end)] of the entries of a raw tree object."""
    out, pos = [], 0
    while pos < len(content):
        sp = content.index(b" ", pos)
        nul = content.index(b"\0", sp)
        end = nul + 1 + raw_len
        out.append((content[sp + 1:nul], pos, end))
        pos = end
    return out


def _tree_key(name: bytes, entry: bytes) -> bytes:
    return name + b"/" if entry.startswith(b"40000 ") else name


def strip_record(tree: bytes, base_tree: bytes, raw_len: int) -> bytes:
    """``tree`` with its ``.logist`` entry replaced by the base's (or dropped if it has none)."""
    base_entry = b""
    for name, start, end in _tree_entries(base_tree, raw_len):
        if name == b".logist":
            base_entry = base_tree[start:end]
    entries = [(name, tree[start:end]) for name, start, end in _tree_entries(tree, raw_len)
               if name != b".logist"]
    if base_entry:
        entries.append((b".logist", base_entry))
        entries.sort(key=lambda e: _tree_key(e[0], e[1]))
    return b"".join(e for _, e in entries)


def commit_headers(commit: bytes) -> dict[bytes, bytes]:
    head = commit.split(b"\n\n", 1)[0]
    out: dict[bytes, bytes] = {}
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        out.setdefault(key, value)
    return out


def message(job_id: JobId, step: int, step_count: int, name: str, summary: str, harvest: str) -> str:
    """The review commit's message: the step's name, the agent's summary, the trailers."""
    from logist.core.redact import redact

    subject = " ".join(name.split())[:200] or f"step {step}"
    lines = []
    for line in redact(summary or "").strip().splitlines()[:200]:
        line = line.rstrip()
        # a summary line must never read as one of our trailers (integration trusts them)
        if _TRAILER.match(line) and line.lower().startswith("logist-"):
            line = "> " + line
        lines.append(line)
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()[:4000]
    parts = [subject] + ([body] if body else [])
    parts.append(f"Logist-Job: {job_id}\nLogist-Step: {step}/{step_count}\nLogist-Commit: {harvest}")
    return "\n\n".join(parts) + "\n"


def raw_commit(tree: str, parent: str, author: bytes, committer: bytes, msg: str) -> bytes:
    return (b"tree " + tree.encode() + b"\nparent " + parent.encode() + b"\nauthor " + author
            + b"\ncommitter " + committer + b"\n\n" + msg.encode("utf-8", "replace"))


def _ident_env(prefix: str, ident: bytes) -> dict[str, str]:
    m = _IDENT.match(ident)
    if not m:
        raise GitError(f"cannot read the identity {ident[:80]!r}")
    name, email, when, tz = (g.decode("utf-8", "replace") for g in m.groups())
    return {f"GIT_{prefix}_NAME": name, f"GIT_{prefix}_EMAIL": email,
            f"GIT_{prefix}_DATE": f"@{when} {tz}"}


def write_tree(store: RepoBase, content: bytes) -> str:
    proc = git(["hash-object", "-t", "tree", "-w", "--stdin"], cwd=store.root, input=content, text=False)
    return str(proc.stdout.decode().strip())


def commit_tree(store: RepoBase, tree: str, parent: str, author: bytes, committer: bytes,
                 msg: str) -> str:
    env = {**_ident_env("AUTHOR", author), **_ident_env("COMMITTER", committer)}
    proc = git(["-c", "i18n.commitEncoding=UTF-8", "commit-tree", "--no-gpg-sign", tree, "-p", parent],
               cwd=store.root, input=msg.encode("utf-8", "replace"), env=env, text=False)
    return str(proc.stdout.decode().strip())



def existing_commits(store: RepoBase, oids: list[str]) -> set[str]:
    """The ``oids`` that are commits in the object store (one ``cat-file --batch-check``)."""
    proc = git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], cwd=store.root,
               input="".join(o + "\n" for o in oids), check=False)
    return {ln.split()[0] for ln in proc.stdout.splitlines() if ln.endswith(" commit")}
