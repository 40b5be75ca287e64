"""`logist doctor [--fix]`."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from logist import cli
from logist.cli.output import emit_json, say


def doctor(*, fix: bool = False, remote: str | None = None,
           json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Check config, worktrees, branches, records, locks and notes; print the exact fix for each.

    Finds hooks that do not run logist (a core.hooksPath or another tool's hook logist may not
    change: the line to add), invalid settings in .logist/config.toml (bad observer regexes,
    unknown or mistyped sentinel settings: what `logist job create` refuses), missing, orphaned,
    locked and emptied worktrees, dead locks, stale *.lock files left by killed git processes,
    jobs with history the remote lacks (as of the last `logist fetch`) and notes that diverged
    from the remote. --fix applies the fixes that are safe to automate (never removing
    uncommitted work). Exit 0 when nothing is wrong (after the fixes).

    Parameters
    ----------
    fix
        Apply the fixes.
    remote
        The remote to compare with (default: the upstream remote, else origin).
    json_
        Print the findings as JSON.
    """
    from logist.git.refs import validate_remote
    from logist.share.doctor import diagnose
    from logist.share.doctor import fix as apply_fixes

    store = cli.store()
    if remote:
        validate_remote(remote)
    report = diagnose(store, remote=remote)
    if fix:
        apply_fixes(report)
    if json_:
        emit_json({"remote": report.remote, "hooks": report.hooks, "findings": [f.to_dict() for f in report.findings],
                   "problems": len(report.problems)})
        return 1 if report.problems else 0
    if not report.findings:
        say("no problems found")
        return 0
    for f in report.findings:
        tag = "info" if f.severity == "info" else f.kind
        say(f"[{tag}] {f.message}")
        if f.fixed:
            say(f"  fixed: {f.fixed}")
        elif f.error:
            say(f"  could not fix: {f.error}")
            say(f"  fix by hand: {f.fix}")
        else:
            say(f"  fix: {f.fix}" + ("" if f.apply or f.severity == "info" else "  (by hand)"))
    left = report.problems
    if left and not fix and any(f.apply for f in left):
        say("\nrun `logist doctor --fix` to apply the automatic fixes")
    return 1 if left else 0
