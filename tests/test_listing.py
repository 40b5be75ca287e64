"""`job list` reads records without the pydantic models when logist validated them before
(logist.store.record_cache), and still refuses every record it has not validated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _core import create_job, tip
from conftest import git, wtdir

from logist.core.faults import crash_env


def _store(repo):
    from logist.store.jobstore import JobStore

    return JobStore.discover(repo)


def _cached(repo) -> set[str]:
    return _store(repo).record_cache.load()


def _manifest_blob(repo, rev: str, job: str) -> str:
    return git(repo, "rev-parse", f"{rev}:.logist/jobs/{job}/manifest.json")


def _fresh(repo, *args: str) -> tuple[object, list[str]]:
    """`logist -C repo *args` in a fresh interpreter; returns (its JSON output, the
    logist/pydantic/dulwich modules it imported)."""
    code = ("import sys, io, contextlib\n"
            "from logist.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    rc = main({['-C', str(repo), *args]!r})\n"
            "assert rc == 0, rc\n"
            "print(buf.getvalue().strip())\n"
            "print(' '.join(sorted(m for m in sys.modules\n"
            "                      if m.split('.')[0] in ('pydantic', 'logist', 'dulwich'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out, mods = proc.stdout.strip().rsplit("\n", 1)
    return json.loads(out), mods.split()


def _fresh_list(repo) -> tuple[list, list[str]]:
    return _fresh(repo, "job", "list", "--json")  # type: ignore[return-value]


def test_every_record_logist_writes_is_remembered_as_valid(cli):
    job = create_job(cli, "--title", "remember me", "--step", "one")
    assert _manifest_blob(cli.repo, tip(cli.repo, job), job) in _cached(cli.repo)
    cli.ok("job", "suspend", job)
    cli.ok("job", "resume", job)
    assert _manifest_blob(cli.repo, tip(cli.repo, job), job) in _cached(cli.repo)


def test_job_list_does_not_import_the_models(cli):
    a = create_job(cli, "--title", "first", "--step", "one")
    b = create_job(cli, "--title", "second", "--step", "one", "--step", "two")
    cli.ok("job", "activate", b)
    rows, mods = _fresh_list(cli.repo)
    assert not [m for m in mods if m.startswith("pydantic") or m == "logist.core.model"], mods
    by_id = {r["id"]: r for r in rows}
    assert by_id[a]["state"] == "DRAFT" and by_id[a]["step_count"] == 1
    assert by_id[b]["state"] == "PENDING" and by_id[b]["step_count"] == 2
    assert by_id[b]["head"] == tip(cli.repo, b) and by_id[b]["branch"] == f"logist/{b}"
    # the same rows as the models give
    for r in rows:
        m = _store(cli.repo).read(r["id"])[1]
        assert (r["title"], r["state"], r["step"], r["run"], r["cost_usd"], r["updated_at"]) == \
               (m.title, m.state.value, m.step, m.run, m.cost_usd, m.updated_at)


def _commit_record(repo, job: str, manifest_text: str) -> str:
    """Commit a hand-made record on the job branch with git itself (as a person or agent could)."""
    wt = _store(repo).ensure_worktree(job)  # made on demand, as `logist job path` does
    (wt / ".logist" / "jobs" / job / "manifest.json").write_text(manifest_text)
    git(wt, "commit", "-q", "-am", "edited by hand")
    return git(wt, "rev-parse", "HEAD")


def test_a_record_logist_did_not_write_is_validated_then_remembered(cli):
    job = create_job(cli, "--title", "by hand", "--step", "one")
    data = json.loads(git(cli.repo, "show", f"{tip(cli.repo, job)}:.logist/jobs/{job}/manifest.json"))
    data["title"] = "retitled by hand"
    _commit_record(cli.repo, job, json.dumps(data))
    blob = _manifest_blob(cli.repo, tip(cli.repo, job), job)
    assert blob not in _cached(cli.repo)
    rows, mods = _fresh_list(cli.repo)
    assert "logist.core.model" in mods  # validated with the model this time
    assert [r["title"] for r in rows if r["id"] == job] == ["retitled by hand"]
    assert blob in _cached(cli.repo)
    rows, mods = _fresh_list(cli.repo)
    assert "logist.core.model" not in mods  # and remembered


def test_an_invalid_record_is_listed_as_invalid_and_never_remembered(cli):
    job = create_job(cli, "--title", "broken", "--step", "one")
    data = json.loads(git(cli.repo, "show", f"{tip(cli.repo, job)}:.logist/jobs/{job}/manifest.json"))
    data["state"] = "NOT_A_STATE"
    bad = _commit_record(cli.repo, job, json.dumps(data))
    before = git(cli.repo, "for-each-ref")
    r = cli("job", "list", "--json")
    assert r.code == 0
    row = [x for x in r.json() if x["id"] == job][0]
    assert row["state"] == "INVALID" and bad[:12] in row["error"] and row["head"] == bad
    assert _manifest_blob(cli.repo, bad, job) not in _cached(cli.repo)
    assert git(cli.repo, "for-each-ref") == before  # a read never writes a ref


def test_a_wrong_cache_entry_cannot_make_an_invalid_record_listable(cli):
    """Even with the blob of a broken record written into the cache file by someone else,
    the listing checks the shape it needs and falls back to the model."""
    job = create_job(cli, "--title", "forged", "--step", "one")
    data = json.loads(git(cli.repo, "show", f"{tip(cli.repo, job)}:.logist/jobs/{job}/manifest.json"))
    del data["steps"]
    bad = _commit_record(cli.repo, job, json.dumps(data))
    store = _store(cli.repo)
    store.record_cache.add([_manifest_blob(cli.repo, bad, job)])
    store.record_cache.path.write_bytes(store.record_cache.path.read_bytes() + b"garbage\nab12\n")
    r = cli("job", "list", "--json")
    assert r.code == 0
    assert [x["state"] for x in r.json() if x["id"] == job] == ["INVALID"]


def test_the_cache_file_is_compacted_to_the_current_tips(cli):
    job = create_job(cli, "--title", "busy", "--step", "one")
    store = _store(cli.repo)
    # a long past: many records remembered that no tip points at any more
    store.record_cache.add(f"{i:040x}" for i in range(3000))
    assert len(_cached(cli.repo)) > 3000
    cli.ok("job", "list", "--json")
    assert _cached(cli.repo) == {_manifest_blob(cli.repo, tip(cli.repo, job), job)}
    rows, mods = _fresh_list(cli.repo)
    assert "logist.core.model" not in mods and [r["id"] for r in rows] == [job]


def test_job_list_warns_about_an_interrupted_job_that_has_no_lock(project):
    """A step in flight whose lock is gone (think: adopted from another clone) is still
    reported by `job list`, which otherwise only scans the locks."""
    from _crashkit import create, logist, mock_step

    toml = 'title = "cut short"\nagent = "mock"\n' + mock_step("one", {"a.txt": "a\n"})
    job = create(project, toml)
    r = logist(project, "job", "run", job, env=crash_env("agent-running"))
    assert r.returncode == 137, r.stderr
    quiet = logist(project, "job", "list")
    assert "interrupted" in quiet.stderr  # its stale lock says so
    git(project, "update-ref", "-d", f"refs/logist/locks/{job}")
    r = logist(project, "job", "list", "--json")
    assert r.returncode == 0
    assert "interrupted" in r.stderr and job in r.stderr, r.stderr
    assert [x["state"] for x in json.loads(r.stdout) if x["id"] == job] == ["EXECUTING"]


def test_job_status_reads_a_remembered_record_without_the_models(cli):
    """Neither pydantic nor dulwich: one `git cat-file` reads the record, git's worktree list
    says where the worktree is."""
    job = create_job(cli, "--title", "status me", "--step", "one", "--step", "two")
    st, mods = _fresh(cli.repo, "job", "status", job, "--json")
    assert not [m for m in mods if m.split(".")[0] in ("pydantic", "dulwich") or m == "logist.core.model"], mods
    assert (st["id"], st["state"], st["step"], st["step_count"], st["step_name"], st["head"]) == \
           (job, "DRAFT", 1, 2, "step-1", tip(cli.repo, job))
    # no worktree yet: where it will go, from no config model either
    assert st["worktree"] == str(wtdir(cli.repo) / job) and st["worktree_exists"] is False
    cli.ok("job", "path", job)
    st, mods = _fresh(cli.repo, "job", "status", job, "--json")
    assert not [m for m in mods if m.split(".")[0] in ("pydantic", "dulwich") or m == "logist.core.model"], mods
    listed = {}
    for block in git(cli.repo, "worktree", "list", "--porcelain").split("\n\n"):
        fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
        listed[fields.get("branch")] = fields["worktree"]
    assert st["worktree"] == listed[f"refs/heads/logist/{job}"]


def test_job_status_of_a_moved_worktree_shows_where_it_is(cli, tmp_path):
    job = create_job(cli, "--title", "moved", "--step", "one")
    old = cli.ok("job", "path", job).out.strip()
    new = tmp_path / "elsewhere"
    git(cli.repo, "worktree", "move", old, str(new))
    assert cli.ok("job", "status", job, "--json").json()["worktree"] == str(new)


def _traced_list(repo, trace) -> tuple[list, list[str]]:
    """`logist job list --json` as a fresh process with GIT_TRACE to a file: (rows, the git
    commands it started)."""
    trace.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "logist", "-C", str(repo), "job", "list", "--json"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "GIT_TRACE": str(trace)})
    assert proc.returncode == 0, proc.stderr
    started = [line.split("trace: built-in: ", 1)[1] for line in trace.read_text().splitlines()
               if "trace: built-in: " in line]
    return json.loads(proc.stdout), started


def _listing_file(repo):
    return _store(repo).listing_cache.path


def test_a_second_listing_reads_only_the_records_that_moved(cli, tmp_path):
    """The records of the last listing are kept by tip (logist.store.listing_cache): with
    nothing changed no record is read from git; after a transition, only that job's."""
    jobs = [create_job(cli, "--title", f"kept {i}", "--step", "one") for i in range(3)]
    trace = tmp_path / "trace"
    first, started = _traced_list(cli.repo, trace)
    assert any(c.startswith("git cat-file --batch") for c in started), started
    again, started = _traced_list(cli.repo, trace)
    assert again == first
    assert [c.split()[1] for c in started] == ["for-each-ref"], started  # refs, locks, reviews
    cli.ok("job", "suspend", jobs[1])
    moved, started = _traced_list(cli.repo, trace)
    assert [c for c in started if "cat-file" in c] == ["git cat-file --batch"]
    by_id = {r["id"]: r for r in moved}
    assert by_id[jobs[1]]["state"] == "SUSPENDED" and by_id[jobs[1]]["head"] == tip(cli.repo, jobs[1])
    assert {j: by_id[j]["state"] for j in (jobs[0], jobs[2])} == {jobs[0]: "DRAFT", jobs[2]: "DRAFT"}
    kept = json.loads(_listing_file(cli.repo).read_text())
    assert {j: kept[j][0] for j in jobs} == {j: tip(cli.repo, j) for j in jobs}  # checked with git


