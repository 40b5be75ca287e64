"""How logist and git itself grow with the number of jobs, in repositories built by logist.

For each size (default 10 and 1,000 jobs; ``--sizes 10,1000,10000`` adds 10,000), a project of
``--files`` files (default 500) gets N jobs made by `logist job create --activate` (the same
code as the CLI, in ``--jobs`` parallel long-running processes), and ``--stepped`` of them
(default 10%) run one mock step through `logist job step`, so the repository holds what users'
repositories hold: job branches, loose objects, notes, worktrees as the configuration makes them. Then, as fresh
processes (run as after a plain ``pip install``: ``bench.installed_python``), interleaved
round by round:

- `logist job create`, `logist job list --json`, `logist job status ID`, `logist job step ID`,
  and ``python -c pass`` (the interpreter's own start, measured, the floor of any fresh process);
- `git gc` (after a first gc, so each round is the every-time cost) and `git status` in the
  project, against a copy of the same repository without logist's refs, notes, worktrees and
  objects (the floor: what the user's repository costs git without logist);
- whether logist's own writes left the repository over git's auto-gc limit (`git gc --auto`
  would start), from `git count-objects` and git's own estimate.

Growth lines compare each command at N jobs with the same command at the smallest size.

    python bench/bench_scale.py [--sizes 10,1000] [--rounds 5] [--jobs 2] [--files 500] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    Result,
    installed_python,
    interleave,
    logist_init,
    machine,
    make_jobs,
    med_ms,
    new_repo,
    print_results,
    sh,
    workspace,
)


def cli(repo: Path, *args: str) -> str:
    from logist.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["-C", str(repo), *args])
    if code not in (0,):
        raise RuntimeError(f"logist {' '.join(args)} exited {code}")
    return out.getvalue().strip()


def build(tmp: Path, n: int, args: argparse.Namespace) -> tuple[Path, list[str]]:
    repo = new_repo(tmp / f"project-{n}", n_files=args.files)
    sh(repo, "config", "gc.auto", "6700")  # git's default (the bench's own config turns auto-gc off)
    logist_init(repo)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", "logist init")
    t0 = time.perf_counter()
    ids = make_jobs(repo, n, args.jobs, "--activate")
    made = time.perf_counter() - t0
    runs = max(1, int(n * args.stepped))
    t0 = time.perf_counter()
    for jid in ids[:runs]:
        cli(repo, "job", "step", jid)
    ran = time.perf_counter() - t0
    print(f"{n} jobs: made by `job create` in {made:.1f} s ({min(args.jobs, n)} processes); "
          f"{runs} ran one mock step in {ran:.1f} s", flush=True)
    return repo, ids


def floor_copy(repo: Path, dest: Path) -> Path:
    """The same repository without logist: its refs, notes and worktrees removed."""
    shutil.copytree(repo, dest, symlinks=True)
    refs = sh(dest, "for-each-ref", "--format=%(refname)", "refs/heads/logist/", "refs/logist/",
              "refs/notes/").split()
    if refs:
        sh(dest, "update-ref", "--stdin", input="".join(f"delete {r}\n" for r in refs))
    shutil.rmtree(dest / ".git" / "worktrees", ignore_errors=True)
    shutil.rmtree(dest / ".git" / "logs" / "refs" / "heads" / "logist", ignore_errors=True)
    # and without logist's objects: left as unreachable garbage, every `git gc` would rewrite them
    sh(dest, "reflog", "expire", "--expire=now", "--all")
    sh(dest, "gc", "-q", "--prune=now")
    return dest


def auto_gc_due(repo: Path) -> tuple[int, bool]:
    counts = dict(line.split(": ") for line in sh(repo, "count-objects", "-v").splitlines())
    try:
        estimate = sum(1 for n in os.listdir(repo / ".git" / "objects" / "17") if len(n) == 38) * 256
    except OSError:
        estimate = 0
    return int(counts["count"]), estimate > 6700


def measure(tmp: Path, n: int, args: argparse.Namespace, logist: list[str]) -> dict[str, float]:
    repo, ids = build(tmp, n, args)
    loose, due = auto_gc_due(repo)
    print(f"{n} jobs: {loose} loose objects; git gc --auto would start: {'YES' if due else 'no'}")
    floor = floor_copy(repo, tmp / f"floor-{n}")
    sh(repo, "gc", "-q")
    sh(floor, "gc", "-q")
    fresh = iter(range(10**6))
    pending = iter(ids[int(n * args.stepped) + 1:] or ids)

    def run(*a: str) -> None:
        subprocess.run([*logist, "-C", str(repo), *a], check=True, capture_output=True)

    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def with_cpu(name: str, fn: Callable[[], object]) -> Callable[[], object]:
        """``fn``, also recording the CPU time of the processes it waited for (other load on
        the machine moves it much less than wall time)."""
        def run_it() -> object:
            c0 = children_cpu()
            out = fn()
            cpu.setdefault(name, []).append(children_cpu() - c0)
            return out
        return run_it

    def measured(fns: dict[str, Callable[[], object]]) -> dict[str, Callable[[], object]]:
        return {k: with_cpu(k, f) for k, f in fns.items()}

    interleave(samples, measured({
        "gc": lambda: sh(repo, "gc", "-q"),
        "gc-floor": lambda: sh(floor, "gc", "-q"),
        "status": lambda: sh(repo, "status", "--porcelain"),
        "status-floor": lambda: sh(floor, "status", "--porcelain"),
    }), args.rounds)
    interleave(samples, measured({
        "create": lambda: run("job", "create", "--title", f"More {next(fresh)}", "--step", "s"),
        "list": lambda: run("job", "list", "--json"),
        "jstatus": lambda: run("job", "status", ids[0]),
        "step": lambda: run("job", "step", next(pending)),
        "pass": lambda: subprocess.run([logist[0], "-c", "pass"], check=True),
    }), args.rounds)
    out = {k: med_ms(v) for k, v in samples.items()}
    out.update({f"cpu:{k}": med_ms(v[1:] if len(v) > 1 else v) for k, v in cpu.items()})  # [0]: warm-up
    return out


def children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,1000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stepped", type=float, default=0.1, help="fraction of jobs that run a step")
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes making the jobs (default 2)")
    ap.add_argument("--files", type=int, default=500, help="files in the project (default 500)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 5,40, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.rounds = "5,40", 2
    sizes = [int(s) for s in args.sizes.split(",")]
    print("machine:", machine())
    with workspace("logist-bench-scale-") as tmp:
        logist = [installed_python(tmp), "-m", "logist"]
        per_size: dict[int, dict[str, float]] = {}
        results: list[Result] = []
        for n in sizes:
            m = measure(tmp, n, args, logist)
            per_size[n] = m
            results += [
                Result(f"git gc, {n} jobs", m["gc"], m["gc-floor"], "same repo without logist", 3.0),
                Result(f"git status, {n} jobs", m["status"], m["status-floor"], "same repo without logist", 1.2),
                Result(f"logist job status, {n} jobs", m["jstatus"], m["pass"], "python -c pass", 6.0),
                Result(f"logist job list --json, {n} jobs", m["list"], m["pass"], "python -c pass", None),
            ]
        small = sizes[0]
        for n in sizes[1:]:
            for key, what, target in (("create", "logist job create", None), ("list", "logist job list --json", None),
                                      ("jstatus", "logist job status", None), ("step", "logist job step", 1.2),
                                      ("gc", "git gc", None), ("status", "git status", None),
                                      ("pass", "python -c pass", None)):
                results.append(Result(f"{what}: {n} vs {small} jobs", per_size[n][key], per_size[small][key],
                                      f"{small} jobs", target))
        print_results(f"growth with the number of jobs (median of {args.rounds} rounds)", results)
        cpu_results = [Result(f"CPU of {what}: {n} vs {small} jobs", per_size[n][f"cpu:{key}"],
                              per_size[small][f"cpu:{key}"], f"{small} jobs", None)
                       for n in sizes[1:] for key, what in (
                           ("create", "logist job create"), ("list", "logist job list --json"),
                           ("jstatus", "logist job status"), ("step", "logist job step"), ("gc", "git gc"),
                           ("status", "git status"), ("pass", "python -c pass"))]
        cpu_results += [Result(f"CPU of logist job status, {n} jobs", per_size[n]["cpu:jstatus"],
                               per_size[n]["cpu:pass"], "python -c pass", None) for n in sizes]
        print_results("the same in CPU time (user + system of the processes waited for)", cpu_results)


if __name__ == "__main__":
    main()
