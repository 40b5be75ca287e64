"""`logist hook NAME [ARGS...]` (hidden): what the installed git hook shims call."""

from __future__ import annotations

from logist import cli


def hook(name: str, /, *args: str) -> int:
    """Run logist's part of a git hook (post-merge, post-rewrite): clean up integrated jobs.

    Quiet, never prompts, and always exits 0 so it never fails the user's git command.

    Parameters
    ----------
    name
        The hook: post-merge or post-rewrite.
    args
        The hook's own arguments (post-rewrite: "rebase" or "amend").
    """
    from logist.share.cleanup import run_hook

    try:
        run_hook(name, list(args), cli.CWD)
    except BaseException:
        pass
    return 0