def test_a_remembered_record_is_used_only_at_its_own_tip(cli, tmp_path):
    """An entry for another tip (the job moved by git itself: a commit in its worktree) is not
    used; a damaged file is read as empty and written again; a job gone is dropped."""
    a = create_job(cli, "--title", "alpha", "--step", "one")
    b = create_job(cli, "--title", "beta", "--step", "one")
    cli.ok("job", "list", "--json")
    path = _listing_file(cli.repo)
    kept = json.loads(path.read_text())
    kept[a][1]["title"] = "stale title"  # as if remembered at the old tip
    path.write_text(json.dumps(kept))
    data = json.loads(git(cli.repo, "show", f"{tip(cli.repo, a)}:.logist/jobs/{a}/manifest.json"))
    data["title"] = "alpha, retitled by hand"
    _commit_record(cli.repo, a, json.dumps(data))
    rows = {r["id"]: r for r in cli.ok("job", "list", "--json").json()}
    assert rows[a]["title"] == "alpha, retitled by hand" and rows[a]["head"] == tip(cli.repo, a)
    path.write_bytes(b'{"' + a.encode() + b'": [1, 2')  # cut short
    rows = {r["id"]: r for r in cli.ok("job", "list", "--json").json()}
    assert rows[a]["title"] == "alpha, retitled by hand" and rows[b]["title"] == "beta"
    assert json.loads(path.read_text())[a][0] == tip(cli.repo, a)
    cli.ok("job", "cancel", b)
    cli.ok("job", "clean", b, "--yes")
    assert git(cli.repo, "for-each-ref", f"refs/heads/logist/{b}") == ""
    assert [r["id"] for r in cli.ok("job", "list", "--json", "--all").json()] == [a]
    assert set(json.loads(path.read_text())) == {a}


