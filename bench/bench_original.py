"""logist side by side with the original logist (jjurach/logist), for the commands both have.

The original keeps jobs as files under a jobs directory (``jobs_index.json`` plus one
``job_manifest.json`` per job, found with ``--jobs-dir``); logist keeps them in git. Both are
driven here as their users drive them: fresh CLI processes, in a fresh project repository per
tool and per size, with jobs made by each tool's own ``job create``.

Commands both have, and how each spells them:

| command | logist | original |
|---|---|---|
| job create | ``logist job create --title T --prompt P --step P`` | ``logist job create -n ID -p P`` |
| job list | ``logist job list`` (and ``--json``) | ``logist job list`` (no ``--json``) |
| job status | ``logist job status ID [--json]`` | ``logist job status ID [--json]`` |
| job metrics | ``logist job metrics ID`` | ``logist job metrics ID`` |
| job select | ``logist job select ID`` | ``logist job select ID`` |
| job suspend / resume | ``logist job suspend ID`` / ``resume ID`` | the same |

(The original's ``job activate`` fails with a TypeError at its last commit, so it is not
compared; its ``init`` fails on missing package data after a plain ``pip install`` and is not
needed by the commands above.)

Each size (default 1 and 1,000 jobs) gets a fresh project per tool; the 1,000 jobs are made by
each tool's ``job create`` code in a few long-running driver processes (logist's in ``--jobs``
parallel workers: its creates are compare-and-swaps on refs; the original's in one process: its
``jobs_index.json`` is read, changed and rewritten without a lock, so parallel creates lose jobs).
Then every command runs as a fresh process for each tool, interleaved command by command (the
order of the tools alternates each round), median of ``--rounds`` rounds. ``python -c pass`` is
measured in the same rounds (the fixed cost of any fresh Python process here). Each line also
gives the CPU time (user + system, the command and the git processes it waited for), which
other load on the machine moves much less than wall time; the target is on wall time. logist runs as
after a plain ``pip install`` (``bench.installed_python``: no editable-install import hook), the
original from its own venv's ``logist`` script.

Needs the original installed in its own virtual environment (bench/README.md says how); its
path comes from ``--original-venv`` or ``$LOGIST_ORIGINAL_VENV``. Without it the script says so
and exits 0 without measuring. It never runs inside the test suite.

    python bench/bench_original.py --original-venv ~/venv-original [--sizes 1,1000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import installed_python, logist_init, machine, make_jobs, med_ms, new_repo, sh, timed, workspace

READS = {"job list", "job list --json", "job status", "job status --json", "job metrics"}
TARGET_READ, TARGET_WRITE = 1.0, 1.3

# Runs inside the original's venv: its click group, called in a loop (the code `job create` runs).
ORIGINAL_DRIVER = """
import contextlib, io, sys
from logist.cli import main
jobs_dir, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, last):
    with contextlib.redirect_stdout(io.StringIO()):
        main(["--jobs-dir", jobs_dir, "job", "create", "-n", f"job-{i}", "-p", f"Task {i}: write a file"],
             standalone_mode=False)
