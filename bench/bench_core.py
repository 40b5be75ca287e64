"""Core benchmarks of logist (docs/performance.md#core): transitions, listing, import cost.

    python bench/bench_core.py [--quick] [--rounds N] [--sizes 1000,10000] [--only a,b,c]

(a) one transition through the public API (``logist.store.job_state.update_job_manifest`` with a
    ``JobStore`` and a held lease) against two floors that make the same commit (same parent,
    same tree change: manifest + history blobs under ``.logist/jobs/<id>/``) with no logist
    logic: raw dulwich objects + one ``git update-ref NEW OLD``, and pure git plumbing
    (hash-object x2, read-tree + update-index + write-tree on a temporary index, commit-tree,
    update-ref). Also: ``JobStore.commit_transition`` alone, the git processes one transition
    starts, and one transition as a fresh CLI process against a fresh python process doing the
    dulwich floor.
(b) ``logist job list --json`` as a fresh CLI process over N jobs (created with one
    ``git fast-import``, manifests built by the model) against a fresh python process doing
    ``git for-each-ref`` + one ``git cat-file --batch`` + ``json.loads`` of every record; the
    in-process numbers too (``JobStore.list_jobs`` against the same floor as a function).
(c) import cost of ``logist --help`` and ``logist job status ID``: wall time against
    ``python -c pass``, and what they import (``python -X importtime``).

Not a test: it prints medians and ratios; logist and its floor run interleaved, round by
round, in the same run. Lines starting with ``result:`` carry the numbers; a markdown table
follows each part (docs/performance.md is made from them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    Result,
    logist_init,
    machine,
    med_ms,
    new_repo,
    print_results,
    python_cmd,
    run_proc,
    sh,
    timed,
    workspace,
)

JOB_TOML = """\
title = "Benchmark job"
prompt = "Measure what one transition costs."
agent = "mock"
[budget]
max_cost_usd = 5.0
[[steps]]
name = "plan"
prompt = "Write a plan into PLAN.md"
[[steps]]
name = "build"
prompt = "Do what the plan says"
[[steps]]
name = "check"
agent = "command"
command = ["true"]
"""


# --------------------------------------------------------------------------------------------
# (a) one transition
# --------------------------------------------------------------------------------------------
class DulwichFloor:
    """The same commit with raw dulwich objects and one `git update-ref NEW OLD`."""

    def __init__(self, repo: Path, job_id: str, ref: str, start: str) -> None:
        from dulwich.object_store import DiskObjectStore

        self.repo, self.job_id, self.ref, self.tip = repo, job_id.encode(), ref, start
        self.objs = DiskObjectStore(str(repo / ".git" / "objects"))
        sh(repo, "update-ref", ref, start)

    def commit(self, manifest: bytes, history: bytes, message: bytes) -> None:
        from dulwich.objects import Blob, Commit, Tree

        objs = self.objs
        mb, hb = Blob.from_string(manifest), Blob.from_string(history)
        objs.add_object(mb)
        objs.add_object(hb)
        rec = Tree()
        rec.add(b"history.jsonl", 0o100644, hb.id)
        rec.add(b"manifest.json", 0o100644, mb.id)
        objs.add_object(rec)
        parent = self.tip.encode()
        root = objs[objs[parent].tree]
        dot = objs[root[b".logist"][1]]
        jobs = objs[dot[b"jobs"][1]]
        new_id = rec.id
        for old_tree, name in ((jobs, self.job_id), (dot, b"jobs"), (root, b".logist")):
            t = Tree()
            for e in old_tree.iteritems():
                t.add(e.path, e.mode, e.sha)
            t[name] = (0o040000, new_id)
            objs.add_object(t)
            new_id = t.id
        c = Commit()
        c.tree = new_id
        c.parents = [parent]
        c.author = c.committer = b"Bench <bench@example.invalid>"
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.encoding = b"UTF-8"
        c.message = message
        objs.add_object(c)
        new = c.id.decode()
        subprocess.run(["git", "-C", str(self.repo), "update-ref", self.ref, new, self.tip],
                       check=True, capture_output=True)
        self.tip = new


class PlumbingFloor:
    """The same commit with git plumbing only (7 processes)."""

    def __init__(self, repo: Path, job_id: str, ref: str, start: str, index: Path) -> None:
        self.repo, self.job_id, self.ref, self.tip = repo, job_id, ref, start
        self.env = {**os.environ, "GIT_INDEX_FILE": str(index)}
        sh(repo, "update-ref", ref, start)

    def _git(self, *args: str, input: bytes | None = None, env=None) -> str:
        return subprocess.run(["git", "-C", str(self.repo), *args], input=input, capture_output=True,
                              check=True, env=env).stdout.decode().strip()

    def commit(self, manifest: bytes, history: bytes, message: bytes) -> None:
        m = self._git("hash-object", "-w", "--stdin", input=manifest)
        h = self._git("hash-object", "-w", "--stdin", input=history)
        rec = f".logist/jobs/{self.job_id}"
        self._git("read-tree", self.tip, env=self.env)
        info = f"100644 {h}\t{rec}/history.jsonl\n100644 {m}\t{rec}/manifest.json\n".encode()
        self._git("update-index", "--index-info", input=info, env=self.env)
        tree = self._git("write-tree", env=self.env)
        new = self._git("commit-tree", tree, "-p", self.tip, "-F", "-", input=message)
        self._git("update-ref", self.ref, new, self.tip)
        self.tip = new


DULWICH_FLOOR_SCRIPT = r"""
import subprocess, sys, time
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Blob, Commit, Tree
repo, job, ref, parent, mpath, hpath = sys.argv[1:7]
objs = DiskObjectStore(repo + "/.git/objects")
mb = Blob.from_string(open(mpath, "rb").read()); hb = Blob.from_string(open(hpath, "rb").read())
objs.add_object(mb); objs.add_object(hb)
rec = Tree(); rec.add(b"history.jsonl", 0o100644, hb.id); rec.add(b"manifest.json", 0o100644, mb.id)
objs.add_object(rec)
root = objs[objs[parent.encode()].tree]; dot = objs[root[b".logist"][1]]; jobs = objs[dot[b"jobs"][1]]
new_id = rec.id
for old, name in ((jobs, job.encode()), (dot, b"jobs"), (root, b".logist")):
    t = Tree()
    for e in old.iteritems():
        t.add(e.path, e.mode, e.sha)
    t[name] = (0o040000, new_id); objs.add_object(t); new_id = t.id