def _traced(repo, trace, *args) -> tuple[str, list[str]]:
    trace.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "logist", "-C", str(repo), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "GIT_TRACE": str(trace)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, [line.split("trace: built-in: ", 1)[1] for line in trace.read_text().splitlines()
                         if "trace: built-in: " in line]


def _hash(repo, text: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], input=text, text=True,
                          capture_output=True, check=True).stdout.strip()


def test_job_status_of_a_job_at_rest_is_one_git_process(cli, tmp_path):
    """Read the record: the repository, the lock, the review branch and whether any lock exists
    come from git's files; a job none of whose steps started has no signal to look for. A held
    lock is still read and shown."""
    job = create_job(cli, "--title", "at rest", "--step", "one")
    trace = tmp_path / "trace"
    for args in (("job", "status", job), ("job", "status", job, "--json")):
        out, started = _traced(cli.repo, trace, *args)
        assert [c.split()[1] for c in started] == ["cat-file"], started
    assert json.loads(out)["holder"] is None and json.loads(out)["review_branch"] is None
    holder = {"pid": 4242, "host": "elsewhere", "boot_id": "", "start_time": None, "command": "test",
              "acquired_at": 1.0, "heartbeat_at": 1.0, "lease_seconds": 30.0}
    blob = _hash(cli.repo, json.dumps(holder))
    git(cli.repo, "update-ref", f"refs/logist/locks/{job}", blob)
    git(cli.repo, "update-ref", f"refs/heads/logist-review/{job}", tip(cli.repo, job))
    git(cli.repo, "pack-refs", "--all")  # packed refs are read as well as loose ones
    out, started = _traced(cli.repo, trace, "job", "status", job, "--json")
    st = json.loads(out)
    assert st["holder"]["lock"] == blob and st["holder"]["host"] == "elsewhere"
    # the packed branch is found in packed-refs, not by listing every job (for-each-ref)
    assert {c.split()[1] for c in started} == {"cat-file"}, started
    assert st["review_branch"] == f"logist-review/{job}"
    rows = {r["id"]: r for r in cli.ok("job", "list", "--json").json()}
    assert rows[job]["review_branch"] == f"logist-review/{job}" and rows[job]["holder"]["lock"] == blob


