"""Cost of the ref-lock lease, and throughput of concurrent transitions.

    python bench/bench_locks.py [--rounds 40] [--transitions 30] [--repeat 3]

1. Lock acquire + release (``logist.store.locks.acquire`` / ``Lease.release``: a holder blob, a
   create-only ref update, a compare-and-delete) against the floor: one ``git update-ref``.
2. One fenced transition under the lease (acquire, read the tip, commit, publish with
   ``verify`` + CAS, release), in process.
3. Aggregate throughput of 4 processes x 4 jobs (each process its own job) against one process
   making the same transitions alone (target: >= 0.8x), then 4 processes sharing the same 4 jobs
   (contention: a busy job is skipped). Every run checks that no update was lost: each job's
   history holds exactly the transitions its writers reported.

Fresh temporary repositories; not a test: prints medians (ms) and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logist.git.gitcmd import base_env  # noqa: E402

WORKER = r"""
import json, sys, time
from logist.store.jobstore import JobStore, new_transition_id, utcnow
from logist.store.locks import acquire
from logist.store.job_state import Update, apply_update
from logist.core.errors import BusyError
repo, jobs, n, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
store = JobStore.discover(repo)
done = {j: 0 for j in jobs}
busy = 0
start_at = float(sys.argv[5])
while time.time() < start_at:
    time.sleep(0.001)
t0 = time.perf_counter()
i = 0
while sum(done.values()) < n:
    j = jobs[i % len(jobs)]
    i += 1
    try:
        lease = acquire(store, j)
    except BusyError:
        busy += 1
        continue
    try:
        tip, m = store.read(j)
        event = "suspend" if m.state.value == "PENDING" else "resume"
        new, entry = apply_update(m, Update(event=event), now=utcnow(), transition_id=new_transition_id())
        store.commit_transition(j, tip, new, [entry], lease=lease.oid, sync_worktree=False)
        done[j] += 1
    finally:
        lease.release()
json.dump({"done": done, "busy": busy, "seconds": time.perf_counter() - t0}, open(out, "w"))
"""


def sh(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True, text=True,
                          check=True, env=base_env()).stdout.strip()


def new_project(root: Path, name: str, n_jobs: int) -> tuple[Path, list[str]]:
    from logist.core.jobfile import JobFile, StepFile
    from logist.engine.jobs import create_job
    from logist.store.jobstore import JobStore

    repo = root / name
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    sh(repo, "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "--allow-empty",
       "-m", "init")
    (repo / ".logist").mkdir()
    (repo / ".logist" / "config.toml").write_text("")
    store = JobStore.discover(repo)
    jobs = [create_job(store, JobFile(title=f"bench {i}", steps=[StepFile(prompt="x")]), activate=True,
                       job_id=f"bench-{i}").id for i in range(n_jobs)]
    return repo, jobs


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_lock(root: Path, rounds: int) -> tuple[float, float, float]:
    from logist.store.job_state import Update, apply_update
    from logist.store.jobstore import JobStore, new_transition_id, utcnow
    from logist.store.locks import acquire

    repo, (job,) = new_project(root, "lock", 1)
    store = JobStore.discover(repo)
    blob = sh(repo, "hash-object", "-w", "--stdin", input="x\n")
    floor, lock, trans = [], [], []
    for i in range(rounds):
        t = time.perf_counter()
        subprocess.run(["git", "-C", str(repo), "update-ref", f"refs/bench/floor-{i}", blob],
                       check=True, env=base_env())
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        lease = acquire(store, job)
        lease.release()
        lock.append(time.perf_counter() - t)
        t = time.perf_counter()
        with acquire(store, job) as lease:
            tip, m = store.read(job)
            event = "suspend" if m.state.value == "PENDING" else "resume"
            new, entry = apply_update(m, Update(event=event), now=utcnow(), transition_id=new_transition_id())
            store.commit_transition(job, tip, new, [entry], lease=lease.oid, sync_worktree=False)
        trans.append(time.perf_counter() - t)
    return ms(floor), ms(lock), ms(trans)


def run_workers(repo: Path, assignments: list[list[str]], per_worker: int, tmp: Path) -> tuple[float, dict, int]:
    """Start one process per assignment at the same instant; (wall seconds, done per job, busy)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start_at = time.time() + 1.0  # after every interpreter has started
    procs, outs = [], []
    for k, jobs in enumerate(assignments):
        out = tmp / f"out-{time.monotonic_ns()}-{k}.json"
        outs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(repo), ",".join(jobs),
                                       str(per_worker), str(out), str(start_at)], env=env))
    for p in procs:
        if p.wait(timeout=600) != 0:
            raise SystemExit("a worker failed")
    wall = time.time() - start_at
    done: dict[str, int] = {}
    busy = 0
    for out in outs:
        data = json.loads(out.read_text())
        busy += data["busy"]
        for j, n in data["done"].items():
            done[j] = done.get(j, 0) + n
    return wall, done, busy