"""

def original_python(venv: Path) -> Path | None:
    py, exe = venv / "bin" / "python", venv / "bin" / "logist"
    if not (py.exists() and exe.exists()):
        return None
    probe = subprocess.run([str(py), "-c", "import logist.cli, logist.services.job_manager"],
                           capture_output=True, env=original_env(), cwd=venv)  # not here: ./logist
    return py if probe.returncode == 0 else None


class Tool:
    """One tool's project, jobs and command lines."""

    def __init__(self, name: str, argv: list[str], cwd: Path) -> None:
        self.name, self.argv, self.cwd = name, argv, cwd
        self.ids: list[str] = []
        self.env = original_env() if name == "original" else dict(os.environ)

    def run(self, *args: str) -> None:
        proc = subprocess.run([*self.argv, *args], cwd=self.cwd, env=self.env, capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace')[-2000:]}")


def original_env() -> dict[str, str]:
    """The bench's environment without the PYTHONPATH that points at this checkout's logist
    (the original's package has the same name)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOGIST_JOBS_DIR")}


def build(tmp: Path, n: int, orig_py: Path, workers: int) -> tuple[Tool, Tool]:
    """A project per tool with ``n`` jobs made by the tool's own `job create`."""
    ours_repo = new_repo(tmp / f"logist-{n}")
    sh(ours_repo, "config", "gc.auto", "6700")  # git's default (the bench's own config turns auto-gc off)
    logist_init(ours_repo)  # what a user runs once (the original needs no init for these commands)
    sh(ours_repo, "add", "-A")
    sh(ours_repo, "commit", "-q", "-m", "logist init")
    orig_repo = new_repo(tmp / f"original-{n}")
    jobs_dir = tmp / f"original-{n}-jobs"
    ours = Tool("logist", [installed_python(tmp), "-m", "logist", "-C", str(ours_repo)], ours_repo)
    orig = Tool("original", [str(orig_py.parent / "logist"), "--jobs-dir", str(jobs_dir)], orig_repo)
    t0 = time.perf_counter()
    orig_proc = subprocess.Popen([str(orig_py), "-c", ORIGINAL_DRIVER, str(jobs_dir), "0", str(n)],
                                 cwd=orig_repo, env=original_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ours.ids = make_jobs(ours_repo, n, workers)
    _, errs = orig_proc.communicate()
    if orig_proc.returncode != 0:
        raise RuntimeError(f"the original's {n} jobs failed: {errs.decode(errors='replace')[-2000:]}")
    took = time.perf_counter() - t0
    index = json.loads((jobs_dir / "jobs_index.json").read_text())
    orig.ids = [f"job-{i}" for i in range(n)]
    made_ours = len(sh(ours_repo, "for-each-ref", "--format=%(refname)", "refs/heads/logist/").split())
    if len(index.get("jobs", {})) != n or made_ours != n or len(ours.ids) != n:
        raise RuntimeError(f"expected {n} jobs each: original {len(index.get('jobs', {}))}, "
                           f"logist {made_ours} branches / {len(ours.ids)} ids")
    print(f"{n} jobs: made by each tool's `job create` in {took:.1f} s "
          f"(logist in {min(workers, n)} worker(s), the original in 1, at the same time)", flush=True)
    return ours, orig


def commands(ours: Tool, orig: Tool) -> list[tuple[str, Callable[[Tool], None]]]:
    """(name, run it for one tool) for every shared command; ids differ per tool."""
    extra = iter(range(10**6))

    def first(t: Tool) -> str:
        return t.ids[0]

    def susp(t: Tool) -> str:
        return t.ids[-1]

    def create(t: Tool) -> None:
        k = next(extra)
        if t is ours:
            t.run("job", "create", "--title", f"Extra {k}", "--prompt", "write a file", "--step", "write a file")
        else:
            t.run("job", "create", "-n", f"extra-{k}-{id(t) % 1000}", "-p", "write a file")

    return [
        ("job list", lambda t: t.run("job", "list")),
        ("job list --json", lambda t: t.run("job", "list", *(["--json"] if t is ours else []))),
        ("job status", lambda t: t.run("job", "status", first(t))),
        ("job status --json", lambda t: t.run("job", "status", first(t), "--json")),
        ("job metrics", lambda t: t.run("job", "metrics", first(t))),
        ("job create", create),
        ("job select", lambda t: t.run("job", "select", first(t))),
        ("job suspend", lambda t: t.run("job", "suspend", susp(t))),
        ("job resume", lambda t: t.run("job", "resume", susp(t))),
    ]


def children_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far: unlike wall time, hardly
    moved by other load on the machine."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(ours: Tool, orig: Tool, orig_py: Path, rounds: int) -> dict[str, tuple[float, float, float, float]]:
    """{command: (logist ms, original ms, logist CPU ms, original CPU ms)}; plus `python -c pass`
    for each interpreter."""
    cmds = commands(ours, orig)
    samples: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    pass_ours = Tool("logist", [ours.argv[0], "-c", "pass"], ours.cwd)
    pass_orig = Tool("original", [str(orig_py), "-c", "pass"], orig.cwd)
    for r in range(rounds + 1):  # round 0 warms the caches and is not counted
        pair = (ours, orig) if r % 2 == 0 else (orig, ours)
        for name, fn in [*cmds, ("python -c pass", lambda t: None)]:
            for t in pair:
                c0 = children_cpu()
                if name == "python -c pass":
                    p = pass_ours if t is ours else pass_orig
                    took = timed(p.run)
                else:
                    took = timed(lambda fn=fn, t=t: fn(t))  # type: ignore[misc]
                if r:
                    samples.setdefault((name, t.name), []).append(took)
                    cpu.setdefault((name, t.name), []).append(children_cpu() - c0)
    names = [n for n, _ in cmds] + ["python -c pass"]
    return {n: (med_ms(samples[(n, "logist")]), med_ms(samples[(n, "original")]),
                med_ms(cpu[(n, "logist")]), med_ms(cpu[(n, "original")])) for n in names}


def report(per_size: dict[int, dict[str, tuple[float, float, float, float]]], rounds: int) -> None:
    print(f"\n## logist against the original (fresh processes, median of {rounds} rounds)")
    lines, rows = [], []
    for n, m in per_size.items():
        for name, (ours, orig, ours_cpu, orig_cpu) in m.items():
            ratio = ours / orig
            cpu_ratio = ours_cpu / orig_cpu if orig_cpu else float("nan")
            target = None if name == "python -c pass" else TARGET_READ if name in READS else TARGET_WRITE
            met = "-" if target is None else "yes" if ratio <= target else "NO"
            what = name + (" (original: job list)" if name == "job list --json" else "")
            lines.append(f"result: {what} jobs={n} | logist={ours:.1f} ms | original={orig:.1f} ms "
                         f"| ratio={ratio:.2f}x | cpu: logist={ours_cpu:.1f} ms original={orig_cpu:.1f} ms "
                         f"ratio={cpu_ratio:.2f}x | target={'-' if target is None else f'<={target:g}x'} "
                         f"| met={met} |")
            rows.append(f"| `{what}` | {n:,} | {ours:.1f} ms | {orig:.1f} ms | {ratio:.2f}x "
                        f"| {cpu_ratio:.2f}x | {'-' if target is None else f'<= {target:g}x'} | {met} |")
    print("\n".join(lines))
    print("\nmarkdown:\n| command | jobs | logist | original | ratio | CPU ratio | target | met? |\n"
          "|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--original-venv", default=os.environ.get("LOGIST_ORIGINAL_VENV"),
                    help="virtual environment with the original logist installed "
                         "(default: $LOGIST_ORIGINAL_VENV)")
    ap.add_argument("--sizes", default="1,1000", help="job counts, comma-separated (default 1,1000)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--jobs", type=int, default=2, help="parallel workers making logist's jobs (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 1,20, 3 rounds")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.rounds = "1,20", 3
    venv = Path(args.original_venv).expanduser() if args.original_venv else None
    orig_py = original_python(venv) if venv else None
    if orig_py is None:
        where = f"no original logist in {venv}" if venv else "no --original-venv and no $LOGIST_ORIGINAL_VENV"
        print(f"skipped: {where}. Install it in its own venv (bench/README.md, "
              "'Against the original logist') and pass --original-venv PATH.")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    print("machine:", machine())
    orig_version = subprocess.run([str(orig_py.parent / "logist"), "--version"], capture_output=True,
                                  env=original_env(), text=True).stdout.strip()
    print(f"original: {orig_version} in {venv}")
    with workspace("logist-bench-original-") as tmp:
        per_size = {}
        for n in sizes:
            ours, orig = build(tmp, n, orig_py, args.jobs)
            per_size[n] = measure(ours, orig, orig_py, args.rounds)
        report(per_size, args.rounds)
    try:
        print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
