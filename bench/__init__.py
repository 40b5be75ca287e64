"""Shared helpers of logist's benchmarks (bench/bench_core.py, bench/bench_step.py).

The benchmarks are scripts, not tests: each measures logist and a floor (the same git work done
with no logist logic) in the same run, on the same machine, interleaved round by round, and
prints medians and ratios. Everything happens in fresh temporary repositories with a private
HOME and git config, so the user's configuration never leaks in.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def hermetic_env(tmp: Path) -> None:
    """A private HOME and git config for this process and every child it starts."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / ".gitconfig"
    cfg.write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n"
                   "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgSign = false\n"
                   "[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    for key in list(os.environ):
        if key.startswith(("GIT_", "LOGIST_")):
            del os.environ[key]
    # Fresh processes run from compiled bytecode, as after `pip install` (which compiles it);
    # kept under tmp, not in the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    os.environ.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(cfg),
                       "GIT_TERMINAL_PROMPT": "0", "NO_COLOR": "1",
                       "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                                  if os.environ.get("PYTHONPATH") else "")})
    import logist.git.gitcmd as gitcmd

    gitcmd._BASE_ENV = None  # recompute from the environment set above


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        tmp = Path(d)
        hermetic_env(tmp)
        yield tmp


def sh(repo: Path | str, *args: str, input: str | bytes | None = None, env: dict | None = None) -> str:
    """stdout of ``git -C repo *args`` (raises on failure)."""
    text = not isinstance(input, bytes)
    proc = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True,
                          text=text, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise RuntimeError(f"git {' '.join(args)} failed: {err.strip()}")
    out = proc.stdout if text else proc.stdout.decode()
    return out.strip()


def new_repo(path: Path, n_files: int = 50) -> Path:
    """A repository with one commit of ``n_files`` small files in a few directories."""
    path.mkdir(parents=True)
    sh(path, "init", "-q", "-b", "main")
    for i in range(n_files):
        f = path / f"src/pkg{i % 5}/mod{i}.py"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"# module {i}\nVALUE = {i}\n")
    (path / "README.md").write_text("# bench project\n")
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "initial")
    return path


def logist_init(repo: Path) -> None:
    from logist.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["-C", str(repo), "init"])
    if code != 0:
        raise RuntimeError(f"logist init failed in {repo} (exit {code})")


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


def installed_python(tmp: Path) -> str:
    """A python that runs this checkout's logist as after a plain ``pip install``: a scratch
    venv whose one ``.pth`` file lists the checkout and the current environment's
    site-packages as plain paths. A development venv's editable install adds an import hook
    that every process pays at start (pathlib, fnmatch...: 20-40 ms here) and no user does."""
    import site
    import sysconfig

    venv = tmp / "installed-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        paths = [str(ROOT), *dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])]
        (Path(purelib) / "bench-logist.pth").write_text("\n".join(paths) + "\n")
    return str(py)


def run_proc(argv: list[str], *, cwd: Path | None = None, env: dict | None = None,
             expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, env={**os.environ, **(env or {})})
    if proc.returncode != expect:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(samples: dict[str, list[float]], fns: dict[str, Callable[[], object]], rounds: int,
               warmup: int = 1) -> None:
    """Run every function once per round, rotating the order, so load changes hit all alike."""
    names = list(fns)
    for r in range(warmup + rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t = timed(fns[name])
            if r >= warmup:
                samples.setdefault(name, []).append(t)


def med_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000.0


@dataclass
class Result:
    name: str
    logist_ms: float
    floor_ms: float | None
    floor_name: str
    target: float | None  # maximum ratio, None when informational
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.floor_ms else self.logist_ms / self.floor_ms

    @property
    def met(self) -> str:
        if self.target is None or self.ratio is None:
            return "-"
        return "yes" if self.ratio <= self.target else "NO"

    def line(self) -> str:
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else "-"
        target = f"<={self.target:g}x" if self.target is not None else "-"
        floor = f"{self.floor_ms:.1f}ms" if self.floor_ms is not None else "-"
        return (f"result: {self.name} | logist={self.logist_ms:.1f}ms | floor={floor} "
                f"({self.floor_name}) | ratio={ratio} | target={target} | met={self.met}"
                + (f" | {self.note}" if self.note else ""))

    def row(self) -> str:
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else "-"
        target = f"<= {self.target:g}x" if self.target is not None else "-"
        floor = f"{self.floor_ms:.1f} ms" if self.floor_ms is not None else "-"
        return (f"| {self.name} | {self.logist_ms:.1f} ms | {floor} ({self.floor_name}) | {ratio} "
                f"| {target} | {self.met} |")


def machine() -> str:
    git_v = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    try:
        from importlib.metadata import version

        libs = ", ".join(f"{p} {version(p)}" for p in ("dulwich", "pydantic", "cyclopts"))
    except Exception:
        libs = "?"
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load average ?"
    return (f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
            f"python {platform.python_version()}, {git_v}, {libs}; {load}")


def print_results(title: str, results: list[Result]) -> None:
    print(f"\n## {title}")
    for r in results:
        print(r.line())
    print("\nmarkdown:")
    print("| operation | logist | floor | ratio | target | met? |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    sys.stdout.flush()


# Runs with this checkout's logist: `logist job create` in a loop (the same code as the CLI, in
# one long-running process), printing each new id.
_CREATE_DRIVER = """
import contextlib, io, sys
from logist.cli import main
repo, first, last, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
for i in range(first, last):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["-C", repo, "job", "create", "--title", f"Job {i}", "--prompt", f"Task {i}: write a file",
                     "--step", f"Task {i}: write a file", "--json", *extra])
    if code != 0:
        sys.exit(f"logist job create exited {code}")
    import json
    print(json.loads(out.getvalue())["id"], flush=True)
"""


def make_jobs(repo: Path, n: int, workers: int, *extra: str) -> list[str]:
    """``n`` jobs made by `logist job create` (``extra``: more options, e.g. ``--activate``) in
    ``workers`` parallel processes (creates are compare-and-swaps on refs: safe in parallel);
    their ids, in the order they were made per worker."""
    workers = max(1, min(workers, n))
    cuts = [n * k // workers for k in range(workers + 1)]
    procs = [subprocess.Popen([*python_cmd("-c", _CREATE_DRIVER), str(repo), str(a), str(b), *extra],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    ids: list[str] = []
    for p in procs:
        out, errs = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"making {n} jobs failed: {errs.decode(errors='replace')[-2000:]}")
        ids += out.decode().split()
    if len(ids) != n:
        raise RuntimeError(f"made {len(ids)} jobs, expected {n}")
    return ids