c = Commit(); c.tree = new_id; c.parents = [parent.encode()]
c.author = c.committer = b"Bench <bench@example.invalid>"
c.author_time = c.commit_time = int(time.time()); c.author_timezone = c.commit_timezone = 0
c.message = b"floor\n"; objs.add_object(c)
subprocess.run(["git", "-C", repo, "update-ref", ref, c.id.decode(), parent], check=True)
print(c.id.decode())
"""


class GitCounter:
    """Counts the processes logist starts (every git call goes through subprocess.Popen)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @contextlib.contextmanager
    def watching(self):
        real = subprocess.Popen
        calls = self.calls

        class Counting(real):  # type: ignore[misc, valid-type]
            def __init__(self, args, *a, **kw):
                argv = list(args) if not isinstance(args, (str, bytes)) else [args]
                if argv and argv[0] == "git":
                    rest = argv[3:] if len(argv) > 3 and argv[1] == "-C" else argv[1:]
                    calls.append("git " + " ".join(str(x) for x in rest[:2]))
                else:
                    calls.append(str(argv[0]))
                super().__init__(args, *a, **kw)

        subprocess.Popen = Counting  # type: ignore[misc]
        try:
            yield self
        finally:
            subprocess.Popen = real  # type: ignore[misc]


def bench_transition(tmp: Path, rounds: int, cli_rounds: int) -> list[Result]:
    from logist.core.jobfile import parse_job_text
    from logist.engine.jobs import create_job
    from logist.store.job_state import Update, apply_update, update_job_manifest
    from logist.store.jobstore import JobStore, new_transition_id, utcnow
    from logist.store.locks import acquire

    repo = new_repo(tmp / "a-repo", n_files=200)
    logist_init(repo)
    store = JobStore.discover(repo)
    jid = "bench-transition-a1"
    create_job(store, parse_job_text(JOB_TOML), activate=True, job_id=jid)
    start = store.tip(jid)
    lease = acquire(store, jid)
    dfloor = DulwichFloor(repo, jid, "refs/heads/floor/dulwich", start)
    pfloor = PlumbingFloor(repo, jid, "refs/heads/floor/plumbing", start, tmp / "floor.index")

    state = {"event": "suspend"}
    hist = {"dulwich": b"", "plumbing": b""}
    for k in hist:
        hist[k] = subprocess.run(["git", "-C", str(repo), "cat-file", "blob",
                                  f"{start}:.logist/jobs/{jid}/history.jsonl"],
                                 capture_output=True, check=True).stdout

    def logist_api() -> None:
        ev = state["event"]
        update_job_manifest(store, jid, Update(event=ev, reason=f"benchmark {ev}"), now=utcnow(),
                            transition_id=new_transition_id(), lease=lease.oid)
        state["event"] = "resume" if ev == "suspend" else "suspend"

    def latest() -> tuple[bytes, bytes, bytes]:
        """What logist's last transition wrote: manifest, its new history line, message."""
        tip = store.tip(jid)
        show = lambda spec: subprocess.run(["git", "-C", str(repo), "cat-file", "-p", spec],  # noqa: E731
                                           capture_output=True, check=True).stdout
        manifest = show(f"{tip}:.logist/jobs/{jid}/manifest.json")
        line = show(f"{tip}:.logist/jobs/{jid}/history.jsonl").splitlines(keepends=True)[-1]
        msg = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%B", tip],
                             capture_output=True, check=True).stdout
        return manifest, line, msg

    def floor_data(kind: str) -> tuple[bytes, bytes, bytes]:
        # The same content as logist's last commit, made unique (so no object already exists):
        # a different updated_at in the manifest, a different transition id in the history line.
        manifest, line, msg = latest()
        stamp = utcnow().encode()
        manifest = re.sub(rb'"updated_at": "[^"]*"', b'"updated_at": "' + stamp + b'"', manifest)
        line = re.sub(rb'"transition_id":"[0-9a-f]+"',
                      b'"transition_id":"' + new_transition_id().encode() + b'"', line)
        hist[kind] += line
        return manifest, hist[kind], msg

    def commit_only_args():
        """What commit_transition gets (read and state table done outside the timing)."""
        tip, m = store.read(jid)
        ev = state["event"]
        new, entry = apply_update(m, Update(event=ev, reason=f"benchmark {ev}"), now=utcnow(),
                                  transition_id=new_transition_id())
        state["event"] = "resume" if ev == "suspend" else "suspend"
        return tip, new, entry

    samples: dict[str, list[float]] = {}
    order = ["logist", "dulwich", "commit_only", "plumbing"]
    for r in range(1 + rounds):
        k = r % len(order)
        for name in order[k:] + order[:k]:
            if name == "logist":
                t = timed(logist_api)
            elif name == "commit_only":
                tip, new, entry = commit_only_args()
                t = timed(partial(store.commit_transition, jid, tip, new, [entry], lease=lease.oid))
            else:
                floor = dfloor if name == "dulwich" else pfloor
                args = floor_data(name)
                t = timed(partial(floor.commit, *args))
            if r:
                samples.setdefault(name, []).append(t)
    ct = samples["commit_only"]

    counter = GitCounter()
    with counter.watching():
        logist_api()
    procs = counter.calls

    # Sanity: the worktree is clean, the floors made real commits with the record.
    wt = store.worktree_path(jid)  # none before a first step (the default): nothing to dirty
    dirty = sh(wt, "status", "--porcelain") if wt.is_dir() else ""
    if dirty:
        print(f"warning: worktree not clean after transitions:\n{dirty}")
    sh(repo, "cat-file", "-e", f"{dfloor.tip}:.logist/jobs/{jid}/manifest.json")
    sh(repo, "cat-file", "-e", f"{pfloor.tip}:.logist/jobs/{jid}/manifest.json")
    lease.release()

    # The processes one CLI transition starts (cli.main in process: no interpreter start).
    from logist.cli import main as cli_main

    cli_counter = GitCounter()
    ev = state["event"]
    with cli_counter.watching(), contextlib.redirect_stdout(io.StringIO()):
        if cli_main(["-C", str(repo), "job", ev, jid]) != 0:
            raise RuntimeError(f"logist job {ev} failed")
    state["event"] = "resume" if ev == "suspend" else "suspend"

    # A fresh CLI process per transition (lock, read, commit, release) against a fresh python
    # process that imports dulwich and makes the floor commit.
    cli: dict[str, list[float]] = {"cli": [], "floor": [], "python": []}
    mfile, hfile = tmp / "floor-manifest.json", tmp / "floor-history.jsonl"
    for r in range(1 + cli_rounds):
        ev = state["event"]
        t_cli = timed(partial(run_proc, python_cmd("-m", "logist", "-C", str(repo), "job", ev, jid)))
        state["event"] = "resume" if ev == "suspend" else "suspend"
        manifest, history, _ = floor_data("dulwich")
        mfile.write_bytes(manifest)
        hfile.write_bytes(history)
        argv = python_cmd("-c", DULWICH_FLOOR_SCRIPT, str(repo), jid, "refs/heads/floor/dulwich",
                          dfloor.tip, str(mfile), str(hfile))
        box: dict[str, subprocess.CompletedProcess] = {}
        t_floor = timed(lambda argv=argv, box=box: box.setdefault("p", run_proc(argv)))
        dfloor.tip = box["p"].stdout.decode().strip()
        t_py = timed(lambda: run_proc(python_cmd("-c", "pass")))
        if r:
            cli["cli"].append(t_cli)
            cli["floor"].append(t_floor)
            cli["python"].append(t_py)

    n_git = sum(1 for c in procs if c.startswith("git"))
    print(f"\n(a) processes started by one update_job_manifest transition ({n_git}): "
          + ", ".join(procs))
    print(f"(a) processes started by one `logist job suspend|resume` ({len(cli_counter.calls)}): "
          + ", ".join(cli_counter.calls))
    print(f"(a) fresh `python -c pass`: {med_ms(cli['python']):.1f} ms (interpreter start, in both)")
    return [
        Result("transition, in process: update_job_manifest (read + commit + CAS + index refresh)",
               med_ms(samples["logist"]), med_ms(samples["dulwich"]), "dulwich objects + update-ref", 2.0,
               note=f"{n_git} git processes"),
        Result("transition, in process: update_job_manifest vs plumbing",
               med_ms(samples["logist"]), med_ms(samples["plumbing"]), "plumbing, 7 processes", 2.0),
        Result("transition, in process: JobStore.commit_transition only",
               med_ms(ct), med_ms(samples["dulwich"]), "dulwich objects + update-ref", 2.0),
        Result("transition, fresh CLI process: logist job suspend/resume",
               med_ms(cli["cli"]), med_ms(cli["floor"]), "fresh python: dulwich + update-ref", None),
    ]


