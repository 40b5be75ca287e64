"""Cost per note: logist.git.notes.append_notes (batch of 1, batch of 100) vs one `git notes add`.

    python bench/bench_notes.py [--rounds 5] [--notes 100] [--big 10000]

Everything runs in one process, in fresh temporary repositories, in the same run, so the ratios
compare like with like. Also measured, to justify the design choice in logist/notes.py:
"fast-import to a temporary ref + `git update-ref` compare-and-swap" (one more process per write)
against publishing directly with fast-import's own checked ref update. Not a test: prints
medians (ms per note) and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logist.git.gitcmd import base_env
from logist.git.notes import append_notes, json_line

REF = "refs/notes/logist/observer"


def sh(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True,
                          text=True, check=True, env=base_env()).stdout.strip()


def new_repo(root: Path, name: str, n_commits: int) -> tuple[Path, list[str]]:
    repo = root / name
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    stream = []
    for i in range(n_commits):
        msg = f"c{i}"
        stream.append(f"commit refs/heads/main\nmark :{i + 1}\ncommitter B <b@x> {1700000000 + i} +0000\n"
                      f"data {len(msg)}\n{msg}\n" + (f"from :{i}\n" if i else "") + "\n")
    sh(repo, "fast-import", "--quiet", input="".join(stream))
    return repo, sh(repo, "rev-list", "--reverse", "main").split()


def line(i: int) -> str:
    return json_line({"t": f"2025-01-01T00:00:{i % 60:02d}.000Z", "signal": "rate_limit",
                      "line": i, "text": "API Error: 429 rate limited"})


def time_git_notes_add(repo: Path, commits: list[str]) -> float:
    t0 = time.perf_counter()
    for i, c in enumerate(commits):
        subprocess.run(["git", "-C", str(repo), "notes", "--ref", REF, "append", "-m", line(i), c],
                       capture_output=True, check=True, env=base_env())
    return (time.perf_counter() - t0) / len(commits)


def time_batch1(repo: Path, commits: list[str]) -> float:
    t0 = time.perf_counter()
    for i, c in enumerate(commits):
        append_notes(repo, REF, {c: [line(i)]})
    return (time.perf_counter() - t0) / len(commits)


def time_batch(repo: Path, commits: list[str]) -> float:
    t0 = time.perf_counter()
    append_notes(repo, REF, {c: [line(i)] for i, c in enumerate(commits)})
    return (time.perf_counter() - t0) / len(commits)


def time_tempref_variant(repo: Path, commits: list[str]) -> float:
    """The alternative: fast-import --force to a private ref, then update-ref CAS + delete it.
    (New notes only, no read of old content: a lower bound for that design.)"""
    tmp = "refs/logist-bench-tmp/notes"
    env = base_env()
    t0 = time.perf_counter()
    for i, c in enumerate(commits):
        old = subprocess.run(["git", "-C", str(repo), "rev-parse", "-q", "--verify", REF],
                             capture_output=True, text=True, env=env).stdout.strip()
        data = line(i) + "\n"
        stream = (f"blob\nmark :1\ndata {len(data.encode())}\n{data}\n"
                  f"commit {tmp}\nmark :2\ncommitter B <b@x> now\ndata 1\nx\n"
                  + (f"from {old}\n" if old else "") + f"N :1 {c}\n\nget-mark :2\ndone\n")
        new = subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet", "--force", "--done",
                              "--date-format=now"], input=stream, capture_output=True, text=True,
                             env=env, check=True).stdout.strip()
        txn = (f"start\nupdate {REF} {new} {old or '0' * 40}\ndelete {tmp}\nprepare\ncommit\n")
        subprocess.run(["git", "-C", str(repo), "update-ref", "--stdin"], input=txn,
                       capture_output=True, text=True, env=env, check=True)
    return (time.perf_counter() - t0) / len(commits)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--notes", type=int, default=100)
    ap.add_argument("--big", type=int, default=10000, help="notes already in the big-tree case")
    args = ap.parse_args()
    n = args.notes
    results: dict[str, list[float]] = {k: [] for k in (
        "git notes add (1 process per note)", "append_notes, batch of 1",
        f"append_notes, batch of {n}", "alt: fast-import temp ref + update-ref CAS, batch of 1",
        f"append_notes, batch of 1, {args.big} notes in tree",
        f"git notes add, {args.big} notes in tree")}
    keys = list(results)
    with tempfile.TemporaryDirectory(prefix="logist-bench-notes-") as d:
        root = Path(d)
        big_repo, big_commits = new_repo(root, "big", args.big + n)
        append_notes(big_repo, REF, {c: [line(i)] for i, c in enumerate(big_commits[:args.big])})
        for r in range(args.rounds):
            for k, fn in zip(keys[:4], (time_git_notes_add, time_batch1, time_batch,
                                        time_tempref_variant), strict=True):
                repo, commits = new_repo(root, f"r{r}-{keys.index(k)}", n)
                results[k].append(fn(repo, commits))
            targets = big_commits[args.big:]
            results[keys[4]].append(time_batch1(big_repo, targets[: n // 4]))
            results[keys[5]].append(time_git_notes_add(big_repo, targets[n // 4: n // 2]))
            sh(big_repo, "update-ref", REF, sh(big_repo, "rev-parse", f"{REF}~{n // 2}"))
    base = statistics.median(results[keys[0]])
    print(f"git {sh(Path('.'), 'version')}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds, {n} notes per round; median ms per note")
    for k in keys:
        med = statistics.median(results[k])
        print(f"  {k:58s} {med * 1000:8.3f} ms/note   x{med / base:5.2f} vs git notes add")


if __name__ == "__main__":
    main()
