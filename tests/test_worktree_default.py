"""Job worktrees live outside the repository's git directory by default
(docs/agents.md#where-the-agent-works): agent CLIs refuse to write under ``.git``. A job whose
worktree git knows somewhere else (made before the setting changed) keeps it."""

from __future__ import annotations

import os
from pathlib import Path

from _core import create_job
from conftest import git, wtdir

from logist.store.jobstore import default_worktrees_dir


def test_default_worktree_is_outside_the_git_dir_and_per_clone(cli, tmp_path):
    job_id = create_job(cli, "--title", "Where", "--step", "x", "--activate")
    status = cli.ok("job", "status", job_id, "--json").json()
    wt = Path(status["worktree"])
    assert not status["worktree_exists"] and Path(cli.ok("job", "path", job_id).out.strip()) == wt
    assert wt == wtdir(cli.repo) / job_id
    assert ".git" not in wt.parts and cli.repo not in wt.parents
    assert wt.parent.parent == Path(os.environ["XDG_DATA_HOME"]) / "logist" / "worktrees"
    assert wt.parent.name.startswith(cli.repo.name + "-")
    # git agrees, and another clone of the same project gets its own folder
    assert f"worktree {wt}\n" in git(cli.repo, "worktree", "list", "--porcelain") + "\n"
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(cli.repo), str(clone))
    assert default_worktrees_dir(clone / ".git") != default_worktrees_dir(cli.repo / ".git")
    cli.ok("job", "run", job_id)
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"


def test_a_worktree_made_elsewhere_keeps_working_after_the_setting_changes(cli):
    cfg = cli.repo / ".logist" / "config.toml"
    original = cfg.read_text()
    cfg.write_text(original.replace('dir = ""', 'dir = "../old-worktrees"'))
    job_id = create_job(cli, "--title", "Old place", "--step", "x", "--activate")
    old = cli.repo.parent / "old-worktrees" / job_id
    assert Path(cli.ok("job", "path", job_id).out.strip()) == old
    assert Path(cli.ok("job", "status", job_id, "--json").json()["worktree"]) == old
    cfg.write_text(original)  # back to the default: the job's worktree stays where git has it
    assert Path(cli.ok("job", "status", job_id, "--json").json()["worktree"]) == old
    assert git(old, "rev-parse", "--abbrev-ref", "HEAD") == f"logist/{job_id}"
    cli.ok("job", "run", job_id)  # runs in it, then gives it back
    assert cli.ok("job", "status", job_id, "--json").json()["state"] == "SUCCESS"
    assert not (wtdir(cli.repo) / job_id).exists() and not old.exists()
    # made again, it goes where new worktrees go now
    assert Path(cli.ok("job", "path", job_id).out.strip()) == wtdir(cli.repo) / job_id


def test_job_status_finds_a_configured_dir_without_a_worktree(cli, tmp_path):
    """A job with no worktree shows where it would go: the configured dir, however the config
    spells it (read without the config models only when no file can set the key)."""
    job_id = create_job(cli, "--title", "Nowhere yet", "--step", "x")
    assert cli.ok("job", "status", job_id, "--json").json()["worktree"] == str(wtdir(cli.repo) / job_id)
    local = cli.repo / ".logist" / "config.local.toml"
    for text in ('worktrees.dir = "../wt-a"\n', "[worktrees]\n'dir' = '../wt-a'\n",
                 '[worktrees]\ndir = """../wt-a"""\n'):
        local.write_text(text)
        st = cli.ok("job", "status", job_id, "--json").json()
        assert st["worktree"] == str(cli.repo.parent / "wt-a" / job_id) and not st["worktree_exists"], text
