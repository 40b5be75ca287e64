"""Review branch benchmark (docs/performance.md#review-branch): what rebuilding
``logist-review/<id>`` adds to a harvest, against the git work a script would do.

    python bench/bench_review.py [--quick] [--rounds N] [--steps N]

A job of N steps (default 10), each writing one file with the mock agent, is run once. Then,
interleaved round by round:

- ``update, one new step``: the review branch one commit behind (as before a harvest) brought up
  to date by ``logist.store.review.update`` (read the record and history, one ``git log`` of the
  job branch, one ``cat-file --batch``, one ``--batch-check``, one tree and one commit written,
  one compare-and-swap);
- ``update, unchanged``: the same call when nothing changed (``logist push``/``job pr``);
- ``build, read-only``: what ``job diff``/``job show`` compute (nothing written).

Floor, in the same run: the one new review commit made by hand with git plumbing (``git
ls-tree`` of the harvest, ``git mktree`` without ``.logist``, ``git commit-tree``, ``git
update-ref``: 4 processes). Not a test: prints medians and ratios (``result:`` lines).
"""

from __future__ import annotations

import argparse
import os
import sys
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


def job_toml(steps: int) -> str:
    out = ['title = "Review benchmark"', 'agent = "mock"']
    for i in range(1, steps + 1):
        out += ["[[steps]]", f'name = "s{i}"', f'prompt = "Write f{i}.txt"', "[steps.mock]",
                f'writes = {{ "f{i}.txt" = "{i}\\n" }}']
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    ap.add_argument("--steps", type=int, default=10, help="steps of the job (default 10)")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds

    from logist.git import refs
    from logist.store import review
    from logist.store.jobstore import JobStore

    with workspace("bench-review") as tmp:
        repo = new_repo(tmp / "repo")
        logist_init(repo)
        toml = tmp / "job.toml"
        toml.write_text(job_toml(args.steps))
        env = {**os.environ, "LOGIST_NO_WATCHER": "1"}
        jid = run_proc(python_cmd("-m", "logist", "job", "create", "--file", str(toml), "--activate"),
                       cwd=repo, env=env).stdout.decode().strip()
        run_proc(python_cmd("-m", "logist", "job", "run", jid), cwd=repo, env=env)
        store = JobStore.discover(repo)
        ref = refs.review_ref(jid)
        head = sh(repo, "rev-parse", ref)
        behind = sh(repo, "rev-parse", f"{head}~1")
        harvest = sh(repo, "log", "-1", "--format=%(trailers:key=Logist-Commit,valueonly)", head).strip()
        msg = sh(repo, "log", "-1", "--format=%B", head)

        samples: dict[str, list[float]] = {"one": [], "same": [], "read": [], "floor": []}

        def floor() -> None:
            listing = sh(repo, "ls-tree", harvest)
            kept = "".join(line + "\n" for line in listing.splitlines() if not line.endswith("\t.logist"))
            tree = sh(repo, "mktree", input=kept)
            commit = sh(repo, "commit-tree", tree, "-p", behind, input=msg)
            sh(repo, "update-ref", "refs/heads/bench-floor", commit)

        for r in range(rounds + 1):
            for name in ("one", "same", "read", "floor")[r % 4:] + ("one", "same", "read", "floor")[:r % 4]:
                if name == "one":
                    sh(repo, "update-ref", ref, behind)
                    t = timed(lambda: review.update(store, jid))
                elif name == "same":
                    t = timed(lambda: review.update(store, jid))
                elif name == "read":
                    t = timed(lambda: review.build(store, jid, write=False))
                else:
                    t = timed(floor)
                if r:  # the first round warms up
                    samples[name].append(t)
        assert sh(repo, "rev-parse", ref) == head
        fl = med_ms(samples["floor"])
        print(machine())
        print_results(f"review branch of a {args.steps}-step job", [
            Result("update, one new step (a harvest)", med_ms(samples["one"]), fl, "plumbing, 4 git", 3.0),
            Result("update, unchanged (push, job pr)", med_ms(samples["same"]), fl, "plumbing, 4 git", 3.0),
            Result("build, read-only (job diff/show)", med_ms(samples["read"]), fl, "plumbing, 4 git", None),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