# --------------------------------------------------------------------------------------------
# (b) job list --json over many jobs
# --------------------------------------------------------------------------------------------
STATES = ("SUCCESS", "DRAFT", "APPROVAL_REQUIRED", "INTERVENTION_REQUIRED", "SUSPENDED",
          "PENDING", "PENDING", "PENDING", "PENDING", "PENDING")

LIST_FLOOR_SCRIPT = r"""
import json, subprocess, sys
def floor(repo):
    out = subprocess.run(["git", "-C", repo, "for-each-ref", "--format=%(objectname) %(refname)",
                          "refs/heads/logist/"], capture_output=True, text=True, check=True).stdout
    specs = []
    for line in out.splitlines():
        oid, ref = line.split(" ", 1)
        job = ref[len("refs/heads/logist/"):]
        specs.append(f"{oid}:.logist/jobs/{job}/manifest.json")
    data = subprocess.run(["git", "-C", repo, "cat-file", "--batch"],
                          input=("\n".join(specs) + "\n").encode(), capture_output=True,
                          check=True).stdout
    pos, records = 0, []
    for _ in specs:
        nl = data.index(b"\n", pos)
        size = int(data[pos:nl].split()[2])
        records.append(json.loads(data[nl + 1:nl + 1 + size]))
        pos = nl + 2 + size
    return records
if __name__ == "__main__":
    print(len(floor(sys.argv[1])))
"""


