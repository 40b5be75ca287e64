"""What `logist doctor` found: each finding with the exact fix a person can run and, where that is
safe to automate, a function that applies it (`logist doctor --fix`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from logist.core.errors import LogistError
from logist.git.gitcmd import git
from logist.store.jobstore import JobStore


@dataclass
class Finding:
    kind: str
    message: str
    fix: str  # what to run
    job: str | None = None
    severity: str = "problem"  # "problem" or "info"
    apply: Callable[[], str] | None = field(default=None, repr=False)
    fixed: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "job": self.job, "severity": self.severity,
                "message": self.message, "fix": self.fix, "auto_fix": self.apply is not None,
                "fixed": self.fixed, "error": self.error}


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    remote: str | None = None
    hooks: dict[str, dict] = field(default_factory=dict)  # hook -> {"wired": bool, "how": str}

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem" and not f.fixed]


def git_fix(store: JobStore, argv: list[str], done: str) -> str:
    """Run git (``["-C", dir, ...]``: in ``dir``); ``done`` when it worked, else LogistError."""
    if argv and argv[0] == "-C":
        proc = git(argv[2:], cwd=argv[1], check=False)
    else:
        proc = git(argv, cwd=store.root, check=False)
    if proc.returncode != 0:
        raise LogistError(f"`git {' '.join(argv)}` failed: {proc.stderr.strip()}")
    return done
