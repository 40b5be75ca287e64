"""`logist init`."""

from __future__ import annotations

from logist import cli
from logist.cli.output import say


def init() -> int:
    """Set up logist in this git repository (idempotent).

    Creates .logist/config.toml from the template, makes `git log` show logist's notes
    (notes.displayRef), installs the post-merge/post-rewrite hooks (an existing hook is kept
    and chained as <hook>.legacy) and ignores per-machine files in .git/info/exclude.
    Works from a subdirectory or a linked worktree: the config goes to the main work tree,
    where every worktree of the repository finds it. Refuses bare repositories.
    """
    from logist.share.install import init_repo
    from logist.store.jobstore import find_repo

    paths = find_repo(cli.CWD)
    report = init_repo(paths)
    where = report.project or paths.root
    if not report.changed:
        say(f"logist is already set up in {where}")
        return 0
    say(f"logist set up in {where}")
    if where != paths.root:
        say(f"  (the main work tree: every worktree of this repository, {paths.root} included, "
            "reads .logist/config.toml from there)")
    for line in report.created:
        say(f"  created  {line}")
    for line in report.config:
        say(f"  config   {line}")
    for line in report.hooks:
        say(f"  hook     {line}")
    for line in report.excludes:
        say(f"  exclude  {line}")
    say("next: logist job create --title \"...\" --step \"...\" --activate")
    return 0
