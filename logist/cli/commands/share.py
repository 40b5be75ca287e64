"""`logist push|fetch` and `logist job adopt|trust|pr`: sharing jobs through a git remote."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, say, warn


def push(remote: str | None = None, /, *jobs: str,
         json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Push job branches, their review branches (logist-review/<id>: the work only), their
    runs/resteps/archive refs and logist's notes in one atomic push. A reviewer's commits on a
    remote review branch are never overwritten (the push says which).

    Notes another clone pushed meanwhile are fetched, merged (cat_sort_uniq) and pushed again.
    A job that went on elsewhere (the remote is ahead) is left alone and reported; lock refs
    are never pushed (only `logist worker` does that).

    Parameters
    ----------
    remote
        The remote (default: the current branch's upstream remote, else origin).
    jobs
        Which jobs (default: every job).
    json_
        Print {"remote", "pushed", "skipped", "attempts"}.
    """
    from logist.share.push import push as do_push

    store = cli.store()
    from logist.engine.job_select import resolve_job

    ids = [resolve_job(store, j) for j in jobs] or None
    res = do_push(store, remote, ids)
    if json_:
        emit_json({"remote": res.remote, "pushed": res.pushed, "skipped": res.skipped,
                   "attempts": res.attempts, "notes_merged": res.notes_merged})
    else:
        if res.pushed:
            say(f"pushed to {res.remote}:")
            for r in res.pushed:
                say(f"  {r}")
        else:
            say(f"{res.remote} is up to date")
        ahead = [r for r, why in res.skipped.items() if why.startswith("the remote is ahead")]
        if ahead:
            say(f"{len(ahead)} job(s) went on elsewhere ({res.remote} is ahead): "
                + ", ".join(r.rsplit("/", 1)[-1] for r in ahead[:8]) + (" ..." if len(ahead) > 8 else "")
                + "; `logist job adopt ID` brings them here")
        for ref, why in res.skipped.items():
            if ref not in ahead:
                warn(f"not pushed: {ref}: {why}")
    return 1 if res.conflicts else 0


