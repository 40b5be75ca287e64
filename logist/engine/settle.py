"""Settling the branch after an agent: logist's own last commit, and what the agent did.

An agent works on the checked-out job branch and may commit, amend, reset or rebase it
(docs/architecture.md#invariants, 8). The commit a step's agent started from is recorded (``agent.json``)
before the agent starts; the tip is logist's own record unless it carries no transition logist
made after that commit (:func:`own_tip`). Before logist's next commit, :func:`settle_branch`
keeps rewritten-away commits reachable (``refs/logist/displaced/<id>/<k>``) and restores the
record directory.
"""

from __future__ import annotations

from pathlib import Path

from logist.core.errors import ConcurrentUpdateError, JobNotFoundError, ManifestError
from logist.core.jobid import JobId
from logist.core.model import Manifest, State
from logist.core.safepath import UnsafePathError, remove_file
from logist.engine.agent_proc import read_agent_file
from logist.git import refs
from logist.git.gitcmd import CatFileBatch, git, git_out
from logist.store.jobstore import RECORD_FILES, JobStore

# ---- logist's own last commit ------------------------------------------------------------

def own_tip(store: JobStore, job_id: JobId) -> tuple[str, Manifest]:
    """(commit, record) of logist's own last transition of ``job_id``.

    The tip, unless an agent moved the branch during its step or restep and no logist
    transition came after: then logist's copy of its last commit (``refs/logist/tips/<id>``)
    when the branch was rewritten past it, else the commit the agent started from (EXECUTING,
    or a restep's start: recorded in ``agent.json`` before the agent started). A later logist
    transition is recognised by its record: its history extends that commit's history (an
    agent's commits carry the record it found, or a tampered one, never a longer history).
    This is the one answer to "logist's own last commit" (docs/recovery.md#recovery-from-the-tip).
    """
    refs.validate_job_id(job_id)
    tip = store.tip(job_id)  # a deleted branch is restored from refs/logist/tips/<id> here
    kept = store.resolve_commit(refs.tip_ref(job_id))
    if kept is not None and kept != tip and not is_ancestor(store, kept, tip):
        # The branch was rewritten past logist's own last commit (reset, a forged tip): logist's
        # copy is the truth; settle_branch keeps what the branch holds now.
        try:
            return store.read(job_id, at=kept)
        except ManifestError:
            pass
    info = read_agent_file(store, job_id)
    anchor = info.get("commit") if info else None
    if info is None or not isinstance(anchor, str) or len(anchor) != 40 or anchor == tip:
        return store.read(job_id, at=tip)
    rec, hist = refs.manifest_path(job_id), refs.history_path(job_id)
    with CatFileBatch(store.paths.root) as batch:
        raw_tip, hist_tip, raw_anchor, hist_anchor = batch.read_many(
            [f"{tip}:{rec}", f"{tip}:{hist}", f"{anchor}:{rec}", f"{anchor}:{hist}"])
    try:
        anchor_m = store._validate(job_id, anchor, raw_anchor)
    except ManifestError:
        return store.read(job_id, at=tip)
    if anchor_m.execution is None or anchor_m.execution.transition_id != info.get("transition_id") \
            or not (anchor_m.state == State.EXECUTING or anchor_m.execution.restep):
        return store.read(job_id, at=tip)
    try:
        tip_m = store._validate(job_id, tip, raw_tip)
    except ManifestError:
        return anchor, anchor_m
    a, t = hist_anchor or b"", hist_tip or b""
    if len(t) > len(a) and t.startswith(a) and tip_m.transition_seq > anchor_m.transition_seq:
        return tip, tip_m
    return anchor, anchor_m


def is_ancestor(store: JobStore, a: str, b: str) -> bool:
    return git(["merge-base", "--is-ancestor", a, b], cwd=store.root, check=False).returncode == 0


