"""The review branch of a job: its work without its record (docs/sharing.md, "Review").

``refs/heads/logist-review/<id>`` starts at the job's base and holds one commit per step that
changed files. Each commit's tree is the step's harvest commit with ``.logist/`` as it is in the
base (so a diff against the base shows no ``.logist/`` path), its message is the step's name
and the agent's summary, and its trailers link back to the record::

    Logist-Job: <id>
    Logist-Step: <n>/<m>
    Logist-Commit: <the harvest commit on logist/<id>>

The commits are made with git plumbing (``git commit-tree``) and are a pure function of the
job branch: author and committer (names and dates) are those of the harvest commit, so
rebuilding an unchanged job gives the same commit ids, and any clone computes the same branch.
That is also how a commit not made by logist is recognised (a reviewer's fixup): rebuilding it
from its own trailers does not give its id back. Such commits are never overwritten here.

Which commits carry a step's work: walking the job branch's first parents from its tip to its
base (the current run only: a rerun's branch continues from where the step started), every
``HARVESTING -> ...`` transition and every in-place restep result (``Logist-Restep-Result``);
consecutive harvests of the same step (retries) count once, with the last one; a step whose
tree equals the one before it changed nothing and has no commit.

The objects themselves (reading, a tree without the record, the message, writing) are in
:mod:`logist.store.review_objects`.

Layer 2 (store): git through :mod:`logist.git.gitcmd`, ref names from :mod:`logist.git.refs`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logist.core.errors import ConcurrentUpdateError, GitError, LogistError, ManifestError
from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git
from logist.store.review_objects import (
    commit_headers,
    commit_tree,
    existing_commits,
    message,
    object_id,
    raw_commit,
    read_objects,
    strip_record,
    trailers,
    write_tree,
)

if TYPE_CHECKING:  # what the chain reads of a job store (refresh() is called by the store's writer)
    from logist.store.job_reads import JobReader

MAX_WALK = 20000  # first-parent commits read from a job branch
MAX_FOREIGN = 200  # commits not made by logist looked at on top of a review branch


@dataclass(frozen=True)
class WorkStep:
    """One commit of the review branch."""

    step: int
    step_count: int
    harvest: str  # the commit on the job branch that carries the step's work
    name: str
    summary: str
    tree: str  # the review commit's tree
    parent: str  # the review commit's parent (the base for the first one)
    commit: str  # the review commit

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "step_count": self.step_count, "name": self.name,
                "harvest": self.harvest, "commit": self.commit, "summary": self.summary}


@dataclass
class ReviewChain:
    """The review branch logist computes for a job (its commits exist in the object store)."""

    job_id: JobId
    tip: str  # job branch tip it was computed from
    base: str
    steps: list[WorkStep] = field(default_factory=list)
    harvests: dict[int, str] = field(default_factory=dict)  # step -> last harvest (with or without work)
    current: str | None = None  # logist-review/<id> when it was computed

    @property
    def head(self) -> str | None:
        return self.steps[-1].commit if self.steps else None


# --------------------------------------------------------------------------- the chain

def _work_commits(store: JobReader, job_id: JobId, tip: str, base: str) -> list[tuple[str, int, int, str]]:
    """[(commit, step, step_count, transition id)] of the commits that carry a step's work on
    the current run, oldest first; consecutive ones of the same step count once (the last)."""
    out = git(["log", "--first-parent", "-z", f"--max-count={MAX_WALK}", "--format=%H%x1f%B",
               "--end-of-options", tip, f"^{base}", "--"], cwd=store.root, check=False).stdout
    found: list[tuple[str, int, int, str]] = []
    for rec in reversed([r for r in out.split("\0") if r.strip()]):
        oid, _, body = rec.strip("\n").partition("\x1f")
        t = trailers(body)
        if t.get("Logist-Job") != job_id:
            continue
        if not (t.get("Logist-From") == "HARVESTING"
                or (t.get("Logist-Event") == "restep" and "Logist-Restep-Result" in t)):
            continue
        n, _, m = t.get("Logist-Step", "").partition("/")
        if not (n.isdigit() and m.isdigit()):
            continue
        item = (oid, int(n), int(m), t.get("Logist-Transition-Id", ""))
        if found and found[-1][1] == item[1]:
            found[-1] = item
        else:
            found.append(item)
    return found


# {review commit: (tree content, (tree, parent, author, committer, message))}
_Todo = dict[str, tuple[bytes, tuple[str, str, bytes, bytes, str]]]


class _Builder:
    """Computes review commits (and writes the missing ones) for one job."""

    def __init__(self, store: JobReader, job_id: JobId, tip: str) -> None:
        """One ``cat-file --batch`` reads the review branch's value, the record and the history
        at ``tip`` (as data: only the base, the step names and the summaries are used)."""
        self.store, self.job_id, self.tip = store, job_id, tip
        got = read_objects(store, [refs.review_ref(job_id), f"{tip}:{refs.manifest_path(job_id)}",
                             f"{tip}:{refs.history_path(job_id)}"])
        self.current = got[0][0] if got[0] is not None and got[0][1] == "commit" else None
        try:
            record = json.loads(got[1][2]) if got[1] is not None else None
        except ValueError:
            record = None
        base = record.get("base") if isinstance(record, dict) else None
        if not isinstance(base, str) or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", base):
            store.read_record(job_id, at=tip)  # raises the record's own error
            raise ManifestError(f"job {job_id}: the record at {tip[:12]} has no valid base")
        self.base: str = base
        steps = record.get("steps") if isinstance(record, dict) else None
        self.names = [str(x.get("name", "")) if isinstance(x, dict) else "" for x in steps] \
            if isinstance(steps, list) else []
        summaries: dict[str, str] = {}
        for line in (got[2][2] if got[2] is not None else b"").decode("utf-8", "replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if not isinstance(e, dict) or not isinstance(e.get("transition_id"), str):
                continue
            if e.get("event") == "restep" or (e.get("from") and e.get("to")):
                raw = e.get("data")
                data = raw if isinstance(raw, dict) else {}
                summaries[e["transition_id"]] = str(data.get("summary") or e.get("reason") or "")
        self.summaries = summaries
        self.raw_len = 32 if len(tip) == 64 else 20
        self._base_tree: bytes | None = None

    @property
    def base_tree(self) -> bytes:
        if self._base_tree is None:
            got = read_objects(self.store, [f"{self.base}^{{tree}}"])
            if not got or got[0] is None:
                raise GitError(f"job {self.job_id}: its base {self.base[:12]} is not in this repository")
            self._base_tree = got[0][2]
        return self._base_tree

    def name(self, step: int) -> str:
        return self.names[step - 1] if 0 < step <= len(self.names) else f"step {step}"

    def plan(self, items: list[tuple[str, int, int, str]], parent: str) -> tuple[list[WorkStep], _Todo]:
        """The review commits for ``items`` on top of ``parent`` (not written yet): the steps,
        and {commit: (tree content, (tree, parent, author, committer, message))}."""
        specs = [f"{self.base}^{{tree}}"] if self._base_tree is None else []
        for h, *_ in items:
            specs += [h, f"{h}^{{tree}}"]
        objs = read_objects(self.store, specs)
        if self._base_tree is None:
            if not objs or objs[0] is None:
                raise GitError(f"job {self.job_id}: its base {self.base[:12]} is not in this repository")
            self._base_tree = objs[0][2]
            objs = objs[1:]
        steps: list[WorkStep] = []
        todo: _Todo = {}
        prev_tree = None
        if parent == self.base:
            prev_tree = object_id("tree", strip_record(self.base_tree, self.base_tree, self.raw_len),
                              len(self.tip))
        for i, (h, n, m, tid) in enumerate(items):
            commit, tree = objs[2 * i], objs[2 * i + 1]
            if commit is None or tree is None:
                raise GitError(f"job {self.job_id}: commit {h[:12]} is missing from this repository")
            content = strip_record(tree[2], self.base_tree, self.raw_len)
            tree_oid = object_id("tree", content, len(h))
            if tree_oid == prev_tree:
                continue  # the step changed no file
            hdr = commit_headers(commit[2])
            author, committer = hdr.get(b"author", b""), hdr.get(b"committer", b"")
            msg = message(self.job_id, n, m, self.name(n), self.summaries.get(tid, ""), h)
            oid = object_id("commit", raw_commit(tree_oid, parent, author, committer, msg), len(h))
            todo[oid] = (content, (tree_oid, parent, author, committer, msg))
            steps.append(WorkStep(n, m, h, self.name(n), self.summaries.get(tid, ""), tree_oid,
                                  parent, oid))
            parent, prev_tree = oid, tree_oid
        return steps, todo

    def write(self, steps: list[WorkStep], todo: _Todo) -> list[WorkStep]:
        """Write the commits that are not in the object store yet; returns the steps with the
        ids git gave (equal to the computed ones)."""
        if not steps:
            return steps
        # the commits up to the branch's current value exist; look up the others only when
        # there are several (writing one again would give the same object anyway)
        known = next((i for i, s in enumerate(steps) if s.commit == self.current), -1)
        rest = [s.commit for s in steps[known + 1:]]
        have = {s.commit for s in steps[:known + 1]} | (existing_commits(self.store, rest) if len(rest) > 1 else set())
        fixed: list[WorkStep] = []
        renamed: dict[str, str] = {}
        for s in steps:
            parent = renamed.get(s.parent, s.parent)
            if s.commit in have and parent == s.parent:
                fixed.append(s)
                continue
            content, (tree, _p, author, committer, msg) = todo[s.commit]
            written_tree = write_tree(self.store, content)
            oid = commit_tree(self.store, written_tree, parent, author, committer, msg)
            if oid != s.commit:
                renamed[s.commit] = oid
            fixed.append(WorkStep(s.step, s.step_count, s.harvest, s.name, s.summary, written_tree,
                                  parent, oid))
        return fixed


def build(store: JobReader, job_id: JobId, tip: str | None = None, *, write: bool = True) -> ReviewChain:
    """The review branch of the job at ``tip`` (default: its branch tip), its commits written to
    the object store (``write=False``: only computed, for read-only commands). Deterministic:
    the same job branch gives the same commit ids."""
    refs.validate_job_id(job_id)
    tip = tip or store.tip(job_id)
    b = _Builder(store, job_id, tip)
    items = _work_commits(store, job_id, tip, b.base)
    steps, todo = b.plan(items, b.base)
    chain = ReviewChain(job_id, tip, b.base, b.write(steps, todo) if write else steps)
    chain.harvests = {n: h for h, n, _m, _t in items}
    chain.current = b.current
    return chain


def made_by_logist(store: JobReader, job_id: JobId, oid: str, chain: ReviewChain | None = None, *,
                   tip: str | None = None) -> bool:
    """Is ``oid`` a review commit logist made for this job (of this or an earlier run)?

    True when rebuilding it from its own trailers (the harvest commit it names, on its own
    parent) gives its id back; a commit edited or added by anyone else never does. ``tip``: the
    job's record to read (default: its branch; cleanup passes the archived tip)."""
    if chain is not None and any(s.commit == oid for s in chain.steps):
        return True
    got = read_objects(store, [oid])
    if not got or got[0] is None or got[0][1] != "commit":
        return False
    raw = got[0][2]
    hdr = commit_headers(raw)
    body = raw.split(b"\n\n", 1)[1].decode("utf-8", "replace") if b"\n\n" in raw else ""
    t = trailers(body)
    harvest = t.get("Logist-Commit", "")
    n, _, m = t.get("Logist-Step", "").partition("/")
    parent = hdr.get(b"parent", b"").decode()
    if t.get("Logist-Job") != job_id or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", harvest) \
            or not (n.isdigit() and m.isdigit()) or not parent:
        return False
    if raw.count(b"\nparent ") > 1:
        return False
    try:
        b = _Builder(store, job_id, chain.tip if chain else tip or store.tip(job_id))
        tid = _transition_id(store, harvest)
        steps, _ = b.plan([(harvest, int(n), int(m), tid)], parent)
    except LogistError:
        return False
    return bool(steps) and steps[0].commit == oid


