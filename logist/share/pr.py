"""`logist job pr`: push the job and its review branch, then open a pull request with `gh` (when
installed) or give the forge's compare URL (docs/sharing.md). Layer 5; never prints."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from logist.core.errors import LogistError, RemoteError, UsageError
from logist.core.jobid import JobId
from logist.git import refs
from logist.share.push import PushResult, push
from logist.share.remotes import NETWORK_TIMEOUT, error_line, remote_default_branch, remote_url, resolve_remote
from logist.store.jobstore import JobStore


@dataclass
class PrResult:
    job_id: JobId
    remote: str
    branch: str
    base: str
    url: str | None
    via: str  # "gh" or "url" or "none"
    output: str = ""
    pushed: PushResult | None = None
    note: str = ""  # about the review branch (e.g. kept with commits logist did not make)


def pr_text(store: JobStore, job_id: JobId) -> tuple[str, str]:
    """(title, markdown body): the job's title; its prompt, a table of its steps (agent,
    outcome, cost, time) and where its full record is."""
    tip, m = store.read(job_id)
    outcomes: dict[int, str] = {}
    try:
        for e in store.read_history(job_id):
            if e.outcome and e.step:
                outcomes[e.step] = e.outcome
    except LogistError:
        pass
    from logist.share.review import harvest_commits

    harvests = harvest_commits(store, job_id, tip)

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")[:200]

    lines = [f"Job `{m.id}`: {cell(m.title)}", ""]
    if m.prompt.strip():
        lines += ["> " + ln for ln in m.prompt.strip()[:4000].splitlines()] + [""]
    lines += ["| # | step | agent | outcome | cost | time | summary | commit |",
              "|---|---|---|---|---|---|---|---|"]
    for n, s in enumerate(m.steps, 1):
        commit = f"`{harvests[n][:12]}`" if n in harvests else "-"
        lines.append(f"| {n} | {cell(s.name)} | {cell(s.agent)} | {outcomes.get(n, s.status.value)} | "
                     f"${s.cost_usd:.4f} | {s.seconds:.1f}s | {cell(s.summary or s.reason or '-')} | {commit} |")
    lines += ["", f"State **{m.state.value}** · run {m.run} · cost ${m.cost_usd:.4f} · "
                  f"tokens {m.tokens} · time {m.seconds:.1f}s",
              "", f"This branch ({refs.review_name(job_id)}) carries only the work: one commit per step, "
                  "each with `Logist-Job`, `Logist-Step` and `Logist-Commit` trailers. Merge it any way "
                  "you like; in a squash message keep the `Logist-Job:` line, so `logist gc` knows "
                  "which job was merged.",
              "", f"The full record: `git log {refs.branch_name(job_id)}` (one commit per transition; "
                  f"`logist fetch` brings its notes). Head: `{tip[:12]}`."]
    return f"{m.title} [logist {m.id}]"[:250], "\n".join(lines) + "\n"


def web_base(url: str) -> tuple[str, str] | None:
    """(kind, https://host/owner/repo) of a remote URL on a web forge, or None."""
    import re

    u = url.strip()
    m = re.match(r"^(?:ssh://)?(?:[^@/]+@)?([A-Za-z0-9.-]+)(?::\d+)?[:/]([^\s]+?)(?:\.git)?/?$", u)
    if u.startswith(("http://", "https://")):
        m2 = re.match(r"^https?://(?:[^@/]+@)?([A-Za-z0-9.-]+(?::\d+)?)/([^\s?#]+?)(?:\.git)?/?$", u)
        if not m2:
            return None
        host, path = m2.group(1), m2.group(2)
    elif m and not u.startswith(("/", ".", "file:")) and "." in m.group(1):
        host, path = m.group(1), m.group(2)
    else:
        return None
    if "/" not in path or ".." in path:
        return None
    kind = "gitlab" if "gitlab" in host else "bitbucket" if "bitbucket" in host else "github"
    return kind, f"https://{host}/{path}"


def compare_url(url: str, base: str, branch: str) -> str | None:
    from urllib.parse import quote

    wb = web_base(url)
    if wb is None:
        return None
    kind, site = wb
    b, h = quote(base, safe="/"), quote(branch, safe="/")
    if kind == "gitlab":
        return (f"{site}/-/merge_requests/new?merge_request%5Bsource_branch%5D={h}"
                f"&merge_request%5Btarget_branch%5D={b}")
    if kind == "bitbucket":
        return f"{site}/pull-requests/new?source={h}&dest={b}"
    return f"{site}/compare/{b}...{h}?expand=1"


def open_pr(store: JobStore, job_id: JobId, remote: str | None = None, *, base: str | None = None,
            draft: bool = False, use_gh: bool = True) -> PrResult:
    """Push the job, then open a pull request with `gh` (when installed) or give the compare URL."""
    from logist.share.review import prepare_pr

    refs.validate_job_id(job_id)
    remote = resolve_remote(store, remote)
    review = prepare_pr(store, job_id)
    pushed = push(store, remote, [job_id])
    for ref in (refs.branch_ref(job_id), refs.review_ref(job_id)):
        if ref in pushed.conflicts:
            raise RemoteError(f"job {job_id} was not pushed: {pushed.conflicts[ref]}")
    base = base or remote_default_branch(store, remote)
    if base.startswith("-") or not base.strip():
        raise UsageError(f"invalid base branch {base!r}")
    branch = review.branch
    title, body = pr_text(store, job_id)
    url = compare_url(remote_url(store, remote), base, branch)
    gh = shutil.which("gh") if use_gh else None
    if gh:
        body_file = store.paths.logist_dir / "run" / f"pr-{job_id}.md"
        body_file.parent.mkdir(parents=True, exist_ok=True)
        body_file.write_text(body)
        # --opt=value: a title from a fetched record may start with "-"
        argv = [gh, "pr", "create", f"--head={branch}", f"--base={base}", f"--title={title}",
                f"--body-file={body_file}"]
        if draft:
            argv.append("--draft")
        from logist.git.gitcmd import base_env
        from logist.runtimes.programs import run_program

        try:
            proc = run_program(argv, cwd=store.root, env=base_env(), timeout=NETWORK_TIMEOUT)
        except OSError as exc:  # TimeoutError included
            raise RemoteError(f"gh pr create did not finish: {exc}",
                              hint=f"open it by hand: {url}" if url else None) from None
        finally:
            body_file.unlink(missing_ok=True)
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 and "already exists" in err:
            # the pull request is open: pushing the rebuilt review branch updated it
            link = next((w for w in err.split() if w.startswith("http")), url)
            return PrResult(job_id, remote, branch, base, link, "gh",
                            f"updated the open pull request for {branch}: {link or ''}".rstrip(": "),
                            pushed, review.message)
        if proc.returncode != 0:
            raise RemoteError(f"gh pr create failed: {error_line(err or out)}",
                              hint=f"open it by hand: {url}" if url else
                              f"the branch is pushed as {branch} on {remote}")
        out = out.strip()
        link = next((w for w in out.split() if w.startswith("http")), url)
        return PrResult(job_id, remote, branch, base, link, "gh", out, pushed, review.message)
    return PrResult(job_id, remote, branch, base, url, "url" if url else "none", "", pushed,
                    review.message)