def keep_displaced(store: JobStore, job_id: JobId, oid: str) -> str:
    """Keep ``oid`` reachable at ``refs/logist/displaced/<id>/<k>`` (idempotent: an existing ref
    that already points at it is reused)."""
    prefix = refs.DISPLACED_PREFIX + refs.validate_job_id(job_id) + "/"
    for _ in range(5):
        out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", prefix], cwd=store.root)
        used = []
        for line in out.splitlines():
            target, _, ref = line.partition(" ")
            if target == oid:
                return ref
            tail = ref[len(prefix):]
            if tail.isdigit():
                used.append(int(tail))
        ref = refs.displaced_ref(job_id, max(used, default=0) + 1)
        proc = store.ref_transaction(f"create {ref} {oid}\n")
        if proc.returncode == 0:
            return ref
    raise ConcurrentUpdateError(f"job {job_id}: could not keep commit {oid[:12]} at {prefix}<k>")


def settle_branch(store: JobStore, job_id: JobId, own: str) -> tuple[str, list[str]]:
    """Before logist's next commit after an agent ran: see what the agent did to the branch and
    to ``.logist/``, keep rewritten-away commits reachable, and drop extra files from the
    record directory. Returns (the branch tip to build on, warnings to record)."""
    warnings: list[str] = []
    try:
        tip = store.tip(job_id)
    except JobNotFoundError:
        # the branch and logist's copy are both gone: the commit this process knows is logist's
        proc = store.ref_transaction(f"create {refs.branch_ref(job_id)} {own}\n"
                                     f"update {refs.tip_ref(job_id)} {own}\n")
        if proc.returncode != 0:
            raise
        tip = own
        warnings.append(f"the job branch and {refs.tip_ref(job_id)} were deleted while the step "
                        "ran; logist restored them at its own last commit")
    from logist.engine import config_guard

    warnings += config_guard.revert(store, job_id)  # the agent may not change .git/config
    marker = store.run_dir(job_id) / store.RESTORED_MARKER
    if marker.exists():
        warnings.append(f"the job branch was deleted while the step ran; logist restored it from "
                        f"{refs.tip_ref(job_id)} (its own copy of the tip)")
        marker.unlink(missing_ok=True)
    record = refs.record_dir(job_id)
    if tip != own:
        if is_ancestor(store, own, tip):
            warnings.append("the agent made its own commits on the job branch; they are kept")
        else:
            ref = keep_displaced(store, job_id, own)
            warnings.append("the agent rewrote the job branch (amend, reset or rebase); logist's "
                            f"previous commit is kept at {ref}")
    wt = store.worktree_path(job_id)
    if (wt / ".git").exists() and store.worktree_problem(wt) is None:
        changed = git(["diff", "--quiet", own, "--", record], cwd=wt, check=False).returncode != 0
        extras = [p for p in _record_paths(wt, record) if p.rsplit("/", 1)[-1] not in RECORD_FILES]
        if changed or extras:
            warnings.append("the agent changed the job record under .logist/; it was restored "
                            "from logist's last commit")
        if extras:
            git(["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *extras], cwd=wt, check=False)
            for rel in extras:
                try:
                    remove_file(wt, rel)  # never through a symlink
                except UnsafePathError:
                    pass
        other = git(["diff", "--quiet", own, "--", ".logist", f":(exclude){record}"], cwd=wt,
                    check=False).returncode != 0
        if other:
            warnings.append("the agent changed other files under .logist/; they are kept as part "
                            "of its work")
    elif tip != own and git(["diff", "--quiet", own, tip, "--", record], cwd=store.root,
                            check=False).returncode != 0:
        warnings.append("the agent changed the job record in its commits; it was restored from "
                        "logist's last commit")
    return tip, warnings


def _record_paths(wt: Path, record: str) -> list[str]:
    """Tracked and untracked paths under the record directory of a worktree."""
    out = git_out(["ls-files", "--cached", "--others", "--", record], cwd=wt, check=False)
    return sorted(set(out.splitlines()))
