"""`logist init`."""

from __future__ import annotations

from logist import cli
from logist.cli.output import say


def init() -> int:
    """Set up logist in this git repository (idempotent).

    Creates .logist/config.toml from the template, makes `git log` show logist's notes
    (notes.displayRef), installs the post-merge/post-rewrite hooks and ignores per-machine
    files in .git/info/exclude. Somebody else's hook is never renamed, rewritten or deleted:
    next to pre-commit's hook the shim goes to <hook>.legacy (which pre-commit runs); for any
    other hook, or a core.hooksPath outside .git (.githooks/, husky), init prints the one line
    to add to it and `logist doctor` tells whether it is there.
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
        _manual_hooks(report)
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
    _manual_hooks(report)
    say("next: logist job create --title \"...\" --step \"...\" --activate")
    return 0


def _manual_hooks(report) -> None:
    for w in report.manual:
        where = w.edit or (w.hooks_dir / w.name)
        owner = "somebody else's hook" if w.managed else f"hooks in {w.hooks_dir} (core.hooksPath)"
        say(f"  hook     {w.name}: not installed ({w.how}); logist never changes {owner}")
        todo = f"add this line to {where}" if where.exists() else f"create {where} (#!/bin/sh, executable) with"
        say(f"           for `git pull` to clean up merged jobs, {todo}:")
        say(f"           {w.line}")