def _transition_id(store: JobReader, commit: str) -> str:
    got = read_objects(store, [commit])
    if not got or got[0] is None:
        return ""
    raw = got[0][2]
    body = raw.split(b"\n\n", 1)[1].decode("utf-8", "replace") if b"\n\n" in raw else ""
    return trailers(body).get("Logist-Transition-Id", "")


def foreign_commits(store: JobReader, job_id: JobId, tip: str, chain: ReviewChain | None = None
                    ) -> tuple[list[tuple[str, str]], str | None]:
    """([(oid, subject)] of the commits on top of ``tip``'s first-parent line that logist did not
    make, newest first; the newest commit below them that logist made, or None)."""
    try:
        base = chain.base if chain is not None else store.read_record(job_id)[1]["base"]
        bound = [f"^{base}"]  # the job's commits only, not the project's history behind its base
    except LogistError:
        bound = []
    out = git(["log", "--first-parent", f"--max-count={MAX_FOREIGN}",
               "--format=%H%x1f%(trailers:key=Logist-Job,valueonly,separator=%x2C)%x1f%s",
               "--end-of-options", tip, *bound, "--"], cwd=store.root, check=False).stdout
    foreign: list[tuple[str, str]] = []
    for line in out.splitlines():
        oid, _, rest = line.partition("\x1f")
        named, _, subject = rest.partition("\x1f")
        if named.strip() == job_id and made_by_logist(store, job_id, oid, chain):
            return foreign, oid
        foreign.append((oid, subject))
    return foreign, None


