"""Reads bounded by the job, not by the project (docs/architecture.md#reads).

    python bench/bench_reads.py [--quick] [--rounds N] [--commits 60000]

Two projects: one with ``--commits`` commits of history (one ``git fast-import``, a linear
chain touching a few files each, like a long-lived project) and one with a single commit. In each,
the same job (two ``command`` steps, run to SUCCESS, with the observer's notes). Each read runs as
a fresh process in both projects, interleaved round by round; the ratio is big project / small
project (target <= 1.3x: the read costs what the job costs, whatever lies behind its base):
``job status``, ``job log``, ``job history --notes``, ``job metrics``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    Result,
    interleave,
    logist_init,
    machine,
    med_ms,
    print_results,
    python_cmd,
    run_proc,
    sh,
    workspace,
)

JOB = """\
title = "Bounded reads"
[[steps]]
name = "build"
command = [{py}, "-c", "print('building'); open('built.txt', 'w').write('ok')"]
[[steps]]
name = "test"
command = [{py}, "-c", "print('3 passed')"]
"""


def big_history(path: Path, commits: int) -> None:
    """A repository with ``commits`` commits on main (one fast-import)."""
    path.mkdir(parents=True)
    sh(path, "init", "-q", "-b", "main")
    chunks = []
    for i in range(commits):
        msg = f"change {i}\n".encode()
        body = f"# module {i % 97}\nVALUE = {i}\n".encode()
        chunks += [b"commit refs/heads/main\n", b"mark :%d\n" % (i + 1),
                   b"committer Dev <dev@example.invalid> %d +0000\n" % (1600000000 + i),
                   b"data %d\n" % len(msg), msg]
        if i:
            chunks.append(b"from :%d\n" % i)
        chunks += [b"M 100644 inline src/mod%d.py\n" % (i % 97), b"data %d\n" % len(body), body, b"\n"]
    proc = subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(chunks),
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    sh(path, "reset", "-q", "--hard", "main")


def project_with_job(path: Path, commits: int) -> str:
    from logist.cli import main

    if commits > 1:
        big_history(path, commits)
    else:
        path.mkdir(parents=True)
        sh(path, "init", "-q", "-b", "main")
        (path / "src").mkdir()
        (path / "src/mod0.py").write_text("VALUE = 0\n")
        sh(path, "add", "-A")
        sh(path, "commit", "-q", "-m", "initial")
    logist_init(path)
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "logist init")
    job_file = path.parent / f"{path.name}-job.toml"
    job_file.write_text(JOB.format(py=json.dumps(sys.executable)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        if main(["-C", str(path), "job", "create", "--file", str(job_file), "--activate", "--json"]) != 0:
            raise RuntimeError("job create failed")
    jid = json.loads(out.getvalue())["id"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if main(["-C", str(path), "job", "run", jid]) != 0:
            raise RuntimeError("job run failed")
    sh(path, "gc", "-q")  # packed, as a clone is
    return jid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small history, few rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--commits", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 11)
    commits = args.commits or (2000 if args.quick else 60000)
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_reads.py {' '.join(sys.argv[1:])}".rstrip())
    with workspace("logist-bench-reads-") as tmp:
        t0 = time.perf_counter()
        big_job = project_with_job(tmp / "big", commits)
        small_job = project_with_job(tmp / "small", 1)
        print(f"projects built in {time.perf_counter() - t0:.1f} s: {commits} commits and 1 commit, "
              f"one job each ({sh(tmp / 'big', 'rev-list', '--count', 'HEAD')} commits on main)")
        reads = {"job status": ["job", "status"], "job log": ["job", "log"],
                 "job history --notes": ["job", "history", "--notes"], "job metrics": ["job", "metrics"]}
        results = []
        for name, argv in reads.items():
            fns = {}
            for which, jid in (("big", big_job), ("small", small_job)):
                cmd = python_cmd("-m", "logist", "-C", str(tmp / which), *argv[:2], jid, *argv[2:])
                fns[which] = (lambda c=cmd: run_proc(c))
            samples: dict[str, list[float]] = {}
            interleave(samples, fns, rounds)
            results.append(Result(f"{name}, {commits} commits vs 1 commit", med_ms(samples["big"]),
                                  med_ms(samples["small"]), "the same read, 1-commit project", 1.3))
        print_results("reads bounded by the job", results)


if __name__ == "__main__":
    main()
