"""Step benchmark of logist (docs/performance.md#one-step): one whole step against the same git work.

    python bench/bench_step.py [--quick] [--rounds N] [--agents command,mock]

One step through ``Engine.step`` (the path of ``logist job step``): lease, PENDING ->
PROVISIONING -> EXECUTING -> (agent) -> HARVESTING -> PENDING, four commits, with an agent that
exits at once: a ``command`` agent running ``true``, and the ``mock`` agent (a python child). The
worktree is already there. Each agent is measured with the side process (observer + sentinel,
a python start; ``Engine.step`` returns once it has been reaped, its notes written) and with
``LOGIST_NO_WATCHER=1``. The side process alone is measured too: ``spawn_watcher`` for an agent
that has already exited (empty log) until ``stop_watcher`` has reaped it, against
``python -S -c pass`` (the interpreter start it cannot avoid) and ``python -c pass``.

Floor, in the same run, interleaved round by round: the same four commits (same parents' chain,
same tree changes: manifest + history blobs under ``.logist/jobs/<id>/``, the same messages)
made with git plumbing (hash-object x2, read-tree + update-index + write-tree on a temporary
index, commit-tree, update-ref: 7 processes a commit), plus spawning the same agent once
(``true``, or the mock agent's own argv and environment). A tighter floor with dulwich objects +
one ``git update-ref`` per commit is printed too. Also: one step as a fresh CLI process
(``python -m logist job step ID``) against the plumbing floor plus a ``python -c pass``.

Not a test: prints medians and ratios (lines starting with ``result:``) and a markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

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
from bench.bench_core import DulwichFloor, GitCounter, PlumbingFloor


def job_toml(agent: str, steps: int) -> str:
    out = ['title = "Step benchmark"', 'prompt = "Measure the overhead of one step."',
           f'agent = "{agent}"', "[budget]", "max_attempts = 3"]
    for i in range(1, steps + 1):
        out += ["[[steps]]", f'name = "s{i}"', f'prompt = "Step {i}: nothing to do."']
        if agent == "command":
            out.append('command = ["true"]')
    return "\n".join(out) + "\n"


def step_data(repo: Path, jid: str, tip: str) -> list[tuple[bytes, bytes, bytes]]:
    """(manifest, new history line, message) of the 4 commits of the step that ended at ``tip``."""
    out = []
    for k in (3, 2, 1, 0):
        rev = f"{tip}~{k}"
        cat = lambda spec: subprocess.run(["git", "-C", str(repo), "cat-file", "-p", spec],  # noqa: E731
                                          capture_output=True, check=True).stdout
        manifest = cat(f"{rev}:.logist/jobs/{jid}/manifest.json")
        line = cat(f"{rev}:.logist/jobs/{jid}/history.jsonl").splitlines(keepends=True)[-1]
        msg = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%B", rev],
                             capture_output=True, check=True).stdout
        out.append((manifest, line, msg))
    return out


def uniquify(data: list[tuple[bytes, bytes, bytes]], salt: int) -> list[tuple[bytes, bytes, bytes]]:
    """The same bytes, made unique (no object already exists): other stamps and transition ids."""
    out = []
    for i, (m, line, msg) in enumerate(data):
        tid = b"%016x" % (salt * 10 + i)
        m = re.sub(rb'"updated_at": "[^"]*', b'"updated_at": "F%015d' % (salt * 10 + i), m)
        line = re.sub(rb'"transition_id":"[0-9a-f]+"', b'"transition_id":"' + tid + b'"', line)
        out.append((m, line, msg))
    return out


class StepFloor:
    """4 commits (plumbing or dulwich) + the agent spawned once after the second."""

    def __init__(self, floor, agent_argv: list[str], agent_env: dict[str, str], cwd: Path,
                 history: bytes, log: Path) -> None:
        self.floor, self.argv, self.env, self.cwd = floor, agent_argv, {**os.environ, **agent_env}, cwd
        self.history = history
        self.log = log

    def run(self, data: list[tuple[bytes, bytes, bytes]]) -> None:
        for i, (manifest, line, msg) in enumerate(data):
            self.history += line
            self.floor.commit(manifest, self.history, msg)
            if i == 1:
                with open(self.log, "ab") as out:
                    subprocess.run(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                                   start_new_session=True)


def bench_agent(tmp: Path, agent: str, rounds: int, cli_rounds: int) -> list[Result]:
    from logist.agents import get_agent
    from logist.agents.base import StepContext
    from logist.core.jobfile import parse_job_text
    from logist.core.model import State
    from logist.engine.job_processor import Engine
    from logist.engine.jobs import create_job
    from logist.store.jobstore import JobStore

    repo = new_repo(tmp / f"{agent}-repo", n_files=200)
    logist_init(repo)
    store = JobStore.discover(repo)
    n_steps = rounds + 4
    jobs = {"nowatch": f"{agent}-nowatch", "watch": f"{agent}-watch"}
    for jid in jobs.values():
        create_job(store, parse_job_text(job_toml(agent, n_steps)), activate=True, job_id=jid)
    os.environ["LOGIST_NO_WATCHER"] = "1"
    engines = {"nowatch": Engine(store)}
    del os.environ["LOGIST_NO_WATCHER"]
    engines["watch"] = Engine(store)
    assert not engines["nowatch"].watch and engines["watch"].watch

    # One warm step each (untimed); the processes of one step are counted on the first.
    counter = GitCounter()
    with counter.watching():
        engines["nowatch"].step(jobs["nowatch"])
    engines["watch"].step(jobs["watch"])

    ref_job = jobs["nowatch"]
    start = store.tip(ref_job)
    hist0 = subprocess.run(["git", "-C", str(repo), "cat-file", "blob",
                            f"{start}:.logist/jobs/{ref_job}/history.jsonl"],
                           capture_output=True, check=True).stdout
    wt = store.worktree_path(ref_job)
    _, m = store.read(ref_job)
    ctx = StepContext(job_id=ref_job, step_number=m.step, step_count=m.step_count,
                      step_name=m.current.name, prompt="floor", workdir=wt,
                      options=dict(m.current.options), attempt=1)
    inv = get_agent(agent).build(ctx)
    floors = {
        "plumbing": StepFloor(PlumbingFloor(repo, ref_job, f"refs/heads/floor/{agent}-plumbing", start,
                                            tmp / f"{agent}-floor.index"),
                              inv.argv, inv.env, wt, hist0, tmp / f"{agent}-floor-plumbing.log"),
        "dulwich": StepFloor(DulwichFloor(repo, ref_job, f"refs/heads/floor/{agent}-dulwich", start),
                             inv.argv, inv.env, wt, hist0, tmp / f"{agent}-floor-dulwich.log"),
    }

    samples: dict[str, list[float]] = {}
    names = ["nowatch", "plumbing", "watch", "dulwich"]
    salt = 0
    for r in range(1 + rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in engines:
                jid = jobs[name]
                box: dict[str, Any] = {}
                t = timed(lambda box=box, engine=engines[name], jid=jid: box.setdefault("r", engine.step(jid)))
                res = box["r"]
                if res.state != State.PENDING:
                    raise RuntimeError(f"{jid}: step ended in {res.state.value}: {res.reason}")
            else:
                salt += 1
                data = uniquify(step_data(repo, ref_job, store.tip(ref_job)), salt)
                t = timed(partial(floors[name].run, data))
            if r:
                samples.setdefault(name, []).append(t)

    for jid in jobs.values():
        dirty = sh(store.worktree_path(jid), "status", "--porcelain")
        if dirty:
            print(f"warning: worktree of {jid} not clean after steps:\n{dirty}")
    for f in floors.values():  # the floors made real commits holding the record
        sh(repo, "cat-file", "-e", f"{f.floor.tip}:.logist/jobs/{ref_job}/manifest.json")

    results = []
    procs = counter.calls
    n_git = sum(1 for c in procs if c.startswith("git"))
    print(f"\n({agent}) processes started by one step without the side process ({len(procs)}, "
          f"{n_git} git): " + ", ".join(procs))
    watcher_cost = med_ms(samples["watch"]) - med_ms(samples["nowatch"])
    results += [
        Result(f"one step, {agent} agent, LOGIST_NO_WATCHER=1", med_ms(samples["nowatch"]),
               med_ms(samples["plumbing"]), "4 plumbing commits + agent", 2.0,
               note=f"{n_git} git processes"),
        Result(f"one step, {agent} agent, with the side process", med_ms(samples["watch"]),
               med_ms(samples["plumbing"]), "4 plumbing commits + agent", 2.0,
               note=f"side process adds {watcher_cost:.0f} ms"),
        Result(f"one step, {agent} agent, LOGIST_NO_WATCHER=1, vs dulwich floor",
               med_ms(samples["nowatch"]), med_ms(samples["dulwich"]), "4 dulwich commits + agent", None),
    ]

    if cli_rounds:
        jid = f"{agent}-cli"
        create_job(store, parse_job_text(job_toml(agent, cli_rounds + 2)), activate=True, job_id=jid)
        env = {"LOGIST_NO_WATCHER": "1"}
        cli, py, fl = [], [], []
        for r in range(1 + cli_rounds):
            t = timed(lambda: run_proc(python_cmd("-m", "logist", "-C", str(repo), "job", "step", jid),
                                       env=env))
            salt += 1
            data = uniquify(step_data(repo, ref_job, store.tip(ref_job)), salt)
            tf = timed(partial(floors["plumbing"].run, data))
            tp = timed(lambda: run_proc(python_cmd("-c", "pass")))
            if r:
                cli.append(t)
                fl.append(tf)
                py.append(tp)
        results.append(Result(f"one step, {agent} agent, fresh CLI process (job step, no side process)",
                              med_ms(cli), med_ms(fl) + med_ms(py), "plumbing floor + python -c pass",
                              None))
    return results


def bench_side_process(tmp: Path, rounds: int) -> list[Result]:
    """One side process on its own: spawned for an agent already gone, until reaped."""
    from logist.engine.watcher import spawn_watcher, stop_watcher

    repo = new_repo(tmp / "watcher-repo", n_files=1)
    commit = sh(repo, "rev-parse", "HEAD")
    log = tmp / "watcher-step.log"
    log.write_bytes(b"")
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()

    def one() -> None:
        pid = spawn_watcher(repo=repo, job_id="bench-1", log_path=log, pid=gone.pid, pgid=gone.pid,
                            commit=commit, workdir=repo, verdict_file=tmp / "watcher-verdict.json",
                            config={"sentinel": {"silence_seconds": 300}})
        if stop_watcher(pid, wait=10) != "exited":
            raise RuntimeError("the side process did not exit by itself")

    samples: dict[str, list[float]] = {}
    fns = {"watcher": one, "bare": lambda: run_proc(python_cmd("-S", "-c", "pass")),
           "site": lambda: run_proc(python_cmd("-c", "pass"))}
    for r in range(1 + rounds):
        names = list(fns)
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t = timed(fns[name])
            if r:
                samples.setdefault(name, []).append(t)
    w = med_ms(samples["watcher"])
    return [
        Result("side process alone: agent already gone, empty log (spawn to reaped)", w,
               med_ms(samples["bare"]), "python -S -c pass", None),
        Result("side process alone: agent already gone, empty log (spawn to reaped), vs site", w,
               med_ms(samples["site"]), "python -c pass", None),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement")
    ap.add_argument("--agents", default="command,mock", help="agents to measure: command,mock")
    ap.add_argument("--cli-rounds", type=int, default=None, help="rounds of the fresh CLI process")
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 15)
    cli_rounds = args.cli_rounds if args.cli_rounds is not None else (0 if args.quick else 5)
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_step.py {' '.join(sys.argv[1:])}".rstrip())
    results: list[Result] = []
    with workspace("logist-bench-step-") as tmp:
        for agent in args.agents.split(","):
            results += bench_agent(tmp, agent, rounds, cli_rounds)
        results += bench_side_process(tmp, rounds * 2)
    print_results("one step", results)


if __name__ == "__main__":
    main()