def test_the_ref_reader_knows_whether_a_namespace_is_empty(cli):
    from logist.git.gitread import Unsupported

    job = create_job(cli, "--title", "locks", "--step", "one")
    reader = _store(cli.repo).reader
    assert reader.any_ref_under("refs/logist/locks/") is False
    blob = _hash(cli.repo, "{}")
    git(cli.repo, "update-ref", f"refs/logist/locks/{job}", blob)
    assert reader.any_ref_under("refs/logist/locks/") is True
    git(cli.repo, "pack-refs", "--all")
    assert not (cli.repo / ".git" / "refs" / "logist" / "locks" / job).exists()
    assert reader.any_ref_under("refs/logist/locks/") is True
    git(cli.repo, "update-ref", "-d", f"refs/logist/locks/{job}")
    assert git(cli.repo, "for-each-ref", "refs/logist/locks/") == ""
    assert reader.any_ref_under("refs/logist/locks/") is False
    try:
        reader.any_ref_under("refs/remotes/")
        raise AssertionError("not a shared namespace: git is asked instead")
    except Unsupported:
        pass


def test_job_metrics_reads_the_record_as_data(cli):
    """No models for a remembered record; a record written by hand that leaves out fields the
    model defaults gets the model's defaults."""
    job = create_job(cli, "--title", "metered", "--step", "one", "--step", "two")
    data, mods = _fresh(cli.repo, "job", "metrics", job, "--json")
    assert not [m for m in mods if m.startswith("pydantic") or m == "logist.core.model"], mods
    assert [s["name"] for s in data["steps"]] == ["step-1", "step-2"]  # type: ignore[index]
    record = json.loads(git(cli.repo, "show", f"{tip(cli.repo, job)}:.logist/jobs/{job}/manifest.json"))
    for s in record["steps"]:
        for key in ("agent", "status", "attempt", "cost_usd", "tokens", "seconds"):
            del s[key]
    record["steps"][1]["cost_usd"] = 2  # an int where the model keeps a float
    _commit_record(cli.repo, job, json.dumps(record))
    got = cli.ok("job", "metrics", job, "--json").json()
    assert [(s["agent"], s["status"], s["attempts"], s["cost_usd"], s["tokens"]) for s in got["steps"]] == \
        [("mock", "PENDING", 0, 0.0, 0), ("mock", "PENDING", 0, 2.0, 0)]
    assert isinstance(got["steps"][1]["cost_usd"], float)


