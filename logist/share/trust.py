"""Trust: a job whose steps run commands (or whose tree has symlinks out of the worktree) runs
in a clone only when the user trusted exactly those commands there (`logist job trust`), never
because of anything a fetched record says (docs/sharing.md). Layer 5; never prints."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logist.core.errors import ConcurrentUpdateError, JobNotFoundError, LogistError
from logist.core.jobid import JobId
from logist.core.model import Manifest
from logist.git import refs
from logist.share.remotes import resolve_remote, rev
from logist.store.jobstore import JobStore, new_transition_id, utcnow

# Step options that cannot change what runs or where it writes. Every other option (``command``,
# ``args``, ``skip_permissions``, ``env``, allowed tools, a runtime, worktree settings, and any
# option a later version adds) is shown to the user and covered by the trust decision.
NO_TRUST_OPTIONS = frozenset({"mock", "model", "output_format"})


def steps_needing_trust(m: Manifest) -> list[tuple[int, str, list[str]]]:
    """[(step number, agent, what is shown to the user)] of the steps that would run something
    the job itself names: ``command`` steps, extra ``args`` given to an AI agent's CLI (flags
    such as MCP configs or permission switches can make it run programs), and every other
    option outside :data:`NO_TRUST_OPTIONS` (shown as ``key=value``)."""
    from logist.agents import get_agent

    out = []
    for n, step in enumerate(m.steps, 1):
        try:
            agent = get_agent(step.agent)
        except LogistError:
            out.append((n, step.agent, [f"<unknown agent {step.agent!r}>"]))
            continue
        args = [str(a) for a in (step.options.get("args") or [])]
        extra = [f"{k}={json.dumps(step.options[k], sort_keys=True, default=str)}"
                 for k in sorted(step.options) if k not in NO_TRUST_OPTIONS | {"command", "args"}]
        if agent.runs_commands:
            command = [str(a) for a in (step.options.get("command") or [])]
            out.append((n, step.agent, command + args + extra))
        elif args or extra:
            out.append((n, step.agent, [step.agent, *args, *extra]))
    return out


_LINKS_CACHE: dict[tuple[str, str], list[str]] = {}


def job_link_problems(store: JobStore, oid: str) -> list[str]:
    """The symlinks of commit ``oid``'s tree that point outside the worktree or into a ``.git``
    (remembered per commit: a worker's survey asks again every poll)."""
    from logist.git.treelinks import dangerous_links

    key = (str(store.root), oid)
    if key not in _LINKS_CACHE:
        if len(_LINKS_CACHE) > 4096:
            _LINKS_CACHE.clear()
        _LINKS_CACHE[key] = dangerous_links(store.root, oid)
    return list(_LINKS_CACHE[key])


def commands_digest(m: Manifest, links: list[str] | tuple[str, ...] = ()) -> str:
    """A digest of everything a trust decision covers: what :func:`steps_needing_trust` shows
    (with the steps' full options) and the dangerous symlinks of the job's tree."""
    data: list[Any] = [{"step": n, "agent": a, "argv": argv, "options": m.steps[n - 1].options}
                       for n, a, argv in steps_needing_trust(m)]
    if links:
        data.append({"symlinks": sorted(links)})
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _trust_file(store: JobStore, job_id: JobId) -> Path:
    return store.paths.logist_dir / "trust" / f"{refs.validate_job_id(job_id)}.json"


def read_trust(store: JobStore, job_id: JobId) -> dict[str, Any] | None:
    try:
        data = json.loads(_trust_file(store, job_id).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_trust(store: JobStore, m: Manifest, links: list[str] | tuple[str, ...] = ()) -> str:
    """Remember, in this clone only, that the user trusts ``m``'s commands (and the symlinks
    ``links``) as they are now."""
    digest = commands_digest(m, links)
    path = _trust_file(store, m.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"job": m.id, "digest": digest, "trusted_at": utcnow(),
                               "commands": [argv for _n, _a, argv in steps_needing_trust(m)],
                               "symlinks": list(links)},
                              indent=2) + "\n")
    os.replace(tmp, path)
    return digest


