"""Workers sharing one remote: jobs per minute with 1, 2 and 4 workers (mock agent), against the
cost of the bare git pushes and fetches they make (docs/performance.md#workers).

    python bench/bench_workers.py [--jobs 12] [--workers 1,2,4] [--watcher]

Everything happens in a temporary directory: a bare remote, a clone that creates the jobs
(`logist job create --title T --step "do it" --activate`) and pushes them, and one clone per
worker running `logist worker --until-idle --json`. Printed, per worker count: wall time,
jobs/minute, and the pushes and fetches the workers made with the time they spent in them
(from the workers' own reports). The baseline is what one bare `git push` of a single ref and
one `git fetch` with logist's refspecs cost on the same remote, measured directly with git.
Not a timed test: numbers depend on the machine (run it on an idle one).
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


def sh(cwd: Path, *argv: str, env=None) -> str:
    proc = subprocess.run(list(argv), cwd=str(cwd), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {cwd}: {proc.stderr}")
    return proc.stdout.strip()


def logist(cwd: Path, *args: str, env=None) -> str:
    return sh(cwd, sys.executable, "-m", "logist", *args, env=env)


def setup(tmp: Path, env: dict, jobs: int) -> tuple[Path, Path]:
    remote = tmp / "remote.git"
    sh(tmp, "git", "init", "-q", "--bare", "-b", "main", str(remote), env=env)
    a = tmp / "creator"
    sh(tmp, "git", "clone", "-q", str(remote), str(a), env=env)
    (a / "README.md").write_text("# bench\n")
    sh(a, "git", "add", "README.md", env=env)
    sh(a, "git", "commit", "-q", "-m", "initial", env=env)
    logist(a, "init", env=env)
    sh(a, "git", "add", ".logist", env=env)
    sh(a, "git", "commit", "-q", "-m", "logist init", env=env)
    sh(a, "git", "push", "-q", "origin", "main", env=env)
    for i in range(jobs):
        logist(a, "job", "create", "--title", f"Bench job {i}", "--step", "do it", "--activate", env=env)
    logist(a, "push", env=env)
    return remote, a


def run_workers(tmp: Path, remote: Path, n: int, env: dict) -> dict:
    clones = []
    for i in range(n):
        c = tmp / f"worker{n}-{i}"
        sh(tmp, "git", "clone", "-q", str(remote), str(c), env=env)
        logist(c, "init", env=env)
        clones.append(c)
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "logist", "worker", "--until-idle", "--json",
                               "--quiet", "--poll", "0.2"], cwd=str(c), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in clones]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"a worker failed: {err[-2000:]}")
        reports.append(json.loads(out))
    wall = time.monotonic() - t0
    ran = [j for r in reports for j in r["ran"]]
    return {"workers": n, "jobs": len(ran), "unique": len(set(ran)), "wall": wall,
            "pushes": sum(r["pushes"] for r in reports), "fetches": sum(r["fetches"] for r in reports),
            "push_s": sum(r["push_seconds"] for r in reports),
            "fetch_s": sum(r["fetch_seconds"] for r in reports),
            "conflicts": sum(r["claim_conflicts"] for r in reports)}


def baseline(tmp: Path, remote: Path, a: Path, env: dict, reps: int = 20) -> dict:
    """Bare git: one single-ref atomic push, one fetch with logist's refspecs."""
    sys.path.insert(0, str(ROOT))
    from logist.share.fetch import fetch_refspecs

    pushes, fetches = [], []
    head = sh(a, "git", "rev-parse", "HEAD", env=env)
    for i in range(reps):
        t0 = time.perf_counter()
        sh(a, "git", "push", "-q", "--atomic", "origin", f"{head}:refs/heads/bench/b{i}", env=env)
        pushes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sh(a, "git", "fetch", "-q", "--prune", "--no-write-fetch-head", "origin", *fetch_refspecs("origin"),
           env=env)
        fetches.append(time.perf_counter() - t0)
    for i in range(reps):
        sh(a, "git", "push", "-q", "origin", f":refs/heads/bench/b{i}", env=env)
    return {"push": statistics.median(pushes), "fetch": statistics.median(fetches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--watcher", action="store_true", help="run the observer/sentinel side process too")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="logist-bench-workers-") as d:
        tmp = Path(d)
        home = tmp / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n"
                                         "[init]\n\tdefaultBranch = main\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LOGIST_"))}
        env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
                   PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
        if not args.watcher:
            env["LOGIST_NO_WATCHER"] = "1"
        print(f"logist workers benchmark: {args.jobs} mock jobs per run, cpus={os.cpu_count()}, "
              f"watcher={'on' if args.watcher else 'off'}")
        rows = []
        base = None
        for n in counts:
            sub = tmp / f"run{n}"
            sub.mkdir()
            remote, a = setup(sub, env, args.jobs)
            if base is None:
                base = baseline(sub, remote, a, env)
            rows.append(run_workers(sub, remote, n, env))
        print(f"bare git on this remote: push {base['push'] * 1000:.1f} ms, "
              f"fetch (logist refspecs) {base['fetch'] * 1000:.1f} ms (medians)")
        print(f"{'workers':>7} {'jobs':>5} {'wall s':>7} {'jobs/min':>9} {'pushes':>7} {'fetches':>8} "
              f"{'push s':>7} {'fetch s':>8} {'git share':>9} {'lost claims':>11}")
        for r in rows:
            share = (r["push_s"] + r["fetch_s"]) / (r["wall"] * r["workers"]) if r["wall"] else 0
            assert r["jobs"] == r["unique"] == args.jobs, r
            print(f"{r['workers']:>7} {r['jobs']:>5} {r['wall']:>7.1f} {60 * r['jobs'] / r['wall']:>9.1f} "
                  f"{r['pushes']:>7} {r['fetches']:>8} {r['push_s']:>7.1f} {r['fetch_s']:>8.1f} "
                  f"{share:>8.0%} {r['conflicts']:>11}")
        per_job = [(r["pushes"] / r["jobs"], r["fetches"] / r["jobs"]) for r in rows]
        print("per job: " + ", ".join(f"{r['workers']}w {p:.1f} pushes + {f:.1f} fetches "
                                       f"(bare cost {p * base['push'] + f * base['fetch']:.2f} s)"
                                       for r, (p, f) in zip(rows, per_job, strict=True)))


if __name__ == "__main__":
    main()
