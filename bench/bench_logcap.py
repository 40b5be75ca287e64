"""Runner memory and disk against a step's output size (docs/cli.md#limits).

    python bench/bench_logcap.py [--mb 1024] [--cap-mb 32] [--repo-src PATH]

One `logist job run` of a `command` step that prints ``--mb`` MiB (``head -c`` of /dev/zero
through ``tr``: no memory of its own), as a fresh CLI process; its peak RSS is the maximum
resident size of the waited-for children (``getrusage(RUSAGE_CHILDREN)``, the runner being the
largest), and the step log's size is read when it ends. Floor, in the same run: the same job
printing 1 KiB. Prints ``result:`` lines: peak RSS (MiB) of both, their ratio, and the log size
against ``[limits] max_log_bytes``. ``--repo-src`` runs another checkout of logist (e.g. one
before the cap) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(src: Path, size_bytes: int, cap: int, *, config: bool = True) -> tuple[float, int, float]:
    """(peak RSS MiB of the runner, log bytes left, seconds) for one step printing size_bytes."""
    with tempfile.TemporaryDirectory(prefix="logcap-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = {**os.environ, "PYTHONPATH": str(src), "LOGIST_NO_WATCHER": "1", "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
               "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid"}
        for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "init"]):
            subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
        lg = [sys.executable, "-m", "logist", "-C", str(repo)]
        subprocess.run([*lg, "init"], check=True, env=env, capture_output=True, cwd=tmp)
        if config:
            (repo / ".logist" / "config.local.toml").write_text(f"[limits]\nmax_log_bytes = {cap}\n")
        script = f"head -c {size_bytes} /dev/zero | tr '\\0' 'x'; echo; echo done"
        job_file = Path(tmp) / "job.toml"
        job_file.write_text('title = "noisy"\n[[steps]]\nagent = "command"\n'
                            f"command = {json.dumps(['sh', '-c', script])}\n")
        job = subprocess.run([*lg, "job", "create", "--file", str(job_file), "--activate"], check=True,
                             env=env, capture_output=True, text=True, cwd=tmp).stdout.strip()
        # measure only the runner: a child of a fresh helper that reports its children's peak
        probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
        t0 = time.monotonic()
        # cwd: not this checkout (python -m puts the working directory first on sys.path)
        out = subprocess.run([sys.executable, "-c", probe, *lg, "job", "run", job], env=env, cwd=tmp,
                             capture_output=True, text=True, check=True).stdout.split()
        seconds = time.monotonic() - t0
        logs = list((repo / ".git" / "logist" / "run").rglob("*.log"))
        log_bytes = max((p.stat().st_size for p in logs), default=0)
        if out[1] != "0":
            raise SystemExit(f"job run failed with {out[1]}")
        return int(out[0]) / 1024.0, log_bytes, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024, help="MiB the step prints (default 1024)")
    ap.add_argument("--cap-mb", type=int, default=32, help="[limits] max_log_bytes in MiB (default 32)")
    ap.add_argument("--repo-src", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the logist checkout to run (default: this one)")
    ap.add_argument("--no-limits-config", action="store_true",
                    help="do not write [limits] (for a checkout from before that setting)")
    a = ap.parse_args()
    cap = a.cap_mb * 1024 * 1024
    floor_rss, floor_log, floor_s = run_once(a.repo_src, 1024, cap, config=not a.no_limits_config)
    rss, log, secs = run_once(a.repo_src, a.mb * 1024 * 1024, cap, config=not a.no_limits_config)
    print(f"result: floor (1 KiB of output): runner peak RSS {floor_rss:.1f} MiB, {floor_s:.1f} s")
    print(f"result: {a.mb} MiB of output: runner peak RSS {rss:.1f} MiB, {secs:.1f} s; "
          f"ratio to floor {rss / floor_rss:.2f}x")
    print(f"result: step log left on disk {log / 1048576:.1f} MiB (cap {a.cap_mb} MiB) = "
          f"{log / cap:.2f}x the cap; floor log {floor_log} bytes")
    print(f"result: rusage self {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
