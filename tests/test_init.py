"""`logist init` (docs/cli.md#logist-init): template, notes config, hooks next to other hooks, excludes;
idempotent; from a subdirectory and a linked worktree; refused outside a repo and in a bare one."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from _core import Cli, no_traceback, refs_snapshot, tree_digest, write
from conftest import git, run_cli, wait_for

from logist.share.install import data_dir, wire_line


def config_values(repo: Path, key: str) -> list[str]:
    proc = subprocess.run(["git", "-C", str(repo), "config", "--get-all", key], capture_output=True, text=True)
    return proc.stdout.split()


def everything_init_touches(repo: Path) -> dict:
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    top = Path(git(repo, "rev-parse", "--show-toplevel"))
    return {
        "project": tree_digest(top / ".logist") if (top / ".logist").exists() else {},
        "config": (common / "config").read_text(),
        "hooks": tree_digest(common / "hooks"),
        "hook_modes": {p.name: p.stat().st_mode for p in sorted((common / "hooks").iterdir())},
        "exclude": (common / "info" / "exclude").read_text(),
        "refs": refs_snapshot(repo),
    }


@pytest.fixture
def logist(capsys):
    return Cli(capsys, None)


def test_init_sets_everything_up(repo, logist):
    r = logist.ok("-C", repo, "init")
    template = data_dir("template")
    shipped = {p.relative_to(template).as_posix() for p in template.rglob("*") if p.is_file()}
    assert ".logist/config.toml" in shipped
    for rel in shipped:
        assert (repo / rel).read_bytes() == (template / rel).read_bytes(), rel
    assert "refs/notes/logist/*" in config_values(repo, "notes.displayRef")
    assert "refs/notes/logist/*" in config_values(repo, "notes.rewriteRef")
    for hook in sorted(p.name for p in data_dir("hooks").iterdir()):
        dest = repo / ".git" / "hooks" / hook
        assert dest.is_file() and dest.stat().st_mode & stat.S_IXUSR, hook
        assert "logist hook shim" in dest.read_text()
        assert "@PYTHON@" not in dest.read_text() and "@COMMON@" not in dest.read_text()
    assert ".logist/config.local.toml" in (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert "config.toml" in r.out
    # the config the template ships is valid for the store
    from logist.store.jobstore import JobStore

    store = JobStore.discover(repo)
    assert store.is_initialized() and store.config.default_agent == "mock"


def test_git_log_shows_logist_notes_after_init(repo, logist):
    logist.ok("-C", repo, "init")
    git(repo, "notes", "--ref=refs/notes/logist/logs", "add", "-m", "step output here", "HEAD")
    assert "step output here" in git(repo, "log", "-1")


def test_init_is_idempotent(repo, logist):
    logist.ok("-C", repo, "init")
    before = everything_init_touches(repo)
    r = logist.ok("-C", repo, "init")
    assert "already set up" in r.out
    assert everything_init_touches(repo) == before
    assert config_values(repo, "notes.displayRef").count("refs/notes/logist/*") == 1
    assert (repo / ".git" / "info" / "exclude").read_text().count(".logist/config.local.toml") == 1


def test_init_keeps_user_edits(repo, logist):
    logist.ok("-C", repo, "init")
    cfg = repo / ".logist" / "config.toml"
    cfg.write_text(cfg.read_text() + "\n# my edit\n")
    logist.ok("-C", repo, "init")
    assert cfg.read_text().endswith("# my edit\n")


def test_init_from_a_subdirectory(repo, logist):
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    logist.ok("-C", sub, "init")
    assert (repo / ".logist" / "config.toml").is_file()
    assert not (sub / ".logist").exists()
    assert (repo / ".git" / "hooks" / "post-merge").is_file()
    before = everything_init_touches(repo)
    logist.ok("-C", sub, "init")
    assert everything_init_touches(repo) == before


def test_init_from_a_linked_worktree(repo, logist, tmp_path):
    """The config belongs to the project: init from a linked worktree (or a subdirectory of
    one) writes it into the main work tree, where every worktree finds it; idempotent from any."""
    from logist.store.jobstore import JobStore

    linked = tmp_path / "linked"
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    git(repo, "worktree", "add", "-q", "-b", "other", str(other))
    sub = linked / "src" / "deep"
    sub.mkdir(parents=True)
    r = logist.ok("-C", sub, "init")
    assert f"logist set up in {repo}" in r.out and "main work tree" in r.out
    # hooks and config live in the common git dir, shared by every worktree
    assert (repo / ".git" / "hooks" / "post-merge").is_file()
    assert not (repo / ".git" / "worktrees" / "linked" / "hooks").exists()
    assert "refs/notes/logist/*" in config_values(repo, "notes.displayRef")
    assert ".logist/config.local.toml" in (repo / ".git" / "info" / "exclude").read_text()
    # the project's files: in the main work tree, not in the linked one nor the subdirectory
    template = data_dir("template")
    for rel in (p.relative_to(template) for p in template.rglob("*") if p.is_file()):
        assert (repo / rel).read_bytes() == (template / rel).read_bytes(), rel
    assert not (linked / ".logist").exists() and not (sub / ".logist").exists()
    # every worktree (and the main one) finds it
    for where in (repo, linked, sub, other):
        store = JobStore.discover(where)
        assert store.is_initialized(), where
        assert store.config_root() == repo, where
    # idempotent from each of them
    before = everything_init_touches(repo)
    for where in (linked, sub, other, repo):
        r = logist.ok("-C", where, "init")
        assert f"logist is already set up in {repo}" in r.out, r.out
        assert everything_init_touches(repo) == before
    assert not (other / ".logist").exists()
    # jobs can be created from the linked worktree, and are seen from the main one
    r = logist.ok("-C", linked, "job", "create", "--title", "From linked", "--step", "x", "--json")
    jid = r.json()["id"]
    assert git(repo, "rev-parse", "--verify", f"logist/{jid}")
    assert logist.ok("-C", repo, "job", "status", jid, "--json").json()["id"] == jid


def test_init_in_a_linked_worktree_of_a_bare_repository(repo, logist, tmp_path):
    """No main work tree: the config goes where the store reads it, the work tree init runs in."""
    from logist.store.jobstore import JobStore

    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    wt = tmp_path / "wt"
    git(bare, "worktree", "add", "-q", str(wt), "main")
    logist.ok("-C", wt, "init")
    assert (wt / ".logist" / "config.toml").is_file()
    assert not (bare / ".logist").exists() and not (tmp_path / ".logist").exists()
    assert JobStore.discover(wt).is_initialized()
    assert "already set up" in logist.ok("-C", wt, "init").out


def test_an_existing_hook_is_never_renamed_or_rewritten(repo, logist, tmp_path):
    marker = tmp_path / "user-hook-ran"
    hook = repo / ".git" / "hooks" / "post-merge"
    original = f"#!/bin/sh\necho \"$1\" > '{marker}'\n"
    write(hook, original)
    hook.chmod(0o755)
    r = logist.ok("-C", repo, "init")
    assert hook.read_text() == original
    assert not hook.with_name("post-merge.legacy").exists()
    assert wire_line("post-merge") in r.out and str(hook) in r.out
    # the post-rewrite slot was free: logist's shim is the hook
    assert "logist hook shim" in (repo / ".git/hooks/post-rewrite").read_text()
    d = logist("-C", repo, "doctor")
    assert d.code == 0 and "post-merge hook does not run logist" in d.out  # info, not a problem
    # the person adds the line; a real merge runs their hook, which runs logist's shim
    write(hook, original + wire_line("post-merge") + "\n")
    assert "post-merge hook does not run logist" not in logist("-C", repo, "doctor").out
    r = logist.ok("-C", repo, "init")
    assert "already set up" in r.out and wire_line("post-merge") not in r.out
    git(repo, "checkout", "-q", "-b", "topic")
    write(repo / "topic.txt", "t\n")
    git(repo, "add", "topic.txt")
    git(repo, "commit", "-q", "-m", "topic")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")
    assert marker.read_text().strip() == "0"  # post-merge's argument: not a squash merge
    log = repo / ".git/logist/hooks.log"
    wait_for(lambda: log.exists() and "checked refs/heads/main" in log.read_text(), what="the hook's run")


def test_a_hook_an_older_logist_renamed_gets_its_name_back(repo, logist):
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    user = "#!/bin/sh\necho user hook\n"
    write(hooks / "post-merge.legacy", user)
    write(hooks / "post-merge", "#!/bin/sh\n# logist hook shim, installed by an older logist\n"
          'exec "$(dirname -- "$0")/post-merge.legacy" "$@"\n')
    r = logist.ok("-C", repo, "init")
    assert (hooks / "post-merge").read_text() == user
    assert not (hooks / "post-merge.legacy").exists()
    assert "back at post-merge" in r.out and wire_line("post-merge") in r.out


def test_hooks_path_inside_the_work_tree_is_never_modified(repo, logist):
    hooks = repo / ".githooks"
    write(hooks / "post-merge", "#!/bin/sh\necho team hook\n")
    (hooks / "post-merge").chmod(0o755)
    git(repo, "add", ".githooks")
    git(repo, "commit", "-q", "-m", "team hooks")
    git(repo, "config", "core.hooksPath", ".githooks")
    before = tree_digest(hooks)
    r = logist.ok("-C", repo, "init")
    assert tree_digest(hooks) == before and not (hooks / "post-rewrite").exists()
    assert git(repo, "status", "--porcelain", "--", ".githooks") == ""
    assert "never changes hooks in" in r.out and wire_line("post-merge") in r.out
    # logist's own copy is where the line looks for it
    own = repo / ".git/logist/hooks/post-merge"
    assert "logist hook shim" in own.read_text() and os.access(own, os.X_OK)
    out = logist("-C", repo, "doctor", "--json").out
    import json
    assert json.loads(out)["hooks"]["post-merge"]["wired"] is False
    write(hooks / "post-merge", "#!/bin/sh\necho team hook\n" + wire_line("post-merge") + "\n")
    assert json.loads(logist("-C", repo, "doctor", "--json").out)["hooks"]["post-merge"]["wired"] is True


def _one_line_error(err: str) -> None:
    no_traceback(err)
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("logist: error: "), err
    assert all(line.startswith("  hint: ") for line in lines[1:]), err
    assert len(lines) <= 2, err


def test_init_outside_a_repository(tmp_path):
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    r = run_cli("init", cwd=outside, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert r.returncode == 1, r
    assert "not a git repository" in r.stderr
    _one_line_error(r.stderr)
    assert list(outside.iterdir()) == []


def test_init_in_a_bare_repository(tmp_path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    before = tree_digest(bare)
    r = run_cli("init", cwd=bare)
    assert r.returncode == 1, r
    assert "bare" in r.stderr
    _one_line_error(r.stderr)
    assert tree_digest(bare) == before
    r = run_cli("-C", bare, "init", cwd=tmp_path)
    assert r.returncode == 1 and "bare" in r.stderr


def test_init_inside_the_git_dir_is_refused(repo, logist):
    r = logist("-C", repo / ".git", "init")
    assert r.code == 1
    _one_line_error(r.err)


def test_data_dir_finds_hooks_and_template():
    assert (data_dir("hooks") / "post-merge").is_file()
    assert (data_dir("template") / ".logist" / "config.toml").is_file()
