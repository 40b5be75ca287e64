"""What a clone of a remote with many pushed jobs costs, with and without `logist hide-jobs`.

A project with N jobs pushed by `logist push` (the job branches, their logist refs and notes)
against the same project with none pushed (the floor). For each, measured interleaved round by
round:

- `git clone` of the remote (a hidden clone: `git init` + `git remote add` + the negative refspec
  `^refs/heads/logist/*` + `git fetch` + checkout, as docs/cli.md#logist-hide-jobs shows);
- `git fetch` with nothing new, in a plain clone and in a hidden one;
- `git ls-remote` (lists every ref of the remote: refspecs do not apply, so hiding cannot help);
- `git branch -a` in a plain clone and in a hidden one.

The jobs are made with one `git fast-import` of valid records (the refs are what this measures;
see bench_core.make_jobs) and pushed with `logist push`, as users push them.

    python bench/bench_remote.py [--jobs 1000] [--rounds 7] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import Result, interleave, logist_init, machine, med_ms, new_repo, print_results, sh, workspace
from bench.bench_core import make_jobs


def make_remote(tmp: Path, name: str, jobs: int) -> Path:
    """A bare remote holding a project (and ``jobs`` jobs pushed by `logist push`)."""
    from logist.cli import main

    project = new_repo(tmp / f"{name}-project", n_files=200)
    logist_init(project)
    sh(project, "add", "-A")
    sh(project, "commit", "-q", "-m", "logist init")
    remote = tmp / f"{name}.git"
    sh(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    sh(project, "remote", "add", "origin", str(remote))
    sh(project, "push", "-q", "origin", "main")
    if jobs:
        make_jobs(project, jobs)
        with contextlib.redirect_stdout(io.StringIO()):
            if main(["-C", str(project), "push", "origin"]) != 0:
                raise RuntimeError("logist push failed")
    return remote


def plain_clone(remote: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    sh(remote.parent, "clone", "-q", str(remote), str(dest))


def hidden_clone(remote: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    sh(remote.parent, "init", "-q", "-b", "main", str(dest))
    sh(dest, "remote", "add", "origin", str(remote))
    sh(dest, "config", "--add", "remote.origin.fetch", "^refs/heads/logist/*")
    sh(dest, "fetch", "-q", "origin")
    sh(dest, "checkout", "-q", "main")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 jobs, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.rounds = 50, 2
    print("machine:", machine())
    with workspace("logist-bench-remote-") as tmp:
        with_jobs = make_remote(tmp, "jobs", args.jobs)
        without = make_remote(tmp, "empty", 0)
        heads = len(sh(with_jobs, "for-each-ref", "refs/heads/logist/").splitlines())
        print(f"remote with {heads} job branches pushed by `logist push`; floor remote: none")

        samples: dict[str, list[float]] = {}
        fns = {
            "clone/jobs": lambda: plain_clone(with_jobs, tmp / "c1"),
            "clone/empty": lambda: plain_clone(without, tmp / "c2"),
            "hclone/jobs": lambda: hidden_clone(with_jobs, tmp / "c3"),
        }
        interleave(samples, fns, args.rounds)
        plain_clone(with_jobs, tmp / "p-jobs")
        plain_clone(without, tmp / "p-empty")
        hidden_clone(with_jobs, tmp / "h-jobs")
        fns = {
            "fetch/jobs": lambda: sh(tmp / "p-jobs", "fetch", "-q"),
            "fetch/empty": lambda: sh(tmp / "p-empty", "fetch", "-q"),
            "hfetch/jobs": lambda: sh(tmp / "h-jobs", "fetch", "-q"),
            "ls-remote/jobs": lambda: sh(tmp / "p-jobs", "ls-remote", "origin"),
            "ls-remote/empty": lambda: sh(tmp / "p-empty", "ls-remote", "origin"),
            "branch/jobs": lambda: sh(tmp / "p-jobs", "branch", "-a"),
            "branch/empty": lambda: sh(tmp / "p-empty", "branch", "-a"),
            "hbranch/jobs": lambda: sh(tmp / "h-jobs", "branch", "-a"),
        }
        interleave(samples, fns, args.rounds * 2)
        m = {k: med_ms(v) for k, v in samples.items()}
        n = args.jobs
        results = [
            Result(f"git clone, {n} jobs on the remote", m["clone/jobs"], m["clone/empty"], "no jobs", None),
            Result(f"hidden clone, {n} jobs on the remote", m["hclone/jobs"], m["clone/empty"], "no jobs", 1.5),
            Result(f"git fetch (nothing new), {n} jobs", m["fetch/jobs"], m["fetch/empty"], "no jobs", None),
            Result(f"git fetch (nothing new), {n} jobs, hidden", m["hfetch/jobs"], m["fetch/empty"], "no jobs", 1.5),
            Result(f"git ls-remote, {n} jobs (hiding cannot apply)", m["ls-remote/jobs"], m["ls-remote/empty"],
                   "no jobs", None),
            Result(f"git branch -a, {n} jobs", m["branch/jobs"], m["branch/empty"], "no jobs", None),
            Result(f"git branch -a, {n} jobs, hidden", m["hbranch/jobs"], m["branch/empty"], "no jobs", 1.5),
        ]
        print_results(f"a clone of a remote with {n} jobs (median of {args.rounds}+ rounds)", results)


if __name__ == "__main__":
    main()