# --------------------------------------------------------------------------- the branch

@dataclass
class ReviewUpdate:
    job_id: JobId
    status: str  # created, updated, deleted, unchanged, kept, none
    old: str | None
    new: str | None  # the branch value after the call
    wanted: str | None  # what logist computed
    foreign: list[tuple[str, str]] = field(default_factory=list)
    message: str = ""

    @property
    def branch(self) -> str:
        return refs.review_name(self.job_id)


def current(store: JobReader, job_id: JobId) -> str | None:
    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", refs.review_ref(job_id)],
               cwd=store.root, check=False)
    return proc.stdout.strip() or None


def update(store: JobReader, job_id: JobId, *, tip: str | None = None,
           chain: ReviewChain | None = None) -> ReviewUpdate:
    """Move ``logist-review/<id>`` to the review branch computed from the job, by
    compare-and-swap. A branch that carries commits logist did not make (a reviewer's fixup)
    is never moved: the result says "kept" and names them."""
    fresh = chain is None  # then the branch's value was read with the record: no second look
    chain = chain or build(store, job_id, tip)
    ref = refs.review_ref(job_id)
    want = chain.head
    for attempt in range(3):
        old = chain.current if attempt == 0 and fresh else current(store, job_id)
        if old == want:
            return ReviewUpdate(job_id, "unchanged" if want else "none", old, old, want)
        if old is not None and not made_by_logist(store, job_id, old, chain):
            foreign, _below = foreign_commits(store, job_id, old, chain)
            if want is not None and _contains(store, old, want):
                msg = (f"{refs.review_name(job_id)} has {len(foreign)} commit(s) on top of the job's "
                       "work that logist did not make; kept")
            else:
                msg = (f"{refs.review_name(job_id)} has {len(foreign)} commit(s) that logist did not "
                       f"make ({_describe(foreign)}); it is kept as it is and not rebuilt from the job")
            return ReviewUpdate(job_id, "kept", old, old, want, foreign, msg)
        if want is None:
            verb, status = f"delete {ref} {old}\n", "deleted"
        elif old is None:
            verb, status = f"create {ref} {want}\n", "created"
        else:
            verb, status = f"update {ref} {want} {old}\n", "updated"
        try:
            store.update_refs(verb)
        except ConcurrentUpdateError:
            continue  # somebody moved it meanwhile: look again
        return ReviewUpdate(job_id, status, old, want, want)
    old = current(store, job_id)
    return ReviewUpdate(job_id, "kept", old, old, want,
                        message=f"{refs.review_name(job_id)} kept moving while logist rebuilt it")


def _contains(store: JobReader, tip: str, oid: str) -> bool:
    if tip == oid:
        return True
    return git(["merge-base", "--is-ancestor", oid, tip], cwd=store.root, check=False).returncode == 0


def _describe(foreign: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{o[:12]} {s[:50]!r}" for o, s in foreign[:3])
    return shown + (", ..." if len(foreign) > 3 else "")


def refresh(store: JobReader, job_id: JobId) -> ReviewUpdate | None:
    """After a commit that can change the job's work (a harvest, a restep, a rerun, an adopt):
    bring the review branch along. Never raises: the review branch is derived data that `logist
    job pr` and `logist push` rebuild anyway; a failure here must not fail the transition."""
    try:
        return update(store, job_id)
    except Exception:  # derived data; see the docstring
        return None
