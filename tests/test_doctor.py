"""`logist doctor [--fix]` (docs/sharing.md, doctor): worktrees vs branches and records, dead locks, stale
*.lock files, unpushed history and notes that diverged from the remote."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

from _sharekit import lg, make_job, remote_refs
from conftest import git, wtdir


def findings(repo, *args, code=None) -> dict:
    res = lg(repo, "doctor", "--json", *args, code=code)
    return res.json()


def kinds(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in report["findings"]:
        out.setdefault(f["kind"], []).append(f)
    return out


def test_healthy_repository(net):
    make_job(net.a, "Fine")
    lg(net.a, "push")
    res = lg(net.a, "doctor")
    assert res.out.strip() == "no problems found"


def test_missing_locked_and_emptied_worktrees(net):
    missing = make_job(net.a, "Missing", run=False)
    locked = make_job(net.a, "Locked", writes={"l.txt": "l\n"})
    emptied = make_job(net.a, "Emptied", writes={"e.txt": "e\n"})
    for jid in (missing, locked, emptied):  # worktrees made on demand (a finished job has none)
        lg(net.a, "job", "path", jid)
    shutil.rmtree(wtdir(net.a) / missing)
    git(net.a, "worktree", "lock", str(wtdir(net.a) / locked))
    for p in (wtdir(net.a) / emptied).iterdir():
        if p.name != ".git":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    rep = findings(net.a, code=1)
    k = kinds(rep)
    assert {f["job"] for f in k["missing-worktree-dir"]} == {missing}
    assert "missing-worktree" not in k  # a job that is not running gets its worktree when it needs one
    assert k["locked-worktree"][0]["fix"] == f"git worktree unlock {wtdir(net.a) / locked}"
    assert k["emptied-worktree"][0]["fix"] == f"git -C {wtdir(net.a) / emptied} checkout -- ."
    out = lg(net.a, "doctor", code=1).out
    assert "fix: git worktree unlock" in out and "logist doctor --fix" in out
    rep = findings(net.a, "--fix", code=0)
    assert all(f["fixed"] for f in rep["findings"] if f["severity"] == "problem"), rep
    assert str(wtdir(net.a) / missing) not in git(net.a, "worktree", "list", "--porcelain")  # pruned
    assert git(wtdir(net.a) / emptied, "status", "--porcelain") == ""
    assert (wtdir(net.a) / emptied / "e.txt").read_text() == "e\n"
    entry = git(net.a, "worktree", "list", "--porcelain").split(f"worktree {wtdir(net.a) / locked}\n")[1]
    assert "\nlocked" not in "\n" + entry.split("\n\n")[0]
    assert lg(net.a, "doctor").out.strip() == "no problems found"
    lg(net.a, "job", "run", missing)


def test_orphaned_worktrees_and_stray_directories(net):
    ghost = wtdir(net.a) / "ghost-job-1"
    git(net.a, "worktree", "add", "-q", "--detach", str(ghost), "HEAD")
    dirty_ghost = wtdir(net.a) / "dirty-ghost-1"
    git(net.a, "worktree", "add", "-q", "--detach", str(dirty_ghost), "HEAD")
    (dirty_ghost / "precious.txt").write_text("do not delete\n")
    stray = wtdir(net.a) / "stray-1"
    stray.mkdir()
    (stray / "file").write_text("x")
    (wtdir(net.a) / "empty-1").mkdir()
    k = kinds(findings(net.a, code=1))
    assert {f["job"] for f in k["orphaned-worktree"]} == {"ghost-job-1", "dirty-ghost-1"}
    # an empty directory that is no job's is someone's: reported, never removed
    assert [f["job"] for f in k["stray-directory"]] == ["empty-1", "stray-1"]
    assert "empty-worktree-dir" not in k
    assert not any("rm -r" in f["fix"] for f in k["stray-directory"])
    rep = findings(net.a, "--fix", code=1)  # the dirty orphan and the stray dirs need a person
    left = {f["job"] for f in rep["findings"] if not f["fixed"]}
    assert left == {"dirty-ghost-1", "stray-1", "empty-1"}
    assert not ghost.exists() and (wtdir(net.a) / "empty-1").is_dir()
    assert git(net.a, "rev-parse", "refs/logist/archive/ghost-job-1") == git(net.a, "rev-parse", "HEAD")
    assert (dirty_ghost / "precious.txt").read_text() == "do not delete\n"
    assert (stray / "file").exists()


def test_dead_locks_and_stale_lock_files(net):
    from logist.store.locks import Holder

    done = make_job(net.a, "Done")
    h = Holder(pid=2 ** 22 + 7, host=socket.gethostname(), boot_id="", start_time=None,
               command="logist job run", acquired_at=time.time(), heartbeat_at=time.time(),
               lease_seconds=120)
    blob = subprocess.run(["git", "-C", str(net.a), "hash-object", "-w", "--stdin"], input=h.to_bytes().decode(),
                          capture_output=True, text=True, check=True).stdout.strip()
    git(net.a, "update-ref", f"refs/logist/locks/{done}", blob)
    git(net.a, "update-ref", "refs/logist/locks/no-such-job", blob)
    lockfile = net.a / ".git/refs/heads/logist" / f"{done}.lock"
    lockfile.write_text("")
    old = time.time() - 600
    os.utime(lockfile, (old, old))
    fresh = net.a / ".git/refs/heads/fresh.lock"
    fresh.write_text("")
    k = kinds(findings(net.a, code=1))
    assert {f["job"] for f in k["dead-lock"]} == {done, "no-such-job"}
    assert [f["message"].split()[0] for f in k["stale-lock-file"]] == [str(lockfile)]
    # the stale lock file blocks every update of the branch
    assert lg(net.a, "job", "cancel", done, code=None).code != 0
    findings(net.a, "--fix", code=0)
    assert not lockfile.exists() and fresh.exists()
    assert git(net.a, "for-each-ref", "refs/logist/locks/") == ""
    fresh.unlink()
    assert lg(net.a, "doctor").out.strip() == "no problems found"


def test_interrupted_job_is_reported_with_recover(net):
    from logist.store.locks import Holder

    jid = make_job(net.a, "Interrupted", run=False)
    lg(net.a, "job", "path", jid)
    # make the tip say EXECUTING, held by a dead process
    path = wtdir(net.a) / jid / f".logist/jobs/{jid}/manifest.json"
    m = json.loads(path.read_text())
    m["state"] = "EXECUTING"
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    git(wtdir(net.a) / jid, "commit", "-q", "-am", "simulate a crash mid-step")
    h = Holder(pid=2 ** 22 + 9, host=socket.gethostname(), boot_id="", start_time=None, command="x",
               acquired_at=time.time(), heartbeat_at=time.time(), lease_seconds=120)
    blob = subprocess.run(["git", "-C", str(net.a), "hash-object", "-w", "--stdin"], input=h.to_bytes().decode(),
                          capture_output=True, text=True, check=True).stdout.strip()
    git(net.a, "update-ref", f"refs/logist/locks/{jid}", blob)
    k = kinds(findings(net.a, code=1))
    assert k["interrupted-job"][0]["fix"] == f"logist recover {jid}"
    assert not k["interrupted-job"][0]["auto_fix"]


def test_unpushed_history_and_diverged_notes(net):
    from logist.git.notes import append_notes, read_note

    jid = make_job(net.a, "Shared")
    lg(net.a, "push")
    never = make_job(net.a, "Never pushed", run=False)
    b = net.clone("b")
    lg(b, "fetch")
    lg(net.a, "job", "rerun", jid)  # rewinds the branch; the old run stays at refs/logist/runs
    commit = git(net.a, "rev-parse", f"origin/logist/{jid}")
    append_notes(b, "refs/notes/logist/observer", {commit: [json.dumps({"t": "b"})]})
    lg(b, "push")
    append_notes(net.a, "refs/notes/logist/observer", {commit: [json.dumps({"t": "a"})]})
    # a sees b's notes without merging them (a plain git fetch of the notes)
    git(net.a, "fetch", "-q", "origin", "+refs/notes/logist/*:refs/notes/remotes/origin/logist/*")
    k = kinds(findings(net.a, code=1))
    unpushed = [f for f in k.get("unpushed", []) if f["job"] == jid]
    assert unpushed and unpushed[0]["fix"] == f"logist push origin {jid}"
    assert k["notes-diverged"][0]["fix"].startswith("git notes --ref refs/notes/logist/observer merge")
    assert never in k["never-pushed"][0]["message"] and k["never-pushed"][0]["severity"] == "info"
    rep = findings(net.a, "--fix", code=0)
    assert not [f for f in rep["findings"] if f["severity"] == "problem" and not f["fixed"]]
    remote_note = subprocess.run(["git", "--git-dir", str(net.remote), "notes", "--ref",
                                  "refs/notes/logist/observer", "show", commit],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
    assert sorted(remote_note) == [json.dumps({"t": "a"}), json.dumps({"t": "b"})]
    assert read_note(net.a, "refs/notes/logist/observer", commit).splitlines() == remote_note
    theirs = remote_refs(net.remote)
    assert theirs[f"refs/heads/logist/{jid}"] == git(net.a, "rev-parse", f"logist/{jid}")
    assert theirs[f"refs/logist/runs/{jid}/1"] == commit  # the replaced run went along


def test_leftover_notes_merge_ref(net):
    make_job(net.a, "Notes")
    notes = git(net.a, "rev-parse", "refs/notes/logist/logs")
    git(net.a, "update-ref", "refs/notes/logist-merge/1234-abcd", notes)
    k = kinds(findings(net.a, code=1))
    assert k["leftover-ref"][0]["fix"] == "git update-ref -d refs/notes/logist-merge/1234-abcd"
    findings(net.a, "--fix", code=0)
    assert git(net.a, "for-each-ref", "refs/notes/logist-merge/") == ""


def test_invalid_config_settings_are_reported(net):
    """What `logist job create` refuses in .logist/config.toml, doctor lists, every one of them."""
    cfg = net.a / ".logist" / "config.toml"
    good = cfg.read_text()
    cfg.write_text(good.replace("[observer.patterns]", '[observer.patterns]\nbad = "(unclosed"')
                   .replace("silence_seconds = 300", 'silence_seconds = "300"\nbogus = 1'))
    (net.a / ".logist" / "config.local.toml").write_text('[sentinel]\nenabled = "yes"\n')
    rep = findings(net.a, code=1)
    bad = kinds(rep)["invalid-config"]
    by_key = {f["fix"].split(" (")[1].split(")")[0]: f for f in bad}
    assert set(by_key) == {"observer.patterns.bad", "sentinel.silence_seconds", "sentinel.bogus",
                           "sentinel.enabled"}, bad
    assert "invalid regex" in by_key["observer.patterns.bad"]["message"]
    assert by_key["observer.patterns.bad"]["message"].startswith(f"{cfg}: observer.patterns.bad (line ")
    assert "must be a number, not '300'" in by_key["sentinel.silence_seconds"]["message"]
    assert "unknown sentinel setting" in by_key["sentinel.bogus"]["message"]
    assert by_key["sentinel.enabled"]["message"].startswith(
        f"{net.a / '.logist' / 'config.local.toml'}: sentinel.enabled (line 2): must be true or false")
    assert all(not f["auto_fix"] for f in bad)
    out = lg(net.a, "doctor", code=1).out
    assert f"[invalid-config] {cfg}: observer.patterns.bad" in out and "fix: edit " in out
    # --fix never edits the file; the problems stay
    lg(net.a, "doctor", "--fix", code=1)
    assert "bogus = 1" in cfg.read_text()
    # a config the model itself refuses is reported too (the checks that need it are skipped)
    cfg.write_text(good.replace('default_agent = "mock"', 'default_agent = "mock"\ncolour = 1'))
    bad = kinds(findings(net.a, code=1))["invalid-config"]
    assert bad[0]["message"] == f"{cfg}: colour (line 7): unknown key", bad
    cfg.write_text(good)
    (net.a / ".logist" / "config.local.toml").unlink()
    assert "invalid-config" not in kinds(findings(net.a))