def test_job_status_of_a_job_that_ran_reads_notes_only_where_there_are_some(cli, tmp_path, monkeypatch):
    """The last signal of a job that ran: its own commits are walked (`git log`), and `git notes
    show` runs only for a notes ref that exists; a note added with git is then shown."""
    from _core import create_from_toml

    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")  # no side process: no observer or sentinel notes
    text = ('title = "ran"\nprompt = "p"\n[[steps]]\nname = "s1"\nprompt = "p1"\n[steps.mock]\n'
            'writes = { "a.txt" = "a" }\n[[steps]]\nname = "s2"\nprompt = "p2"\n[steps.mock]\n'
            'writes = { "b.txt" = "b" }\n')
    job = create_from_toml(cli, text, "--activate")
    cli.ok("job", "step", job)
    trace = tmp_path / "trace"
    out, started = _traced(cli.repo, trace, "job", "status", job, "--json")
    assert json.loads(out)["last_signal"] is None
    assert not [c for c in started if c.startswith("git notes")], started
    assert "log" in [c.split()[1] for c in started]
    executing = [line.split()[0] for line in git(cli.repo, "log", "--format=%H %(trailers:key=Logist-To,valueonly)",
                                                   f"logist/{job}").splitlines() if line.endswith("EXECUTING")]
    note = json.dumps({"signal": "rate_limit", "text": "slow down", "t": "2026-12-06T00:00:00Z"})
    git(cli.repo, "notes", "--ref=refs/notes/logist/observer", "add", "-m", note, executing[0])
    out, started = _traced(cli.repo, trace, "job", "status", job, "--json")
    assert json.loads(out)["last_signal"].startswith("rate_limit")
    assert [c for c in started if c.startswith("git notes")], started
