"""Was a job merged? (docs/sharing.md, cleanup). The base jobs are merged into, and whether a job
is *integrated* into it.

A job is integrated into the base when it has work beyond its record (a branch that only
carries ``.logist/jobs/<id>/`` is never "merged") and the base contains it as *that* job: its
branch or its review branch ``logist-review/<id>`` is an ancestor of the base (merge commit or
fast-forward), or a commit of the base names it (``Logist-Job: <id>``, kept in a squash message)
and changes files the job changed (squash merge; "edited in review" when the changes differ).
Identical content alone never counts (see :mod:`logist.share.review`).

Layer 5: git only through :mod:`logist.git.gitcmd`; never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from logist.core.errors import UsageError
from logist.core.jobid import JobId
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.share.remotes import default_remote, is_ancestor, remote_head, rev
from logist.store.jobstore import JobStore


def default_base(store: JobStore, remote: str | None = None) -> str:
    """The branch jobs are merged into: <remote>/HEAD (e.g. origin/main), else main/master,
    else HEAD."""
    r = remote or default_remote(store)
    head = remote_head(store, r) if r else None
    if head:
        return head
    for name in ("main", "master"):
        if rev(store, f"refs/heads/{name}"):
            return f"refs/heads/{name}"
    return "HEAD"


def resolve_base(store: JobStore, base: str | None, remote: str | None = None) -> tuple[str, str]:
    """(name, commit) of the base."""
    name = base or default_base(store, remote)
    if name.startswith("-"):
        raise UsageError(f"invalid base {name!r}")
    oid = git(["rev-parse", "-q", "--verify", "--end-of-options", name + "^{commit}"],
              cwd=store.root, check=False).stdout.strip()
    if not oid:
        raise UsageError(f"base {name!r} is not a commit in this repository",
                         hint="pass --base with the branch PRs are merged into (e.g. origin/main)")
    return name, oid


@dataclass
class Integration:
    integrated: bool
    how: str


def _exclude_record(job_id: JobId) -> str:
    return f":(top,exclude){refs.record_dir(job_id)}"


def has_work(store: JobStore, job_id: JobId, tip: str, job_base: str) -> bool:
    """Does the branch change anything outside its own record, relative to where it started?"""
    start = job_base if rev(store, job_base + "^{commit}") else None
    if start is None:
        return True  # cannot tell: treat as work (the safe side: it will not count as merged)
    proc = git(["diff", "--quiet", start, tip, "--", _exclude_record(job_id)], cwd=store.root,
               check=False)
    return proc.returncode == 1


def integration(store: JobStore, job_id: JobId, tip: str, job_base: str, base_oid: str,
                base_name: str = "the base") -> Integration:
    if not has_work(store, job_id, tip, job_base):
        return Integration(False, "no work beyond its record")
    if is_ancestor(store, tip, base_oid):
        fp = git(["rev-list", "--first-parent", "--max-count=5000", base_oid], cwd=store.root,
                 check=False).stdout.split()
        return Integration(True, "fast-forward" if tip in fp else "merge commit")
    # its review branch, or a squash that names it (never identical content alone)
    from logist.share.review import integration as review_integration

    found = review_integration(store, job_id, tip, job_base, base_oid, base_name)
    return Integration(found.integrated, found.how)


# ---- many jobs at once: which need the full check

Item = tuple[str, str, str]  # (job id, tip, the commit the job started from)


def integration_verdicts(store: JobStore, items: list[Item], base_oid: str) -> dict[str, str]:
    """{job: "no-work" | "untouched" | "check"} for many jobs in three git processes.

    "no-work": nothing outside its record differs from where it started; "untouched": not an
    ancestor of the base and the base never changed any file the job changed (so no merge or
    squash can have happened); "check": run :func:`integration`. Anything odd gives "check" or
    "untouched"/"no-work" only when certain (the full check decides everything else).
    """
    out: dict[str, str] = {}
    if not items:
        return out
    usable = _comparable(store, items, base_oid, out)
    if not usable:
        return out
    changed = _changed_paths(store, usable)
    if changed is None:
        return {**out, **{j: "check" for j, _t, _b in usable}}
    spans, specs = _work_paths(usable, changed, base_oid, out)
    if spans:
        touched = _base_touched(store, spans, specs)
        if touched is None:
            return {**out, **{j: "check" for j, _s, _n in spans}}
        out.update(touched)
    return out


def _comparable(store: JobStore, items: list[Item], base_oid: str, out: dict[str, str]) -> list[Item]:
    """The items that are not merged into the base and started from a commit; the others get
    "check" in ``out``."""
    merged = set(git_out(["for-each-ref", f"--merged={base_oid}", "--format=%(objectname)", "--",
                          refs.BRANCH_PREFIX, "refs/remotes/"], cwd=store.root).split())
    kinds = git(["cat-file", "--batch-check=%(objecttype)"], cwd=store.root,
                input="".join(f"{b}\n" for _j, _t, b in items), check=False).stdout.splitlines()
    usable = []
    # a short answer (git failed part-way) leaves the rest unknown: "" is not a commit
    for (j, t, b), kind in zip(items, kinds + [""] * len(items), strict=False):
        if t in merged or not kind.endswith("commit") or kind.endswith("missing"):
            out[j] = "check"
        else:
            usable.append((j, t, b))
    return usable


def _changed_paths(store: JobStore, usable: list[Item]) -> list[list[str]] | None:
    """The paths each job changed since it started (one ``diff-tree --stdin``); None when git
    did not answer for every job."""
    proc = git(["diff-tree", "--stdin", "-z", "-r", "--name-only", "--always", "--format=%x01%H"],
               cwd=store.root, input="".join(f"{t} {b}\n" for _j, t, b in usable).encode(),
               check=False, text=False)
    changed: list[list[str]] = []
    for token in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        token = token.lstrip("\n")
        if token.startswith("\x01"):
            changed.append([])
        elif token and changed:
            changed[-1].append(token)
    if proc.returncode != 0 or len(changed) != len(usable):
        return None
    return changed


def _work_paths(usable: list[Item], changed: list[list[str]], base_oid: str,
                out: dict[str, str]) -> tuple[list[tuple[str, int, int]], list[str]]:
    """([(job, first spec, paths)], ["<commit>:<path>" to look up]): each changed path outside
    the job's record, in the base and where the job started. A job with none is "no-work"."""
    specs: list[str] = []
    spans = []
    for (j, _t, b), paths in zip(usable, changed, strict=True):
        record = refs.record_dir(j) + "/"
        work = [p for p in paths if not p.startswith(record) and "\n" not in p]
        if not work:
            out[j] = "no-work"
            continue
        spans.append((j, len(specs), len(work)))
        for p in work:
            specs += [f"{base_oid}:{p}", f"{b}:{p}"]
    return spans, specs


def _base_touched(store: JobStore, spans: list[tuple[str, int, int]], specs: list[str]
                  ) -> dict[str, str] | None:
    """"check" for a job whose files differ between the base and its start, else "untouched"
    (one ``cat-file --batch-check``); None when git did not answer for every path."""
    answers = git(["cat-file", "--batch-check=%(objectname)"], cwd=store.root,
                  input="".join(x + "\n" for x in specs), check=False).stdout.splitlines()
    if len(answers) != len(specs):
        return None
    out = {}
    for j, start, n in spans:
        pairs = [(answers[start + 2 * i], answers[start + 2 * i + 1]) for i in range(n)]
        out[j] = "check" if any(a != b for a, b in pairs) else "untouched"
    return out
