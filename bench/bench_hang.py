"""Hang detection latency and the cost of the side process's notes (docs/observer.md#costs-benchbench_hangpy).

    python bench/bench_hang.py [--runs 20] [--silence 1] [--notes 100] [--rounds 3]

1. Hang detection: ``--runs`` jobs, each one step of the mock agent's ``hang`` scenario (it
   prints nothing and sleeps) with ``[sentinel] silence_seconds = --silence``, each run by a real
   ``python -m logist job run ID`` (the engine, its watcher side process, the agent under its
   wrapper). This script polls the agent's process group every 5 ms and reports, per run, the
   time from the agent's last output (the step log's mtime: the log is created when the agent
   starts and the hung agent never writes to it) to the moment no process of its group is left,
   minus the threshold: the latency *beyond* ``silence_seconds``. Split into detection (the
   sentinel's ``interrupt`` note, which it writes just before SIGINT) and stopping (SIGINT to an
   empty group). The sentinel checks every 0.5 s and the watcher polls every 0.25 s, so about
   0.25-0.5 s beyond the threshold is expected.

2. Notes: cost per note line of ``logist.git.notes.append_notes`` (compare-and-swap through one
   ``git fast-import``) against one ``git notes append`` per line, in the same run, in fresh
   repositories: one line per call (the worst case: a watcher flushing a single line), the
   watcher's real pattern (a flush of 10 lines to one commit), and a batch of ``--notes``
   commits in one notes commit. Uses bench/bench_notes.py's helpers.

Not a test: prints medians and maxima (lines starting with ``result:``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import logist_init, machine, new_repo, python_cmd, workspace


def job_toml(silence: float) -> str:
    return (f'title = "Hang benchmark"\nprompt = "hang"\n[budget]\nmax_attempts = 1\n'
            f"[sentinel]\nsilence_seconds = {silence:g}\ninterrupt_grace_seconds = 1\n"
            f"terminate_grace_seconds = 1\n"
            f'[[steps]]\nprompt = "do nothing, silently"\n[steps.mock]\nscenario = "hang"\n')


def create_job(repo: Path, job_file: Path) -> str:
    from logist.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["-C", str(repo), "job", "create", "--file", str(job_file), "--activate",
                     "--json"])
    if code != 0:
        raise RuntimeError(f"job create failed (exit {code}): {buf.getvalue()}")
    return json.loads(buf.getvalue())["id"]


def agent_info(repo: Path, job_id: str) -> dict:
    try:
        return json.loads((repo / ".git" / "logist" / "run" / job_id / "agent.json").read_text())
    except (OSError, ValueError):
        return {}


def poll(pred, timeout: float, what: str, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def one_hang(repo: Path, job_file: Path, silence: float) -> dict:
    from logist.engine.sentinel import group_alive

    job_id = create_job(repo, job_file)
    runner = subprocess.Popen(python_cmd("-m", "logist", "-C", str(repo), "job", "run", job_id),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    pgid = None
    try:
        info = poll(lambda: agent_info(repo, job_id).get("pgid") and agent_info(repo, job_id),
                    30, "the agent to start")
        pgid = int(info["pgid"])
        poll(lambda: not group_alive(pgid), silence + 30, "the hung agent to be stopped")
        gone = time.time()
        last_output = os.stat(info["log"]).st_mtime
        _, err = runner.communicate(timeout=60)
        if runner.returncode != 0:
            raise RuntimeError(f"job run exited {runner.returncode}: {err.decode()[-2000:]}")
    finally:
        for g in (runner.pid, pgid):
            if g:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(g, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.communicate(timeout=10)
    notes = subprocess.run(["git", "-C", str(repo), "notes", "--ref=logist/sentinel", "show",
                            info["commit"]], capture_output=True, text=True).stdout
    interrupt = next(json.loads(line) for line in notes.splitlines()
                     if json.loads(line).get("action") == "interrupt")
    t_int = epoch(interrupt["t"])
    return {"beyond": gone - last_output - silence, "detect": t_int - last_output - silence,
            "stop": gone - t_int, "signal": interrupt["signal"]}


def bench_hang(runs: int, silence: float, root: Path) -> None:
    repo = new_repo(root / "hang")
    logist_init(repo)
    job_file = root / "hang.toml"
    job_file.write_text(job_toml(silence))
    rows = []
    for i in range(runs):
        r = one_hang(repo, job_file, silence)
        rows.append(r)
        print(f"  run {i + 1:2d}: {r['beyond'] * 1000:7.0f} ms beyond the threshold "
              f"(detection {r['detect'] * 1000:6.0f} ms, stop {r['stop'] * 1000:5.0f} ms, "
              f"{r['signal']})", flush=True)
    for key, label in (("beyond", "last output -> group gone, beyond silence_seconds"),
                       ("detect", "last output -> sentinel interrupt note, beyond"),
                       ("stop", "interrupt note -> group gone")):
        xs = [r[key] * 1000 for r in rows]
        print(f"result: hang {label} | median={statistics.median(xs):.0f}ms | "
              f"max={max(xs):.0f}ms | min={min(xs):.0f}ms | runs={len(xs)} | "
              f"silence_seconds={silence:g}")


def bench_notes(n: int, rounds: int, root: Path) -> None:
    from bench.bench_notes import line, time_batch, time_batch1, time_git_notes_add
    from bench.bench_notes import new_repo as notes_repo
    from logist.git.notes import append_notes

    ref = "refs/notes/logist/observer"

    def watcher_flushes(repo: Path, commits: list[str]) -> float:
        """The watcher's pattern: 10 lines per flush, all on one commit (the step's)."""
        target = commits[0]
        t0 = time.perf_counter()
        for i in range(0, len(commits), 10):
            append_notes(repo, ref, {target: [line(j) for j in range(i, i + 10)]})
        return (time.perf_counter() - t0) / len(commits)

    cases = {"git notes append, 1 process per line": time_git_notes_add,
             "append_notes, 1 line per call": time_batch1,
             "append_notes, 10 lines per call on one commit (watcher flush)": watcher_flushes,
             f"append_notes, {n} commits in one call": time_batch}
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            repo, commits = notes_repo(root, f"notes-{r}-{names.index(k)}", n)
            samples[k].append(cases[k](repo, commits))
    base = statistics.median(samples[names[0]])
    for k in names:
        med = statistics.median(samples[k])
        print(f"result: notes {k} | {med * 1000:.3f} ms/line | x{med / base:.2f} vs git notes "
              f"append | rounds={rounds} | lines per round={n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--silence", type=float, default=1.0)
    ap.add_argument("--notes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-notes", action="store_true")
    args = ap.parse_args()
    print(f"# bench_hang: {machine()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    with workspace("logist-bench-hang-") as root:
        print(f"\n## hang detection: {args.runs} runs of a silent mock agent, "
              f"silence_seconds = {args.silence:g}", flush=True)
        bench_hang(args.runs, args.silence, root)
        if not args.skip_notes:
            print("\n## notes: cost per note line", flush=True)
            bench_notes(args.notes, args.rounds, root)


if __name__ == "__main__":
    main()
