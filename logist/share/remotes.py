"""The remotes a clone shares jobs through: which remote to talk to, and the few git facts every
sharing command asks (a ref's value, ancestry, the refs under a prefix, the remote's default
branch). Layer 5: git only through :mod:`logist.git.gitcmd`; never prints."""

from __future__ import annotations

from logist.core.errors import RemoteError
from logist.git import refs
from logist.git.gitcmd import git, git_out
from logist.store.jobstore import JobStore

NETWORK_TIMEOUT = 600.0  # seconds a push, fetch or `gh` call may take


def rev(store: JobStore, ref: str) -> str | None:
    """The object a ref points at (not peeled), or None."""
    proc = git(["rev-parse", "-q", "--verify", "--end-of-options", ref], cwd=store.root, check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def is_ancestor(store: JobStore, a: str, b: str) -> bool:
    """True when commit ``a`` is reachable from commit ``b`` (a == b counts)."""
    if a == b:
        return True
    return git(["merge-base", "--is-ancestor", a, b], cwd=store.root, check=False).returncode == 0


def for_each_ref(store: JobStore, *prefixes: str) -> dict[str, str]:
    """{refname: oid} under the given prefixes."""
    if not prefixes:
        return {}
    out = git_out(["for-each-ref", "--format=%(objectname) %(refname)", "--", *prefixes],
                  cwd=store.root)
    result = {}
    for line in out.splitlines():
        oid, _, ref = line.partition(" ")
        if ref:
            result[ref] = oid
    return result


def error_line(text: str) -> str:
    """The line of git's output that says what went wrong (its last fatal:/error: line)."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    interesting = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (interesting or lines or ["(no output)"])[-1]


# --------------------------------------------------------------------------- remotes

def remote_names(store: JobStore) -> list[str]:
    return git_out(["remote"], cwd=store.root).split()


def resolve_remote(store: JobStore, remote: str | None = None) -> str:
    """The remote to talk to: ``remote``, else the current branch's upstream remote, else
    ``origin``, else the only remote. Always a validated, configured remote name."""
    names = remote_names(store)
    if remote:
        refs.validate_remote(remote)
        if remote not in names:
            raise RemoteError(f"no remote named {remote!r} in this repository",
                              hint="run `git remote -v` to list remotes, or `git remote add NAME URL`")
        return remote
    branch = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=store.root, check=False).stdout.strip()
    if branch:
        upstream = git(["config", "--get", f"branch.{branch}.remote"], cwd=store.root,
                       check=False).stdout.strip()
        if upstream in names:
            return refs.validate_remote(upstream)
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return refs.validate_remote(names[0])
    if not names:
        raise RemoteError("this repository has no remote to share jobs through",
                          hint="add one with `git remote add origin URL`")
    raise RemoteError(f"several remotes ({', '.join(names)}) and none is the upstream or 'origin'",
                      hint="name the remote: `logist push REMOTE`")


def default_remote(store: JobStore) -> str | None:
    """Like :func:`resolve_remote` without a name, but None when there is no remote."""
    try:
        return resolve_remote(store)
    except RemoteError:
        return None


def remote_url(store: JobStore, remote: str) -> str:
    return git_out(["remote", "get-url", "--", refs.validate_remote(remote)], cwd=store.root)


def remote_head(store: JobStore, remote: str) -> str | None:
    """The remote's default branch as this clone knows it: the ref ``<remote>/HEAD`` points at,
    else ``<remote>/main``, else ``<remote>/master`` (full ref names); None when none is here."""
    head = git(["symbolic-ref", "-q", "--end-of-options", f"refs/remotes/{remote}/HEAD"],
               cwd=store.root, check=False).stdout.strip()
    if head and rev(store, head):
        return head
    for name in ("main", "master"):
        if rev(store, f"refs/remotes/{remote}/{name}"):
            return f"refs/remotes/{remote}/{name}"
    return None


def remote_default_branch(store: JobStore, remote: str) -> str:
    """The name, on the remote, of its default branch (what pull requests target); "main" when
    this clone does not know it."""
    head = remote_head(store, remote)
    prefix = f"refs/remotes/{remote}/"
    return head[len(prefix):] if head and head.startswith(prefix) else "main"
