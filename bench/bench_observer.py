"""Observer throughput on a 50 MB agent log against `grep -E -i -c` with the same patterns.

    python bench/bench_observer.py [--mb 50] [--rounds 5] [--python-mb 2]

Generates a synthetic log (agent chatter, diffs, tool calls, JSON stream lines, ~0.1% signal
lines) in a temporary folder, then, in the same run and alternating:

* ``grep -E -i -c -e <each built-in pattern> log``
* the Observer as the watcher drives it: read the log in READ_MAX chunks, ``feed_chunk`` each
  (grep prefilter + Python classification, rate limiting, redaction of emitted lines)
* the pure-Python path (no grep) on the first ``--python-mb`` MB, extrapolated, for reference

Prints medians and the ratio to grep, and checks that both count the same lines. Not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logist.engine.logtail import READ_MAX
from logist.engine.observer import BUILTIN_PATTERNS, Observer, compile_patterns

NORMAL = [
    "  src/app/handlers/user_profile.py:{n}: def handle_request(self, request, *args, **kwargs):",
    "+    return compute_total(items, discount={n}) if items else 0",
    "-    value = legacy_lookup(key)  # TODO remove",
    '⏺ Read(file_path: "/home/dev/project/src/module_{n}.py")',
    "  ⎿  Read {n} lines (ctrl+r to expand)",
    '{{"type":"assistant","message":{{"id":"msg_{n}","content":[{{"type":"text",'
    '"text":"Looking at the tests now"}}]}}}}',
    "============================= {n} passed in 3.21s ==============================",
    "Applied edit to src/components/Button.tsx",
    "codex: running `pytest -q tests/test_models.py::test_case_{n}`",
    "    at Object.<anonymous> (/app/node_modules/lib/index.js:{n}:17)",
    "diff --git a/src/util.py b/src/util.py",
    "Tokens: 12k sent, 1.{n}k received. Cost: $0.02 message, $0.31 session.",
    "I'll update the function to handle the empty list case and add a test for it.",
    "",
]
SIGNAL = [
    'API Error: 429 {{"type":"error","error":{{"type":"rate_limit_error"}}}}',
    "Invalid API key · Please run /login",
    "Prompt is too long",
    "Do you want to proceed? (y/n)",
    "Traceback (most recent call last):",
    "ValueError: invalid literal for int() with base 10: 'x'",
    'API Error: 500 {{"type":"error","error":{{"type":"api_error"}}}}',
    "Task completed",
    "Please review the migration before I apply it.",
]


def generate(path: Path, size: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            pool = SIGNAL if rnd.random() < 0.001 else NORMAL
            s = rnd.choice(pool).format(n=rnd.randint(1, 99999)) + "\n"
            out.write(s)
            written += len(s.encode())


def run_grep(path: Path) -> tuple[float, int]:
    argv = ["grep", "-E", "-i", "-c"]
    for p in BUILTIN_PATTERNS.values():
        argv += ["-e", p]
    t0 = time.perf_counter()
    out = subprocess.run(argv + [str(path)], capture_output=True, check=False).stdout
    return time.perf_counter() - t0, int(out.strip() or 0)


def run_observer(path: Path) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    obs = Observer(compile_patterns())
    emitted = 0
    line_no = 1
    pending = b""
    with open(path, "rb") as fh:
        while True:
            data = fh.read(READ_MAX)
            if not data:
                break
            buf = pending + data
            cut = buf.rfind(b"\n")
            chunk, pending = buf[:cut + 1], buf[cut + 1:]
            emitted += len(obs.feed_chunk(chunk, line_no, time.time()))
            line_no += chunk.count(b"\n")
    if pending:
        emitted += len(obs.feed_chunk(pending, line_no, time.time()))
    emitted += len(obs.finish(time.time()))
    return time.perf_counter() - t0, obs.matches, emitted


def run_python(path: Path, mb: float) -> tuple[float, int]:
    with open(path, "rb") as fh:
        data = fh.read(int(mb * 1_000_000))
    data = data[:data.rfind(b"\n") + 1]
    p = compile_patterns()
    t0 = time.perf_counter()
    found = p.scan(data, bulk=False)
    return time.perf_counter() - t0, len(found)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--python-mb", type=float, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="logist-bench-observer-") as d:
        log = Path(d) / "step.log"
        generate(log, int(args.mb * 1_000_000))
        size = log.stat().st_size
        grep_t, obs_t = [], []
        grep_count = matches = emitted = 0
        for _ in range(args.rounds):
            t, grep_count = run_grep(log)
            grep_t.append(t)
            t, matches, emitted = run_observer(log)
            obs_t.append(t)
        py_t, py_found = run_python(log, args.python_mb)
    g, o = statistics.median(grep_t), statistics.median(obs_t)
    grep_v = subprocess.run(["grep", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"{size / 1e6:.1f} MB log, {args.rounds} rounds, {os.cpu_count()} CPUs, {grep_v}, "
          f"python {sys.version.split()[0]}")
    print(f"  grep -E -i -c          median {g * 1000:8.1f} ms  ({size / g / 1e6:7.1f} MB/s)  "
          f"{grep_count} matching lines")
    print(f"  Observer.feed_chunk    median {o * 1000:8.1f} ms  ({size / o / 1e6:7.1f} MB/s)  "
          f"{matches} matches -> {emitted} note lines (rate-limited)")
    print(f"  ratio observer / grep  {o / g:.2f}x   (target: within 3x)")
    per_mb = py_t / args.python_mb
    print(f"  pure-Python path (no grep): {per_mb * 1000:.0f} ms/MB on the first {args.python_mb:g} MB "
          f"({py_found} lines) -> ~{per_mb * size / 1e6:.1f} s for the whole log, "
          f"{per_mb * size / 1e6 / g:.0f}x grep")
    if matches != grep_count:
        print(f"  WARNING: observer matched {matches} lines, grep {grep_count}")


if __name__ == "__main__":
    main()