def fetch(remote: str | None = None, /, *,
          json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Fetch the remote's jobs, logist refs and notes (notes are merged into the local ones).

    Job branches land in refs/remotes/<remote>/logist/*, so `git log <remote>/logist/<id>`
    works; refs/logist/* in refs/logist/remotes/<remote>/*; notes in
    refs/notes/remotes/<remote>/logist/*. Then `logist job list --remote <remote>`.

    Parameters
    ----------
    remote
        The remote (default: the current branch's upstream remote, else origin).
    json_
        Print {"remote", "jobs", "new", "updated", "gone", "notes_merged", "notes_refused"}.
    """
    from logist.share.fetch import fetch as do_fetch

    res = do_fetch(cli.store(), remote)
    if json_:
        emit_json(res.__dict__)
        return 0
    say(f"fetched {res.jobs} job(s) from {res.remote}"
        + (f"; new: {', '.join(res.new)}" if res.new else "")
        + (f"; updated: {', '.join(res.updated)}" if res.updated else "")
        + (f"; gone: {', '.join(res.gone)}" if res.gone else ""))
    if res.notes_merged:
        say(f"merged notes: {', '.join(res.notes_merged)}")
    for why in res.notes_refused:
        warn(f"refused notes {why}")
    say(f"see them with `logist job list --remote {res.remote}`")
    return 0


def adopt(id: str, /, *, remote: str | None = None,
          json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Take a job fetched from a remote to work on here: local branch, worktree, record.

    Fetches first; refuses while a worker on the remote holds the job and its lease has not
    expired. The record then says where the job came from (origin "remote:<R>") and whether
    its commands are trusted here (never because the remote says so: see `logist job trust`).

    Parameters
    ----------
    id
        The job.
    remote
        The remote (default: the upstream remote, else origin).
    json_
        Print the result as JSON.
    """
    from logist.git.refs import validate_job_id
    from logist.share.adopt import adopt as do_adopt

    res = do_adopt(cli.store(), validate_job_id(id), remote)
    if json_:
        emit_json(res.__dict__)
        return 0
    what = {"created": "adopted", "fast-forward": "updated (fast-forward)",
            "up-to-date": "already up to date", "ahead": "already ahead of the remote"}.get(res.action, res.action)
    say(f"{res.job_id}: {what} from {res.remote}; {res.state} at {res.tip[:12]}")
    say(f"  worktree {res.worktree}")
    if not res.trusted:
        say(f"  its steps run commands that are not trusted here: review them with "
            f"`logist job trust {res.job_id}`")
    if res.state in ("PROVISIONING", "EXECUTING", "RECOVERING", "HARVESTING"):
        say(f"  it was interrupted in {res.state} where it ran before; "
            f"`logist job run {res.job_id}` resumes it here")
    return 0


def trust(id: str, /, *, remote: str | None = None, yes: bool = False) -> int:
    """Show the commands a job would run, then trust them in this clone.

    A job that came from a remote may name commands (command steps, extra CLI args or other
    options such as skip_permissions or env for an AI agent) or hold symlinks pointing out of
    its worktree or into .git; logist does not execute it until you trust the job here. The
    trust is pinned to what is shown: if it changes, the job is untrusted again. Without a local branch
    (a job only fetched) the trust is remembered for when a worker or `job adopt` takes it.

    Parameters
    ----------
    id
        The job.
    remote
        Read the job as fetched from this remote (default: the local branch if there is one).
    yes
        Do not ask for confirmation (asked only on a terminal).
    """
    import json

    from logist.git.refs import validate_job_id
    from logist.share.trust import trust_candidates, trust_job

    store = cli.store()
    job_id = validate_job_id(id)
    info, _m = trust_candidates(store, job_id, remote)
    if not info.commands and not info.links:
        say(f"{job_id} runs no commands (mock or AI-agent prompts only): nothing to trust")
        return 0
    if info.commands:
        say(f"job {job_id} ({info.where}) runs these commands in its worktree:")
    for n, agent, argv in info.commands:
        say(f"  step {n} ({agent}): {json.dumps(argv)}")
    if info.links:
        say(f"job {job_id} ({info.where}) has symlinks that point out of its worktree or into "
            ".git (logist never writes through them; its agent could):")
    for why in info.links:
        say(f"  symlink {why}")
    if info.already:
        say(f"{job_id}: already trusted in this clone")
        return 0
    if not yes and sys.stdin.isatty():
        answer = input("trust them here? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            say("not trusted")
            return 1
    res = trust_job(store, job_id, remote)
    say(f"{job_id}: trusted in this clone"
        + (f" (commit {res.committed[:12]})" if res.committed else ""))
    return 0


def pr(id: str, /, *, remote: str | None = None, base: str | None = None, draft: bool = False,
       url_only: Annotated[bool, Parameter(name="--url")] = False,
       json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Push the job and its review branch logist-review/<id> (the work only: one commit per
    step, no .logist/ path) and open a pull request from the review branch (with `gh` when
    installed, else print the compare URL). The body has the job's prompt, a table of its steps
    (agent, outcome, cost, time) and `git log logist/<id>` for the full record. Run it again
    after a rerun or restep: the rebuilt review branch is pushed and updates the open pull request.

    Parameters
    ----------
    id
        The job.
    remote
        The remote (default: the upstream remote, else origin).
    base
        The branch to merge into (default: the remote's default branch).
    draft
        Open the pull request as a draft (gh only).
    url_only
        Do not call gh: push, then print the compare URL.
    json_
        Print {"id", "url", "via", "branch", "base"}.
    """
    from logist.engine.job_select import resolve_job
    from logist.share.pr import open_pr

    store = cli.store()
    res = open_pr(store, resolve_job(store, id), remote, base=base, draft=draft,
                  use_gh=not url_only)
    if res.note:
        warn(res.note)
    if json_:
        emit_json({"id": res.job_id, "url": res.url, "via": res.via, "branch": res.branch,
                   "base": res.base, "remote": res.remote})
        return 0
    if res.via == "gh":
        say(res.output or res.url or "pull request opened")
    elif res.url:
        say(f"pushed {res.branch} to {res.remote}; open the pull request at:")
        say(res.url)
    else:
        say(f"pushed {res.branch} to {res.remote}; {res.remote} is not a web forge, so there is "
            f"no compare page: review it with `git log {res.remote}/{res.branch}`")
    return 0


def hide_jobs(remote: str | None = None, /, *,
              undo: Annotated[bool, Parameter(negative="")] = False,
              prune: Annotated[bool, Parameter(negative="")] = False,
              json_: Annotated[bool, Parameter(name="--json", negative="")] = False) -> int:
    """Keep the remote's job branches out of plain `git fetch` in this clone (or back in).

    Adds the negative refspec ^refs/heads/logist/* to remote.<remote>.fetch, so `git fetch`,
    `git pull` and `git branch -a` skip the job branches; `logist fetch` still brings every
    job when you ask. Idempotent. A new clone can skip them from its first fetch:
    git init P && cd P && git remote add origin URL &&
    git config --add remote.origin.fetch '^refs/heads/logist/*' && git pull origin main

    Example: logist hide-jobs origin --prune

    Parameters
    ----------
    remote
        The remote (default: the current branch's upstream remote, else origin).
    undo
        Remove the refspec again: plain `git fetch` brings the job branches.
    prune
        Also delete the refs/remotes/<remote>/logist/* tracking refs earlier fetches left.
    json_
        Print {"remote", "hidden", "changed", "removed_tracking"}.
    """
    from logist.share.remote_view import set_job_branches_hidden
    from logist.share.remotes import resolve_remote

    store = cli.store()
    view = set_job_branches_hidden(store, resolve_remote(store, remote), not undo, prune=prune)
    if json_:
        emit_json(view.__dict__)
        return 0
    if view.hidden:
        say(f"{view.remote}: plain `git fetch` skips job branches now" if view.changed
            else f"{view.remote}: job branches were already hidden from plain `git fetch`")
        if view.removed_tracking:
            say(f"removed {view.removed_tracking} refs/remotes/{view.remote}/logist/* tracking ref(s)")
        say("`logist fetch` still brings them; `logist hide-jobs --undo` shows them again")
    else:
        say(f"{view.remote}: plain `git fetch` brings job branches again" if view.changed
            else f"{view.remote}: job branches were not hidden")
    return 0
