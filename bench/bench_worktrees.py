"""What a job's worktree costs (docs/architecture.md#worktrees).

    python bench/bench_worktrees.py [--quick] [--rounds N] [--files 5000]

A project of ``--files`` files (like a mid-size repository). Interleaved round by round:

- making a job's worktree (``JobStore.ensure_worktree``, what the first step and ``job path``
  do) against ``git worktree add`` of another branch at the same commit (the floor; target
  <= 1.3x);
- the same with ``[worktrees] sparse = ["src/pkg0"]`` (informational);
- giving a finished job's worktree back (``JobStore.release_worktree``: the checks that nothing
  would be lost, rename aside, ``git worktree prune``, delete) against ``git worktree remove``
  of the floor's worktree (informational);
- ``logist job create`` as a fresh process with ``[worktrees] at_first_step = true``: it makes
  no worktree (informational).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few files and rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--files", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 9)
    n_files = args.files or (300 if args.quick else 5000)
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_worktrees.py {' '.join(sys.argv[1:])}".rstrip())
    from logist.engine.jobs import create_job
    from logist.store.jobstore import JobStore

    with workspace("logist-bench-worktrees-") as tmp:
        repo = new_repo(tmp / "project", n_files)
        logist_init(repo)
        sh(repo, "add", "-A")
        sh(repo, "commit", "-q", "-m", "logist init")
        store = JobStore.discover(repo)
        from logist.core.jobfile import parse_job_text

        spec = parse_job_text('title = "Bench"\n[[steps]]\nprompt = "x"\n')
        jid = create_job(store, spec, job_id="bench-wt-0001").id
        sparse_repo_cfg = repo / ".logist" / "config.local.toml"
        floor_dir = tmp / "floor-wt"
        sh(repo, "branch", "floor-branch", "HEAD")
        samples: dict[str, list[float]] = {"logist": [], "floor": [], "sparse": [], "release": [],
                                           "remove": []}

        def logist_wt(sparse: bool) -> float:
            if sparse:
                sparse_repo_cfg.write_text('[worktrees]\nsparse = ["src/pkg0"]\n')
            s = JobStore.discover(repo)  # a fresh store reads the config
            t = timed(lambda: s.ensure_worktree(jid))
            wt = s.worktree_path(jid)
            if sparse:
                n = len(list(wt.rglob("*.py")))
                assert n < n_files, f"sparse checkout made {n} files"
                sparse_repo_cfg.unlink()
                sh(repo, "worktree", "remove", "--force", str(wt))
            else:
                samples["release"].append(timed(lambda: kept_of(s.release_worktree(jid))))
                assert not wt.exists()
            return t

        def kept_of(why: str | None) -> None:
            assert why is None, f"release refused: {why}"

        def floor() -> float:
            t = timed(lambda: sh(repo, "worktree", "add", "-q", str(floor_dir), "floor-branch"))
            samples["remove"].append(timed(lambda: sh(repo, "worktree", "remove", str(floor_dir))))
            return t

        for r in range(1 + rounds):
            order = [("logist", lambda: logist_wt(False)), ("floor", floor), ("sparse", lambda: logist_wt(True))]
            k = r % len(order)
            for name, fn in order[k:] + order[:k]:
                t = fn()
                if r:
                    samples[name].append(t)
            if not r:  # the warm-up round counts for nothing
                samples["release"].clear()
                samples["remove"].clear()
        if floor_dir.exists():
            shutil.rmtree(floor_dir)
        sparse_repo_cfg.write_text("[worktrees]\nat_first_step = true\n")
        job_file = tmp / "job.toml"
        job_file.write_text('title = "Created"\n[[steps]]\nprompt = "x"\n')
        create = []
        for _ in range(max(2, rounds // 3)):
            create.append(timed(lambda: run_proc(python_cmd("-m", "logist", "-C", str(repo), "job", "create",
                                                            "--file", str(job_file)))))
        wts = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
        print(f"worktrees after {len(create)} job create: {len(wts.splitlines()) - 1}")
        results = [
            Result(f"make a job's worktree, {n_files} files", med_ms(samples["logist"]), med_ms(samples["floor"]),
                   "git worktree add", 1.3),
            Result(f"the same, sparse = [\"src/pkg0\"], {n_files} files", med_ms(samples["sparse"]),
                   med_ms(samples["floor"]), "git worktree add (full)", None),
            Result(f"give a finished job's worktree back, {n_files} files", med_ms(samples["release"]),
                   med_ms(samples["remove"]), "git worktree remove", None),
            Result("logist job create (no worktree), fresh process", med_ms(create), med_ms(samples["floor"]),
                   "git worktree add", None),
        ]
        print_results("worktrees", results)


if __name__ == "__main__":
    main()