STATUS_FLOOR_SCRIPT = r"""
import json, subprocess, sys
repo, job = sys.argv[1:3]
spec = f"refs/heads/logist/{job}:.logist/jobs/{job}/manifest.json\n"
out = subprocess.run(["git", "-C", repo, "cat-file", "--batch"], input=spec.encode(),
                     capture_output=True, check=True).stdout
nl = out.index(b"\n")
print(json.loads(out[nl + 1:nl + 1 + int(out[:nl].split()[2])])["state"])
"""


def make_jobs(repo: Path, n: int) -> list[str]:
    """n job branches in one `git fast-import`, each with a valid record; returns the ids."""
    from logist.core.jobfile import parse_job_text
    from logist.core.model import HistoryEntry, State, canonical_json, history_line, parse_manifest
    from logist.engine.jobs import build_manifest
    from logist.store.jobstore import utcnow

    base = sh(repo, "rev-parse", "HEAD")
    now = utcnow()
    template = build_manifest(parse_job_text(JOB_TOML), job_id="template-0000", base=base, now=now)
    data = template.model_dump(mode="json")
    ids, chunks = [], []
    for i in range(n):
        jid = f"bench-job-{i:05d}"
        ids.append(jid)
        state = STATES[i % len(STATES)]
        rec = {**data, "id": jid, "title": f"Benchmark job {i}", "state": state}
        manifest = (json.dumps(rec, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
        entry = HistoryEntry(t=now, event="create", run=1, step=1, transition_id=f"{i:016x}",
                             reason="created by bench_core", **{"from": None, "to": State(state)})
        hist = history_line(entry)
        if i < 5:  # the records are what logist itself would write
            parsed = parse_manifest(manifest)
            assert canonical_json(parsed) == manifest, "fast-import manifest is not canonical"
        msg = (f"logist({jid}): create -> {state} (step 1/3)\n\ncreated by bench_core\n\n"
               f"Logist-Job: {jid}\nLogist-Run: 1\nLogist-Step: 1/3\nLogist-From: create\n"
               f"Logist-To: {state}\nLogist-Event: create\nLogist-Transition-Id: {i:016x}\n").encode()
        path = f".logist/jobs/{jid}".encode()
        chunks += [b"commit refs/heads/logist/", jid.encode(),
                   b"\ncommitter logist <logist@localhost> 1700000000 +0000\n",
                   b"data %d\n" % len(msg), msg, b"from ", base.encode(), b"\n",
                   b"M 100644 inline ", path, b"/manifest.json\ndata %d\n" % len(manifest), manifest,
                   b"M 100644 inline ", path, b"/history.jsonl\ndata %d\n" % len(hist), hist, b"\n"]
    proc = subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(chunks),
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fast-import failed: {proc.stderr.decode()[-2000:]}")
    return ids


def bench_list(tmp: Path, sizes: list[int], rounds: int) -> list[Result]:
    from logist.cli import main
    from logist.store.jobstore import JobStore

    ns: dict = {}
    exec(compile(LIST_FLOOR_SCRIPT, "<list-floor>", "exec"), ns)
    floor_fn = ns["floor"]
    floor_file = tmp / "list_floor.py"
    floor_file.write_text(LIST_FLOOR_SCRIPT)
    results: list[Result] = []
    cli_medians: dict[int, float] = {}
    for n in sizes:
        repo = new_repo(tmp / f"b-repo-{n}", n_files=50)
        logist_init(repo)
        t0 = time.perf_counter()
        ids = make_jobs(repo, n)
        made = time.perf_counter() - t0
        store = JobStore.discover(repo)
        for jid in (ids[0], ids[len(ids) // 2], ids[-1]):  # readable through logist itself
            store.read(jid)
        store.ensure_worktree(ids[5])  # the job `job status` reads has a worktree, as jobs do
        sh(repo, "pack-refs", "--all")
        print(f"(b) {n} jobs made with one fast-import in {made:.2f} s; refs packed")
        cli_argv = python_cmd("-m", "logist", "-C", str(repo), "job", "list", "--json")
        out = run_proc(cli_argv).stdout
        listed = json.loads(out)
        n_expected = sum(1 for i in range(n) if STATES[i % len(STATES)] not in ("SUCCESS", "CANCELED"))
        assert len(listed) == n_expected, (len(listed), n_expected)
        assert int(run_proc(python_cmd(str(floor_file), str(repo))).stdout) == n

        def cli_inproc(repo: Path = repo) -> None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                if main(["-C", str(repo), "job", "list", "--json"]) != 0:
                    raise RuntimeError("job list failed")

        status_argv = python_cmd("-m", "logist", "-C", str(repo), "job", "status", ids[5])
        status_floor = python_cmd("-c", STATUS_FLOOR_SCRIPT, str(repo), ids[5])
        run_proc(status_argv)
        fns = {
            "cli": partial(run_proc, cli_argv),
            "status": partial(run_proc, status_argv),
            "status_floor": partial(run_proc, status_floor),
            "floor": partial(run_proc, python_cmd(str(floor_file), str(repo))),
            "api": store.list_jobs,
            "floor_inproc": partial(floor_fn, str(repo)),
            "cli_inproc": cli_inproc,
        }
        samples: dict[str, list[float]] = {}
        names = list(fns)
        for r in range(1 + rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                t = timed(fns[name])
                if r:
                    samples.setdefault(name, []).append(t)
        cli_medians[n] = med_ms(samples["cli"])
        results += [
            Result(f"job list --json, fresh process, {n} jobs", med_ms(samples["cli"]),
                   med_ms(samples["floor"]), "fresh python: for-each-ref + cat-file --batch + json.loads",
                   2.0 if n <= 1000 else None),
            Result(f"JobStore.list_jobs(), in process, {n} jobs", med_ms(samples["api"]),
                   med_ms(samples["floor_inproc"]), "same floor, in process", None),
            Result(f"job list --json via cli.main(), in process, {n} jobs", med_ms(samples["cli_inproc"]),
                   med_ms(samples["floor_inproc"]), "same floor, in process", None),
            Result(f"job status ID (one job), fresh process, {n} jobs in the repo", med_ms(samples["status"]),
                   med_ms(samples["status_floor"]), "fresh python: one cat-file of the record", None),
        ]
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        scale = cli_medians[big] / cli_medians[small]
        limit = big / small  # 10x the jobs must cost under 10x the time
        results.append(Result(f"job list --json: {big} jobs against {small} jobs", cli_medians[big],
                              cli_medians[small], f"job list --json, {small} jobs", limit,
                              note=f"{big / small:g}x the jobs; scaling {scale:.2f}x"))
    return results


# --------------------------------------------------------------------------------------------
# (c) import cost
# --------------------------------------------------------------------------------------------
WATCH = ("dulwich", "pydantic", "pydantic_core", "cyclopts", "rich", "git", "tomllib", "asyncio",
         "logist.core.jobfile", "logist.store.job_state", "logist.core.model", "logist.store.jobstore",
         "logist.store.locks",
         "logist.engine.jobs", "logist.core.config", "logist.agents", "logist.engine.job_processor", "logist.git.notes",
         "logist.store.job_history", "logist.engine.observer", "logist.engine.sentinel")


def importtime(argv: list[str]) -> tuple[float, dict[str, float], list[str]]:
    """(total import ms, {package: cumulative ms of its first import}, logist modules)."""
    proc = subprocess.run(python_cmd("-X", "importtime", *argv), capture_output=True, text=True)
    total = 0.0
    first: dict[str, float] = {}
    mods: list[str] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not m:
            continue
        cum, indent, name = int(m.group(2)), len(m.group(3)), m.group(4)
        if indent == 0:
            total += cum
        if name.startswith("logist"):
            mods.append(name)
        for w in WATCH:
            if name == w:
                first[w] = max(first.get(w, 0.0), cum / 1000.0)
    return total / 1000.0, first, mods


def bench_imports(tmp: Path, rounds: int) -> list[Result]:
    from logist.core.jobfile import parse_job_text
    from logist.engine.jobs import create_job
    from logist.store.jobstore import JobStore

    repo = new_repo(tmp / "c-repo", n_files=20)
    logist_init(repo)
    store = JobStore.discover(repo)
    jid = "bench-imports-c1"
    create_job(store, parse_job_text(JOB_TOML), activate=True, job_id=jid)
    cmds = {
        "logist --help": ["-m", "logist", "--help"],
        "logist job status ID": ["-m", "logist", "-C", str(repo), "job", "status", jid],
        "logist job list --json": ["-m", "logist", "-C", str(repo), "job", "list", "--json"],
    }
    samples: dict[str, list[float]] = {}
    fns = {name: (lambda a=a: run_proc(python_cmd(*a))) for name, a in cmds.items()}
    fns["python -c pass"] = lambda: run_proc(python_cmd("-c", "pass"))
    fns["python -c 'import cyclopts'"] = lambda: run_proc(python_cmd("-c", "import cyclopts"))
    names = list(fns)
    for r in range(1 + rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t = timed(fns[name])
            if r:
                samples.setdefault(name, []).append(t)
    py = med_ms(samples["python -c pass"])
    print("\n(c) wall medians: " + ", ".join(f"{k} {med_ms(v):.1f} ms" for k, v in samples.items()))
    results = []
    for name, a in cmds.items():
        total, first, mods = importtime(a)
        heavy = ", ".join(f"{k} {v:.1f} ms" for k, v in first.items() if not k.startswith("logist."))
        print(f"(c) {name}: imports {total:.1f} ms in total (python -X importtime); "
              f"packages: {heavy or '-'}")
        print(f"    logist modules: {', '.join(dict.fromkeys(mods))}")
        bad = [p for p in ("dulwich",) if p in first]
        if name == "logist --help":
            bad += [p for p in ("pydantic", "logist.core.model", "logist.store.jobstore") if p in first]
        if name in ("logist job status ID", "logist job list --json"):  # plain command lines: no cyclopts
            bad += [p for p in ("cyclopts", "pydantic", "rich", "logist.core.model") if p in first]
        if name == "logist job status ID":
            bad += [p for p in ("logist.core.jobfile", "logist.agents", "logist.engine.job_processor") if p in first]
        if bad:
            print(f"    imports it does not need: {', '.join(bad)}")
        results.append(Result(f"{name}: fresh process (imports {total:.0f} ms"
                              + (f"; needless: {', '.join(bad)}" if bad else "") + ")",
                              med_ms(samples[name]), py, "python -c pass", None))
    results.append(Result("import cyclopts alone: fresh process", med_ms(samples["python -c 'import cyclopts'"]),
                          py, "python -c pass", None))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement")
    ap.add_argument("--sizes", default=None, help="job counts for (b), comma-separated")
    ap.add_argument("--only", default="a,b,c", help="parts to run: a,b,c")
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 15)
    sizes = [int(s) for s in (args.sizes or ("50,500" if args.quick else "1000,10000")).split(",")]
    parts = set(args.only.split(","))
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_core.py {' '.join(sys.argv[1:])}".rstrip())
    with workspace("logist-bench-core-") as tmp:
        # fresh-process measurements are slower: fewer rounds (one in a --quick smoke run)
        proc_rounds = 1 if args.quick else max(3, rounds // 3)
        if "a" in parts:
            print_results("(a) one transition", bench_transition(tmp, rounds, proc_rounds))
        if "b" in parts:
            print_results("(b) job list --json", bench_list(tmp, sizes, proc_rounds))
        if "c" in parts:
            print_results("(c) import cost", bench_imports(tmp, 1 if args.quick else max(3, rounds // 2)))


if __name__ == "__main__":
    main()