def needs_trust(m: Manifest, links: list[str] | tuple[str, ...] = ()) -> bool:
    """Does running ``m`` (whose tree has the dangerous symlinks ``links``) need trust?"""
    return bool(links) or bool(steps_needing_trust(m))


def trusted_here(store: JobStore, m: Manifest, *, previous: Manifest | None = None,
                 links: list[str] | tuple[str, ...] = ()) -> bool:
    """May this clone run ``m`` without asking? Never decided by the fetched record itself:

    - it names no commands or options that need trust and its tree has no symlink pointing
      outside the worktree or into a ``.git`` (``links``: :func:`job_link_problems`), or
    - the user trusted exactly these commands and symlinks here (`logist job trust`), or
    - this clone's own previous record of the job was trusted, the commands are unchanged and
      the tree has no dangerous symlink.
    """
    if not needs_trust(m, links):
        return True
    digest = commands_digest(m, links)
    t = read_trust(store, m.id)
    if t and t.get("digest") == digest:
        return True
    return (not links and previous is not None and previous.trusted
            and commands_digest(previous) == digest)


@dataclass
class TrustInfo:
    job_id: JobId
    commands: list[tuple[int, str, list[str]]]
    where: str  # "local" or "<remote>/logist/<id>"
    links: list[str] = field(default_factory=list)  # symlinks out of the worktree or into .git
    already: bool = False
    committed: str | None = None


def trust_candidates(store: JobStore, job_id: JobId, remote: str | None = None) -> tuple[TrustInfo, Manifest]:
    """The job's commands, from the local branch or (without one) the fetched remote branch."""
    refs.validate_job_id(job_id)
    if remote is None and rev(store, refs.branch_ref(job_id)):
        oid, m = store.read(job_id)
        where = "local"
    else:
        r = resolve_remote(store, remote)
        fetched = rev(store, refs.remote_branch_ref(r, job_id))
        if fetched is None:
            raise JobNotFoundError(f"no job {job_id!r} here or fetched from {r}",
                                   hint=f"run `logist fetch {r}` first")
        oid, m = store.read(job_id, at=fetched)
        where = f"{r}/{refs.branch_name(job_id)}"
    info = TrustInfo(job_id, steps_needing_trust(m), where, job_link_problems(store, oid))
    t = read_trust(store, job_id)
    info.already = (bool(t and t.get("digest") == commands_digest(m, info.links))
                    and (where != "local" or m.trusted))
    return info, m


def trust_job(store: JobStore, job_id: JobId, remote: str | None = None) -> TrustInfo:
    """Trust the job's commands in this clone: a local trust record (pinned to a digest of the
    commands shown) and, when the job has a local branch, a committed record change
    (``trusted: true``) made under the job's lease."""
    info, m = trust_candidates(store, job_id, remote)
    if not info.commands and not info.links:
        return info
    record_trust(store, m, info.links)
    if info.where == "local" and not m.trusted:
        from logist.store.job_state import Update, update_job_manifest
        from logist.store.locks import acquire

        with acquire(store, job_id) as lease:
            tip, cur = store.read(job_id)
            if commands_digest(cur, job_link_problems(store, tip)) != commands_digest(m, info.links):
                raise ConcurrentUpdateError(f"job {job_id}: its commands changed while trusting it",
                                            hint=f"run `logist job trust {job_id}` again")

            def mut(x: Manifest) -> None:
                x.trusted = True

            done = update_job_manifest(
                store, job_id, Update(reason="trusted by the user", mutate=mut, history_event="note",
                                      data={"trusted": commands_digest(cur, info.links),
                                            "commands": [a for _n, _g, a in info.commands],
                                            **({"symlinks": info.links} if info.links else {})}),
                now=utcnow(), transition_id=new_transition_id(), tip=tip, current=cur, lease=lease.oid,
                body="The user reviewed and trusted the commands of this job:\n\n" + "\n".join(
                    [f"step {n} ({a}): {json.dumps(argv)}" for n, a, argv in info.commands]
                    + [f"symlink {why}" for why in info.links]))
            if done is not None:
                info.committed = done[0]
    return info
