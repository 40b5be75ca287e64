"""What a fresh `logist` process costs (docs/performance.md#fresh-processes).

    python bench/bench_startup.py [--quick] [--rounds N]

Interleaved, round by round, in the same run and the same small repository (one job):

- ``python -c pass``: the interpreter's own start, the floor of every fresh process;
- ``bench/transition_plumbing.sh``: a shell script making the same kind of commit as one
  transition (read the record at the tip, change the state, append a history line, commit
  under ``.logist/jobs/<id>/``, compare-and-swap the ref) with 9 git plumbing processes;
- ``logist job suspend`` / ``job resume`` (alternating) on the job, ``logist job status ID``,
  ``logist job list --json`` and ``logist job create`` (one more job each round), each as a
  fresh process.

Ratios: a transition against the plumbing script (target <= 4x); ``job status`` against
``python -c pass`` (target <= 6x); the others for information. Each line also names the heavy
packages the command imported (``python -X importtime``) and its median CPU time (user + system
of the process and its children, less sensitive to a busy machine than wall time).

Not a test: it prints medians and ratios (lines starting with ``result:``), then a markdown
table. Numbers are comparable within one run; quote the load average with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import Result, logist_init, machine, new_repo, print_results, python_cmd, sh, workspace
from bench.bench_core import importtime

HERE = Path(__file__).resolve().parent
PLUMBING = HERE / "transition_plumbing.sh"
HEAVY = ("cyclopts", "pydantic", "dulwich", "rich")


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])} exited {proc.returncode}: "
                           f"{err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 21)")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 21)
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_startup.py {' '.join(sys.argv[1:])}".rstrip())
    with workspace("logist-bench-startup-") as tmp:
        repo = new_repo(tmp / "repo", n_files=50)
        logist_init(repo)
        logist = python_cmd("-m", "logist", "-C", str(repo))
        out = subprocess.run([*logist, "job", "create", "--title", "startup bench", "--step", "one",
                              "--activate"], capture_output=True, text=True, check=True).stdout
        jid = out.split()[0]
        tip = sh(repo, "rev-parse", f"refs/heads/logist/{jid}")
        floor_ref = "refs/heads/bench/plumbing"
        sh(repo, "update-ref", floor_ref, tip)
        turn = {"logist": "suspend", "floor": "suspend"}

        def transition() -> tuple[float, float]:
            ev = turn["logist"]
            turn["logist"] = "resume" if ev == "suspend" else "suspend"
            return run([*logist, "job", ev, jid])

        def plumbing() -> tuple[float, float]:
            ev = turn["floor"]
            turn["floor"] = "resume" if ev == "suspend" else "suspend"
            states = ("PENDING", "SUSPENDED") if ev == "suspend" else ("SUSPENDED", "PENDING")
            return run(["bash", str(PLUMBING), str(repo), jid, floor_ref, *states])

        created = [0]

        def create() -> tuple[float, float]:
            created[0] += 1
            return run([*logist, "job", "create", "--title", f"made {created[0]}", "--step", "one"])

        cmds = {
            "python -c pass": lambda: run(python_cmd("-c", "pass")),
            "plumbing script": plumbing,
            "job suspend/resume": transition,
            "job status ID": lambda: run([*logist, "job", "status", jid]),
            "job list --json": lambda: run([*logist, "job", "list", "--json"]),
            "job create": create,
        }
        wall: dict[str, list[float]] = {k: [] for k in cmds}
        cpu: dict[str, list[float]] = {k: [] for k in cmds}
        names = list(cmds)
        for r in range(1 + rounds):  # round 0 warms the caches and is not counted
            k = r % len(names)
            for name in names[k:] + names[:k]:
                w, c = cmds[name]()
                if r:
                    wall[name].append(w)
                    cpu[name].append(c)
        med = {k: statistics.median(v) * 1000 for k, v in wall.items()}
        cmed = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
        sh(repo, "fsck", "--no-progress")  # every commit made above is sound

        def note(name: str, argv: list[str] | None) -> str:
            text = f"cpu {cmed[name]:.1f}ms"
            if argv is not None:
                total, first, _ = importtime(argv)
                heavy = [p for p in HEAVY if p in first]
                text += f"; imports {total:.0f}ms, heavy: {', '.join(heavy) or 'none'}"
            return text

        ev = turn["logist"]
        it = {
            "job suspend/resume": ["-m", "logist", "-C", str(repo), "job", ev, jid],
            "job status ID": ["-m", "logist", "-C", str(repo), "job", "status", jid],
            "job list --json": ["-m", "logist", "-C", str(repo), "job", "list", "--json"],
            "job create": ["-m", "logist", "-C", str(repo), "job", "create", "--title", "importtime",
                           "--step", "one"],
        }
        notes = {k: note(k, it.get(k)) for k in cmds}
        py, floor = med["python -c pass"], med["plumbing script"]
        print(f"\nwall medians over {rounds} rounds: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
        print("cpu medians (user + system): " + ", ".join(f"{k} {v:.1f} ms" for k, v in cmed.items())
              + f"; transition / plumbing {cmed['job suspend/resume'] / cmed['plumbing script']:.2f}x, "
              f"status / python {cmed['job status ID'] / cmed['python -c pass']:.2f}x")
        results = [
            Result("transition: logist job suspend/resume, fresh process", med["job suspend/resume"], floor,
                   "bash + 9 git plumbing calls, same commit", 4.0, note=notes["job suspend/resume"]),
            Result("transition: logist job suspend/resume vs python -c pass", med["job suspend/resume"], py,
                   "python -c pass", None),
            Result("job status ID, fresh process", med["job status ID"], py, "python -c pass", 6.0,
                   note=notes["job status ID"]),
            Result("job list --json (1 job and those made here), fresh process", med["job list --json"], py,
                   "python -c pass", None, note=notes["job list --json"]),
            Result("job create, fresh process", med["job create"], floor,
                   "bash + 9 git plumbing calls, one transition", None, note=notes["job create"]),
            Result("plumbing script", floor, py, "python -c pass", None, note=notes["plumbing script"]),
        ]
        print_results("fresh processes", results)


if __name__ == "__main__":
    main()
