"""A hostile remote: jobs fetched from it are data, never a way out of their worktree.

Two clones and a bare remote. Clone ``a`` plays the attacker: it pushes job branches that commit
symlinks pointing out of the worktree (``hk -> ../../../hooks``, an absolute link, a link into a
``.git``) and mock ``writes`` through them, or options that change what runs. Clone ``b`` fetches
them. Each case checks, with git itself, that nothing outside the worktree was written, that the
job does not run untrusted (exit code, message), and that ``logist doctor`` names it.
See docs/sharing.md ("Trust").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _sharekit import Net, lg, manifest_at, refs_snapshot
from conftest import git

HOOK = "#!/bin/sh\necho PWNED > {marker}\n"


def mock_toml(title: str, writes: dict[str, str], **step) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in step.items())
    w = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in writes.items())
    return (f'title = "{title}"\nagent = "mock"\n[[steps]]\nname = "w"\nprompt = "write"\n{extra}'
            f"[steps.mock]\nwrites = {{ {w} }}\n")


def create(repo: Path, toml: str) -> str:
    f = repo.parent / f"job-{abs(hash(toml)) % 10**8}.toml"
    f.write_text(toml)
    return lg(repo, "job", "create", "--file", f, "--activate").out.strip()


def commit_links(repo: Path, job_id: str, links: dict[str, str]) -> str:
    """The attacker commits symlinks on the job branch (plumbing: no worktree needed)."""
    tip = git(repo, "rev-parse", f"logist/{job_id}")
    env_index = repo.parent / f"idx-{job_id}"
    env = {**os.environ, "GIT_INDEX_FILE": str(env_index)}
    import subprocess

    def g(*args, input=None):
        return subprocess.run(["git", "-C", str(repo), *args], env=env, input=input, text=True,
                              capture_output=True, check=True).stdout.strip()

    g("read-tree", tip)
    for path, target in links.items():
        blob = g("hash-object", "-w", "--stdin", input=target)
        g("update-index", "--add", "--cacheinfo", f"120000,{blob},{path}")
    tree = g("write-tree")
    new = g("commit-tree", tree, "-p", tip, "-m", "add links")
    git(repo, "update-ref", f"refs/heads/logist/{job_id}", new, tip)
    return new


def climb_to(target: Path) -> str:
    """A relative link text that reaches ``target`` from any worktree less than 40 levels deep
    (what an attacker who knows the victim's path would commit)."""
    return "../" * 40 + str(target).lstrip("/")


def attack(net: Net, links: dict[str, str], writes: dict[str, str], **step) -> tuple[str, Path]:
    jid = create(net.a, mock_toml("evil", writes, **step))
    commit_links(net.a, jid, links)
    lg(net.a, "push")
    b = net.clone("b")
    return jid, b


def hooks_snapshot(repo: Path) -> dict[str, bytes]:
    hooks = repo / ".git" / "hooks"
    return {p.name: p.read_bytes() for p in sorted(hooks.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind", ["as-found", "relative", "absolute", "chain"])
def test_symlinked_mock_writes_never_leave_the_worktree(net, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "pwned"
    hooks = climb_to(net.tmp / "b" / ".git" / "hooks")
    links = {"as-found": {"hk": "../../../hooks"},  # .git/hooks from .git/logist/worktrees/<id>
             "relative": {"hk": hooks},
             "absolute": {"hk": str(outside)},
             "chain": {"a": "b/..", "b": "c", "hk": "a/../" + hooks}}[kind]
    jid, b = attack(net, links, {"hk/post-merge": HOOK.format(marker=marker)})
    hooks_before = hooks_snapshot(b)
    res = lg(b, "job", "adopt", jid, "--json").json()
    assert res["trusted"] is False  # a mock job, but its tree has a link out of the worktree
    m = manifest_at(b, f"logist/{jid}", jid)
    assert m["trusted"] is False and m["origin"] == "remote:origin"
    body = git(b, "log", "-1", "--format=%B", f"logist/{jid}")
    assert "Symlink out of the worktree: hk ->" in body
    before = refs_snapshot(b)
    r = lg(b, "job", "run", jid, code=1)
    assert "not executed until you trust the job" in r.err and "symlinks" in r.err
    assert refs_snapshot(b) == before  # refused before anything was written
    # doctor names it; `job trust` shows the link
    d = lg(b, "doctor", "--json", code=1).json()
    found = [f for f in d["findings"] if f["kind"] == "dangerous-symlink"]
    assert found and found[0]["job"] == jid and "hk ->" in found[0]["message"]
    t = lg(b, "job", "trust", jid, "--yes")
    assert "symlink hk ->" in t.out
    # trusted by the user, the mock's write through the link is still refused (exit 6: a person)
    lg(b, "job", "run", jid, code=6)
    st = lg(b, "job", "status", jid, "--json").json()
    assert st["state"] == "INTERVENTION_REQUIRED"
    assert "never writes through a symlink" in lg(b, "job", "log", jid).out
    assert hooks_snapshot(b) == hooks_before
    assert list(outside.iterdir()) == [] and not marker.exists()
    git(b, "pull", "-q", "origin", "main")  # a hook would run here
    assert not marker.exists()
    assert git(b, "fsck", "--no-dangling") == ""


def test_link_into_a_dot_git_is_refused_and_flagged(net):
    jid, b = attack(net, {"sub/g": "../.git", "ok": "docs/readme"}, {"sub/g/config": "x"})
    res = lg(b, "job", "adopt", jid, "--json").json()
    assert res["trusted"] is False
    d = lg(b, "doctor", "--json", code=1).json()
    msgs = [f["message"] for f in d["findings"] if f["kind"] == "dangerous-symlink"]
    assert len(msgs) == 1 and "sub/g -> ../.git" in msgs[0] and "into a .git" in msgs[0]


def test_worker_skips_a_job_with_a_link_out_of_its_worktree(net, tmp_path):
    marker = tmp_path / "pwned"
    jid, b = attack(net, {"hk": climb_to(net.tmp / "b" / ".git" / "hooks")},
                    {"hk/post-merge": HOOK.format(marker=marker)})
    hooks_before = hooks_snapshot(b)
    r = lg(b, "worker", "--until-idle", "--json")
    rep = json.loads(r.out)
    assert jid in rep["untrusted"] and not rep["runs"]
    assert hooks_snapshot(b) == hooks_before and not marker.exists()
    assert git(b, "branch", "--list", f"logist/{jid}") == ""  # never adopted


def test_an_inside_link_needs_no_trust(net):
    jid, b = attack(net, {"docs/link": "../README.md", "l2": "docs"}, {"out.txt": "ok"})
    res = lg(b, "job", "adopt", jid, "--json").json()
    assert res["trusted"] is True
    lg(b, "job", "run", jid)
    assert lg(b, "job", "status", jid, "--json").json()["state"] == "SUCCESS"
    assert git(b, "show", f"logist/{jid}:out.txt") == "ok"


@pytest.mark.parametrize("option,value", [("skip_permissions", True), ("args", ["--mcp-config", "x.json"])])
def test_options_that_change_what_runs_need_trust(net, option, value):
    toml = (f'title = "opts"\n[[steps]]\nname = "s"\nprompt = "p"\nagent = "claude"\n'
            f"{option} = {json.dumps(value)}\n")
    jid = create(net.a, toml)
    lg(net.a, "push")
    b = net.clone("b")
    assert lg(b, "job", "adopt", jid, "--json").json()["trusted"] is False
    before = refs_snapshot(b)
    r = lg(b, "job", "run", jid, code=1)
    assert "not executed until you trust the job" in r.err
    assert refs_snapshot(b) == before
    shown = lg(b, "job", "trust", jid, "--remote", "origin", "--yes").out
    assert option in shown or str(value[0]) in shown


def test_a_model_choice_needs_no_trust(net):
    toml = 'title = "model"\n[[steps]]\nname = "s"\nprompt = "p"\nagent = "claude"\nmodel = "sonnet"\n'
    jid = create(net.a, toml)
    lg(net.a, "push")
    b = net.clone("b")
    assert lg(b, "job", "adopt", jid, "--json").json()["trusted"] is True
