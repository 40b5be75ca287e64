"""What logist's git hooks add to everyday git commands (docs/sharing.md#hooks).

    python bench/bench_hooks.py [--quick] [--rounds N] [--jobs 1000]

A repository with ``--jobs`` job branches (one ``git fast-import``, as in bench_core) and
``logist init``'s hooks. Each operation runs the same git command with the hooks and with
``-c core.hooksPath=/dev/null`` (the floor: no hook at all), interleaved round by round; the
result is the median of each and the difference (target: <= 50 ms added):

- ``merge --ff-only, base unchanged``: a fast-forward merge on a topic branch (the gc base,
  main, did not move: the shim's one ``git rev-parse`` says there is nothing to check);
- ``merge --ff-only into the base``: a fast-forward of main itself (the base moved: the shim
  starts the cleanup detached and returns; the detached run is waited for, untimed, before the
  next round so that it does not load the next measurement);
- ``commit --amend``: post-rewrite "amend" (the shim returns before starting anything).

The detached cleanup's own duration (1,000 jobs, nothing integrated) is printed for information.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import Result, logist_init, machine, new_repo, print_results, sh, timed, workspace
from bench.bench_core import make_jobs

NO_HOOKS = ("-c", "core.hooksPath=/dev/null")


def git_ok(repo: Path, *args: str) -> None:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}")


def hook_runs(repo: Path) -> int:
    log = repo / ".git/logist/hooks.log"
    return log.read_text().count(": checked ") if log.exists() else 0


def wait_hook(repo: Path, before: int, timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while hook_runs(repo) <= before:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the detached hook run did not finish")
        time.sleep(0.01)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few jobs and rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 21)
    n_jobs = args.jobs or (50 if args.quick else 1000)
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_hooks.py {' '.join(sys.argv[1:])}".rstrip())
    with workspace("logist-bench-hooks-") as tmp:
        repo = new_repo(tmp / "project")
        logist_init(repo)
        sh(repo, "add", "-A")
        sh(repo, "commit", "-q", "-m", "logist init")
        make_jobs(repo, n_jobs)
        sh(repo, "pack-refs", "--all")
        # a topic branch one commit ahead of main, and main's own next commit
        base = sh(repo, "rev-parse", "main")
        sh(repo, "checkout", "-q", "-b", "topic")
        (repo / "topic.txt").write_text("topic\n")
        sh(repo, "add", "topic.txt")
        sh(repo, "commit", "-q", "-m", "topic")
        ahead = sh(repo, "rev-parse", "HEAD")
        sh(repo, "checkout", "-q", "-b", "work", base)
        # first run of the hook: records the base it checked
        before = hook_runs(repo)
        git_ok(repo, "merge", "-q", "--ff-only", "topic")
        first = wait_hook(repo, before)
        print(f"detached cleanup of {n_jobs} jobs (nothing integrated): {first * 1000:.0f} ms, "
              "not part of any git command")

        def ff_work(hooks: bool) -> float:
            git_ok(repo, "reset", "-q", "--hard", base)
            return timed(lambda: git_ok(repo, *(() if hooks else NO_HOOKS), "merge", "-q", "--ff-only", ahead))

        tree = sh(repo, "rev-parse", f"{ahead}^{{tree}}")
        made = [0]

        def ff_main(hooks: bool) -> float:
            made[0] += 1  # a commit main never had: the base really moves
            new = sh(repo, "commit-tree", tree, "-p", base, "-m", f"round {made[0]}")
            git_ok(repo, "checkout", "-q", "main")
            git_ok(repo, "reset", "-q", "--hard", base)
            before = hook_runs(repo)
            t = timed(lambda: git_ok(repo, *(() if hooks else NO_HOOKS), "merge", "-q", "--ff-only", new))
            if hooks:
                wait_hook(repo, before)
            git_ok(repo, "checkout", "-q", "work")
            return t

        def amend(hooks: bool) -> float:
            return timed(lambda: git_ok(repo, *(() if hooks else NO_HOOKS), "commit", "-q", "--amend",
                                        "--allow-empty", "--no-edit"))

        ops = {"merge --ff-only, base unchanged": ff_work, "merge --ff-only into the base": ff_main,
               "commit --amend": amend}
        results = []
        for name, fn in ops.items():
            with_h: list[float] = []
            without: list[float] = []
            for r in range(1 + rounds):
                pair = [(True, with_h), (False, without)]
                for hooks, out in (pair if r % 2 else pair[::-1]):
                    t = fn(hooks)
                    if r:
                        out.append(t)
            hm, fm = statistics.median(with_h) * 1000, statistics.median(without) * 1000
            results.append(Result(f"{name} ({n_jobs} jobs)", hm, fm, "same git command, no hooks", None,
                                  note=f"added {hm - fm:+.1f} ms (target <= +50 ms: "
                                       f"{'met' if hm - fm <= 50 else 'NOT met'})"))
        print_results(f"git commands with logist's hooks, {n_jobs} jobs", results)


if __name__ == "__main__":
    main()