def check_no_lost_update(repo: Path, done: dict[str, int], before: dict[str, int]) -> None:
    for j, n in done.items():
        raw = sh(repo, "show", f"logist/{j}:.logist/jobs/{j}/history.jsonl")
        have = len(raw.splitlines()) - 1
        if have != before.get(j, 0) + n:
            raise SystemExit(f"LOST UPDATE on {j}: {have} recorded, {before.get(j, 0) + n} made")
        if sh(repo, "rev-list", "--merges", f"logist/{j}"):
            raise SystemExit(f"merge commit on {j}")


def bench_throughput(root: Path, per: int, repeat: int) -> list[tuple[str, float]]:
    tmp = root / "outs"
    tmp.mkdir()
    repo, jobs = new_project(root, "tp", 4)
    counts = {j: 0 for j in jobs}
    rows = []
    singles, parallels, shared = [], [], []
    for _ in range(repeat):
        wall, done, _ = run_workers(repo, [jobs], 4 * per, tmp)
        check_no_lost_update(repo, done, counts)
        counts = {j: counts[j] + done.get(j, 0) for j in jobs}
        singles.append(4 * per / wall)
        wall, done, _ = run_workers(repo, [[j] for j in jobs], per, tmp)
        check_no_lost_update(repo, done, counts)
        counts = {j: counts[j] + done.get(j, 0) for j in jobs}
        parallels.append(4 * per / wall)
        wall, done, busy = run_workers(repo, [jobs[k:] + jobs[:k] for k in range(4)], per, tmp)
        check_no_lost_update(repo, done, counts)
        counts = {j: counts[j] + done.get(j, 0) for j in jobs}
        shared.append((4 * per / wall, busy))
    s = statistics.median(singles)
    p = statistics.median(parallels)
    c = statistics.median(x for x, _ in shared)
    rows.append(("1 process x 4 jobs (transitions/s)", s))
    rows.append(("4 processes x own job (transitions/s)", p))
    rows.append(("  ratio vs one process (target >= 0.8)", p / s))
    rows.append(("4 processes x 4 shared jobs (transitions/s)", c))
    rows.append(("  ratio vs one process", c / s))
    rows.append(("  busy skips per run (median)", statistics.median(b for _, b in shared)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--transitions", type=int, default=30, help="per process, in the throughput runs")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    with tempfile.TemporaryDirectory(prefix="logist-bench-locks-") as d:
        root = Path(d)
        home = root / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@example.invalid\n")
        os.environ["HOME"] = str(home)
        os.environ["GIT_CONFIG_GLOBAL"] = str(home / ".gitconfig")
        import logist.git.gitcmd as gitcmd

        gitcmd._BASE_ENV = None
        floor, lock, trans = bench_lock(root, args.rounds)
        print(f"{'git update-ref (floor)':45s} {floor:8.2f} ms")
        print(f"{'lock acquire + release':45s} {lock:8.2f} ms   {lock / floor:5.2f}x floor")
        print(f"{'fenced transition under a lease':45s} {trans:8.2f} ms   {trans / floor:5.2f}x floor")
        for name, value in bench_throughput(root, args.transitions, args.repeat):
            print(f"{name:45s} {value:8.2f}")
        print("no lost update in any run")


if __name__ == "__main__":
    main()
