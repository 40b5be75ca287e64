"""`logist hook NAME [ARGS...]` (hidden): what the installed git hook shims call."""

from __future__ import annotations

import sys

from logist import cli


def hook(name: str, /, *args: str) -> int:
    """Run logist's part of a git hook (post-merge, post-rewrite): clean up integrated jobs.

    After a merge that brought a job's record (.logist/jobs/) into the current branch, warn
    once, with how to undo it. Otherwise quiet, never prompts, and always exits 0 so it never
    fails the user's git command.

    Parameters
    ----------
    name
        The hook: post-merge or post-rewrite.
    args
        The hook's own arguments (post-rewrite: "rebase" or "amend").
    """
    from logist.share.hooks import run_hook

    try:
        if name == "post-merge":
            from logist.share.review import post_merge_warning

            text = post_merge_warning(cli.CWD)
            if text:
                _tell(text)
        run_hook(name, list(args), cli.CWD)
    except BaseException:
        pass
    return 0


def _tell(text: str) -> None:
    """On stderr (the shims silence it; the next `logist job list`/`job status` shows it)."""
    print(text, file=sys.stderr)
