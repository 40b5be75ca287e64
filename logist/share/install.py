"""`logist init`: set a repository up for logist. Idempotent: a second run changes nothing.

- copies `.logist-template/` into the project (files that do not exist yet): into the main
  work tree, wherever init runs from (a subdirectory, a linked worktree), because that is where
  every worktree of the repository reads `.logist/config.toml` from (``JobStore.config_root``);
  only a repository without a main work tree (a bare one with linked worktrees) gets them in
  the work tree init runs in;
- sets `notes.displayRef` and `notes.rewriteRef` so `git log` shows logist's notes and
  rewrites carry them along;
- installs the hook shims from `hooks/` into the common git dir, chaining to a hook that is
  already there (moved to `<hook>.legacy`, as pre-commit does);
- adds per-machine paths to `.git/info/exclude`.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from logist.git.gitcmd import git, git_out
from logist.store.jobstore import RepoPaths

SHIM_MARKER = "logist hook shim"
EXCLUDES = (".logist/config.local.toml",)
NOTES_GLOB = "refs/notes/logist/*"


def data_dir(name: str) -> Path:
    """hooks/ or template/: inside the installed package, or at the top of a source checkout."""
    pkg = Path(__file__).resolve().parents[1]
    installed = pkg / "_data" / name
    if installed.is_dir():
        return installed
    source = pkg.parent / {"hooks": "hooks", "template": ".logist-template"}[name]
    if source.is_dir():
        return source
    raise FileNotFoundError(f"logist's {name} data is missing from the installation ({installed})")


@dataclass
class InitReport:
    project: Path | None = None  # the work tree the project's files (.logist/...) belong to
    created: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.config or self.hooks or self.excludes)


def project_root(paths: RepoPaths) -> Path:
    """The work tree the project's files belong to: the main work tree, which
    ``JobStore.config_root()`` falls back to from any worktree without its own
    ``.logist/config.toml`` (a non-bare repository: its common dir is ``<main>/.git``); else
    (a bare repository with linked worktrees) the work tree logist runs in."""
    common = paths.common_dir
    main = common.parent
    if common.name == ".git" and (main / ".git").is_dir():
        try:
            if (main / ".git").resolve() == common.resolve():
                return main
        except OSError:
            pass
    return paths.root


def init_repo(paths: RepoPaths) -> InitReport:
    root = project_root(paths)
    report = InitReport(project=root)
    _copy_template(root, report)
    _configure(paths.root, report)
    _install_hooks(paths, report)
    _exclude(paths, report)
    (paths.logist_dir).mkdir(parents=True, exist_ok=True)
    return report


def _copy_template(root: Path, report: InitReport) -> None:
    template = data_dir("template")
    for src in sorted(template.rglob("*")):
        if src.is_dir():
            continue
        rel = src.relative_to(template)
        dest = root / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        report.created.append(str(rel))


def _configure(root: Path, report: InitReport) -> None:
    for key in ("notes.displayRef", "notes.rewriteRef"):
        current = git(["config", "--get-all", key], cwd=root, check=False).stdout.split()
        if NOTES_GLOB not in current:
            git(["config", "--add", key, NOTES_GLOB], cwd=root)
            report.config.append(f"{key} += {NOTES_GLOB}")
    for key, value in (("notes.rewrite.amend", "true"), ("notes.rewrite.rebase", "true")):
        if git(["config", "--get", key], cwd=root, check=False).stdout.strip() == "":
            git(["config", key, value], cwd=root)
            report.config.append(f"{key} = {value}")


def _hooks_dir(paths: RepoPaths) -> Path:
    configured = git(["config", "--get", "core.hooksPath"], cwd=paths.root, check=False).stdout.strip()
    if configured:
        p = Path(os.path.expanduser(configured))
        return p if p.is_absolute() else paths.root / p
    return paths.common_dir / "hooks"


def _install_hooks(paths: RepoPaths, report: InitReport) -> None:
    hooks = _hooks_dir(paths)
    hooks.mkdir(parents=True, exist_ok=True)
    for src in sorted(data_dir("hooks").iterdir()):
        if not src.is_file():
            continue
        body = src.read_text().replace("@PYTHON@", sys.executable)
        dest = hooks / src.name
        if dest.exists():
            current = dest.read_text(errors="replace")
            if SHIM_MARKER in current:
                if current == body:
                    continue
            else:
                legacy = dest.with_name(dest.name + ".legacy")
                if not legacy.exists():
                    os.replace(dest, legacy)
                    report.hooks.append(f"{src.name}: existing hook kept as {legacy.name}")
        dest.write_text(body)
        dest.chmod(0o755)
        report.hooks.append(f"{src.name} installed")


def _exclude(paths: RepoPaths, report: InitReport) -> None:
    info = paths.common_dir / "info"
    info.mkdir(parents=True, exist_ok=True)
    exclude = info / "exclude"
    text = exclude.read_text() if exclude.exists() else ""
    lines = set(text.splitlines())
    missing = [e for e in EXCLUDES if e not in lines]
    if missing:
        with exclude.open("a") as fh:
            if text and not text.endswith("\n"):
                fh.write("\n")
            fh.write("# logist: per-machine files\n")
            for e in missing:
                fh.write(e + "\n")
        report.excludes.extend(missing)


def git_dir_of(root: Path) -> str:
    return git_out(["rev-parse", "--git-common-dir"], cwd=root)
